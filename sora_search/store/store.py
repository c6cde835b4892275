"""The store (the catalogue, on SQLite or PostgreSQL): the source of truth for videos, their vectors and the index
identity.

The FAISS file is derived from it (see :mod:`sora_search.index`) and can always be rebuilt from
:meth:`Store.iter_vectors`. Vector row ids are the ids FAISS holds; they come from an
``INTEGER PRIMARY KEY AUTOINCREMENT`` column, so an id is never handed out twice, even after deletes.

Vectors are stored as float16 (:mod:`sora_search.store.records`). Every change of the set of vectors bumps ``IndexMeta.generation`` in the same transaction; the FAISS
file records the generation it reflects, so a stale file is detected by comparing the two.

Concurrency: SQLite in WAL mode, so readers never block the writer nor the writer the readers. Write
transactions start with ``BEGIN IMMEDIATE`` and wait up to 30 s (``busy_timeout``) for another writer. On
PostgreSQL the same holds through MVCC and an advisory lock per write transaction (:mod:`.postgres`). A
:class:`Store` is meant for one thread; open one per thread or process.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from sora_search._faults import fault_point
from sora_search.errors import IndexNotFound, StoreError
from sora_search.store import migrate
from sora_search.store.catalogue import Catalogue
from sora_search.store.models import IndexMetaRow, RunRow, VectorRow, VideoRow
from sora_search.store.records import (STATUSES, VECTOR_DTYPE, IndexMeta, RunRecord, VideoRecord, encode_regions,
                                       ids_array, in_batches, meta_record, video_record)
from sora_search.store.runs import RunWrites
from sora_search.store.vectors import VectorReads

if TYPE_CHECKING:
    from sora_search.types import IndexSummary

logger = logging.getLogger(__name__)


class Store(VectorReads, RunWrites):
    """The sora-search store. Open with :meth:`Store.open`; close with :meth:`close` or ``with``."""

    def __init__(self, catalogue: Catalogue, engine: Engine) -> None:
        self._catalogue = catalogue
        self._engine: Engine | None = engine

    # -- lifecycle -------------------------------------------------------------------------------------

    @classmethod
    def open(cls, db: str | Path | Catalogue, *, create: bool = True) -> Store:
        """Open (or create) the store at ``db``: a SQLite file path, a database URL or a :class:`Catalogue`.

        A new (missing or empty) database gets every table and is stamped with the Alembic head.

        Raises:
            IndexNotFound: ``create=False`` and there is no file (SQLite) or no table (a server).
            SchemaOutdated: an older schema; run ``sora-search upgrade``.
            SchemaTooNew: written by a newer sora-search.
            StoreError: not a sora-search database, a bad URL, or the database failed.
        """
        catalogue = Catalogue.of(db)
        path = catalogue.path
        if path is not None and not path.exists():
            if not create:
                raise IndexNotFound(f"no sora-search index at {path}; run `sora-search index` to create one")
            path.parent.mkdir(parents=True, exist_ok=True)
        elif path is not None and path.is_dir():
            raise StoreError(f"{path} is a directory, expected a sora-search database file")
        elif path is not None:
            migrate.check_sqlite_file(path)
        engine = migrate.make_engine(catalogue)
        try:
            with migrate.translate_db_errors(catalogue):
                with engine.connect() as conn, conn.begin():
                    rev = migrate.classify(conn, catalogue)
                if rev is None and path is None and not create:
                    raise IndexNotFound(f"no sora-search catalogue in {catalogue.shown} yet; run `sora-search index "
                                        "--db URL` to create one")
                if rev is None:
                    with engine.connect() as conn:
                        conn = conn.execution_options(sora_begin="IMMEDIATE")
                        with conn.begin():
                            # Checked again under the write lock: two processes may create the same index.
                            if migrate.classify(conn, catalogue) is None:
                                logger.info("creating sora-search store at %s", catalogue.shown)
                                migrate.create_schema(conn)
        except BaseException:
            engine.dispose()
            raise
        return cls(catalogue, engine)

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
        return f"Store({self._catalogue.shown!r}{'' if self._engine is not None else ', closed'})"

    @property
    def db_path(self) -> Path | None:
        """The SQLite file, or None for a database server."""
        return self._catalogue.path

    @property
    def catalogue(self) -> Catalogue:
        return self._catalogue

    def size_bytes(self) -> int:
        """Bytes the store takes on disk (the SQLite file; on a server its tables, indexes included)."""
        if self._catalogue.path is not None:
            return self._catalogue.path.stat().st_size
        from sora_search.store import postgres

        with self._connect() as conn:
            return postgres.size_bytes(conn)

    head_revision = staticmethod(migrate.head_revision)

    def revision(self) -> str:
        """The Alembic revision stamped in the database."""
        with self._connect() as conn:
            rev = migrate.current_revision(conn)
        if rev is None:
            raise StoreError(f"{self._catalogue.shown} has no schema revision")
        return rev

    @contextmanager
    def _connect(self, write: bool = False) -> Iterator[Any]:
        if self._engine is None:
            raise StoreError(f"the store at {self._catalogue.shown} is closed")
        with migrate.translate_db_errors(self._catalogue), self._engine.connect() as conn:
            if write:
                conn = conn.execution_options(sora_begin="IMMEDIATE")
            elif self._catalogue.path is None:  # one snapshot per read, as SQLite's WAL gives
                conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
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
            return None if row is None else meta_record(row)

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
                row = IndexMetaRow(id=1, generation=meta.generation, index_uid=meta.index_uid or uuid.uuid4().hex)
                s.add(row)
            else:
                if row.raw_dim != meta.raw_dim and s.scalar(select(VectorRow.id).limit(1)) is not None:
                    raise ValueError(
                        f"cannot change raw_dim from {row.raw_dim} to {meta.raw_dim} while vectors are stored; "
                        "move the index folder away and run `sora-search index` again"
                    )
                row.generation = max(row.generation, meta.generation)
                row.index_uid = row.index_uid or uuid.uuid4().hex
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
            return None if row is None else video_record(row)

    def video(self, video_id: int) -> VideoRecord | None:
        """The video with this id, or None."""
        with self._read() as s:
            row = s.get(VideoRow, int(video_id))
            return None if row is None else video_record(row)

    def videos_by_fingerprint(self, fingerprint: str) -> list[VideoRecord]:
        """Every video with this content fingerprint, by id."""
        with self._read() as s:
            rows = s.scalars(select(VideoRow).where(VideoRow.fingerprint == fingerprint).order_by(VideoRow.id))
            return [video_record(r) for r in rows]

    def videos(self, *, status: str | None = None) -> list[VideoRecord]:
        """Videos by id, optionally only those with ``status``."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        stmt = select(VideoRow).order_by(VideoRow.id)
        if status is not None:
            stmt = stmt.where(VideoRow.status == status)
        with self._read() as s:
            return [video_record(r) for r in s.scalars(stmt)]

    def _drop_vectors(self, s: Session, video_ids: Sequence[int]) -> np.ndarray:
        removed: list[int] = []
        for batch in in_batches(list(video_ids)):
            removed.extend(
                s.scalars(select(VectorRow.id).where(VectorRow.video_id.in_(batch)).order_by(VectorRow.id))
            )
            s.execute(delete(VectorRow).where(VectorRow.video_id.in_(batch)))
        return np.sort(ids_array(removed))

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
        regions: np.ndarray | None = None,
    ) -> tuple[int, np.ndarray, np.ndarray]:
        """Store an indexed video and its vectors in one transaction (replacing an existing row for ``path``).

        Args:
            timestamps_s: (n,) float64, seconds into the video of each vector.
            vectors: (n, raw_dim) float32; stored as float16 little-endian (finite values within +-65504).
            regions: (n, r, raw_dim) float, each second's region vectors, or None; stored at 8 bits
                (:func:`~sora_search.store.records.encode_regions`).

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
        if regions is not None and (np.ndim(regions) != 3 or np.shape(regions)[0] != ts.shape[0]
                                    or np.shape(regions)[2] != vecs.shape[1]):
            raise ValueError(f"{path}: regions must be (n, regions, raw_dim) for {vecs.shape} vectors, "
                             f"got {np.shape(regions)}")
        blobs = encode_regions(regions) if regions is not None else [None] * ts.shape[0]
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
                    {"video_id": video_id, "timestamp_s": float(t), "data": h.tobytes(), "regions": r}
                    for t, h, r in zip(ts, halves, blobs)
                ]
                result = s.execute(
                    insert(VectorRow).returning(VectorRow.id, sort_by_parameter_order=True), params
                )
                new_ids = ids_array(result.scalars())
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
            for batch in in_batches(ids):
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
            for batch in in_batches(ids):
                for vid, path in s.execute(select(VideoRow.id, VideoRow.path).where(VideoRow.id.in_(batch))):
                    out[vid] = path
        return out

    # -- vectors ---------------------------------------------------------------------------------------

    def sqlite_problems(self) -> list[str]:
        """What SQLite's ``quick_check`` finds wrong with the file's pages, as sentences; empty when sound (and on a
        server, which checks its own pages)."""
        if self._catalogue.path is None:
            return []
        with self._read() as s:
            return [f"SQLite integrity: {msg}" for (msg,) in s.execute(text("PRAGMA quick_check")) if msg != "ok"]

    def refuse_if_damaged(self) -> None:
        """Raise StoreError when :meth:`sqlite_problems` finds damage, before anything is written into it."""
        damaged = self.sqlite_problems()
        if damaged:
            raise StoreError(f"{damaged[0]} in {self._catalogue.shown}: nothing was written; restore a backup of the "
                             "index folder, or move it away and run `sora-search index` again")

    def integrity_problems(self) -> list[str]:
        """What is wrong inside the database itself, as sentences; empty when sound.

        SQLite's own ``quick_check`` and foreign-key check, then the store's invariants: each indexed video's
        ``n_vectors`` equals its vector rows, failed videos hold no vectors, vectors exist only with an identity.
        """
        problems = self.sqlite_problems()
        with self._read() as s:
            for row in s.execute(text("PRAGMA foreign_key_check")) if self._catalogue.is_sqlite else ():
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

    def indexed_video_count(self) -> int:
        """Videos that have vectors in the index."""
        with self._read() as s:
            return int(s.scalar(select(func.count()).select_from(VideoRow)
                                .where(VideoRow.status == "indexed", VideoRow.n_vectors > 0)) or 0)
