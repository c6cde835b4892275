"""Encoder ABC, its identity, and the temporal pooling step. NumPy only at import time.

The base class follows simonw/llm's ``EmbeddingModel`` template method: it owns input validation, batching,
``torch.inference_mode``, device transfer, fp16 autocast on CUDA and the final L2 normalisation; a subclass
implements one batch call (:meth:`Encoder._embed_batch`). torch is imported inside :meth:`Encoder._embed_numpy`
so that encoders that do not need it (``tiny``) and ``import sora_search.encoder`` never load it.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

# Numeric precisions of an encoder's network; "fp32" also covers fp16 autocast on CUDA.
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")
# The int8 build's own version (sora_search/encoder/int8.py), stored after the precision ("1+int8.2"): bumped when
# the int8 vectors change, so that an index is only ever searched by the int8 network that built it.
INT8_RECIPE = "2"
# Rows with a smaller norm than this are left (near) zero instead of being blown up to unit length.
_NORM_EPS = 1e-12


@dataclass(frozen=True)
class EncoderIdentity:
    """What an index must agree on with the encoder that queries it.

    Attributes:
        name: registry name, e.g. ``"sora-lite0"``.
        version: bumped whenever the descriptor for the same input changes.
        dim: raw descriptor dimension (before any :class:`~sora_search.encoder.Projection`).
        input_size: side in pixels of the square uint8 RGB frames :meth:`Encoder.embed` accepts.
        precision: ``"fp32"`` (float; fp16 autocast on CUDA gives the same vectors to rounding), ``"bf16"``
            (the trunk under bfloat16 autocast) or ``"int8"`` (the quantized CPU trunk). Stored in the index as a
            suffix of the version (:attr:`stored_version`), so an index from before precisions existed reads as
            fp32; the int8 suffix carries its recipe.
    """

    name: str
    version: str
    dim: int
    input_size: int
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("EncoderIdentity.name must not be empty")
        if not self.version:
            raise ValueError(f"EncoderIdentity.version must not be empty (encoder {self.name!r})")
        if self.dim <= 0:
            raise ValueError(f"EncoderIdentity.dim must be positive, got {self.dim} for {self.name!r}")
        if self.input_size <= 0:
            raise ValueError(f"EncoderIdentity.input_size must be positive, got {self.input_size} for {self.name!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"EncoderIdentity.precision must be one of {PRECISIONS}, got {self.precision!r}")

    @property
    def stored_version(self) -> str:
        """The version as the index stores it: ``"1"`` for fp32, ``"1+bf16"``, ``"1+int8.2"`` for int8 (recipe 2)."""
        if self.precision == "fp32":
            return self.version
        recipe = f".{INT8_RECIPE}" if self.precision == "int8" else ""
        return f"{self.version}+{self.precision}{recipe}"

    @staticmethod
    def split_version(stored: str) -> tuple[str, str]:
        """(version, precision) of a stored version string (see :attr:`stored_version`); the recipe is dropped."""
        version, _, precision = stored.partition("+")
        return version, precision.partition(".")[0] or "fp32"

    def describe(self) -> str:
        """Human-readable one-liner, e.g. ``"sora-lite0 v1 (704-d, 224 px)"``, ``"sora-lite0 v1+int8.2 (...)"``."""
        return f"{self.name} v{self.stored_version} ({self.dim}-d, {self.input_size} px)"


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise rows.

    Args:
        vectors: (n, d) float array.

    Returns:
        (n, d) float32; all-zero rows stay zero.
    """
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return (v / np.maximum(norms, _NORM_EPS)).astype(np.float32, copy=False)


def padded_size(n: int, batch_size: int) -> int:
    """The batch a short batch of ``n`` frames runs at on CUDA: the next power of two, at most ``batch_size``."""
    return max(n, min(batch_size, 1 << max(n - 1, 0).bit_length()))


