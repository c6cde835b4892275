"""What the store hands out: frozen records of videos, the index identity and runs, and the vector codec.

Vectors are stored as float16, little-endian (``'<f2'``), ``raw_dim * 2`` bytes per row, and come back as float32.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from sora_search.errors import StoreError
from sora_search.store.models import IndexMetaRow, VideoRow

VECTOR_DTYPE = np.dtype("<f2")
# Stays well under SQLite's bound-variable limit (999 on old builds, 32766 since 3.32).
_IN_BATCH = 500
STATUSES = ("indexed", "failed")


@dataclass(frozen=True)
class VideoRecord:
    """One file the index has seen. ``status`` is ``"indexed"`` or ``"failed"``; times are unix seconds."""

    id: int
    path: str
    size: int
    mtime: float
    fingerprint: str
    duration_s: float
    fps: float
    width: int
    height: int
    status: str
    error: str | None
    n_vectors: int
    indexed_at: float


@dataclass(frozen=True)
class IndexMeta:
    """The index's identity (one row): encoder, sampling, projection and FAISS bookkeeping.

    ``projection`` is an opaque blob serialised by the engine (None = not fitted yet); ``dim`` is the
    dimension after projection (what FAISS holds); ``index_trained_n`` is the number of stored vectors when
    the FAISS index was last trained (0 = never); ``index_uid`` is the index's random id, given by the store when
    the identity is first written and never changed; ``generation`` is bumped by the store on every committed
    change of the vectors.
    """

    encoder_name: str
    encoder_version: str
    raw_dim: int
    input_size: int
    sampling_fps: float
    projection: bytes | None
    projection_name: str
    dim: int
    index_trained_n: int = 0
    generation: int = 0
    index_uid: str = ""

    def __post_init__(self) -> None:
        problems = []
        if self.raw_dim <= 0:
            problems.append(f"raw_dim={self.raw_dim}")
        if self.dim <= 0:
            problems.append(f"dim={self.dim}")
        if self.input_size <= 0:
            problems.append(f"input_size={self.input_size}")
        if not (self.sampling_fps > 0 and math.isfinite(self.sampling_fps)):
            problems.append(f"sampling_fps={self.sampling_fps}")
        if self.index_trained_n < 0:
            problems.append(f"index_trained_n={self.index_trained_n}")
        if self.generation < 0:
            problems.append(f"generation={self.generation}")
        if problems:
            raise ValueError(f"IndexMeta needs positive sizes and non-negative counters, got {', '.join(problems)}")


@dataclass(frozen=True)
class RunRecord:
    """Counters of one index run; times are unix seconds."""

    id: int
    started_at: float
    finished_at: float
    added: int
    updated: int
    unchanged: int
    removed: int
    failed: int


def video_record(row: VideoRow) -> VideoRecord:
    return VideoRecord(
        id=row.id,
        path=row.path,
        size=row.size,
        mtime=row.mtime,
        fingerprint=row.fingerprint,
        duration_s=row.duration_s,
        fps=row.fps,
        width=row.width,
        height=row.height,
        status=row.status,
        error=row.error,
        n_vectors=row.n_vectors,
        indexed_at=row.indexed_at,
    )


def meta_record(row: IndexMetaRow) -> IndexMeta:
    return IndexMeta(
        encoder_name=row.encoder_name,
        encoder_version=row.encoder_version,
        raw_dim=row.raw_dim,
        input_size=row.input_size,
        sampling_fps=row.sampling_fps,
        projection=row.projection,
        projection_name=row.projection_name,
        dim=row.dim,
        index_trained_n=row.index_trained_n,
        generation=row.generation,
        index_uid=row.index_uid or "",
    )


def decode_vectors(blobs: Sequence[bytes], dim: int | None = None) -> np.ndarray:
    """float16 blobs -> (n, dim) float32."""
    if not blobs:
        return np.zeros((0, dim or 0), dtype=np.float32)
    width = len(blobs[0]) // VECTOR_DTYPE.itemsize
    if dim is not None and width != dim:
        raise StoreError(f"stored vectors have {width} dimensions but the index meta says raw_dim={dim}")
    joined = b"".join(blobs)
    if len(joined) != len(blobs) * width * VECTOR_DTYPE.itemsize:
        raise StoreError("stored vectors have inconsistent lengths; run `sora-search check --repair`")
    return np.frombuffer(joined, dtype=VECTOR_DTYPE).reshape(len(blobs), width).astype(np.float32)


def encode_regions(regions: np.ndarray) -> list[bytes]:
    """(n, r, dim) region vectors -> n blobs: per region a float32 scale (its largest magnitude / 127), then every
    region's values as int8 (value / scale, rounded). A quarter of float32's bytes; the region check it serves
    ranked copies the same at 8 bits as at 32 (docs/tuning.md)."""
    x = np.asarray(regions, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"regions must be (n, regions, dim), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("regions must be finite")
    scale = np.maximum(np.abs(x).max(axis=2), 1e-12) / 127.0
    values = np.clip(np.round(x / scale[:, :, None]), -127, 127).astype(np.int8)
    return [s.astype("<f4").tobytes() + v.tobytes() for s, v in zip(scale, values)]


def decode_regions(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    """Inverse of :func:`encode_regions`: n blobs of ``dim``-d regions -> (n, r, dim) float32."""
    if not blobs:
        return np.zeros((0, 0, dim), dtype=np.float32)
    count, rest = divmod(len(blobs[0]), 4 + dim)
    if rest or any(len(b) != len(blobs[0]) for b in blobs):
        raise StoreError("stored regions have inconsistent lengths; run `sora-search check --repair`")
    raw = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), -1)
    scale = raw[:, :4 * count].copy().view("<f4").astype(np.float32)
    values = raw[:, 4 * count:].copy().view(np.int8).reshape(len(blobs), count, dim).astype(np.float32)
    return values * scale[:, :, None]


def in_batches(values: Sequence[int], size: int = _IN_BATCH) -> Iterator[list[int]]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


def ids_array(ids: Iterable[int]) -> np.ndarray:
    return np.asarray(list(ids), dtype=np.int64)


