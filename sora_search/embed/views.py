"""Query-time views of a probe frame: the frame, its mirror image, the frame turned by quarter turns, its halves,
half-size windows and a found inset.

A copy is not always the whole probe frame. It may be mirrored, rotated by a multiple of 90 degrees, one half of a
side-by-side or top-bottom stack, or an inset (picture-in-picture) over other footage. A global descriptor of the
whole probe frame mixes the copy with everything around it, so the probe is also described through views that
isolate each candidate layout, and every library video keeps the best-scoring view. The library is indexed once,
from whole frames; only the probe pays.

A probe seen only whole, mirrored or turned is decoded at the encoder's input side S, as the library was: those
views are the frame as decoded, its mirror image and its quarter turns (frames are square, so a turn keeps the
shape). For any other view the probe is decoded at twice that side (2S x 2S), so every view is an exact S x S array
with no second resize: the whole frame is a 2x2 mean, a half is a crop averaged by 2 along one axis, and a
half-size window is a plain crop. The ``inset`` view is the rectangle
:class:`sora_search.embed.inset.InsetFinder` found in the probe (a picture-in-picture inset), cut out and resampled to
S x S. NumPy only.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from sora_search.embed.images import crop_resize, pool2
from sora_search.embed.inset import Box

FULL = "full"
HFLIP = "hflip"
# The whole frame turned back by a quarter, a half and three quarters (copies rotated by a multiple of 90 degrees).
ROTATIONS = ("rot90", "rot180", "rot270")
# Halves: side-by-side (left/right) and top-bottom (top/bottom) stacks.
HALVES = ("left", "right", "top", "bottom")
# Half-size windows on a 3 x 3 grid with a stride of a quarter frame: an inset of a third to a half of the frame
# lies mostly inside one of them (picture-in-picture).
WINDOWS = tuple(f"win{i}{j}" for i in range(3) for j in range(3))
# The inset found in the probe, if any (it needs a box: see make_view).
INSET = "inset"

# Views of the whole frame: a pass of only these decodes the probe at S, not 2S (see decode_side).
WHOLE_FRAME_VIEWS = frozenset((FULL, HFLIP) + ROTATIONS)
# Views that look at part of the frame (scored with a penalty: QueryParams.region_penalty).
REGION_VIEWS = frozenset(HALVES + WINDOWS)

ALL_VIEWS = (FULL, HFLIP) + ROTATIONS + HALVES + WINDOWS + (INSET,)
VIEW_SETS: dict[str, tuple[str, ...]] = {
    "fast": (FULL,),
    "standard": (FULL, HFLIP),
    "regions": ROTATIONS + HALVES + WINDOWS + (INSET,),
    "thorough": ALL_VIEWS,
}


def region_of(name: str, inset: Box | None = None) -> Box | None:
    """The part of the probe frame a view looks at, in fractions of the frame: a half, a window or the found ``inset``;
    None for the whole-frame views (and for ``inset`` without its box)."""
    if name in ("left", "right"):
        return Box(0.5 * (name == "right"), 0.0, 0.5, 1.0)
    if name in ("top", "bottom"):
        return Box(0.0, 0.5 * (name == "bottom"), 1.0, 0.5)
    if name in WINDOWS:
        return Box(int(name[4]) / 4, int(name[3]) / 4, 0.5, 0.5)
    if name == INSET and inset is not None:
        return Box(inset.x, inset.y, inset.w, inset.h)
    return None


def blank_frames(frames: np.ndarray, max_std: float) -> np.ndarray:
    """(n,) bool: which of ``frames`` ((n, H, W, 3) uint8 RGB) are blank: black, a fade, a uniform colour, where
    every colour channel's standard deviation (0-255 scale) is below ``max_std`` (``QueryParams.blank_std``).
    Per channel, not luma: two colours of equal brightness (green cells on blue) are content."""
    if frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"blank_frames needs (n, H, W, 3) frames, got shape {frames.shape}")
    sample = frames[:, ::4, ::4]  # every 16th pixel is enough
    sample = sample.reshape(len(frames), sample.shape[1] * sample.shape[2], 3).astype(np.float32)
    return sample.std(axis=1).max(axis=1) < max_std


def decode_side(views: Iterable[str], side: int) -> int:
    """The side to decode a probe at for these views: ``side`` (S) when all are whole-frame views, else 2S."""
    return side if set(views) <= WHOLE_FRAME_VIEWS else 2 * side


def make_view(frames: np.ndarray, name: str, box: Box | None = None, *, side: int | None = None) -> np.ndarray:
    """One view of probe frames decoded at the encoder's side S or at twice that.

    Args:
        frames: (n, 2S, 2S, 3) uint8 RGB, or (n, S, S, 3) for the whole-frame views (``full``, ``hflip``,
            ``rotK``).
        name: ``full``, ``hflip``, ``rot90``/``rot180``/``rot270`` (the frame turned counter-clockwise by K
            degrees), ``left``/``right``/``top``/``bottom``, ``winIJ`` (I, J in 0..2: row and column
            of the half-size window, offset I/4 and J/4 of the frame) or ``inset``.
        box: the rectangle the ``inset`` view cuts out (fractions of the frame); only for ``inset``.
        side: S, the encoder's input side; by default half the frames' side (frames decoded at 2S).

    Returns:
        (n, S, S, 3) uint8, C-contiguous.
    """
    if name not in ALL_VIEWS:
        raise ValueError(f"unknown view {name!r}; known: {ALL_VIEWS}")
    if frames.ndim != 4 or frames.shape[1] != frames.shape[2] or frames.shape[3] != 3:
        raise ValueError(f"views need (n, 2S, 2S, 3) or (n, S, S, 3) frames, got shape {frames.shape}")
    side = frames.shape[1] // 2 if side is None else side
    at_side = frames.shape[1] == side
    if not (at_side and name in WHOLE_FRAME_VIEWS) and (frames.shape[1] != 2 * side or side % 2):
        raise ValueError(f"the {name!r} view needs (n, 2S, 2S, 3) frames with S even (S={side}), got shape "
                         f"{frames.shape}")
    if name in WHOLE_FRAME_VIEWS:
        whole = frames if at_side else pool2(pool2(frames, 1), 2)
        if name == FULL:
            out = whole
        elif name == HFLIP:
            out = whole[:, :, ::-1]
        else:
            out = np.rot90(whole, int(name[3:]) // 90, axes=(1, 2))
    elif name in ("left", "right"):
        cols = slice(0, side) if name == "left" else slice(side, 2 * side)
        out = pool2(frames[:, :, cols], 1)
    elif name in ("top", "bottom"):
        rows = slice(0, side) if name == "top" else slice(side, 2 * side)
        out = pool2(frames[:, rows], 2)
    elif name == INSET:
        if box is None:
            raise ValueError("the inset view needs the box to cut out (InsetFinder.find)")
        out = crop_resize(frames, box, side)
    else:  # a window
        i, j = int(name[3]), int(name[4])
        y, x = i * side // 2, j * side // 2
        out = frames[:, y:y + side, x:x + side]
    return np.ascontiguousarray(out)
