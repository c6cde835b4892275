"""The FAISS file's life beside its store: load, follow every store change, retrain as the corpus grows, save.

The store is the truth. The in-memory index follows each change the store commits, and is saved with a
:class:`Stamp` that ties the file to its store: the index's random id, the digest of the projection its vectors went
through, and the store generation it reflects. A file that is only behind the store (a run is going on, or was
killed before its save) is brought up to date from the stored vectors, so a query always answers from exactly what
is committed. Nothing is searched through a file whose id or projection differ from the store's: a writer (holding
the write lock) rebuilds such a file on disk, through the store's projection, without decoding; a reader builds the
same index in memory and says so once.

Retraining refits the projection and the IVF on the stored vectors once the corpus has grown ``retrain_growth``
times, or when region vectors arrive that the projection has no mean for (:meth:`IndexKeeper.finish`). The new file
is written before the store switches to the new projection: a crash in between leaves a file whose projection digest
the store does not have, which is then rebuilt, never searched.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sora_search._faults import fault_point
from sora_search.errors import EmptyIndex, SoraSearchError
from sora_search.params import IndexParams

if TYPE_CHECKING:
    from sora_search.encoder import Projection
    from sora_search.index.vectors import VectorIndex
    from sora_search.store import IndexMeta, Store

logger = logging.getLogger(__name__)

FAISS_NAME = "vectors.faiss"
# Stored seconds whose region vectors are averaged for the projection's region mean: a mean, so a sample does.
REGION_MEAN_SAMPLE = 20_000


@dataclass(frozen=True)
class IndexDescription:
    """What ``info`` says of the FAISS file: its type (or why there is none), lists, probes and size in bytes."""

    kind: str
    nlist: int = 0
    nprobe: int = 0
    nbytes: int = 0


@dataclass(frozen=True)
class Stamp:
    """What ties a FAISS file to its store: the index id, the projection's digest, the store generation."""

    index_uid: str
    projection: str
    generation: int

    @classmethod
    def of(cls, meta: IndexMeta, projection: bytes | None = None, generation: int | None = None) -> Stamp:
        """The stamp a file built from ``meta`` (or from another projection, at another generation) carries."""
        blob = meta.projection if projection is None else projection
        digest = hashlib.sha256(blob).hexdigest()[:16] if blob is not None else ""
        return cls(meta.index_uid, digest, meta.generation if generation is None else generation)

    @classmethod
    def from_header(cls, header: dict[str, Any]) -> Stamp:
        return cls(str(header.get("index_uid", "")), str(header.get("projection", "")), int(header["generation"]))

    def header(self) -> dict[str, str]:
        return {"index_uid": self.index_uid, "projection": self.projection}

    def belongs_to(self, meta: IndexMeta) -> str | None:
        """Why a file with this stamp cannot serve ``meta``'s store, or None when it can (maybe behind it)."""
        expected = Stamp.of(meta)
        if not self.index_uid:
            return "it was written by an older sora-search, before files carried their index's id"
        if self.index_uid != expected.index_uid:
            return "it belongs to another index"
        if self.projection != expected.projection:
            return "it was built with another projection (a retrain was interrupted)"
        if self.generation > expected.generation:
            return f"it is ahead of the store (generation {self.generation} > {expected.generation})"
        return None


