"""Finding a picture-in-picture inset in a probe: the rectangle whose sides are edges in frame after frame.

An inset pasted over other footage has a hard border that stays put while the content on both sides of it moves, so
its four sides (two or three where it touches the frame's edge) are edges in most frames. Natural edges move, blur
or stop short; a rectangle of persistent, straight edges on every side is rare. The finder looks at the probe in
short stretches (the inset may cover only part of it), keeps each stretch's persistent edges, and searches every
rectangle for the one whose weakest side is strongest (a side on the frame's edge shows nothing, and a rectangle
with fewer sides to show ranks lower). Fixed quarter-grid windows (:mod:`sora_search.embed.views`) see an inset
mixed with the footage around it; the found rectangle cuts it out exactly, which is what lets a small inset match.

Everything here is NumPy on grey frames at the encoder's side S: a few milliseconds a probe frame, and about 0.1 s
for the search once the probe has been seen.
"""

from __future__ import annotations

import numpy as np

from sora_search.embed.images import Box, luma

# An inset is 0.2-0.9 of the frame on each side (smaller ones hold too few pixels to describe) and has the frame's
# shape, give or take SHAPE_SLACK pixels of the S grid (a scaled-down copy keeps its aspect ratio; its sides are
# rounded to whole pixels twice, in the edit and here). Allowing 1.15x on the accuracy benchmark let two-sided
# rectangles, from an inset's corner out to the frame's edges, beat the inset.
MIN_SIDE = 0.2
MAX_SIDE = 0.9
SHAPE_SLACK = 2
# Each side of a rectangle that lies on the frame's edge (and so shows nothing) multiplies its rank by this. Over
# game-of-life footage with insets near its edges, the corner-to-edges rectangle outscored the inset by up to 1.44x
# (so two such sides need < 0.83 each), and an inset in the frame's corner outscored the best four-sided rectangle
# by 3.8x or more (> 0.51). On the accuracy benchmark any value from 0.6 to 1 finds the same insets.
BORDER_DISCOUNT = 0.7
# Edges persist when the median over a stretch of this many probe frames (seconds at 1 fps) still shows them.
STRETCH = 8
# In fewer frames than this every edge of the footage persists: a probe this short has no inset to find.
MIN_FRAMES = 3
# The weakest side's mean edge contrast, in grey levels, for a rectangle to count as an inset. On the accuracy
# benchmark every picture-in-picture query's inset scores 22-44; footage without an inset mostly scores below 10
# (boxes drawn over the video and blocks of overlaid text also reach 15-56: they are rectangles too).
MIN_STRENGTH = 15.0
_NEIGHBOUR = 2  # an edge must stand out against the edges this many pixels to either side (a line, not texture)


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

    def add(self, frames: np.ndarray, *, halve: bool = True) -> None:
        """Take frames decoded at 2S, (n, 2S, 2S, 3) uint8 RGB (as :func:`sora_search.views.make_view` takes), or
        with ``halve=False`` frames decoded at S."""
        if frames.ndim != 4 or frames.shape[1] != frames.shape[2] or frames.shape[1] % 2 or frames.shape[3] != 3:
            raise ValueError(f"InsetFinder needs (n, 2S, 2S, 3) or (n, S, S, 3) frames, got shape {frames.shape}")
        for grey in _grey_half(frames) if halve else luma(frames).astype(np.float32):
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
        vertical = _line_contrast(_median(np.abs(np.diff(stack, axis=2))), axis=1)
        horizontal = _line_contrast(_median(np.abs(np.diff(stack, axis=1))), axis=0)
        if self._vertical is None or self._horizontal is None:
            self._vertical, self._horizontal = vertical, horizontal
        else:
            np.maximum(self._vertical, vertical, out=self._vertical)
            np.maximum(self._horizontal, horizontal, out=self._horizontal)


