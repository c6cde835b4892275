"""The public object: ``Library.open(path)``, ``.index(paths)``, ``.query(clip)``, ``.remove(paths)``, ``.info()``,
``.check()``, ``Library.upgrade(path)``.

An index is a folder holding ``sora.db`` (SQLite: videos, raw per-second vectors, the index identity; the source of
truth; or a catalogue on PostgreSQL, ``db=URL``) and ``vectors.faiss`` (FAISS over projected vectors; derived,
rebuildable from the store without decoding). Writers hold ``write.lock`` so two index runs never interleave. The
Library composes the stages and holds no policy of its own:

    index:  scan (what changed?) -> embed (decode, encode, pool) -> store (one transaction per video)
            -> index keeper (FAISS follows the store, retrains, saves)
    query:  embed (views) -> query (k-NN, background, alignment, ranking) -> matches
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sora_search import identity, scan
from sora_search.cluster import embeddings
from sora_search.errors import EmptyIndex, EncoderMismatch, IndexNotFound, VideoError
from sora_search.params import DEFAULT_ENCODER, DEFAULT_FPS, DupesParams, IndexParams, QueryParams
from sora_search.store.catalogue import DB_NAME, Catalogue
from sora_search.store.folder import open_index_store
from sora_search.store.lock import write_lock
from sora_search.types import (CheckReport, DuplicatesProgress, DuplicatesReport, FailedFile, IndexSummary,
                               LibraryInfo, Match, Progress, QueryResult)

if TYPE_CHECKING:
    from sora_search.embed import Embedder
    from sora_search.index import IndexKeeper
    from sora_search.store import Store

logger = logging.getLogger(__name__)

DEFAULT_LOCATION = ".sora-search"
__all__ = ["DB_NAME", "DEFAULT_LOCATION", "Library", "default_location", "write_lock"]

ProgressCallback = Callable[[Progress], None]


def default_location() -> Path:
    """Where the index lives when no path is given: ``$SORA_SEARCH_INDEX``, else ``./.sora-search``."""
    return Path(os.environ.get("SORA_SEARCH_INDEX") or DEFAULT_LOCATION)


class Library:
    """A video library index on disk. Open with :meth:`open`; close with :meth:`close` or a ``with`` block."""

    def __init__(self, location: Path, store: Store, *, encoder_name: str, device: str | None, fps: float,
                 decode_backend: str = "auto", params: IndexParams | None = None, precision: str = "fp32") -> None:
        from sora_search.embed import Embedder
        from sora_search.index import IndexKeeper

        self.location = location
        self.params = params or IndexParams()
        self._store = store
        self.catalogue: Catalogue = store.catalogue
        self._fps = fps
        self._embedder: Embedder = Embedder(encoder_name, device=device, fps=fps,
                                            temporal_radius=self.params.temporal_radius,
                                            decode_backend=decode_backend, precision=precision)
        self._keeper: IndexKeeper = IndexKeeper(location, store, self.params, device)

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def open(cls, path: str | Path | None = None, *, create: bool = True, encoder: str | None = None,
             device: str | None = None, fps: float | None = None, decode_backend: str = "auto",
             params: IndexParams | None = None, db: str | None = None, precision: str | None = None) -> Library:
        """Open the index at ``path`` (default: :func:`default_location`).

        Args:
            create: make a new, empty index if none exists; otherwise raise IndexNotFound.
            encoder: encoder for a new index (default ``sora-lite0``); an existing index keeps its own, and asking
                for a different one raises EncoderMismatch.
            device: ``cpu``, ``cuda`` or ``cuda:N`` (default: ``$SORA_SEARCH_DEVICE``, else CUDA when available).
            fps: sampling rate for a new index (default 1 frame per second); fixed once the index exists.
            decode_backend: ``auto`` (decord, then PyAV), ``decord``, ``pyav``, or ``module:Class`` (a VideoReader).
            params: knobs of index runs (:class:`~sora_search.params.IndexParams`).
            db: where the catalogue (the store) lives: a database URL (``postgresql+psycopg://...``) or SQLite file;
                default ``$SORA_SEARCH_DB``, else ``sora.db`` in the folder, which always holds the FAISS file.
            precision: ``fp32``, ``bf16`` or ``int8`` for a new index (else ``$SORA_SEARCH_PRECISION``, else fp32).
        """
        location = Path(path) if path is not None else default_location()
        store = open_index_store(location, db, create=create)
        meta = store.meta()
        if meta is not None:
            try:
                identity.check_request(meta, location, encoder, fps, precision)
            except EncoderMismatch:
                store.close()
                raise
            encoder, fps = meta.encoder_name, meta.sampling_fps
        chosen = identity.stored_precision(meta) if meta is not None else identity.new_precision(precision)
        return cls(location, store, encoder_name=encoder or DEFAULT_ENCODER, device=device, fps=fps or DEFAULT_FPS,
                   decode_backend=decode_backend, params=params, precision=chosen)

    @staticmethod
    def upgrade(path: str | Path | None = None, db: str | None = None) -> tuple[str, str, str | None]:
        """Upgrade the index at ``path`` (default: :func:`default_location`) to this version's schema; a FAISS file
        from before stamps is kept when it is exactly the store's (:meth:`IndexKeeper.adopt_unstamped`).

        Returns:
            (schema revision before, after, a note or None: what became of an unstamped FAISS file, and how many
            stored seconds an upgrade left without region vectors).

        Raises:
            IndexNotFound: no index there. IndexLocked: an index run is writing it.
        """
        from sora_search.encoder import REGION_ENCODERS
        from sora_search.index import IndexKeeper
        from sora_search.store import Store, upgrade

        location = Path(path) if path is not None else default_location()
        catalogue = Catalogue.resolve(location, db)
        if catalogue.path is not None and not catalogue.path.exists():
            raise IndexNotFound(f"no index at {location}: nothing to upgrade")
        location.mkdir(parents=True, exist_ok=True)
        with write_lock(location, catalogue):
            before, after = upgrade(catalogue)
            with closing(Store.open(catalogue, create=False)) as store:
                notes = [IndexKeeper(location, store, IndexParams(), None).adopt_unstamped()]
                meta, lacking = store.meta(), store.vector_count() - store.region_vector_count()
                if before != after and meta is not None and meta.encoder_name in REGION_ENCODERS and lacking:
                    notes.append(f"{lacking} stored seconds keep no region vectors, so queries skip the region "
                                 "check: `sora-search index --add-regions PATH` encodes their videos again")
        return before, after, "\n".join(n for n in notes if n) or None

    def close(self) -> None:
        self._embedder.close()
        self._store.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ indexing
    def index(self, paths: Sequence[str | Path], *, progress: ProgressCallback | None = None,
              retry_failed: bool = False, follow_links: bool = True, ray: str | None = None,
              add_regions: bool = False) -> IndexSummary:
        """Bring the index up to date with the videos under ``paths`` (files or folders, recursive).

        New files are decoded and encoded, changed files re-encoded, moved files re-pathed without decoding,
        deleted files removed. A file that cannot be decoded is recorded with its reason and the run goes on.

        Args:
            progress: called before (status ``decoding``) and after (``added``, ``updated``, ``failed``) each file
                that is decoded, with a :class:`Progress` (bytes are the ETA basis).
            retry_failed: attempt again files that failed before and have not changed.
            follow_links: follow file symlinks whose target is outside ``paths`` (folder links: never).
            ray: decode and encode on a Ray cluster: ``auto``, ``local`` or an address (:mod:`sora_search.cluster`).
            add_regions: also encode again the unchanged videos under ``paths`` that keep no region vectors (indexed
                before schema 0003 stored them; listed as updated), then refit the projection, so that queries run
                the region check (:mod:`sora_search.query.regions`).

        Raises:
            FileNotFoundError: a path does not exist. IndexLocked: another run is writing this index.
            StoreError: the store is damaged (nothing is written to it). ClusterError: Ray cannot be used.
        """
        started = time.monotonic()
        self._embedder.timings.clear()
        with write_lock(self.location, self.catalogue):
            self._store.refuse_if_damaged()
            self._keeper.remove_leftovers()
            found = scan.walk(paths, exclude=[self.location], follow_links=follow_links)
            lacking = self._store.videos_without_regions() \
                if add_regions and self._embedder.encoder.region_count else set()
            todo = scan.plan(found, self._store.videos(), [os.path.abspath(p) for p in paths],
                             retry_failed=retry_failed, reencode=lacking)
            identity.ensure(self._store, self.location, self._embedder.encoder_name, self._fps,
                            self._embedder.precision)
            self._keeper.open_for_write()
            for entry, known in todo.moved:
                self._store.move_video(known.id, entry.path, entry.mtime)
            for entry, known in todo.touched:
                self._store.touch_video(known.id, mtime=entry.mtime, size=entry.size)
            if todo.removed:
                self._keeper.remove([self._store.remove_videos([v.id for v in todo.removed])])
            failed = list(todo.problems) + [FailedFile(v.path, v.error or "failed") for v in todo.failed_before]
            changed = {e.path for e, _, _ in todo.changed}
            done = self._embed_and_store(todo.to_encode, changed, progress, ray)
            with self._embedder.timed("index"):
                # Videos encoded again for their regions: the region mean is fitted on all of them.
                self._keeper.finish(refit=any(known.id in lacking for _, _, known in todo.changed))
            summary = IndexSummary(
                added=tuple(p for p, status, _ in done if status == "added"),
                updated=tuple(p for p, status, _ in done if status == "updated"),
                unchanged=tuple(v.path for v in todo.unchanged) + tuple(e.path for e, _ in todo.touched),
                moved=tuple((k.path, e.path) for e, k in todo.moved), removed=tuple(v.path for v in todo.removed),
                failed=tuple(failed) + tuple(f for _, f, _ in done if isinstance(f, FailedFile)),
                vectors_added=sum(n for _, _, n in done), seconds=time.monotonic() - started,
                timings=dict(self._embedder.timings))
            self._store.record_run(summary)
            return summary

    def _embed_and_store(self, work: list[tuple[scan.FileEntry, str]], changed: set[str],
                         progress: ProgressCallback | None, ray: str | None) -> list[tuple[str, str | FailedFile, int]]:
        """Decode, encode and store each file; one file's failure is recorded and the next one goes on. Returns
        (path, ``added`` / ``updated`` / the failure, vectors added) per file. The FAISS file is saved every
        ``save_every_s`` at least, so an interrupted run loses no committed video."""
        timed, p = self._embedder.timed, self.params
        out: list[tuple[str, str | FailedFile, int]] = []
        bytes_total, bytes_done, last_save = sum(e.size for e, _ in work), 0, time.monotonic()
        stream = embeddings(work, self._embedder, timeout_s=p.decode_timeout_s, ray=ray, params=p.ray,
                            decode_workers=p.decode_workers)
        for n, (entry, fp, embed) in enumerate(stream, 1):
            if progress is not None:
                progress(Progress(n - 1, len(work), bytes_done, bytes_total, entry.path, "decoding"))
            try:
                got = embed()
            except VideoError as exc:
                with timed("store"):
                    dropped = self._store.record_failure(path=entry.path, size=entry.size, mtime=entry.mtime,
                                                         fingerprint=fp, error=exc.reason)
                self._keeper.remove([dropped])
                out.append((entry.path, FailedFile(entry.path, exc.reason), 0))
                status, reason = "failed", exc.reason
                logger.info("failed %s: %s", entry.path, exc.reason)
            else:
                info, vectors = got.info, next(iter(got.vectors.values()))
                regions = next(iter(got.regions.values()), None)
                with timed("store"):
                    _, new_ids, old_ids = self._store.add_video(
                        path=entry.path, size=entry.size, mtime=entry.mtime, fingerprint=fp,
                        duration_s=info.duration_s, fps=info.fps, width=info.width, height=info.height,
                        timestamps_s=got.timestamps_s, vectors=vectors, regions=regions)
                with timed("index"):
                    self._keeper.remove([old_ids])
                    self._keeper.add(new_ids, vectors)
                status, reason = ("updated" if entry.path in changed else "added"), ""
                out.append((entry.path, status, len(new_ids)))
            bytes_done += entry.size
            if progress is not None:
                progress(Progress(n, len(work), bytes_done, bytes_total, entry.path, status, reason))
            if time.monotonic() - last_save > self.params.save_every_s:
                with timed("index"):
                    self._keeper.checkpoint()
                last_save = time.monotonic()
        return out

    def remove(self, paths: Iterable[str | Path]) -> list[str]:
        """Drop videos from the index: each path is a stored video or a folder containing some.

        Returns the removed paths. Paths that match nothing are ignored (the caller can compare).
        """
        with write_lock(self.location, self.catalogue):
            roots = [os.path.abspath(p) for p in paths]
            victims = {v.id: v.path for v in scan.under_roots(self._store.videos(), roots)}
            if not victims:
                return []
            self._keeper.remove_leftovers()
            self._keeper.open_for_write()
            self._keeper.remove([self._store.remove_videos(list(victims))])
            self._keeper.finish()
            return sorted(victims.values())

    # ------------------------------------------------------------------ querying
    def query(self, clip: str | Path, *, params: QueryParams | None = None, k: int | None = None,
              min_score: float | None = None, views: str | Sequence[str] | None = None) -> QueryResult:
        """Find library videos that contain ``clip`` or something visually near it.

        Args:
            params: the query's knobs (:class:`~sora_search.params.QueryParams`); ``k``, ``min_score`` and
                ``views`` override its fields of those names.

        A clip that is an indexed video is left out of its own answer, and searched from its stored vectors
        (nothing decoded) when its file is unchanged and ``views`` is ``auto`` or ``fast``.

        A score is the shrunk mean, over the aligned probe seconds, of each second's similarity to the video minus
        its background similarity to the library's next best other videos, each second weighted by how much it
        changed from the one before; the best matches then move by how well the probe's changes and the parts of
        its frames agree with the matched stretch's, and every match but the best loses ``runner_up_gap`` of its
        gap to the best (:mod:`sora_search.query`).

        Raises:
            VideoError: the clip cannot be decoded. EmptyIndex: nothing is indexed yet.
        """
        from sora_search.query import query_clip
        from sora_search.query.text import TextReader, text_checked

        given: dict[str, Any] = {"k": k, "min_score": min_score, "views": views}
        p = replace(params or QueryParams(), **{f: v for f, v in given.items() if v is not None})
        p = replace(p, align=replace(p.align, interval_s=1.0 / self._fps))
        meta = self._store.meta()
        if meta is None or self._store.vector_count() == 0:
            raise EmptyIndex(f"nothing is indexed in {self.location} yet: run `sora-search index PATH` first")
        identity.check_encoder(meta, self.location, self._embedder.encoder_name, self._embedder.precision)
        reader = None if p.text is None else TextReader(p.text)  # before the work: its command may be missing
        index, projection = self._keeper.searchable()
        ranked, searched, indexed = query_clip(clip, self._embedder, self._store, index, projection, p)
        paths = self._store.video_paths(r.video_id for r in ranked)
        matches = tuple(Match(path=paths[r.video_id], score=round(r.score, 4), segments=r.spans, view=r.view,
                              region=None if r.region is None else (r.region.x, r.region.y, r.region.w, r.region.h))
                        for r in ranked)
        if reader is not None:
            matches = text_checked(str(clip), matches, reader)
        return QueryResult(query=str(clip), matches=matches, blank=not searched, indexed=indexed)

    def duplicates(self, *, min_score: float | None = None, keep: str | None = None,
                   params: DupesParams | None = None,
                   progress: Callable[[DuplicatesProgress], None] | None = None) -> DuplicatesReport:
        """Pairs of library videos that share footage, and groups of same-video copies with the one to keep, from
        the stored vectors: nothing is decoded, nothing changed (:mod:`sora_search.query.dupes`). ``min_score`` and
        ``keep`` override the fields of ``params`` (:class:`~sora_search.params.DupesParams`) of those names.

        Raises:
            EmptyIndex: nothing is indexed yet.
        """
        from sora_search.query.dupes import find_duplicates

        if self._store.vector_count() == 0:
            raise EmptyIndex(f"nothing is indexed in {self.location} yet: run `sora-search index PATH` first")
        given: dict[str, Any] = {"min_score": min_score, "keep": keep}
        p = replace(params or DupesParams(), **{f: v for f, v in given.items() if v is not None})
        return find_duplicates(self._store, *self._keeper.searchable(), p, 1.0 / self._fps, progress)

    # ------------------------------------------------------------------ info and consistency
    def info(self) -> LibraryInfo:
        """What is indexed, how, and how big it is. ``extra`` holds ``region_vectors`` (stored seconds with their
        region vectors) and ``region_check`` (whether queries run the region check: the projection has the library's
        region mean)."""
        from sora_search.encoder import Projection

        meta, videos, faiss = self._store.meta(), self._store.videos(), self._keeper.describe()
        indexed = [v for v in videos if v.status == "indexed"]
        projection = Projection.from_bytes(meta.projection) if meta is not None and meta.projection else None
        return LibraryInfo(
            location=str(self.location.absolute()), videos=len(indexed), failed=len(videos) - len(indexed),
            vectors=self._store.vector_count(), duration_s=float(sum(v.duration_s for v in indexed)),
            encoder=meta.encoder_name if meta else self._embedder.encoder_name,
            encoder_version=meta.encoder_version if meta else "",
            raw_dim=meta.raw_dim if meta else 0, dim=meta.dim if meta else 0,
            sampling_fps=meta.sampling_fps if meta else self._fps,
            projection=meta.projection_name if meta else "", index_type=faiss.kind, index_nlist=faiss.nlist,
            index_nprobe=faiss.nprobe, index_bytes=faiss.nbytes, store_bytes=self._store.size_bytes(),
            schema_revision=self._store.revision(), extra={
                "schema_head": self._store.head_revision(), "catalogue": self.catalogue.described,
                "region_vectors": self._store.region_vector_count(),
                "region_check": projection is not None and projection.region_mean is not None},
            index_device=self._keeper.search_device)

    def check(self, *, repair: bool = False) -> CheckReport:
        """Verify that the store is sound and that the FAISS file holds exactly the stored vectors.

        Args:
            repair: rebuild the FAISS file from the stored vectors (no decoding) and delete temporary files left
                by an interrupted save. A damaged SQLite file cannot be repaired this way and is reported.

        Raises:
            IndexLocked: ``repair`` while another process is writing this index.
        """
        keeper = self._keeper
        store_problems, leftovers = self._store.integrity_problems(), keeper.leftovers()
        index_problems, notes, faiss_vectors = keeper.problems()
        problems = store_problems + index_problems + [f"leftover temporary file {p.name} from an interrupted save"
                                                      for p in leftovers]
        repaired: list[str] = []
        if repair and (index_problems or notes or leftovers):
            with write_lock(self.location, self.catalogue):
                repaired += [f"deleted {name}" for name in keeper.remove_leftovers()]
                if (index_problems or notes) and self._store.vector_count():
                    keeper.repair()
                    repaired.append(f"rebuilt {keeper.path.name} from {self._store.vector_count()} stored vectors")
            index_problems, notes, faiss_vectors = keeper.problems()
            problems = store_problems + index_problems
        if store_problems:
            problems.append(f"the {self.catalogue.kind} store itself is damaged: restore a backup of it, or move it "
                            "away and run `sora-search index` again")
        return CheckReport(ok=not problems, problems=tuple(problems), repaired=tuple(repaired), notes=tuple(notes),
                           videos=len(self._store.videos(status="indexed")), vectors=self._store.vector_count(),
                           faiss_vectors=faiss_vectors)