class Encoder(ABC):
    """Frames in, one L2-normalised descriptor per frame out.

    Attributes:
        identity: name, version, dim and input size, stored with the index.
        device: ``"cpu"`` or ``"cuda"`` (``"cuda:N"`` accepted).
        batch_size: frames per forward pass.
    """

    identity: EncoderIdentity
    device: str
    batch_size: int
    # Region vectors per frame that :meth:`embed_regions` gives besides the descriptor (0: none).
    region_count: int = 0

    def __init__(self, identity: EncoderIdentity, *, device: str = "cpu", batch_size: int = 32) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.identity = identity
        self.device = device
        self.batch_size = int(batch_size)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.identity.describe()} on {self.device}, batch {self.batch_size}>"

    def embed(self, frames: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Embed frames.

        Args:
            frames: (n, S, S, 3) uint8 RGB, S == ``identity.input_size`` (frames arrive already resized).
            batch_size: frames per forward pass (None: ``self.batch_size``); the vectors are the same either way.

        Returns:
            (n, identity.dim) float32, each row L2-normalised. n == 0 gives (0, dim).

        Raises:
            ValueError: wrong shape or dtype (the message names what was given).
        """
        return self._embed_all(frames, regions=False, batch_size=batch_size)[0]

    def embed_regions(self, frames: np.ndarray, batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`embed`, and each frame's ``region_count`` region vectors from the same forward pass.

        Returns:
            (n, dim) float32 as :meth:`embed` gives; (n, region_count, dim) float32 region vectors (see the
            encoder's :meth:`_embed_batch_regions`).

        Raises:
            ValueError: wrong shape or dtype, or the encoder has no regions (``region_count`` 0).
        """
        if not self.region_count:
            raise ValueError(f"{self.identity.name} has no region vectors")
        vectors, regions = self._embed_all(frames, regions=True, batch_size=batch_size)
        assert regions is not None
        return vectors, regions

    def _embed_all(self, frames: np.ndarray, *, regions: bool,
                   batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        s = self.identity.input_size
        step = batch_size or self.batch_size
        if not isinstance(frames, np.ndarray):
            raise ValueError(f"{self.identity.name} expects a numpy array of frames, got {type(frames).__name__}")
        if frames.ndim != 4 or frames.shape[1:] != (s, s, 3):
            raise ValueError(
                f"{self.identity.name} expects frames of shape (n, {s}, {s}, 3), got {frames.shape}; "
                f"resize frames to {s}x{s} RGB before embedding"
            )
        if frames.dtype != np.uint8:
            raise ValueError(f"{self.identity.name} expects uint8 frames, got dtype {frames.dtype} "
                             f"(shape {frames.shape})")
        n, dim = frames.shape[0], self.identity.dim
        out = np.empty((n, dim), dtype=np.float32)
        out_regions = np.empty((n, self.region_count, dim), dtype=np.float32) if regions else None
        for start in range(0, n, step):
            batch = np.ascontiguousarray(frames[start:start + step])
            if out_regions is not None:
                result, part = self._run_torch(batch, regions=True)
                out_regions[start:start + batch.shape[0]] = part
            else:
                result = self._embed_numpy(batch)
            if result.shape != (batch.shape[0], dim):
                # A subclass bug, not a caller error: say which encoder produced what.
                raise RuntimeError(
                    f"{type(self).__name__}._embed_batch returned shape {result.shape}, "
                    f"expected {(batch.shape[0], dim)}"
                )
            out[start:start + batch.shape[0]] = result
        return l2_normalize(out), out_regions

    def _embed_numpy(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch through :meth:`_embed_batch` with torch. Non-torch encoders override this.

        Args:
            batch: (b, S, S, 3) uint8, C-contiguous.

        Returns:
            (b, dim) float32, not yet normalised.
        """
        (result,) = self._run_torch(batch, regions=False)
        return result

    def _run_torch(self, batch: np.ndarray, *, regions: bool) -> tuple[np.ndarray, ...]:
        """One batch through torch: (:meth:`_embed_batch`'s output,), or with ``regions`` both of
        :meth:`_embed_batch_regions`'s, as float32 arrays."""
        import torch

        if not batch.flags.writeable:
            batch = batch.copy()  # torch.from_numpy warns on read-only arrays (np.load mmap, broadcast views)
        with torch.inference_mode():
            tensor = torch.from_numpy(batch).to(self.device, non_blocking=True)
            rows = self._rows_to_run(len(tensor), tensor.device.type)
            if tensor.device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.float16):
                    result = self._embed_padded(tensor, rows, regions=regions)
            else:
                result = self._embed_padded(tensor, rows, regions=regions)
            return tuple(part.float().cpu().numpy() for part in result)

    def _rows_to_run(self, n: int, device_type: str) -> int:
        """The batch size ``n`` frames run at: ``n``, or more on a backend that prepares kernels for each new input
        shape at a cost above many batches' work. cuDNN does (CUDA): a short batch runs at the next power of two,
        at most ``batch_size``, so a whole run meets a handful of shapes."""
        return padded_size(n, self.batch_size) if device_type == "cuda" else n

    def _embed_padded(self, tensor: torch.Tensor, size: int, *, regions: bool = False) -> tuple[torch.Tensor, ...]:
        """:meth:`_embed_batch` (with ``regions``, :meth:`_embed_batch_regions`) of ``tensor`` padded with black
        frames to ``size`` rows, each output cut back to its own rows."""
        import torch

        n = tensor.shape[0]
        if size > n:
            tensor = torch.cat([tensor, tensor.new_zeros((size - n, *tensor.shape[1:]))])
        result = self._embed_batch_regions(tensor) if regions else (self._embed_batch(tensor),)
        return tuple(part[:n] for part in result)

    @abstractmethod
    def _embed_batch(self, batch_uint8_nhwc: torch.Tensor | Any) -> torch.Tensor | Any:
        """One batch: (b, S, S, 3) uint8 tensor on ``self.device`` -> (b, dim) float tensor (un-normalised ok)."""

    def _embed_batch_regions(self, batch_uint8_nhwc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`_embed_batch` and the (b, region_count, dim) region vectors of the same pass. Encoders with
        ``region_count`` > 0 implement it."""
        raise NotImplementedError(f"{type(self).__name__} has no region vectors")


def temporal_pool(vectors: np.ndarray, radius: int = 1, skip: np.ndarray | None = None) -> np.ndarray:
    """Smooth per-frame vectors over their temporal neighbours ("pooled again over time").

    Row i becomes the triangular-weighted mean of rows i-radius..i+radius (weight ``radius + 1 - |j|`` for
    offset j), with the weights renormalised where the window runs past either end, then L2-normalised.

    Args:
        vectors: (n, d) float per-frame vectors in time order.
        radius: half-width of the window in frames; 0 only L2-normalises.
        skip: (n,) bool, rows left out of their neighbours' windows (blank frames); each row still keeps itself.

    Returns:
        (n, d) float32, L2-normalised rows.
    """
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"temporal_pool expects (n, d) vectors, got shape {v.shape}")
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    n = v.shape[0]
    if radius == 0 or n <= 1:
        return l2_normalize(v)
    use = np.ones((n, 1)) if skip is None else (~np.asarray(skip, dtype=bool)).astype(np.float64)[:, None]
    if use.shape[0] != n:
        raise ValueError(f"skip has {use.shape[0]} rows for {n} vectors")
    acc = np.zeros_like(v)
    wsum = np.zeros((n, 1), dtype=np.float64)
    for j in range(-radius, radius + 1):
        lo, hi = max(0, -j), min(n, n - j)  # rows i whose neighbour i+j exists
        if lo >= hi:
            continue
        w = float(radius + 1 - abs(j)) * (1.0 if j == 0 else use[lo + j:hi + j])
        acc[lo:hi] += w * v[lo + j:hi + j]
        wsum[lo:hi] += w
    return l2_normalize(acc / wsum)