def _median(stack: np.ndarray) -> np.ndarray:
    """``np.median(stack, axis=0)``, by sorting: for a stretch's few frames a few times faster than its partition."""
    ordered = np.sort(stack, axis=0)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) * 0.5


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
                   max_side: float = MAX_SIDE, shape_slack: int = SHAPE_SLACK,
                   border_discount: float = BORDER_DISCOUNT) -> Box | None:
    """The rectangle whose weakest side has the highest mean line contrast, fewer sides counting for less.

    A side that lies on the frame's edge has no edge to show and is not counted (with sides of at most
    ``max_side``, a rectangle keeps at least two); each such side multiplies the rectangle's rank by
    ``border_discount``. Without it, the rectangle from an inset's corner out to the frame's edges, whose two sides
    are the inset's strongest two run a little further, often outranks the inset, whose weakest side is one of the
    other two. The returned ``strength`` is the weakest side's contrast itself. Every position and every pair of
    sizes within ``shape_slack`` pixels of each other is tried, on the contrast maps' own grid (on a coarser grid,
    pooled edges through busy footage add up along a long side).

    Args:
        vertical: (S, S-1) float32 contrast of the edge between columns c and c+1.
        horizontal: (S-1, S) float32 contrast of the edge between rows r and r+1.
    """
    side = horizontal.shape[1]
    if vertical.shape != (side, side - 1) or horizontal.shape != (side - 1, side):
        raise ValueError(f"contrast maps must be (S, S-1) and (S-1, S), got {vertical.shape} and {horizontal.shape}")
    if not 0 < border_discount <= 1:
        raise ValueError(f"border_discount must be in (0, 1], got {border_discount}")
    sizes = range(max(2, int(min_side * side)), int(max_side * side) + 1)
    if not sizes:
        return None
    # Mean contrast of every run of edge pixels along a side, padded with inf where a side would lie on the frame's
    # edge (not counted): runs_v[hh][y0, x] is the left side of a rectangle at x0 = x, and its right side for
    # x0 + w = x; runs_h[w][y, x0] likewise its top at y0 = y and its bottom for y0 + hh = y.
    cum_v = np.vstack([np.zeros((1, side - 1), np.float32), np.cumsum(vertical, axis=0, dtype=np.float32)])
    cum_h = np.hstack([np.zeros((side - 1, 1), np.float32), np.cumsum(horizontal, axis=1, dtype=np.float32)])
    runs_h = {w: _inf_border((cum_h[:, w:] - cum_h[:, :-w]) / w, axis=0) for w in sizes}
    best: tuple[float, int, int, int, int] | None = None
    for hh in sizes:
        runs_v = _inf_border((cum_v[hh:] - cum_v[:-hh]) / hh, axis=1)
        for w in range(max(sizes.start, hh - shape_slack), min(sizes.stop, hh + shape_slack + 1)):
            score = np.minimum(runs_v[:, :side - w + 1], runs_v[:, w:])
            np.minimum(score, runs_h[w][:side - hh + 1], out=score)
            np.minimum(score, runs_h[w][hh:], out=score)
            for border in (score[:, 0], score[:, -1], score[0], score[-1]):  # a side on the frame's edge
                border *= border_discount
            at = np.unravel_index(int(np.argmax(score)), score.shape)
            s = float(score[at])
            if np.isfinite(s) and (best is None or s > best[0]):
                best = (s, int(at[1]), int(at[0]), w, hh)
    if best is None:
        return None
    rank, x0, y0, w, hh = best
    on_edge = (x0 == 0) + (x0 + w == side) + (y0 == 0) + (y0 + hh == side)
    return Box(x0 / side, y0 / side, w / side, hh / side, strength=rank / border_discount ** on_edge)


def _inf_border(runs: np.ndarray, axis: int) -> np.ndarray:
    """``runs`` with a row (axis 0) or column (axis 1) of inf added on both sides."""
    pad = [(0, 0), (0, 0)]
    pad[axis] = (1, 1)
    return np.pad(runs, pad, constant_values=np.inf)