class IndexKeeper:
    """Keeps ``location/vectors.faiss`` in step with ``store``.

    Args:
        location: the index folder.
        store: its store.
        params: projection and retraining knobs.
        device: the device setting (argument, else ``$SORA_SEARCH_DEVICE``: :func:`sora_search.encoder.device_setting`);
            FAISS searches on that GPU when the faiss build can, else on the CPU.
    """

    def __init__(self, location: Path, store: Store, params: IndexParams, device: str | None) -> None:
        self.path = location / FAISS_NAME
        self._store = store
        self._params = params
        self._device = device
        self._index: VectorIndex | None = None
        self._projection: Projection | None = None
        self._serves: Stamp | None = None  # for a reader: the store state the in-memory index answers for
        self._said: set[str] = set()

    @cached_property
    def gpu(self) -> int | None:
        """The GPU FAISS uses, or None for the CPU.

        Raises:
            EncoderError: a malformed device setting.
        """
        from sora_search.encoder import device_setting
        from sora_search.index.gpu import faiss_gpu_for

        return faiss_gpu_for(device_setting(self._device)[0])

    @property
    def search_device(self) -> str:
        return "cpu" if self.gpu is None else f"cuda:{self.gpu}"

    def _load(self) -> tuple[VectorIndex, Stamp] | str:
        """The FAISS file and its stamp, or why it cannot be read."""
        from sora_search.index.vectors import VectorIndex

        try:
            index, header = VectorIndex.read(self.path)
        except SoraSearchError as exc:
            return str(exc).split(";")[0]
        return index, Stamp.from_header(header)

    def _say_once(self, message: str) -> None:
        if message not in self._said:
            self._said.add(message)
            logger.warning("%s", message)

    # ------------------------------------------------------------------ writers (hold the write lock)
    def open_for_write(self) -> None:
        """Load the FAISS file to follow the store's changes: one that is only behind the store is brought up to date
        from the stored vectors; any other is rebuilt through the store's projection (no refit, no decoding)."""
        from sora_search.encoder import Projection

        if self._index is not None:
            return
        meta = self._store.meta()
        if meta is None or meta.projection is None:
            return  # the first run was stopped before its first save: finish() fits and builds
        projection = Projection.from_bytes(meta.projection)
        loaded = self._load()
        why = loaded if isinstance(loaded, str) else loaded[1].belongs_to(meta)
        if why is None:
            assert not isinstance(loaded, str)
            index = loaded[0]
            self._catch_up(index, projection)
        else:
            logger.warning("rebuilding %s from the stored vectors: %s", self.path.name, why)
            index, _ = self._build(projection)
            self._save(index, Stamp.of(meta))
        index.use_gpu(self.gpu)
        self._index, self._projection = index, projection

    def remove(self, id_arrays: list[np.ndarray]) -> None:
        """Drop vectors the store no longer holds. id_arrays: (n,) int64 arrays of store vector ids."""
        ids = np.concatenate([np.asarray(a, dtype=np.int64) for a in id_arrays]) if id_arrays else np.empty(0)
        if len(ids) and self._index is not None:
            self._index.remove(ids.astype(np.int64))

    def add(self, ids: np.ndarray, raw: np.ndarray) -> None:
        """Add newly stored vectors: ids (n,) int64, raw (n, raw_dim) float32 (projected here)."""
        if self._index is not None and self._projection is not None:
            self._index.add(ids, self._projection.apply(raw))

    def finish(self, *, refit: bool = False) -> None:
        """Retrain if asked to (``refit``), if the corpus outgrew the index (or there is none yet), or if the store
        now keeps region vectors that the projection has no mean for (an index from before schema 0003); then save
        at the store's generation."""
        meta = self._store.meta()
        assert meta is not None
        total = self._store.vector_count()
        if total == 0:
            return
        if refit or self._index is None or self._projection is None \
                or total > self._params.retrain_growth * max(1, meta.index_trained_n) \
                or (self._projection.region_mean is None and self._store.region_vector_count() > 0):
            self.rebuild()
        else:
            self._save(self._index, Stamp.of(meta))

    def checkpoint(self) -> None:
        """Save the file as it stands, never retraining: a run's periodic saves come on a clock, and what an index
        is fitted on must not depend on how fast it was built (only :meth:`finish`, at the end of a run, retrains)."""
        meta = self._store.meta()
        if self._index is not None and meta is not None:
            self._save(self._index, Stamp.of(meta))

    def rebuild(self) -> None:
        """Refit the projection and retrain the IVF on the stored vectors, add them all (no decoding), save the file,
        and only then switch the store to the new projection."""
        meta = self._store.meta()
        assert meta is not None
        total = self._store.vector_count()
        if total == 0:
            return
        index, projection = self._build(None)
        blob = projection.to_bytes()
        # The file first: until the store names its projection, no reader pairs it with the old one, and a crash
        # here leaves a file that is rebuilt rather than searched.
        generation = meta.generation + 1
        self._save(index, Stamp.of(meta, blob, generation))
        fault_point("retrain")
        self._store.set_meta(replace(meta, projection=blob, projection_name=projection.name, dim=projection.out_dim,
                                     index_trained_n=total, generation=generation))
        self._index, self._projection = index, projection
        logger.info("rebuilt %s over %d vectors (%s, searched on %s)", self.path.name, total, index.describe(),
                    index.search_device)

    def repair(self) -> None:
        """Make the FAISS file hold exactly the stored vectors, through the store's projection (fitting one only when
        the first run never got to it): the answers are those of a run that was never interrupted. The index is not
        kept in memory afterwards."""
        self._index = None
        meta = self._store.meta()
        if meta is None or self._store.vector_count() == 0:
            return
        if meta.projection is None:
            self.rebuild()
        else:
            self.open_for_write()
            assert self._index is not None
            self._save(self._index, Stamp.of(meta))
        # The file is the result: let the index go, so the check that reads it back does not hold two copies.
        self._index = self._projection = None

    def adopt_unstamped(self, sample: int = 512) -> str | None:
        """Stamp a FAISS file written before files carried their index's id, if it is exactly the store's: the same
        generation and ids, and a spread sample of stored vectors, projected, found in it as themselves. Such a file
        is kept (its IVF lists unchanged, so are the answers); any other is left for the next writer to rebuild.
        Only with the write lock held. Returns what was done, or None when there was no such file."""
        from sora_search.encoder import Projection

        meta = self._store.meta()
        loaded = self._load()
        if meta is None or meta.projection is None or isinstance(loaded, str) or loaded[1].index_uid:
            return None
        index, stamp = loaded
        stored = self._store.all_vector_ids()
        why = None
        if stamp.generation != meta.generation:
            why = f"it reflects generation {stamp.generation}, the store is at {meta.generation}"
        elif index.dim != meta.dim or not np.array_equal(np.sort(index.ids()), stored):
            why = "it does not hold exactly the stored vectors"
        else:
            spread = np.linspace(0, len(stored) - 1, min(sample, len(stored))).astype(np.int64)
            ids, raw = self._store.vectors_by_id(stored[spread])
            scores, _ = index.search(Projection.from_bytes(meta.projection).apply(raw), 1)
            if len(ids) and float(scores[:, 0].min()) < 0.99:
                why = "its vectors were not made through the store's projection"
        if why is not None:
            return f"{self.path.name} will be rebuilt by the next index run: {why}"
        self._save(index, Stamp.of(meta))
        return f"{self.path.name} kept, stamped with its index id ({index.ntotal} vectors checked against the store)"

    def _build(self, projection: Projection | None) -> tuple[VectorIndex, Projection]:
        """A new IVF index over every stored vector, through ``projection`` (None: fit one on the stored vectors)."""
        from sora_search.encoder import Projection
        from sora_search.index.sizing import MIN_POINTS_PER_LIST, choose_nlist
        from sora_search.index.vectors import VectorIndex

        p = self._params
        total = self._store.vector_count()
        nlist = choose_nlist(total)
        sample = self._store.sample_vectors(max(p.projection_sample, MIN_POINTS_PER_LIST * nlist), seed=0)
        if projection is None:
            # The sample comes in id order (oldest videos first): fit on rows spread across it, not a prefix.
            spread = np.linspace(0, len(sample) - 1, min(len(sample), p.projection_sample)).astype(np.int64)
            meta = self._store.meta()
            assert meta is not None, "the store's identity is written before its first vectors"
            projection = Projection.for_library(sample[spread], meta.encoder_name, kind=p.projection,
                                                out_dim=p.projection_dim, min_vectors=p.pca_min_vectors)
            projection = replace(projection, region_mean=self._store.mean_regions(REGION_MEAN_SAMPLE, seed=0))
        index = VectorIndex.build(projection.out_dim, projection.apply(sample), nlist=nlist, expected_n=total,
                                  gpu=self.gpu)
        del sample
        for ids, raw in self._store.iter_vectors():
            index.add(ids, projection.apply(raw))
        return index, projection

    def _save(self, index: VectorIndex, stamp: Stamp) -> None:
        index.save(self.path, generation=stamp.generation, stamp=stamp.header())

    def leftovers(self) -> list[Path]:
        """Temporary files of FAISS saves that were killed midway, and PQ lists or re-rank files the FAISS file does
        not name (a save killed before its header was renamed in)."""
        from sora_search.index.compressed import stale_files

        return sorted(self.path.parent.glob(f".{self.path.name}.*.tmp")) + stale_files(self.path)

    def remove_leftovers(self) -> list[str]:
        """Delete :meth:`leftovers`. Only with the write lock held: then no save is in flight. Returns their names."""
        removed = []
        for p in self.leftovers():
            p.unlink(missing_ok=True)
            removed.append(p.name)
            logger.info("deleted %s left by an interrupted save", p.name)
        return removed

    # ------------------------------------------------------------------ readers
    def searchable(self) -> tuple[VectorIndex, Projection]:
        """The index to search, answering for exactly the vectors the store has committed, and its projection.

        Raises:
            EmptyIndex: nothing is stored yet.
        """
        from sora_search.encoder import Projection

        meta = self._store.meta()
        if meta is None or self._store.vector_count() == 0:
            raise EmptyIndex(f"nothing is indexed in {self.path.parent} yet: run `sora-search index PATH` first")
        now = Stamp.of(meta)
        if self._index is not None and self._projection is not None and self._serves == now:
            return self._index, self._projection
        if meta.projection is None:
            self._say_once(f"{self.path.name} is not built yet (the first index run is going on, or was stopped): "
                           "searching the committed vectors from memory")
            index, projection = self._build(None)
        else:
            projection = Projection.from_bytes(meta.projection)
            loaded = self._load()
            why = loaded if isinstance(loaded, str) else loaded[1].belongs_to(meta)
            if why is None:
                assert not isinstance(loaded, str)
                index = loaded[0]
                self._catch_up(index, projection)
            else:
                self._say_once(f"{self.path} is not used ({why}): searching a copy rebuilt in memory from the stored "
                               "vectors; `sora-search check --repair` rebuilds the file")
                index, _ = self._build(projection)
        index.use_gpu(self.gpu)
        self._index, self._projection, self._serves = index, projection, now
        return index, projection

    def _catch_up(self, index: VectorIndex, projection: Projection) -> None:
        """Make ``index`` hold exactly the stored vectors: add those committed since its save, drop removed ones."""
        stored, held = self._store.all_vector_ids(), index.ids()
        gone = np.setdiff1d(held, stored)
        if len(gone):
            index.remove(gone)
        ids, raw = self._store.vectors_by_id(np.setdiff1d(stored, held))
        if len(ids):
            index.add(ids, projection.apply(raw))

    def describe(self) -> IndexDescription:
        """The FAISS file as ``info`` shows it."""
        if not self.path.exists():
            return IndexDescription("none (nothing indexed yet)")
        loaded = self._load()
        if isinstance(loaded, str):
            return IndexDescription(f"unreadable ({loaded})", nbytes=self.path.stat().st_size)
        from sora_search.index.compressed import side_files

        index = loaded[0]
        nbytes = sum(p.stat().st_size for p in [self.path, *side_files(self.path)])
        return IndexDescription(index.describe(), index.nlist, index.nprobe, nbytes)

    def problems(self) -> tuple[list[str], list[str], int]:
        """How the FAISS file disagrees with the store: (problems, notes, vectors the file holds).

        A file that is only behind the store, or not built yet, is a note, not a problem: queries search what is
        committed from memory and the next index run saves it.
        """
        meta = self._store.meta()
        stored = self._store.all_vector_ids()
        name = self.path.name
        if not len(stored) and not self.path.exists():
            return [], [], 0
        if meta is None or meta.projection is None:
            return [], [f"no {name} yet for the {len(stored)} stored vectors (the first index run was stopped): "
                        "queries search them from memory, and the next index run builds it"], 0
        loaded = self._load()
        if isinstance(loaded, str):
            return [loaded], [], 0
        index, stamp = loaded
        why = stamp.belongs_to(meta)
        if why is not None:
            return [f"{name} is not used: {why}"], [], index.ntotal
        problems: list[str] = []
        if index.dim != meta.dim:
            problems.append(f"{name} holds {index.dim}-d vectors, the projection gives {meta.dim}-d")
        held = index.ids()
        uniq, counts = np.unique(held, return_counts=True)
        if int((counts > 1).sum()):
            problems.append(f"{int((counts > 1).sum())} ids appear more than once in {name}")
        if stamp.generation < meta.generation:
            return problems, [f"{name} is behind the store by {meta.generation - stamp.generation} commits (an index "
                              "run is going on or was stopped): queries add what it lacks in memory, and the next "
                              "index run saves it"], len(held)
        missing, extra = np.setdiff1d(stored, uniq), np.setdiff1d(uniq, stored)
        if len(missing):
            problems.append(f"{len(missing)} stored vectors are missing from {name}")
        if len(extra):
            problems.append(f"{name} holds {len(extra)} ids with no stored vector")
        return problems, [], len(held)
