"""``tiny``: a deterministic NumPy-only encoder for fast store/index/search tests (the role of simonw/llm's EmbedDemo).

64-d: a 4x4 grid of mean RGB, centred on mid-grey (48 values), plus a 16-bin colour histogram (2x2x2 RGB
octants and 8 brightness levels). Centring makes dark and bright frames point in opposite directions, so
clearly different frames land far apart. Not meant to find real copies.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sora_search.encoder.base import Encoder, EncoderIdentity

TINY_IDENTITY = EncoderIdentity("tiny", "1", 64, 32)
_GRID = 4


class TinyEncoder(Encoder):
    """NumPy-only, always on CPU; the ``device`` given to :func:`load_encoder` is ignored."""

    def __init__(self, *, batch_size: int = 256) -> None:
        super().__init__(TINY_IDENTITY, device="cpu", batch_size=batch_size)

    def _embed_numpy(self, batch: np.ndarray) -> np.ndarray:
        return self._embed_batch(batch)

    def _embed_batch(self, batch_uint8_nhwc: Any) -> np.ndarray:
        """(b, 32, 32, 3) uint8 (array or CPU tensor) -> (b, 64) float32, un-normalised."""
        x = np.asarray(batch_uint8_nhwc, dtype=np.float64) / 255.0
        b, s = x.shape[0], x.shape[1]
        cell = s // _GRID
        grid = x.reshape(b, _GRID, cell, _GRID, cell, 3).mean(axis=(2, 4)).reshape(b, -1) - 0.5
        pixels = x.reshape(b, -1, 3)
        octant = ((pixels[..., 0] >= 0.5) * 4 + (pixels[..., 1] >= 0.5) * 2 + (pixels[..., 2] >= 0.5)).astype(np.int64)
        level = np.minimum((pixels.mean(axis=2) * 8).astype(np.int64), 7) + 8
        hist = np.zeros((b, 16), dtype=np.float64)
        rows = np.repeat(np.arange(b), pixels.shape[1])
        np.add.at(hist, (rows, octant.ravel()), 1.0)
        np.add.at(hist, (rows, level.ravel()), 1.0)
        # Fractions, scaled so the histogram weighs about as much as the grid part.
        hist /= pixels.shape[1]
        return np.concatenate([grid * 2.0, hist], axis=1).astype(np.float32)
