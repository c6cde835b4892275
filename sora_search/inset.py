"""Finding a picture-in-picture inset in a probe: the rectangle whose sides are edges in frame after frame.

An inset pasted over other footage has a hard border that stays put while the content on both sides of it moves, so
its four sides (two or three where it touches the frame's edge) are edges in most frames. Natural edges move, blur
or stop short; a rectangle of persistent, straight edges on every side is rare. The finder looks at the probe in
short stretches (the inset may cover only part of it), keeps each stretch's persistent edges, and searches for the
rectangle whose weakest side is strongest. Fixed quarter-grid windows (:mod:`sora_search.views`) see an inset
mixed with the footage around it; the found rectangle cuts it out exactly, which is what lets a small inset match.

Everything here is NumPy on grey frames at the encoder's side S, so a probe's cost is a few milliseconds a frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# An inset is 0.2-0.9 of the frame on each side (smaller ones hold too few pixels to describe) and has the frame's
# shape, give or take a pixel of the search grid (a scaled-down copy keeps its aspect ratio). Allowing 1.15x on the
# accuracy benchmark let two-sided rectangles, from an inset's corner out to the frame's edges, beat the inset.
MIN_SIDE = 0.2
MAX_SIDE = 0.9
MAX_ASPECT = 1.0
# Edges persist when the median over a stretch of this many probe frames (seconds at 1 fps) still shows them.
STRETCH = 8
# In fewer frames than this every edge of the footage persists: a probe this short has no inset to find.
MIN_FRAMES = 3
# The weakest side's mean edge contrast, in grey levels, for a rectangle to count as an inset. On the accuracy
# benchmark every picture-in-picture query's inset scores 22-44; footage without an inset mostly scores below 10
# (boxes drawn over the video and blocks of overlaid text also reach 15-56: they are rectangles too).
MIN_STRENGTH = 15.0
_NEIGHBOUR = 2  # an edge must stand out against the edges this many pixels to either side (a line, not texture)


@dataclass(frozen=True)
class Box:
    """A rectangle in fractions of the frame: top-left corner ``x``, ``y``, size ``w``, ``h``.

    ``strength`` is how clearly its sides stand out (the weakest side's edge contrast in grey levels).
    """

    x: float
    y: float
    w: float
    h: float
    strength: float = 0.0

    def __post_init__(self) -> None:
        if not (0 <= self.x < 1 and 0 <= self.y < 1 and 0 < self.w <= 1 - self.x + 1e-9
                and 0 < self.h <= 1 - self.y + 1e-9):
            raise ValueError(f"Box must lie inside the unit frame, got x={self.x} y={self.y} w={self.w} h={self.h}")

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) on a ``width`` x ``height`` frame, at least one pixel each way."""
        x0, y0 = int(round(self.x * width)), int(round(self.y * height))
        x1 = max(x0 + 1, min(width, int(round((self.x + self.w) * width))))
        y1 = max(y0 + 1, min(height, int(round((self.y + self.h) * height))))
        return x0, y0, x1, y1


class InsetFinder:
    """Feed it a probe's frames in order; :meth:`find` then names the inset, if there is one.

    Memory stays bounded whatever the probe's length: it keeps one stretch of grey frames and, per pixel, the
    strongest persistent edge any stretch showed.
    """

    def __init__(self, stretch: int = STRETCH) -> None:
        if stretch < 1:
            raise ValueError(f"stretch must be at least 1 frame, got {stretch}")
        self._stretch = stretch
        self._hop = max(1, stretch // 2)
        self._buffer: list[np.ndarray] = []
        self._pending = 0  # frames in the buffer not yet part of any finished stretch
        self._vertical: np.ndarray | None = None    # (S, S-1): edge between columns c and c+1
        self._horizontal: np.ndarray | None = None  # (S-1, S): edge between rows r and r+1

    def add(self, frames: np.ndarray) -> None:
        """Take frames decoded at 2S: (n, 2S, 2S, 3) uint8 RGB (as :func:`sora_search.views.make_view` takes)."""
        if frames.ndim != 4 or frames.shape[1] != frames.shape[2] or frames.shape[1] % 2 or frames.shape[3] != 3:
            raise ValueError(f"InsetFinder needs (n, 2S, 2S, 3) frames, got shape {frames.shape}")
        for grey in _grey_half(frames):
            self._buffer.append(grey)
            self._pending += 1
            if len(self._buffer) == self._stretch:
                self._close_stretch()
                del self._buffer[:self._hop]
                self._pending = len(self._buffer) - (self._stretch - self._hop)

    def find(self, min_strength: float = MIN_STRENGTH) -> Box | None:
        """The strongest inset-like rectangle, or None when none reaches ``min_strength``."""
        if (self._pending > 0 or self._vertical is None) and len(self._buffer) >= MIN_FRAMES:
            self._close_stretch()
            self._pending = 0
        if self._vertical is None or self._horizontal is None:
            return None
        box = best_rectangle(self._vertical, self._horizontal)
        return box if box is not None and box.strength >= min_strength else None

    def _close_stretch(self) -> None:
        stack = np.stack(self._buffer)
        vertical = _line_contrast(np.median(np.abs(np.diff(stack, axis=2)), axis=0), axis=1)
        horizontal = _line_contrast(np.median(np.abs(np.diff(stack, axis=1)), axis=0), axis=0)
        if self._vertical is None or self._horizontal is None:
            self._vertical, self._horizontal = vertical, horizontal
        else:
            np.maximum(self._vertical, vertical, out=self._vertical)
            np.maximum(self._horizontal, horizontal, out=self._horizontal)


def luma(frames: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (...) float32 grey, BT.601 luma on the 0-255 scale."""
    f = frames.astype(np.float32)
    return f[..., 0] * 0.299 + f[..., 1] * 0.587 + f[..., 2] * 0.114


def _grey_half(frames: np.ndarray) -> np.ndarray:
    """(n, 2S, 2S, 3) uint8 -> (n, S, S) float32 grey (BT.601 luma), each pixel the mean of a 2 x 2 block."""
    grey = luma(frames)
    n, side = grey.shape[0], grey.shape[1] // 2
    return grey.reshape(n, side, 2, side, 2).mean(axis=(2, 4))


def _line_contrast(edges: np.ndarray, axis: int) -> np.ndarray:
    """How much each edge pixel exceeds the strongest edge ``_NEIGHBOUR`` pixels to either side across ``axis``."""
    pad = [(0, 0), (0, 0)]
    pad[axis] = (_NEIGHBOUR, _NEIGHBOUR)
    p = np.pad(edges, pad, mode="edge")
    n = edges.shape[axis]
    before = p.take(np.arange(0, n), axis=axis)
    after = p.take(np.arange(2 * _NEIGHBOUR, n + 2 * _NEIGHBOUR), axis=axis)
    return np.clip(edges - np.maximum(before, after), 0, None).astype(np.float32)


def best_rectangle(vertical: np.ndarray, horizontal: np.ndarray, *, min_side: float = MIN_SIDE,
                   max_side: float = MAX_SIDE, max_aspect: float = MAX_ASPECT) -> Box | None:
    """The rectangle whose weakest non-border side has the highest mean line contrast.

    A side that lies on the frame's edge has no edge to show and is not counted; a rectangle needs at least two
    sides inside the frame. The search runs on a half-resolution grid, then each side is moved by up to three pixels
    at full resolution.

    Args:
        vertical: (S, S-1) float32 contrast of the edge between columns c and c+1.
        horizontal: (S-1, S) float32 contrast of the edge between rows r and r+1.
    """
    side = horizontal.shape[1]
    if vertical.shape != (side, side - 1) or horizontal.shape != (side - 1, side):
        raise ValueError(f"contrast maps must be (S, S-1) and (S-1, S), got {vertical.shape} and {horizontal.shape}")
    coarse = side // 2
    if coarse < 4:
        return None
    # Half resolution, forgiving by a pixel: coarse edge c (between coarse columns c and c+1) is the strongest of the
    # fine edges 2c..2c+3, so a side that falls between two coarse positions still shows at both; rows are pooled by
    # the maximum of each pair. The fine pass puts each side back where it belongs.
    v = _coarse_edges(vertical, coarse)
    h = _coarse_edges(horizontal.T, coarse).T
    found = _search(v, h, range(max(2, int(min_side * coarse)), int(max_side * coarse) + 1), max_aspect)
    if found is None:
        return None
    _, x0, y0, w, hh = found
    rect = _refine(vertical, horizontal, (2 * x0, 2 * y0, 2 * (x0 + w), 2 * (y0 + hh)))
    score, (x0, y0, x1, y1) = rect
    return Box(x0 / side, y0 / side, (x1 - x0) / side, (y1 - y0) / side, strength=float(score))


def _coarse_edges(vertical: np.ndarray, coarse: int) -> np.ndarray:
    """(S, S-1) edges between columns -> (coarse, coarse-1) on the half-resolution grid (see best_rectangle)."""
    v = np.maximum(vertical[0:2 * coarse:2], vertical[1:2 * coarse:2])
    v = np.pad(v, [(0, 0), (0, 2 * coarse - v.shape[1])])
    return np.max(np.stack([v[:, i:i + 2 * coarse - 2:2] for i in range(4)]), axis=0)


def _search(v: np.ndarray, h: np.ndarray, sizes: range,
            max_aspect: float) -> tuple[float, int, int, int, int] | None:
    """Exhaustive search on one grid: (score, x0, y0, w, h) of the best rectangle, sizes in pixels."""
    side = h.shape[1]
    cum_v = np.vstack([np.zeros((1, v.shape[1]), np.float32), np.cumsum(v, axis=0, dtype=np.float32)])
    cum_h = np.hstack([np.zeros((h.shape[0], 1), np.float32), np.cumsum(h, axis=1, dtype=np.float32)])
    best: tuple[float, int, int, int, int] | None = None
    for hh in sizes:
        # Mean contrast of every vertical run of length hh: runs[y0, c].
        runs_v = (cum_v[hh:] - cum_v[:-hh]) / hh
        inf_col = np.full((runs_v.shape[0], 1), np.inf, np.float32)
        for w in sizes:
            if max(w, hh) > max_aspect * min(w, hh) + 1:
                continue
            runs_h = (cum_h[:, w:] - cum_h[:, :-w]) / w  # [r, x0]
            left = np.hstack([inf_col, runs_v[:, 0:side - w]])
            right = np.hstack([runs_v[:, w - 1:side - 1], inf_col])
            inf_row = np.full((1, runs_h.shape[1]), np.inf, np.float32)
            top = np.vstack([inf_row, runs_h[0:side - hh]])
            bottom = np.vstack([runs_h[hh - 1:side - 1], inf_row])
            score = np.minimum(np.minimum(left, right), np.minimum(top, bottom))
            y0, x0 = np.unravel_index(int(np.argmax(score)), score.shape)
            s = float(score[y0, x0])
            if np.isfinite(s) and (best is None or s > best[0]):
                best = (s, int(x0), int(y0), w, hh)
    return best


def _side_scores(vertical: np.ndarray, horizontal: np.ndarray, rect: tuple[int, int, int, int]) -> float:
    x0, y0, x1, y1 = rect
    side = horizontal.shape[1]
    sides = []
    if x0 > 0:
        sides.append(vertical[y0:y1, x0 - 1].mean())
    if x1 < side:
        sides.append(vertical[y0:y1, x1 - 1].mean())
    if y0 > 0:
        sides.append(horizontal[y0 - 1, x0:x1].mean())
    if y1 < side:
        sides.append(horizontal[y1 - 1, x0:x1].mean())
    return float(min(sides)) if len(sides) >= 2 else -np.inf


def _refine(vertical: np.ndarray, horizontal: np.ndarray,
            rect: tuple[int, int, int, int]) -> tuple[float, tuple[int, int, int, int]]:
    """Move each side by up to three pixels to where its own edge is strongest (twice, as the sides' lengths move).

    Each side is placed on its own: the weakest side decides the score, so moving one side at a time to raise the
    score would stall whenever two sides are off.
    """
    side = horizontal.shape[1]
    x0, y0, x1, y1 = rect
    for _ in range(2):
        def pick(current: int, lo: int, hi: int, strength) -> int:
            options = [p for p in range(current - 3, current + 4) if lo <= p <= hi]
            return max(options, key=lambda p: (strength(p), -abs(p - current)))
        if x0 > 0:
            x0 = pick(x0, 1, x1 - 1, lambda p: vertical[y0:y1, p - 1].mean())
        if x1 < side:
            x1 = pick(x1, x0 + 1, side - 1, lambda p: vertical[y0:y1, p - 1].mean())
        if y0 > 0:
            y0 = pick(y0, 1, y1 - 1, lambda p: horizontal[p - 1, x0:x1].mean())
        if y1 < side:
            y1 = pick(y1, y0 + 1, side - 1, lambda p: horizontal[p - 1, x0:x1].mean())
    return _side_scores(vertical, horizontal, (x0, y0, x1, y1)), (x0, y0, x1, y1)


def crop_resize(frames: np.ndarray, box: Box, size: int) -> np.ndarray:
    """Cut ``box`` out of each frame and resample it to ``size`` x ``size`` (triangle filter, antialiased).

    Args:
        frames: (n, H, W, 3) uint8.

    Returns:
        (n, size, size, 3) uint8, C-contiguous.
    """
    x0, y0, x1, y1 = box.pixels(frames.shape[2], frames.shape[1])
    crop = frames[:, y0:y1, x0:x1].astype(np.float32)
    rows, cols = _resample_matrix(y1 - y0, size), _resample_matrix(x1 - x0, size)
    out = np.einsum("ij,njkc->nikc", rows, crop, optimize=True)
    out = np.einsum("ij,nkjc->nkic", cols, out, optimize=True)
    return np.ascontiguousarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


def _resample_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) weights of a triangle filter, widened when shrinking so that every source pixel counts."""
    scale = src / dst
    support = max(1.0, scale)
    centres = (np.arange(dst) + 0.5) * scale - 0.5
    weights = np.clip(1.0 - np.abs(np.arange(src)[None, :] - centres[:, None]) / support, 0, None)
    weights /= weights.sum(axis=1, keepdims=True)
    return weights.astype(np.float32)
