"""Reading stored vectors: all of them in batches, a sample, one video's, and where FAISS ids point."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager

import numpy as np
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from sora_search.store.models import IndexMetaRow, VectorRow
from sora_search.store.records import decode_regions, decode_vectors, ids_array, in_batches

# vectors_near reads the stored seconds this close to the times it is given (a few at 1 fps) before all of a video's,
# in one stretch where two windows are less than NEAR_MERGE_S apart (a range more in the query costs more than that).
NEAR_WINDOW_S = 2.0
NEAR_MERGE_S = 60.0


def nearest(stamps: np.ndarray, times: np.ndarray, *, later_on_tie: bool = False) -> np.ndarray:
    """(n,) int64 index into ``stamps`` ((m,) ascending, m >= 1) of the one nearest each of ``times`` ((n,)); of two
    as near, the earlier (or the later)."""
    after = np.clip(np.searchsorted(stamps, times), 0, len(stamps) - 1)
    before = np.maximum(after - 1, 0)
    gap_before, gap_after = np.abs(stamps[before] - times), np.abs(stamps[after] - times)
    return np.where(gap_before < gap_after if later_on_tie else gap_before <= gap_after, before, after)


def _merged_windows(times: np.ndarray, half_width: float, gap: float = NEAR_MERGE_S) -> list[tuple[float, float]]:
    """The union of [t - half_width, t + half_width] over ``times`` as sorted (lo, hi) ranges, two joined where less
    than ``gap`` lies between them."""
    ranges: list[tuple[float, float]] = []
    for t in np.sort(times).tolist():
        if ranges and t - half_width < ranges[-1][1] + gap:
            ranges[-1] = (ranges[-1][0], t + half_width)
        else:
            ranges.append((t - half_width, t + half_width))
    return ranges


class VectorReads:
    """The vector-reading half of :class:`sora_search.store.Store` (which provides ``_read``)."""

    def _read(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def all_vector_ids(self) -> np.ndarray:
        """(n,) int64 ids of every stored vector, ascending."""
        with self._read() as s:
            return ids_array(s.scalars(select(VectorRow.id).order_by(VectorRow.id)))

    def vector_count(self) -> int:
        with self._read() as s:
            return int(s.scalar(select(func.count()).select_from(VectorRow)) or 0)

    def region_vector_count(self) -> int:
        """Stored seconds that keep their region vectors (those stored before schema 0003 have none)."""
        with self._read() as s:
            return int(s.scalar(select(func.count()).select_from(VectorRow).where(VectorRow.regions.is_not(None)))
                       or 0)

    def videos_without_regions(self) -> set[int]:
        """Ids of the videos with a stored second that keeps no region vectors (stored before schema 0003, or by an
        encoder without regions)."""
        with self._read() as s:
            return {int(v) for v in s.scalars(select(VectorRow.video_id).where(VectorRow.regions.is_(None)).distinct())}

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
            ids = ids_array(r[0] for r in rows)
            yield ids, decode_vectors([r[1] for r in rows])
            last = int(ids[-1])
            if len(rows) < batch_size:
                return

    def sample_vectors(self, n: int, seed: int = 0) -> np.ndarray:
        """A deterministic uniform sample without replacement (for training PCA / IVF).

        Returns:
            (min(n, total), raw_dim) float32, rows in id order.
        """
        with self._read() as s:
            all_ids = ids_array(s.scalars(select(VectorRow.id).order_by(VectorRow.id)))
            meta = s.get(IndexMetaRow, 1)
            raw_dim = meta.raw_dim if meta is not None else 0
            if n <= 0 or all_ids.size == 0:
                return np.zeros((0, raw_dim), dtype=np.float32)
            if n >= all_ids.size:  # every vector: one ordered scan, not id lists (slow on a server)
                chosen = None
            else:
                rng = np.random.default_rng(seed)
                chosen = np.sort(rng.choice(all_ids, size=n, replace=False))
        if chosen is None:  # rows committed meanwhile are left out; rows removed meanwhile are missing
            parts = []
            for ids, vecs in self.iter_vectors():
                if ids[0] > all_ids[-1]:
                    break
                parts.append(vecs[np.isin(ids, all_ids)])
            return np.concatenate(parts, axis=0) if parts else np.zeros((0, raw_dim), dtype=np.float32)
        with self._read() as s:
            parts = []
            for batch in in_batches(chosen.tolist()):
                blobs = s.scalars(select(VectorRow.data).where(VectorRow.id.in_(batch)).order_by(VectorRow.id))
                parts.append(decode_vectors(list(blobs)))
        return np.concatenate(parts, axis=0)

    def mean_regions(self, n: int, seed: int = 0) -> np.ndarray | None:
        """The mean region vectors of a deterministic sample of at most ``n`` stored seconds that have regions.

        Returns:
            (r, raw_dim) float32 (each region position's own mean), or None when no second has regions.
        """
        with self._read() as s:
            ids = ids_array(s.scalars(select(VectorRow.id).where(VectorRow.regions.is_not(None))
                                      .order_by(VectorRow.id)))
            meta = s.get(IndexMetaRow, 1)
            if not ids.size or meta is None:
                return None
            if n < ids.size:
                ids = np.sort(np.random.default_rng(seed).choice(ids, size=n, replace=False))
            total: np.ndarray | None = None
            for batch in in_batches(ids.tolist()):
                blobs = list(s.scalars(select(VectorRow.regions).where(VectorRow.id.in_(batch))))
                part = decode_regions([b for b in blobs if b is not None], meta.raw_dim).astype(np.float64).sum(0)
                total = part if total is None else total + part
        assert total is not None
        return (total / ids.size).astype(np.float32)

    def regions_between(self, video_id: int, start_s: float, end_s: float) -> tuple[np.ndarray, np.ndarray]:
        """A video's stored region vectors from ``start_s`` to ``end_s`` (both included), in time order; seconds
        stored without regions are left out.

        Returns:
            (timestamps_s (n,) float64, regions (n, r, raw_dim) float32); empty if none.
        """
        with self._read() as s:
            rows = s.execute(
                select(VectorRow.timestamp_s, VectorRow.regions)
                .where(VectorRow.video_id == int(video_id), VectorRow.timestamp_s >= float(start_s),
                       VectorRow.timestamp_s <= float(end_s), VectorRow.regions.is_not(None))
                .order_by(VectorRow.timestamp_s)
            ).all()
            meta = s.get(IndexMetaRow, 1)
        return (np.asarray([r[0] for r in rows], dtype=np.float64),
                decode_regions([r[1] for r in rows if r[1] is not None], meta.raw_dim if meta is not None else 0))

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
            ids_array(r[0] for r in rows),
            np.asarray([r[1] for r in rows], dtype=np.float64),
            decode_vectors([r[2] for r in rows], raw_dim if rows else raw_dim),
        )

    def vectors_between(self, video_id: int, start_s: float, end_s: float) -> tuple[np.ndarray, np.ndarray]:
        """A video's vectors sampled from ``start_s`` to ``end_s`` (both included), in time order.

        Returns:
            (timestamps_s (n,) float64, vectors (n, raw_dim) float32); empty if none.
        """
        with self._read() as s:
            rows = s.execute(
                select(VectorRow.timestamp_s, VectorRow.data)
                .where(VectorRow.video_id == int(video_id), VectorRow.timestamp_s >= float(start_s),
                       VectorRow.timestamp_s <= float(end_s))
                .order_by(VectorRow.timestamp_s)
            ).all()
            meta = s.get(IndexMetaRow, 1)
        return (np.asarray([r[0] for r in rows], dtype=np.float64),
                decode_vectors([r[1] for r in rows], meta.raw_dim if meta is not None else 0))

    def vectors_near(self, video_id: int, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A video's stored seconds nearest each of ``times_s`` (the earlier of two as near).

        Only the stored seconds within ``NEAR_WINDOW_S`` of the times are read (a film's two hours of ids are not);
        the whole list only where a time has none that close.

        Returns:
            (their timestamps_s (n,) float64, vectors (n, raw_dim) float32), in the order of ``times_s``; a second
            removed meanwhile has the timestamp nan and zeros; empty if the video has no stored second.
        """
        times = np.asarray(times_s, dtype=np.float64)
        ranges = _merged_windows(times, NEAR_WINDOW_S) if len(times) and np.isfinite(times).all() else []
        ids, stamps = self._seconds(video_id, ranges) if ranges else (np.zeros(0, np.int64), np.zeros(0))
        at_stamp = nearest(stamps, times) if len(stamps) else None
        if at_stamp is None or (np.abs(stamps[at_stamp] - times) > NEAR_WINDOW_S).any():
            ids, stamps = self._seconds(video_id, None)
            if len(stamps) == 0:
                return np.zeros(0, dtype=np.float64), np.zeros((0, 0), dtype=np.float32)
            at_stamp = nearest(stamps, times)
        wanted = ids[at_stamp]
        found, vectors = self.vectors_by_id(wanted)
        at = np.clip(np.searchsorted(found, wanted), 0, max(len(found) - 1, 0))
        hit = (found[at] == wanted) if len(found) else np.zeros(len(wanted), dtype=bool)
        out = np.zeros((len(wanted), vectors.shape[1]), dtype=np.float32)
        out[hit] = vectors[at[hit]]
        return np.where(hit, stamps[at_stamp], np.nan), out

    def _seconds(self, video_id: int, ranges: list[tuple[float, float]] | None) -> tuple[np.ndarray, np.ndarray]:
        """(ids (n,) int64, timestamps_s (n,) float64) of a video's stored seconds in time order: those within any
        of ``ranges`` (both ends included), or all of them for None."""
        query = select(VectorRow.id, VectorRow.timestamp_s).where(VectorRow.video_id == int(video_id))
        if ranges is not None:
            query = query.where(or_(*(VectorRow.timestamp_s.between(lo, hi) for lo, hi in ranges)))
        with self._read() as s:
            rows = s.execute(query.order_by(VectorRow.timestamp_s)).all()
        return ids_array(r[0] for r in rows), np.asarray([r[1] for r in rows], dtype=np.float64)

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
            for batch in in_batches(wanted.tolist()):
                for vid, video, t in s.execute(
                    select(VectorRow.id, VectorRow.video_id, VectorRow.timestamp_s).where(VectorRow.id.in_(batch))
                ):
                    found_id.append(vid)
                    found_video.append(video)
                    found_t.append(t)
        if not found_id:
            return video_ids, times
        keys = ids_array(found_id)
        order = np.argsort(keys)
        keys = keys[order]
        vals_video = ids_array(found_video)[order]
        vals_t = np.asarray(found_t, dtype=np.float64)[order]
        pos = np.clip(np.searchsorted(keys, arr), 0, keys.size - 1)
        hit = keys[pos] == arr
        video_ids[hit] = vals_video[pos[hit]]
        times[hit] = vals_t[pos[hit]]
        return video_ids, times

    def vectors_by_id(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The stored vectors with these ids: (ids found (m,) int64 ascending, vectors (m, raw_dim) float32)."""
        wanted = np.unique(np.asarray(ids, dtype=np.int64))
        found: list[int] = []
        blobs: list[bytes] = []
        with self._read() as s:
            for batch in in_batches(wanted.tolist()):
                for vid, data in s.execute(select(VectorRow.id, VectorRow.data).where(VectorRow.id.in_(batch))
                                           .order_by(VectorRow.id)):
                    found.append(vid)
                    blobs.append(data)
            meta = s.get(IndexMetaRow, 1)
        return ids_array(found), decode_vectors(blobs, meta.raw_dim if meta is not None and not blobs else None)
