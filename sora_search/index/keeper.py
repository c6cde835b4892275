"""The FAISS file's life beside its store: load, follow every store change, retrain as the corpus grows, save.

The store is the truth. The in-memory index follows each change the store commits, and is saved with the store
generation it reflects; a file whose generation lags the store is rebuilt from the stored vectors (no decoding).
Retraining refits the projection and the IVF on the stored vectors once the corpus has grown ``retrain_growth``
times since the last training.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sora_search.errors import EmptyIndex, IndexNotFound, SoraSearchError
from sora_search.params import IndexParams

if TYPE_CHECKING:
    from sora_search.encoder import Projection
    from sora_search.index.vectors import VectorIndex
    from sora_search.store import Store

logger = logging.getLogger(__name__)

FAISS_NAME = "vectors.faiss"


@dataclass(frozen=True)
class IndexDescription:
    """What ``info`` says of the FAISS file: its type (or why there is none), lists, probes and size in bytes."""

    kind: str
    nlist: int = 0
    nprobe: int = 0
    nbytes: int = 0


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
        self._generation = -1

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

    # ------------------------------------------------------------------ writers (hold the write lock)
    def open_for_write(self) -> None:
        """Load the FAISS file to follow the store's changes; rebuild it when it lags the store or is unreadable."""
        from sora_search.encoder import Projection
        from sora_search.index.vectors import VectorIndex

        if self._index is not None:
            return
        meta = self._store.meta()
        if meta is None or meta.projection is None:
            return
        self._projection = Projection.from_bytes(meta.projection)
        try:
            index, generation = VectorIndex.load(self.path)
        except SoraSearchError as exc:
            logger.warning("rebuilding %s: %s", self.path, exc)
            index, generation = None, -1
        if index is None or generation != meta.generation or index.ntotal != self._store.vector_count():
            self.rebuild()
            return
        index.use_gpu(self.gpu)
        self._index, self._generation = index, generation

    def remove(self, id_arrays: list[np.ndarray]) -> None:
        """Drop vectors the store no longer holds. id_arrays: (n,) int64 arrays of store vector ids."""
        ids = np.concatenate([np.asarray(a, dtype=np.int64) for a in id_arrays]) if id_arrays else np.empty(0)
        if len(ids) and self._index is not None:
            self._index.remove(ids.astype(np.int64))

    def add(self, ids: np.ndarray, raw: np.ndarray) -> None:
        """Add newly stored vectors: ids (n,) int64, raw (n, raw_dim) float32 (projected here)."""
        if self._index is not None and self._projection is not None:
            self._index.add(ids, self._projection.apply(raw))

    def finish(self) -> None:
        """Retrain if the corpus outgrew the index (or there is none yet), then save at the store's generation."""
        meta = self._store.meta()
        assert meta is not None
        total = self._store.vector_count()
        if total == 0:
            return
        if self._index is None or self._projection is None \
                or total > self._params.retrain_growth * max(1, meta.index_trained_n):
            self.rebuild()
        else:
            self._save()

    def rebuild(self) -> None:
        """Refit the projection and retrain the IVF on the stored vectors, add them all (no decoding), and save."""
        from sora_search.encoder import Projection
        from sora_search.index.sizing import MIN_POINTS_PER_LIST, choose_nlist
        from sora_search.index.vectors import VectorIndex

        meta = self._store.meta()
        assert meta is not None
        total = self._store.vector_count()
        if total == 0:
            return
        p = self._params
        nlist = choose_nlist(total)
        sample = self._store.sample_vectors(max(p.projection_sample, MIN_POINTS_PER_LIST * nlist), seed=0)
        # The sample comes in id order (oldest videos first): fit on rows spread across all of it, not a prefix.
        spread = np.linspace(0, len(sample) - 1, min(len(sample), p.projection_sample)).astype(np.int64)
        projection = Projection.fit(sample[spread], p.projection_dim, min_vectors=p.pca_min_vectors)
        index = VectorIndex.build(projection.out_dim, projection.apply(sample), nlist=nlist, expected_n=total,
                                  gpu=self.gpu)
        del sample
        for ids, raw in self._store.iter_vectors():
            index.add(ids, projection.apply(raw))
        # A new projection invalidates any FAISS file on disk: bump the generation so a crash before the save
        # below can never pair the old file with the new projection.
        self._store.set_meta(replace(meta, projection=projection.to_bytes(), projection_name=projection.name,
                                     dim=projection.out_dim, index_trained_n=total, generation=meta.generation + 1))
        self._index, self._projection = index, projection
        logger.info("rebuilt %s over %d vectors (%s, searched on %s)", self.path.name, total, index.describe(),
                    index.search_device)
        self._save()

    def _save(self) -> None:
        meta = self._store.meta()
        assert meta is not None and self._index is not None
        self._index.save(self.path, generation=meta.generation)
        self._generation = meta.generation

    def leftovers(self) -> list[Path]:
        """Temporary files of FAISS saves that were killed midway."""
        return sorted(self.path.parent.glob(f".{self.path.name}.*.tmp"))

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
        """The index to search and the projection its vectors went through, reloaded when the store moved on.

        Raises:
            EmptyIndex: no FAISS index was ever built for this store.
        """
        from sora_search.encoder import Projection
        from sora_search.index.vectors import VectorIndex

        meta = self._store.meta()
        if meta is None or meta.projection is None:
            raise EmptyIndex(f"the index at {self.path.parent} was never finished: run `sora-search index` again")
        if self._index is None or self._generation != meta.generation:
            projection = Projection.from_bytes(meta.projection)
            try:
                index, generation = VectorIndex.load(self.path)
            except IndexNotFound:
                raise EmptyIndex(f"the index at {self.path.parent} has no FAISS file yet: "
                                 "run `sora-search index` again") from None
            if generation != meta.generation:
                # A writer is mid-run (or died): search what was last saved; ids it no longer knows are dropped.
                logger.info("FAISS file is at generation %d, store at %d", generation, meta.generation)
            index.use_gpu(self.gpu)
            self._index, self._projection, self._generation = index, projection, generation
        assert self._projection is not None
        return self._index, self._projection

    def describe(self) -> IndexDescription:
        """The FAISS file as ``info`` shows it."""
        from sora_search.index.vectors import VectorIndex

        if not self.path.exists():
            return IndexDescription("none (nothing indexed yet)")
        try:
            index, _ = VectorIndex.load(self.path)
        except SoraSearchError as exc:
            return IndexDescription(f"unreadable ({exc})", nbytes=self.path.stat().st_size)
        return IndexDescription(index.describe(), index.nlist, index.nprobe, self.path.stat().st_size)

    def problems(self) -> tuple[list[str], int]:
        """How the FAISS file disagrees with the store, as sentences, and how many vectors it holds."""
        from sora_search.index.vectors import VectorIndex

        meta = self._store.meta()
        stored = self._store.all_vector_ids()
        name = self.path.name
        if not len(stored) and not self.path.exists():
            return [], 0
        if meta is None or meta.projection is None:
            return [f"{len(stored)} vectors are stored but no FAISS index was ever built for them"], 0
        try:
            index, generation = VectorIndex.load(self.path)
        except SoraSearchError as exc:
            return [str(exc).split(";")[0]], 0
        problems = []
        if generation != meta.generation:
            problems.append(f"{name} reflects store generation {generation}, the store is at "
                            f"{meta.generation} (a run was interrupted before saving it)")
        if index.dim != meta.dim:
            problems.append(f"{name} holds {index.dim}-d vectors, the projection gives {meta.dim}-d")
        held = index.ids()
        uniq, counts = np.unique(held, return_counts=True)
        missing, extra, dup = np.setdiff1d(stored, uniq), np.setdiff1d(uniq, stored), int((counts > 1).sum())
        if len(missing):
            problems.append(f"{len(missing)} stored vectors are missing from {name}")
        if len(extra):
            problems.append(f"{name} holds {len(extra)} ids with no stored vector")
        if dup:
            problems.append(f"{dup} ids appear more than once in {name}")
        return problems, len(held)
