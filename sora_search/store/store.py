"""The SQLite store: the source of truth for videos, their vectors and the index identity.

The FAISS file is derived from it (see :mod:`sora_search.index`) and can always be rebuilt from
:meth:`Store.iter_vectors`. Vector row ids are the ids FAISS holds; they come from an
``INTEGER PRIMARY KEY AUTOINCREMENT`` column, so an id is never handed out twice, even after deletes.

Vectors are stored as float16, little-endian (``'<f2'``), ``raw_dim * 2`` bytes per row, and come back as
float32. Every change of the set of vectors bumps ``IndexMeta.generation`` in the same transaction; the FAISS
file records the generation it reflects, so a stale file is detected by comparing the two.

Concurrency: SQLite in WAL mode, so readers never block the writer nor the writer the readers. Write
transactions start with ``BEGIN IMMEDIATE`` and wait up to 30 s (``busy_timeout``) for another writer. A
:class:`Store` is meant for one thread; open one per thread or process.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from sora_search._faults import fault_point
from sora_search.errors import IndexNotFound, StoreError
from sora_search.store import migrate
from sora_search.store.models import IndexMetaRow, RunRow, VectorRow, VideoRow

if TYPE_CHECKING:
    from sora_search.types import IndexSummary

logger = logging.getLogger(__name__)

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
    the FAISS index was last trained (0 = never); ``generation`` is bumped by the store on every committed
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


def _video_record(row: VideoRow) -> VideoRecord:
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


def _meta_record(row: IndexMetaRow) -> IndexMeta:
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
    )


def _decode(blobs: Sequence[bytes], dim: int | None = None) -> np.ndarray:
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


def _batches(values: Sequence[int], size: int = _IN_BATCH) -> Iterator[list[int]]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


def _ids_array(ids: Iterable[int]) -> np.ndarray:
    return np.asarray(list(ids), dtype=np.int64)


class Store:
    """The sora-search SQLite store. Open with :meth:`Store.open`; close with :meth:`close` or ``with``."""

    def __init__(self, db_path: Path, engine: Engine) -> None:
        self._db_path = db_path
        self._engine: Engine | None = engine

    # -- lifecycle -------------------------------------------------------------------------------------

    @classmethod
    def open(cls, db_path: str | Path, *, create: bool = True) -> Store:
        """Open (or create) the store at ``db_path``.

        A new (missing or empty) file gets every table and is stamped with the Alembic head.

        Raises:
            IndexNotFound: ``create=False`` and there is no file.
            SchemaOutdated: an older schema; run ``sora-search upgrade --index DIR``.
            SchemaTooNew: written by a newer sora-search.
            StoreError: not a SQLite / sora-search database, or SQLite failed.
        """
        path = Path(db_path).expanduser().absolute()
        if not path.exists():
            if not create:
                raise IndexNotFound(f"no sora-search index at {path}; run `sora-search index` to create one")
            path.parent.mkdir(parents=True, exist_ok=True)
        elif path.is_dir():
            raise StoreError(f"{path} is a directory, expected a sora-search database file")
        else:
            migrate.check_sqlite_file(path)
        engine = migrate.make_engine(path)
        try:
            with migrate.translate_db_errors(path):
                with engine.connect() as conn, conn.begin():
                    rev = migrate.classify(conn, path)
                if rev is None:
                    with engine.connect() as conn:
                        conn = conn.execution_options(sora_begin="IMMEDIATE")
                        with conn.begin():
                            # Checked again under the write lock: two processes may create the same index.
                            if migrate.classify(conn, path) is None:
                                logger.info("creating sora-search store at %s", path)
                                migrate.create_schema(conn)
        except BaseException:
            engine.dispose()
            raise
        return cls(path, engine)

    def close(self) -> None:
        """Release the database connections. Safe to call twice."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self._db_path)!r}{'' if self._engine is not None else ', closed'})"

    @property
    def db_path(self) -> Path:
        return self._db_path

    def revision(self) -> str:
        """The Alembic revision stamped in the database."""
        with self._connect() as conn:
            rev = migrate.current_revision(conn)
        if rev is None:
            raise StoreError(f"{self._db_path} has no schema revision")
        return rev

    @contextmanager
    def _connect(self, write: bool = False) -> Iterator[Any]:
        if self._engine is None:
            raise StoreError(f"the store at {self._db_path} is closed")
        with migrate.translate_db_errors(self._db_path), self._engine.connect() as conn:
            if write:
                conn = conn.execution_options(sora_begin="IMMEDIATE")
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._connect() as conn, Session(bind=conn) as session:
            yield session

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """One write transaction (BEGIN IMMEDIATE), committed on success, rolled back on error."""
        with self._connect(write=True) as conn, Session(bind=conn) as session, session.begin():
            yield session

    # -- meta ------------------------------------------------------------------------------------------

    def meta(self) -> IndexMeta | None:
        """The index identity, or None before :meth:`set_meta` was first called."""
        with self._read() as s:
            row = s.get(IndexMetaRow, 1)
            return None if row is None else _meta_record(row)

    def set_meta(self, meta: IndexMeta) -> None:
        """Write the index identity.

        The stored generation never goes backwards: it becomes ``max(stored, meta.generation)``, so passing
        back a meta read earlier cannot make a stale FAISS file look current.

        Raises:
            ValueError: ``raw_dim`` differs from the stored one while vectors are stored.
        """
        with self._write() as s:
            row = s.get(IndexMetaRow, 1)
            if row is None:
                row = IndexMetaRow(id=1, generation=meta.generation)
                s.add(row)
            else:
                if row.raw_dim != meta.raw_dim and s.scalar(select(VectorRow.id).limit(1)) is not None:
                    raise ValueError(
                        f"cannot change raw_dim from {row.raw_dim} to {meta.raw_dim} while vectors are stored; "
                        "rebuild the index (`sora-search index --rebuild`)"
                    )
                row.generation = max(row.generation, meta.generation)
            row.encoder_name = meta.encoder_name
            row.encoder_version = meta.encoder_version
            row.raw_dim = meta.raw_dim
            row.input_size = meta.input_size
            row.sampling_fps = meta.sampling_fps
            row.projection = meta.projection
            row.projection_name = meta.projection_name
            row.dim = meta.dim
            row.index_trained_n = meta.index_trained_n

    @staticmethod
    def _bump_generation(s: Session) -> None:
        s.execute(update(IndexMetaRow).where(IndexMetaRow.id == 1).values(generation=IndexMetaRow.generation + 1))

    # -- videos ----------------------------------------------------------------------------------------

    def video_by_path(self, path: str) -> VideoRecord | None:
        with self._read() as s:
            row = s.scalar(select(VideoRow).where(VideoRow.path == path))
            return None if row is None else _video_record(row)

    def video(self, video_id: int) -> VideoRecord | None:
        """The video with this id, or None."""
        with self._read() as s:
            row = s.get(VideoRow, int(video_id))
            return None if row is None else _video_record(row)

    def videos_by_fingerprint(self, fingerprint: str) -> list[VideoRecord]:
        """Every video with this content fingerprint, by id."""
        with self._read() as s:
            rows = s.scalars(select(VideoRow).where(VideoRow.fingerprint == fingerprint).order_by(VideoRow.id))
            return [_video_record(r) for r in rows]

    def videos(self, *, under: str | None = None, status: str | None = None) -> list[VideoRecord]:
        """Videos by id, optionally only those inside directory ``under`` and/or with ``status``.

        ``under`` is compared as an exact, case-sensitive path prefix ending in a separator, so ``/a/b``
        matches ``/a/b/x.mp4`` and ``/a/b/c/y.mp4`` but not ``/a/bc/x.mp4``.
        """
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        stmt = select(VideoRow).order_by(VideoRow.id)
        if status is not None:
            stmt = stmt.where(VideoRow.status == status)
        if under is not None:
            prefix = under if under.endswith(("/", os.sep)) else under + os.sep
            # substr() is an exact comparison, unlike LIKE (wildcards, ASCII case folding).
            stmt = stmt.where(func.substr(VideoRow.path, 1, len(prefix)) == prefix)
        with self._read() as s:
            return [_video_record(r) for r in s.scalars(stmt)]

    def _drop_vectors(self, s: Session, video_ids: Sequence[int]) -> np.ndarray:
        removed: list[int] = []
        for batch in _batches(list(video_ids)):
            removed.extend(
                s.scalars(select(VectorRow.id).where(VectorRow.video_id.in_(batch)).order_by(VectorRow.id))
            )
            s.execute(delete(VectorRow).where(VectorRow.video_id.in_(batch)))
        return np.sort(_ids_array(removed))

    def _row_for_path(self, s: Session, path: str) -> tuple[VideoRow, np.ndarray]:
        """The row for ``path`` (created if new) with its old vectors dropped; returns (row, dropped ids)."""
        row = s.scalar(select(VideoRow).where(VideoRow.path == path))
        if row is None:
            row = VideoRow(path=path)
            s.add(row)
            return row, np.zeros(0, dtype=np.int64)
        return row, self._drop_vectors(s, [row.id])

    def add_video(
        self,
        *,
        path: str,
        size: int,
        mtime: float,
        fingerprint: str,
        duration_s: float,
        fps: float,
        width: int,
        height: int,
        timestamps_s: np.ndarray,
        vectors: np.ndarray,
    ) -> tuple[int, np.ndarray, np.ndarray]:
        """Store an indexed video and its vectors in one transaction (replacing an existing row for ``path``).

        Args:
            timestamps_s: (n,) float64, seconds into the video of each vector.
            vectors: (n, raw_dim) float32; stored as float16 little-endian (finite values within +-65504).

        Returns:
            (video_id, new vector ids (n,) int64 in input order, removed vector ids (m,) int64 that the
            previous row for this path had).

        Raises:
            StoreError: :meth:`set_meta` was never called.
            ValueError: shapes disagree, ``raw_dim`` differs from the meta's, or values do not fit float16.
        """
        ts = np.asarray(timestamps_s, dtype=np.float64)
        vecs = np.asarray(vectors)
        if ts.ndim != 1 or vecs.ndim != 2 or vecs.shape[0] != ts.shape[0]:
            raise ValueError(
                f"add_video needs timestamps_s (n,) and vectors (n, raw_dim), got {ts.shape} and {vecs.shape}"
            )
        halves = vecs.astype(VECTOR_DTYPE)
        if not np.isfinite(halves).all() or not np.isfinite(ts).all():
            raise ValueError(f"{path}: vectors and timestamps must be finite and fit float16 (|x| <= 65504)")
        now = time.time()
        with self._write() as s:
            meta = s.get(IndexMetaRow, 1)
            if meta is None:
                raise StoreError("the store has no index meta yet; call Store.set_meta() before adding videos")
            if vecs.shape[1] != meta.raw_dim:
                raise ValueError(
                    f"{path}: vectors have {vecs.shape[1]} dimensions but this index holds raw_dim={meta.raw_dim} "
                    f"({meta.encoder_name} {meta.encoder_version})"
                )
            row, removed = self._row_for_path(s, path)
            row.size = int(size)
            row.mtime = float(mtime)
            row.fingerprint = fingerprint
            row.duration_s = float(duration_s)
            row.fps = float(fps)
            row.width = int(width)
            row.height = int(height)
            row.status = "indexed"
            row.error = None
            row.n_vectors = int(ts.shape[0])
            row.indexed_at = now
            s.flush()
            video_id = row.id
            new_ids = np.zeros(0, dtype=np.int64)
            if ts.shape[0]:
                params = [
                    {"video_id": video_id, "timestamp_s": float(t), "data": h.tobytes()}
                    for t, h in zip(ts, halves)
                ]
                result = s.execute(
                    insert(VectorRow).returning(VectorRow.id, sort_by_parameter_order=True), params
                )
                new_ids = _ids_array(result.scalars())
            self._bump_generation(s)
            fault_point("store")
        return video_id, new_ids, removed

    def record_failure(self, *, path: str, size: int, mtime: float, fingerprint: str, error: str) -> np.ndarray:
        """Upsert a ``"failed"`` row for ``path``, dropping any vectors it had.

        Returns:
            (m,) int64 ids of the dropped vectors (the generation is bumped when m > 0).
        """
        now = time.time()
        with self._write() as s:
            row, removed = self._row_for_path(s, path)
            row.size = int(size)
            row.mtime = float(mtime)
            row.fingerprint = fingerprint
            row.duration_s = 0.0
            row.fps = 0.0
            row.width = 0
            row.height = 0
            row.status = "failed"
            row.error = error
            row.n_vectors = 0
            row.indexed_at = now
            if removed.size:
                self._bump_generation(s)
        return removed

    def move_video(self, video_id: int, new_path: str, mtime: float) -> None:
        """Record that a video's file was renamed (same content, so its vectors stay).

        Raises:
            KeyError: no video with this id.
            StoreError: another video already has ``new_path``.
        """
        with self._write() as s:
            row = s.get(VideoRow, int(video_id))
            if row is None:
                raise KeyError(f"no video with id {video_id}")
            other = s.scalar(select(VideoRow.id).where(VideoRow.path == new_path, VideoRow.id != row.id))
            if other is not None:
                raise StoreError(
                    f"cannot move video {video_id} to {new_path}: another video (id {other}) has that path; "
                    "remove it first"
                )
            row.path = new_path
            row.mtime = float(mtime)

    def touch_video(self, video_id: int, *, mtime: float, size: int) -> None:
        """Record new stat values for a video whose content did not change.

        Raises:
            KeyError: no video with this id.
        """
        with self._write() as s:
            row = s.get(VideoRow, int(video_id))
            if row is None:
                raise KeyError(f"no video with id {video_id}")
            row.mtime = float(mtime)
            row.size = int(size)

    def remove_videos(self, video_ids: Sequence[int]) -> np.ndarray:
        """Delete videos and their vectors; unknown ids are ignored.

        Returns:
            (m,) int64 sorted ids of the removed vectors. The generation is bumped when a row was deleted.
        """
        ids = sorted({int(v) for v in video_ids})
        if not ids:
            return np.zeros(0, dtype=np.int64)
        with self._write() as s:
            removed = self._drop_vectors(s, ids)
            deleted = 0
            for batch in _batches(ids):
                deleted += int(s.scalar(select(func.count()).select_from(VideoRow).where(VideoRow.id.in_(batch))) or 0)
                s.execute(delete(VideoRow).where(VideoRow.id.in_(batch)))
            if deleted or removed.size:
                self._bump_generation(s)
        return removed

    def video_paths(self, video_ids: Iterable[int]) -> dict[int, str]:
        """{video_id: path} for the ids that exist."""
        ids = sorted({int(v) for v in video_ids})
        out: dict[int, str] = {}
        with self._read() as s:
            for batch in _batches(ids):
                for vid, path in s.execute(select(VideoRow.id, VideoRow.path).where(VideoRow.id.in_(batch))):
                    out[vid] = path
        return out

    # -- vectors ---------------------------------------------------------------------------------------

    def integrity_problems(self) -> list[str]:
        """What is wrong inside the database itself, as sentences; empty when sound.

        SQLite's own ``quick_check`` and foreign-key check, then the store's invariants: each indexed video's
        ``n_vectors`` equals its vector rows, failed videos hold no vectors, vectors exist only with an identity.
        """
        problems: list[str] = []
        with self._read() as s:
            for (msg,) in s.execute(text("PRAGMA quick_check")):
                if msg != "ok":
                    problems.append(f"SQLite integrity: {msg}")
            for row in s.execute(text("PRAGMA foreign_key_check")):
                problems.append(f"SQLite foreign key broken: {tuple(row)}")
            counts = (select(VideoRow.path, VideoRow.status, VideoRow.n_vectors, func.count(VectorRow.id))
                      .outerjoin(VectorRow, VectorRow.video_id == VideoRow.id).group_by(VideoRow.id))
            for path, status, expected, actual in s.execute(counts):
                if status == "indexed" and expected != actual:
                    problems.append(f"{path}: {actual} vectors stored, {expected} recorded")
                elif status == "failed" and actual:
                    problems.append(f"{path}: failed, yet {actual} vectors stored")
            if s.get(IndexMetaRow, 1) is None and s.scalar(select(func.count()).select_from(VectorRow)):
                problems.append("vectors are stored but the index identity (index_meta) is missing")
        return problems

    def all_vector_ids(self) -> np.ndarray:
        """(n,) int64 ids of every stored vector, ascending."""
        with self._read() as s:
            return _ids_array(s.scalars(select(VectorRow.id).order_by(VectorRow.id)))

    def indexed_video_count(self) -> int:
        """Videos that have vectors in the index."""
        with self._read() as s:
            return int(s.scalar(select(func.count()).select_from(VideoRow)
                                .where(VideoRow.status == "indexed", VideoRow.n_vectors > 0)) or 0)

    def vector_count(self) -> int:
        with self._read() as s:
            return int(s.scalar(select(func.count()).select_from(VectorRow)) or 0)

    def iter_vectors(self, batch_size: int = 65536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every stored vector, ordered by id, in batches.

        Yields:
            (ids (b,) int64, vectors (b, raw_dim) float32). Each batch is its own short read, so a long
            iteration does not hold a snapshot open; rows added meanwhile with higher ids are included.
        """
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        last = -1
        while True:
            with self._read() as s:
                rows = s.execute(
                    select(VectorRow.id, VectorRow.data)
                    .where(VectorRow.id > last)
                    .order_by(VectorRow.id)
                    .limit(batch_size)
                ).all()
            if not rows:
                return
            ids = _ids_array(r[0] for r in rows)
            yield ids, _decode([r[1] for r in rows])
            last = int(ids[-1])
            if len(rows) < batch_size:
                return

    def sample_vectors(self, n: int, seed: int = 0) -> np.ndarray:
        """A deterministic uniform sample without replacement (for training PCA / IVF).

        Returns:
            (min(n, total), raw_dim) float32, rows in id order.
        """
        with self._read() as s:
            all_ids = _ids_array(s.scalars(select(VectorRow.id).order_by(VectorRow.id)))
            meta = s.get(IndexMetaRow, 1)
            raw_dim = meta.raw_dim if meta is not None else 0
            if n <= 0 or all_ids.size == 0:
                return np.zeros((0, raw_dim), dtype=np.float32)
            if n < all_ids.size:
                rng = np.random.default_rng(seed)
                chosen = np.sort(rng.choice(all_ids, size=n, replace=False))
            else:
                chosen = all_ids
            parts = []
            for batch in _batches(chosen.tolist()):
                blobs = s.scalars(select(VectorRow.data).where(VectorRow.id.in_(batch)).order_by(VectorRow.id))
                parts.append(_decode(list(blobs)))
        return np.concatenate(parts, axis=0)

    def vectors_of_video(self, video_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A video's vectors by id.

        Returns:
            (ids (n,) int64, timestamps_s (n,) float64, vectors (n, raw_dim) float32); empty if unknown.
        """
        with self._read() as s:
            rows = s.execute(
                select(VectorRow.id, VectorRow.timestamp_s, VectorRow.data)
                .where(VectorRow.video_id == int(video_id))
                .order_by(VectorRow.id)
            ).all()
            meta = s.get(IndexMetaRow, 1)
        raw_dim = meta.raw_dim if meta is not None else 0
        return (
            _ids_array(r[0] for r in rows),
            np.asarray([r[1] for r in rows], dtype=np.float64),
            _decode([r[2] for r in rows], raw_dim if rows else raw_dim),
        )

    def locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map vector ids (as FAISS returns them) to their video and time.

        Args:
            ids: (m,) int64; -1 (FAISS padding) and unknown ids are allowed.

        Returns:
            (video_ids (m,) int64 with -1 where unknown, timestamps_s (m,) float64 with nan where unknown).
        """
        arr = np.asarray(ids, dtype=np.int64)
        if arr.ndim != 1:
            raise ValueError(f"locate needs ids of shape (m,), got {arr.shape}")
        video_ids = np.full(arr.shape, -1, dtype=np.int64)
        times = np.full(arr.shape, np.nan, dtype=np.float64)
        wanted = np.unique(arr[arr >= 0])
        if wanted.size == 0:
            return video_ids, times
        found_id: list[int] = []
        found_video: list[int] = []
        found_t: list[float] = []
        with self._read() as s:
            for batch in _batches(wanted.tolist()):
                for vid, video, t in s.execute(
                    select(VectorRow.id, VectorRow.video_id, VectorRow.timestamp_s).where(VectorRow.id.in_(batch))
                ):
                    found_id.append(vid)
                    found_video.append(video)
                    found_t.append(t)
        if not found_id:
            return video_ids, times
        keys = _ids_array(found_id)
        order = np.argsort(keys)
        keys = keys[order]
        vals_video = _ids_array(found_video)[order]
        vals_t = np.asarray(found_t, dtype=np.float64)[order]
        pos = np.clip(np.searchsorted(keys, arr), 0, keys.size - 1)
        hit = keys[pos] == arr
        video_ids[hit] = vals_video[pos[hit]]
        times[hit] = vals_t[pos[hit]]
        return video_ids, times

    # -- runs ------------------------------------------------------------------------------------------

    def record_run(
        self,
        summary: IndexSummary | None = None,
        *,
        started_at: float | None = None,
        finished_at: float | None = None,
        added: int = 0,
        updated: int = 0,
        unchanged: int = 0,
        removed: int = 0,
        failed: int = 0,
    ) -> int:
        """Record the counters of one index run; returns the run id.

        Pass either an :class:`sora_search.types.IndexSummary` (its tuples are counted; moved files count as
        unchanged; ``finished_at`` defaults to now and ``started_at`` to ``finished_at - summary.seconds``)
        or the counters as keywords.
        """
        end = time.time() if finished_at is None else float(finished_at)
        if summary is not None:
            added = len(summary.added)
            updated = len(summary.updated)
            unchanged = len(summary.unchanged) + len(summary.moved)
            removed = len(summary.removed)
            failed = len(summary.failed)
            start = end - float(summary.seconds) if started_at is None else float(started_at)
        else:
            start = end if started_at is None else float(started_at)
        with self._write() as s:
            row = RunRow(
                started_at=start,
                finished_at=end,
                added=int(added),
                updated=int(updated),
                unchanged=int(unchanged),
                removed=int(removed),
                failed=int(failed),
            )
            s.add(row)
            s.flush()
            return row.id

    def runs(self, limit: int | None = None) -> list[RunRecord]:
        """Recorded runs, newest first."""
        stmt = select(RunRow).order_by(RunRow.id.desc())
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._read() as s:
            return [
                RunRecord(r.id, r.started_at, r.finished_at, r.added, r.updated, r.unchanged, r.removed, r.failed)
                for r in s.scalars(stmt)
            ]


def upgrade(db_path: str | Path) -> tuple[str, str]:
    """Upgrade the database at ``db_path`` to this sora-search's schema; returns (from_rev, to_rev)."""
    return migrate.upgrade(db_path)


def head_revision() -> str:
    """The schema revision this sora-search writes."""
    return migrate.head_revision()
