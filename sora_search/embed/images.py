"""Image helpers on uint8 RGB frames, NumPy only: grey levels, cell means, 2x pooling, and a box cut out and
resampled."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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


def luma(frames: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (...) float32 grey, BT.601 luma on the 0-255 scale."""
    f = frames.astype(np.float32)
    return f[..., 0] * 0.299 + f[..., 1] * 0.587 + f[..., 2] * 0.114


def cell_means(frames: np.ndarray, grid: int = 16) -> np.ndarray:
    """(n, grid, grid, 3) float32: the mean colour of each cell of a ``grid`` x ``grid`` split of each (n, H, W, 3)
    frame, from every other pixel each way (the last rows and columns that do not fill a cell are left out)."""
    f = frames[:, ::2, ::2]
    h, w = f.shape[1] - f.shape[1] % grid, f.shape[2] - f.shape[2] % grid
    if not (h and w):
        raise ValueError(f"frames of shape {frames.shape} are too small for a {grid} x {grid} grid")
    cells = f[:, :h, :w].reshape(len(f), grid, h // grid, grid, w // grid, 3)
    return cells.mean(axis=(2, 4), dtype=np.float32)


def pool2(x: np.ndarray, axis: int) -> np.ndarray:
    """Mean of neighbouring pairs along ``axis`` (uint8 in, uint8 out, rounded)."""
    a = x.take(np.arange(0, x.shape[axis], 2), axis=axis).astype(np.uint16)
    b = x.take(np.arange(1, x.shape[axis], 2), axis=axis)
    return ((a + b + 1) >> 1).astype(np.uint8)


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
