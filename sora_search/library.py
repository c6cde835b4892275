"""The public object: ``Library.open(path)``, ``.index(paths)``, ``.query(clip)``, ``.remove(paths)``, ``.info()``.

An index is a directory holding ``sora.db`` (SQLite: videos, raw per-second descriptors, the index identity; the
source of truth) and ``vectors.faiss`` (the FAISS IVF index of projected descriptors; derived, rebuildable from the
store without decoding anything). Writers take ``write.lock`` so two index runs never interleave.

Index time:  scan -> decode (worker process, timeout) -> encode -> temporal pool -> store (one transaction per video)
             -> FAISS (projected vectors added by store id; the file saved atomically with the store's generation).
Query time:  decode -> encode (views) -> temporal pool -> project -> k-NN -> background normalisation -> per-video
             temporal alignment -> matches.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import scan
from ._faults import fault_point
from .errors import (EmptyIndex, EncoderMismatch, IndexLocked, IndexNotFound, SoraSearchError, StoreError,
                     VideoError)
from .inset import Box, InsetFinder
from .search import (BACKGROUND_SKIP, BACKGROUND_TAKE, AlignParams, align, background_similarity, group_hits,
                     novelty_weights)
from .types import (CheckReport, FailedFile, IndexSummary, LibraryInfo, Match, Progress, QueryResult, Span,
                    VideoInfo)
from .views import FULL, HFLIP, INSET, REGION_VIEWS, VIEW_SETS, blank_frames, decode_side, make_view

if TYPE_CHECKING:
    from .decode import DecodeWorker
    from .encoder import Encoder, Projection
    from .index import VectorIndex
    from .store import IndexMeta, Store

logger = logging.getLogger(__name__)

DEFAULT_LOCATION = ".sora-search"
DEFAULT_ENCODER = "sora-lite0"
DEFAULT_FPS = 1.0
DEFAULT_K = 10
# Matches scoring below this are not reported. Measured on the accuracy benchmark (README, "Scores"): precision
# 0.88 and recall 0.80 over all predictions; of the negative queries only same-camera near misses top it.
DEFAULT_MIN_SCORE = 0.25
DEFAULT_DECODE_TIMEOUT_S = 120.0
DEFAULT_VIEWS = "auto"
# views="auto" looks at the mirrored frame, and after it at the turned frame, halves and windows, only when nothing
# scores this much: the default threshold, so the probe is looked at harder only while it would report nothing.
# Measured on the accuracy benchmark (cached probes): looking at the mirror only below 0.3 changed micro-AP by -0.001
# and nothing else, and spares a probe that matches well seen whole half of its encoding; 0.25 instead of 0.3
# (session 8) changed micro-AP by +0.0002 and nothing else but the probes that reach the region pass (82 -> 71 of
# 154). A region view (a half or a window) scores REGION_PENALTY less than the same match seen whole: 13 region views
# are 13 more chances for footage that only resembles the probe, and a copy seen whole should win over a chance match
# of a part. Both measured on the accuracy benchmark (benchmarks/accuracy; README, "Accuracy").
ESCALATE_BELOW = DEFAULT_MIN_SCORE
REGION_PENALTY = 0.1
# A found inset (sora_search.inset) is one more region, but one the probe itself points at: it pays half.
INSET_PENALTY = 0.05
VIEW_PENALTY: dict[str, float] = {**{v: REGION_PENALTY for v in REGION_VIEWS}, INSET: INSET_PENALTY}
# Every match but the best loses this share of its score's gap to the best: a video that is far behind the probe's
# best match more likely shows the same kind of scene than the clip. Copies of the clip in several library videos
# score alike and lose next to nothing. On the accuracy benchmark (cached probes) micro-AP 0.898 -> 0.919, precision
# at the default threshold 0.89 -> 0.92 for recall 0.84 -> 0.83; a weight of 1.0 gave 0.923.
RUNNER_UP_GAP = 0.5
NEIGHBOURS = 64            # k-NN per probe vector, before grouping by video
BACKGROUND_MAX_K = 4096    # the most neighbours a probe vector's background is looked for in (Library._background)
TEMPORAL_RADIUS = 1        # "pooled again over time": each vector averages its +-1 s neighbours
PROJECTION_DIM = 256
PCA_MIN_VECTORS = 1000     # below this the projection only centres (too few vectors for principal axes)
PROJECTION_SAMPLE = 100_000  # vectors the projection is fitted on
RETRAIN_GROWTH = 4.0       # retrain projection and IVF once the corpus has grown this many times
SAVE_EVERY_S = 60.0        # during long runs, persist the FAISS file at least this often

DB_NAME = "sora.db"
FAISS_NAME = "vectors.faiss"
LOCK_NAME = "write.lock"

ProgressCallback = Callable[[Progress], None]


def default_location() -> Path:
    """Where the index lives when no path is given: ``$SORA_SEARCH_INDEX``, else ``./.sora-search``."""
    return Path(os.environ.get("SORA_SEARCH_INDEX") or DEFAULT_LOCATION)


class _WriteLock:
    """An exclusive advisory lock on ``write.lock`` (released by the OS if the process dies)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                holder = self.path.read_text().strip() or "another process"
                raise IndexLocked(f"{self.path.parent} is being written by {holder}; wait for it to finish "
                                  "(only one index or remove run at a time)") from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> _WriteLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Library:
    """A video library index on disk. Open with :meth:`open`; close with :meth:`close` or a ``with`` block."""

    def __init__(self, location: Path, store: Store, *, encoder_name: str, device: str | None,
                 fps: float, decode_backend: str = "auto") -> None:
        self.location = location
        self._decode_backend = decode_backend
        self._store = store
        self._encoder_name = encoder_name
        self._device = device
        self._fps = fps
        self._encoder: Encoder | None = None
        self._index: VectorIndex | None = None
        self._projection: Projection | None = None
        self._index_generation = -1
        self._worker: DecodeWorker | None = None
        self._timings: defaultdict[str, float] = defaultdict(float)

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def open(cls, path: str | Path | None = None, *, create: bool = True, encoder: str | None = None,
             device: str | None = None, fps: float | None = None, decode_backend: str = "auto") -> Library:
        """Open the index at ``path`` (default: :func:`default_location`).

        Args:
            create: make a new, empty index if none exists; otherwise raise IndexNotFound.
            encoder: encoder for a new index (default ``sora-lite0``); an existing index keeps its own, and asking
                for a different one raises EncoderMismatch.
            device: ``cpu`` or ``cuda`` (default: ``$SORA_SEARCH_DEVICE``, else CUDA when available).
            fps: sampling rate for a new index (default 1 frame per second); fixed once the index exists.
            decode_backend: ``auto`` (decord, then PyAV), ``decord``, ``pyav``, or ``module:Class`` naming a
                :class:`sora_search.decode.VideoReader` (plugins, tests).
        """
        from .store import Store

        location = Path(path) if path is not None else default_location()
        db = location / DB_NAME
        if not db.exists():
            if not create:
                raise IndexNotFound(f"no index at {location}: run `sora-search index PATH` first "
                                    "(or pass --index / set SORA_SEARCH_INDEX to where it is)")
            try:
                location.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the index folder {location}: {exc.strerror or exc}") from None
        store = Store.open(db, create=create)
        meta = store.meta()
        if meta is not None:
            if encoder is not None and encoder != meta.encoder_name:
                store.close()
                raise EncoderMismatch(f"the index at {location} was built with {meta.encoder_name}, not {encoder}; "
                                      "use another --index folder for another encoder")
            if fps is not None and fps != meta.sampling_fps:
                store.close()
                raise EncoderMismatch(f"the index at {location} samples {meta.sampling_fps:g} frame/s, not {fps:g}; "
                                      "use another --index folder for another sampling rate")
            encoder, fps = meta.encoder_name, meta.sampling_fps
        return cls(location, store, encoder_name=encoder or DEFAULT_ENCODER, device=device,
                   fps=fps or DEFAULT_FPS, decode_backend=decode_backend)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None
        self._store.close()
        self._index = None

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ indexing
    def index(self, paths: Sequence[str | Path], *, progress: ProgressCallback | None = None,
              retry_failed: bool = False, timeout_s: float = DEFAULT_DECODE_TIMEOUT_S) -> IndexSummary:
        """Bring the index up to date with the videos under ``paths`` (files or folders, recursive).

        New files are decoded and encoded, changed files re-encoded, moved files re-pathed without decoding,
        deleted files removed. A file that cannot be decoded is recorded with its reason and the run goes on.

        Args:
            progress: called before (status ``decoding``) and after (``added``, ``updated``, ``failed``) each file
                that is decoded, with a :class:`Progress` (bytes are the ETA basis).
            retry_failed: attempt again files that failed before and have not changed.
            timeout_s: a decoder silent for this long on one file is killed and the file recorded as failed.

        Raises:
            FileNotFoundError: a path does not exist. IndexLocked: another run is writing this index.
        """
        started = time.monotonic()
        self._timings = defaultdict(float)
        with _WriteLock(self.location / LOCK_NAME):
            self._remove_leftovers()
            found = scan.walk(paths, exclude=[self.location])
            roots = [os.path.abspath(p) for p in paths]
            under = [v for root in roots for v in self._store.videos(under=root)]
            under += [v for v in (self._store.video_by_path(r) for r in roots) if v is not None]
            by_fp: dict[str, list] = {}
            for v in self._store.videos():
                by_fp.setdefault(v.fingerprint, []).append(v)
            todo = scan.plan(found, list({v.id: v for v in under}.values()), by_fp, retry_failed=retry_failed)

            self._ensure_meta()
            self._load_index_for_write()
            for entry, known in todo.moved:
                self._store.move_video(known.id, entry.path, entry.mtime)
            for entry, known in todo.touched:
                self._store.touch_video(known.id, mtime=entry.mtime, size=entry.size)
            if todo.removed:
                self._apply_removals([self._store.remove_videos([v.id for v in todo.removed])])

            failed = list(todo.problems) + [FailedFile(v.path, v.error or "failed") for v in todo.failed_before]
            changed_paths = {e.path for e, _, _ in todo.changed}
            added, updated, newly_failed, vectors_added = self._encode_files(todo.to_encode, changed_paths,
                                                                             progress, timeout_s)
            failed += newly_failed
            with self._timed("index"):
                self._finish_index()
            summary = IndexSummary(
                added=tuple(added), updated=tuple(updated),
                unchanged=tuple(v.path for v in todo.unchanged) + tuple(e.path for e, _ in todo.touched),
                moved=tuple((k.path, e.path) for e, k in todo.moved),
                removed=tuple(v.path for v in todo.removed), failed=tuple(failed),
                vectors_added=vectors_added, seconds=time.monotonic() - started, timings=dict(self._timings))
            self._store.record_run(summary)
            return summary

    def _encode_files(self, work: list[tuple[scan.FileEntry, str]], changed_paths: set[str],
                      progress: ProgressCallback | None, timeout_s: float,
                      ) -> tuple[list[str], list[str], list[FailedFile], int]:
        """Decode, encode and store each file; one file's failure is recorded and the next one goes on.

        Returns (added paths, updated paths, failures, vectors added). The FAISS file is saved at least every
        SAVE_EVERY_S, so an interrupted run loses no committed video (a stale file is rebuilt on the next open).
        """
        added: list[str] = []
        updated: list[str] = []
        failed: list[FailedFile] = []
        vectors_added = 0
        bytes_total = sum(e.size for e, _ in work)
        bytes_done = 0
        last_save = time.monotonic()
        worker = self._decode_worker(timeout_s) if work else None
        for n, (entry, fp) in enumerate(work, 1):
            status = "updated" if entry.path in changed_paths else "added"
            if progress is not None:
                progress(Progress(n - 1, len(work), bytes_done, bytes_total, entry.path, "decoding"))
            try:
                info, ts, vecs = self._embed_file(worker, entry.path)
            except VideoError as exc:
                with self._timed("store"):
                    dropped = self._store.record_failure(path=entry.path, size=entry.size, mtime=entry.mtime,
                                                         fingerprint=fp, error=exc.reason)
                self._apply_removals([dropped])
                failed.append(FailedFile(entry.path, exc.reason))
                status = "failed"
                logger.info("failed %s: %s", entry.path, exc.reason)
            else:
                with self._timed("store"):
                    _, new_ids, old_ids = self._store.add_video(
                        path=entry.path, size=entry.size, mtime=entry.mtime, fingerprint=fp,
                        duration_s=info.duration_s, fps=info.fps, width=info.width, height=info.height,
                        timestamps_s=ts, vectors=vecs)
                with self._timed("index"):
                    self._apply_removals([old_ids])
                    self._add_to_index(new_ids, vecs)
                (updated if status == "updated" else added).append(entry.path)
                vectors_added += len(new_ids)
            bytes_done += entry.size
            if progress is not None:
                progress(Progress(n, len(work), bytes_done, bytes_total, entry.path, status))
            if time.monotonic() - last_save > SAVE_EVERY_S:
                with self._timed("index"):
                    self._finish_index()
                last_save = time.monotonic()
        return added, updated, failed, vectors_added

    def remove(self, paths: Iterable[str | Path]) -> list[str]:
        """Drop videos from the index: each path is a stored video or a folder containing some.

        Returns the removed paths. Paths that match nothing are ignored (the caller can compare).
        """
        with _WriteLock(self.location / LOCK_NAME):
            victims = {}
            for p in paths:
                ap = os.path.abspath(p)
                rec = self._store.video_by_path(ap)
                if rec is not None:
                    victims[rec.id] = rec.path
                for rec in self._store.videos(under=ap):
                    victims[rec.id] = rec.path
            if not victims:
                return []
            self._remove_leftovers()
            self._load_index_for_write()
            self._apply_removals([self._store.remove_videos(list(victims))])
            self._finish_index()
            return sorted(victims.values())

    # ------------------------------------------------------------------ querying
    def query(self, clip: str | Path, *, k: int = DEFAULT_K, min_score: float = DEFAULT_MIN_SCORE,
              timeout_s: float = DEFAULT_DECODE_TIMEOUT_S, views: str | Sequence[str] = DEFAULT_VIEWS) -> QueryResult:
        """Find library videos that contain ``clip`` or something visually near it.

        Args:
            k: at most this many videos, best first.
            min_score: drop matches scoring below this (see DEFAULT_MIN_SCORE).
            views: how the probe is looked at (:mod:`sora_search.views`). ``auto``: the whole frame; then, only
                while no video scores ``ESCALATE_BELOW`` or more, the mirrored frame; then the frame turned by 90,
                180 and 270 degrees, halves and half-size windows (rotated, stacked and picture-in-picture copies)
                and, where :class:`~sora_search.inset.InsetFinder` finds one, the picture-in-picture inset cut out;
                a set name from ``VIEW_SETS`` (``fast``, ``standard``, ``thorough``); or a sequence of view names.
                Each video keeps its best-scoring view; a region view (half or window) scores ``REGION_PENALTY``
                less, the inset ``INSET_PENALTY`` less.

        A score is the shrunk mean, over the aligned probe seconds, of each second's similarity to the video minus
        its background similarity to the library's next best other videos, each second weighted by how much it
        changed from the one before (:mod:`sora_search.search`); every match but the best then loses
        ``RUNNER_UP_GAP`` of its gap to the best.

        Raises:
            VideoError: the clip cannot be decoded. EmptyIndex: nothing is indexed yet.
        """
        if isinstance(views, str):
            if views != "auto" and views not in VIEW_SETS:
                raise ValueError(f"unknown view set {views!r}; choose auto or one of {sorted(VIEW_SETS)}")
            passes = ([(FULL,), (HFLIP,), VIEW_SETS["regions"]] if views == "auto" else [VIEW_SETS[views]])
        else:
            passes = [tuple(views)]
        meta = self._store.meta()
        if meta is None or self._store.vector_count() == 0:
            raise EmptyIndex(f"nothing is indexed in {self.location} yet: run `sora-search index PATH` first")
        self._check_encoder(meta)
        index, projection = self._load_index_for_read()
        n_videos = self._store.indexed_video_count()
        params = AlignParams(interval_s=1.0 / self._fps)
        best: dict[int, list[Span]] = {}

        def score(info: VideoInfo, ts: np.ndarray, per_view: dict[str, np.ndarray],
                  blank: dict[str, np.ndarray]) -> None:
            # Blank seconds of a view (black, fades, uniform colour) are not searched: they match any black frame.
            names = [v for v in per_view if not blank[v].all()]
            if not names or not len(ts):
                return
            duration = max(info.duration_s, float(ts[-1]) + params.interval_s)
            keep = [np.flatnonzero(~blank[v]) for v in names]
            probe = projection.apply(np.concatenate([per_view[v][rows] for v, rows in zip(names, keep)]))
            scores, ids = index.search(probe, min(NEIGHBOURS, max(1, index.ntotal)))
            video_ids, ref_s = self._store.locate(ids.ravel())
            video_ids, ref_s = video_ids.reshape(ids.shape), ref_s.reshape(ids.shape)
            scores = scores - self._background(index, probe, video_ids, scores, n_videos)[:, None]
            start = 0
            for name, kept in zip(names, keep):
                rows = slice(start, start + len(kept))
                start += len(kept)
                penalty = VIEW_PENALTY.get(name, 0.0)
                weights = novelty_weights(probe[rows])
                for video_id, video_hits in group_hits(ts[kept], video_ids[rows], ref_s[rows], scores[rows],
                                                       weights).items():
                    spans = [replace(sp, score=sp.score - penalty) for sp in align(video_hits, duration, params)]
                    if spans and (video_id not in best or spans[0].score > best[video_id][0].score):
                        best[video_id] = spans

        for n_pass, view_names in enumerate(passes):
            if n_pass and best and max(spans[0].score for spans in best.values()) >= ESCALATE_BELOW:
                break
            # The inset view needs the whole probe seen first (InsetFinder), so it is encoded in a decode of its own,
            # after the pass that found it, and only when there is an inset to cut out.
            finder = InsetFinder() if INSET in view_names else None
            plain = [v for v in view_names if v != INSET]
            score(*self._embed_views(self._decode_worker(timeout_s), clip, plain, finder=finder))
            box = finder.find() if finder is not None else None
            if box is not None:
                logger.debug("%s: inset at x=%.2f y=%.2f w=%.2f h=%.2f (strength %.1f)", clip, box.x, box.y,
                             box.w, box.h, box.strength)
                score(*self._embed_views(self._decode_worker(timeout_s), clip, [INSET], box=box))
        if best:
            # A match far behind the probe's best one is more likely footage that only resembles the probe.
            top = max(spans[0].score for spans in best.values())
            best = {v: [replace(sp, score=sp.score - RUNNER_UP_GAP * (top - spans[0].score)) for sp in spans]
                    for v, spans in best.items()}
        ranked = sorted(((spans[0].score, v, spans) for v, spans in best.items() if spans[0].score >= min_score),
                        key=lambda x: (-x[0], x[1]))[:k]
        paths = self._store.video_paths(v for _, v, _ in ranked)
        matches = tuple(Match(path=paths[v], score=round(s, 4), segments=tuple(spans)) for s, v, spans in ranked)
        return QueryResult(query=str(clip), matches=matches)

    def _background(self, index: VectorIndex, probe: np.ndarray, video_ids: np.ndarray, scores: np.ndarray,
                    n_videos: int) -> np.ndarray:
        """:func:`~sora_search.search.background_similarity` of each probe row, from enough neighbours to see it.

        A row whose neighbours all come from fewer videos than the background ranks (a fixed camera's video fills
        every slot with its own seconds) would take its unseen ranks at the row's smallest similarity, a loose upper
        bound; such rows are searched again with 4x the neighbours, up to ``BACKGROUND_MAX_K``.
        """
        background = background_similarity(video_ids, scores, n_videos)
        wanted = min(BACKGROUND_SKIP + BACKGROUND_TAKE, n_videos)
        k = video_ids.shape[1]

        def saturated(vids: np.ndarray) -> np.ndarray:
            full = (vids >= 0).all(axis=1)
            distinct = np.array([len(np.unique(row)) for row in vids])
            return full & (distinct < wanted)

        rows = np.flatnonzero(saturated(video_ids))
        while len(rows) and k < min(index.ntotal, BACKGROUND_MAX_K):
            k = min(4 * k, index.ntotal, BACKGROUND_MAX_K)
            more_scores, ids = index.search(probe[rows], k)
            more_videos = self._store.locate(ids.ravel())[0].reshape(ids.shape)
            background[rows] = background_similarity(more_videos, more_scores, n_videos)
            rows = rows[saturated(more_videos)]
        return background

    # ------------------------------------------------------------------ info
    def info(self) -> LibraryInfo:
        """What is indexed, how, and how big it is."""
        from .store import head_revision

        meta = self._store.meta()
        videos = self._store.videos()
        indexed = [v for v in videos if v.status == "indexed"]
        faiss_path = self.location / FAISS_NAME
        index_type, nlist, nprobe = "none (nothing indexed yet)", 0, 0
        if faiss_path.exists():
            from .index import VectorIndex

            try:
                idx, _ = VectorIndex.load(faiss_path)
                index_type, nlist, nprobe = idx.describe(), idx.nlist, idx.nprobe
            except SoraSearchError as exc:
                index_type = f"unreadable ({exc})"
        return LibraryInfo(
            location=str(self.location.absolute()), videos=len(indexed), failed=len(videos) - len(indexed),
            vectors=self._store.vector_count(), duration_s=float(sum(v.duration_s for v in indexed)),
            encoder=meta.encoder_name if meta else self._encoder_name,
            encoder_version=meta.encoder_version if meta else "",
            raw_dim=meta.raw_dim if meta else 0, dim=meta.dim if meta else 0,
            sampling_fps=meta.sampling_fps if meta else self._fps,
            projection=meta.projection_name if meta else "", index_type=index_type, index_nlist=nlist,
            index_nprobe=nprobe, index_bytes=faiss_path.stat().st_size if faiss_path.exists() else 0,
            store_bytes=(self.location / DB_NAME).stat().st_size, schema_revision=self._store.revision(),
            extra={"schema_head": head_revision()}, index_device=self._index_device())

    # ------------------------------------------------------------------ consistency
    def check(self, *, repair: bool = False) -> CheckReport:
        """Verify that the store is sound and that the FAISS file holds exactly the stored vectors.

        Args:
            repair: rebuild the FAISS file from the stored vectors (no decoding) and delete temporary files left
                by an interrupted save. A damaged SQLite file cannot be repaired this way and is reported.

        Raises:
            IndexLocked: ``repair`` while another process is writing this index.
        """
        store_problems = self._store.integrity_problems()
        index_problems, faiss_vectors = self._index_problems()
        leftovers = self._leftovers()
        problems = store_problems + index_problems + [f"leftover temporary file {p.name} from an interrupted save"
                                                      for p in leftovers]
        repaired: list[str] = []
        if repair and (index_problems or leftovers):
            with _WriteLock(self.location / LOCK_NAME):
                repaired += [f"deleted {name}" for name in self._remove_leftovers()]
                if index_problems and self._store.vector_count():
                    self._rebuild_index()
                    repaired.append(f"rebuilt {FAISS_NAME} from {self._store.vector_count()} stored vectors")
            index_problems, faiss_vectors = self._index_problems()
            problems = store_problems + index_problems
        if store_problems:
            problems.append("the SQLite store itself is damaged: restore a backup of the index folder, or move it "
                            "away and run `sora-search index` again")
        return CheckReport(ok=not problems, problems=tuple(problems), repaired=tuple(repaired),
                           videos=len(self._store.videos(status="indexed")), vectors=self._store.vector_count(),
                           faiss_vectors=faiss_vectors)

    def _leftovers(self) -> list[Path]:
        return sorted(self.location.glob(f".{FAISS_NAME}.*.tmp"))

    def _remove_leftovers(self) -> list[str]:
        """Delete temporary files of a FAISS save that was killed midway. Only call with the write lock held:
        then no save is in flight, so every such file is debris."""
        removed = []
        for p in self._leftovers():
            p.unlink(missing_ok=True)
            removed.append(p.name)
            logger.info("deleted %s left by an interrupted save", p.name)
        return removed

    def _index_problems(self) -> tuple[list[str], int]:
        """How the FAISS file disagrees with the store, and how many vectors it holds."""
        from .index import VectorIndex

        meta = self._store.meta()
        stored = self._store.all_vector_ids()
        path = self.location / FAISS_NAME
        if not len(stored) and not path.exists():
            return [], 0
        if meta is None or meta.projection is None:
            return [f"{len(stored)} vectors are stored but no FAISS index was ever built for them"], 0
        try:
            index, generation = VectorIndex.load(path)
        except SoraSearchError as exc:
            return [str(exc).split(";")[0]], 0
        problems = []
        if generation != meta.generation:
            problems.append(f"{FAISS_NAME} reflects store generation {generation}, the store is at "
                            f"{meta.generation} (a run was interrupted before saving it)")
        if index.dim != meta.dim:
            problems.append(f"{FAISS_NAME} holds {index.dim}-d vectors, the projection gives {meta.dim}-d")
        held = index.ids()
        uniq, counts = np.unique(held, return_counts=True)
        missing, extra, dup = np.setdiff1d(stored, uniq), np.setdiff1d(uniq, stored), int((counts > 1).sum())
        if len(missing):
            problems.append(f"{len(missing)} stored vectors are missing from {FAISS_NAME}")
        if len(extra):
            problems.append(f"{FAISS_NAME} holds {len(extra)} ids with no stored vector")
        if dup:
            problems.append(f"{dup} ids appear more than once in {FAISS_NAME}")
        return problems, len(held)

    # ------------------------------------------------------------------ internals
    @contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self._timings[stage] += time.perf_counter() - start

    def _decode_worker(self, timeout_s: float) -> DecodeWorker:
        """The library's decode child, started on first use and kept until close (a warm query pays no start-up)."""
        if self._worker is None:
            from .decode import DecodeWorker

            self._worker = DecodeWorker(backend=self._decode_backend, timeout_s=timeout_s)
        self._worker.timeout_s = float(timeout_s)
        return self._worker

    def _get_encoder(self) -> Encoder:
        if self._encoder is None:
            from .encoder import load_encoder

            self._encoder = load_encoder(self._encoder_name, device=self._device)
        return self._encoder

    @cached_property
    def _faiss_gpu(self) -> int | None:
        """The GPU FAISS uses: the encoder's device setting, or the CPU when faiss cannot use that GPU."""
        from .encoder import device_setting
        from .index import faiss_gpu_for

        return faiss_gpu_for(device_setting(self._device)[0])

    def _index_device(self) -> str:
        return "cpu" if self._faiss_gpu is None else f"cuda:{self._faiss_gpu}"

    def _ensure_meta(self) -> IndexMeta:
        from .store import IndexMeta

        meta = self._store.meta()
        if meta is not None:
            self._check_encoder(meta)
            return meta
        from .encoder import encoder_identity

        ident = encoder_identity(self._encoder_name)
        meta = IndexMeta(encoder_name=ident.name, encoder_version=ident.version, raw_dim=ident.dim,
                         input_size=ident.input_size, sampling_fps=self._fps, projection=None,
                         projection_name="", dim=ident.dim, index_trained_n=0, generation=0)
        self._store.set_meta(meta)
        return meta

    def _check_encoder(self, meta: IndexMeta) -> None:
        from .encoder import encoder_identity

        ident = encoder_identity(self._encoder_name)
        if (ident.name, ident.version, ident.dim) != (meta.encoder_name, meta.encoder_version, meta.raw_dim):
            raise EncoderMismatch(
                f"the index at {self.location} was built with {meta.encoder_name} v{meta.encoder_version} "
                f"({meta.raw_dim}-d) but this sora-search has {ident.describe()}; rebuild it: move the folder "
                "away and run `sora-search index` again")

    def _embed_file(self, worker, path: str | Path):
        """Decode and encode one file: (VideoInfo, timestamps (n,) float64, raw vectors (n, raw_dim) float32)."""
        info, ts, per_view, _ = self._embed_views(worker, path, None)
        return info, ts, per_view[FULL]

    def _embed_views(self, worker, path: str | Path, views: Sequence[str] | None, *,
                     finder: InsetFinder | None = None, box: Box | None = None):
        """Decode one file and encode each view of its frames (see :mod:`sora_search.views`).

        ``views=None`` encodes the frames as decoded at the encoder's input size S (indexing). Otherwise each named
        view is cut from the frames (probes), decoded at S when only whole-frame views are asked for and at 2S
        otherwise (:func:`sora_search.views.decode_side`); ``finder`` also sees every frame (at 2S), and ``box`` is
        the rectangle the ``inset`` view cuts out. With no views and a finder, the probe is only decoded for the
        finder.

        A probe's blank frames (:func:`sora_search.views.blank_frames`: black, fades, uniform colour) are left out
        of their neighbours' temporal pooling, so a cut to black does not leak into the seconds around it; the library
        side is pooled as it was indexed.

        Returns:
            (VideoInfo, timestamps (n,) float64, {view: raw vectors (n, raw_dim) float32, temporally pooled},
            {view: (n,) bool, which frames of the view are blank; all False when indexing}).
        """
        from .encoder import temporal_pool

        encoder = self._get_encoder()
        size = encoder.identity.input_size
        names = [FULL] if views is None else list(views)
        ts_parts: list[np.ndarray] = []
        vec_parts: dict[str, list[np.ndarray]] = {v: [] for v in names}
        blank_parts: dict[str, list[np.ndarray]] = {v: [] for v in names}
        if views is None:
            side = size
        elif finder is not None:  # the finder looks at 2S frames
            side = 2 * size
        else:
            side = decode_side(names, size)
        with self._timed("decode"):
            video = worker.open(path, fps=self._fps, size=side)
        with video:
            info = video.info
            batches = iter(video)
            while True:
                with self._timed("decode"):  # waiting for the worker; it decodes ahead while we encode
                    batch = next(batches, None)
                if batch is None:
                    break
                fault_point("decode")
                ts_parts.append(batch.timestamps_s)
                if finder is not None:
                    finder.add(batch.frames)
                if not names:
                    continue
                with self._timed("encode"):
                    if views is None:
                        vec_parts[FULL].append(encoder.embed(batch.frames))
                        blank_parts[FULL].append(np.zeros(len(batch.frames), dtype=bool))
                    else:
                        stacked = np.concatenate([make_view(batch.frames, v, box, side=size) for v in names])
                        vecs = encoder.embed(stacked).reshape(len(names), len(batch.frames), -1)
                        masks = blank_frames(stacked).reshape(len(names), len(batch.frames))
                        for v, part, mask in zip(names, vecs, masks):
                            vec_parts[v].append(part)
                            blank_parts[v].append(mask)
                fault_point("encode")
        if not ts_parts:
            from .errors import NoFramesError

            raise NoFramesError(path, "no decodable frame")
        ts = np.concatenate(ts_parts)
        blank = {v: np.concatenate(parts) for v, parts in blank_parts.items()}
        pooled = {v: temporal_pool(np.concatenate(parts), radius=TEMPORAL_RADIUS, skip=blank[v])
                  for v, parts in vec_parts.items()}
        return info, ts, pooled, blank

    # FAISS bookkeeping: the store is the truth; the in-memory index follows every store change and is saved with
    # the store generation it reflects. On open, a file whose generation lags the store is rebuilt from vectors.
    def _load_index_for_write(self) -> None:
        from .encoder import Projection
        from .index import VectorIndex

        if self._index is not None:
            return
        meta = self._store.meta()
        path = self.location / FAISS_NAME
        if meta is None or meta.projection is None:
            return
        self._projection = Projection.from_bytes(meta.projection)
        try:
            index, generation = VectorIndex.load(path)
        except SoraSearchError as exc:
            logger.warning("rebuilding %s: %s", path, exc)
            index, generation = None, -1
        if index is None or generation != meta.generation or index.ntotal != self._store.vector_count():
            self._rebuild_index()
            return
        index.use_gpu(self._faiss_gpu)
        self._index, self._index_generation = index, generation

    def _load_index_for_read(self) -> tuple[VectorIndex, Projection]:
        from .encoder import Projection
        from .index import VectorIndex

        meta = self._store.meta()
        assert meta is not None
        if meta.projection is None:
            raise EmptyIndex(f"the index at {self.location} was never finished: run `sora-search index` again")
        if self._index is None or self._index_generation != meta.generation:
            projection = Projection.from_bytes(meta.projection)
            try:
                index, generation = VectorIndex.load(self.location / FAISS_NAME)
            except IndexNotFound:
                raise EmptyIndex(f"the index at {self.location} has no FAISS file yet: "
                                 "run `sora-search index` again") from None
            if generation != meta.generation:
                # A writer is mid-run (or died): search what was last saved; ids it no longer knows are dropped.
                logger.info("FAISS file is at generation %d, store at %d", generation, meta.generation)
            index.use_gpu(self._faiss_gpu)
            self._index, self._projection, self._index_generation = index, projection, generation
        assert self._projection is not None
        return self._index, self._projection

    def _apply_removals(self, id_arrays: list[np.ndarray]) -> None:
        ids = np.concatenate([np.asarray(a, dtype=np.int64) for a in id_arrays]) if id_arrays else np.empty(0)
        if len(ids) and self._index is not None:
            self._index.remove(ids.astype(np.int64))

    def _add_to_index(self, ids: np.ndarray, raw: np.ndarray) -> None:
        if self._index is not None and self._projection is not None:
            self._index.add(ids, self._projection.apply(raw))

    def _finish_index(self) -> None:
        """Retrain if the corpus outgrew the index, then save the FAISS file at the store's generation."""
        meta = self._store.meta()
        assert meta is not None
        total = self._store.vector_count()
        if total == 0:
            return
        if self._index is None or total > RETRAIN_GROWTH * max(1, meta.index_trained_n) \
                or self._projection is None:
            self._rebuild_index()
        else:
            self._save_index()

    def _rebuild_index(self) -> None:
        """Refit the projection and retrain the IVF on the stored vectors, then add them all (no decoding)."""
        from dataclasses import replace

        from .encoder import Projection
        from .index import VectorIndex, choose_nlist

        meta = self._store.meta()
        assert meta is not None
        total = self._store.vector_count()
        if total == 0:
            return
        nlist = choose_nlist(total)
        # The projection needs ~100k vectors; the IVF wants >= 39 per list, more than that once nlist > 2560.
        sample = self._store.sample_vectors(max(PROJECTION_SAMPLE, 39 * nlist), seed=0)
        # The sample comes in id order (oldest videos first): fit on rows spread across all of it, not a prefix.
        spread = np.linspace(0, len(sample) - 1, min(len(sample), PROJECTION_SAMPLE)).astype(np.int64)
        projection = Projection.fit(sample[spread], PROJECTION_DIM, min_vectors=PCA_MIN_VECTORS)
        index = VectorIndex.build(projection.out_dim, projection.apply(sample), nlist=nlist, expected_n=total,
                                  gpu=self._faiss_gpu)
        del sample
        for ids, raw in self._store.iter_vectors():
            index.add(ids, projection.apply(raw))
        # A new projection invalidates any FAISS file on disk: bump the generation so a crash before the save
        # below can never pair the old file with the new projection.
        self._store.set_meta(replace(meta, projection=projection.to_bytes(), projection_name=projection.name,
                                     dim=projection.out_dim, index_trained_n=total, generation=meta.generation + 1))
        self._index, self._projection = index, projection
        logger.info("rebuilt %s over %d vectors (%s, searched on %s)", FAISS_NAME, total, index.describe(),
                    index.search_device)
        self._save_index()

    def _save_index(self) -> None:
        meta = self._store.meta()
        assert meta is not None and self._index is not None
        self._index.save(self.location / FAISS_NAME, generation=meta.generation)
        self._index_generation = meta.generation
