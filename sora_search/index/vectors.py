"""The FAISS vector index: IVF over inner product (float32 lists, or float16 for large corpora), keyed by the
store's vector ids.

The index is derived data: :class:`sora_search.store.Store` is the source of truth and the index can always be
rebuilt from ``Store.iter_vectors()``. Ids are the store's vector primary keys, added with ``add_with_ids``
directly on the IVF index (no IDMap2 wrapper: IVF keeps ids in its inverted lists and ``remove_ids`` works on
it directly). The file it is saved in is described in :mod:`sora_search.index.fileformat`.

On a machine with a GPU build of faiss (``faiss-gpu-cu12`` in place of ``faiss-cpu``), :meth:`VectorIndex.use_gpu`
moves searching to a GPU copy of the index and :meth:`VectorIndex.build` runs the IVF's k-means there; the CPU
index stays the one that is added to, removed from and saved, so the file format and every other path are the
same with or without a GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sora_search.index import fileformat
from sora_search.index.gpu import GPU_MAX_K, check_gpu, faiss, gpu_clone
from sora_search.index.sizing import ENCODINGS, choose_encoding, choose_nlist, choose_nprobe


def _as_vectors(x: np.ndarray, dim: int, name: str) -> np.ndarray:
    arr = np.ascontiguousarray(x, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"{name} must be (n, {dim}) float32, got shape {np.shape(x)}")
    return arr


def _as_ids(ids: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(ids, dtype=np.int64)
    if arr.ndim != 1:
        raise ValueError(f"ids must be (n,) int64, got shape {np.shape(ids)}")
    return arr


class VectorIndex:
    """An IVF inner-product FAISS index (IVF-Flat, or IVF-SQfp16) whose ids are the store's vector ids.

    With L2-normalised vectors the scores are cosine similarities. Build with :meth:`build`, or
    :meth:`load` a saved one. Searches run on the CPU unless :meth:`use_gpu` says otherwise.
    """

    def __init__(self, index: Any, quantizer: Any = None) -> None:
        self._index = index
        # Keeps a quantizer that the IVF index borrows (built here) alive as long as the index.
        self._quantizer = quantizer
        self._gpu: int | None = None
        self._gpu_index: Any = None  # made at the first search after use_gpu or a change; see _searcher

    @classmethod
    def build(cls, dim: int, train: np.ndarray, *, nlist: int | None = None, expected_n: int | None = None,
              encoding: str | None = None, gpu: int | None = None) -> VectorIndex:
        """Train an empty IVF (inner product) index.

        Args:
            dim: vector dimension.
            train: (n, dim) float32 training vectors (n >= nlist; a sample of the corpus is enough).
            nlist: number of lists; default :func:`choose_nlist` of n.
            expected_n: size of the corpus the index is built for, when ``train`` is only a sample of it; picks
                the encoding (:func:`choose_encoding`).
            encoding: ``"flat"`` (float32) or ``"fp16"``; default ``choose_encoding(expected_n)``.
            gpu: run k-means on this GPU (see :func:`faiss_gpu_for`) and search there (:meth:`use_gpu`).
        """
        fx = faiss()
        x = _as_vectors(train, dim, "train")
        n = x.shape[0]
        if n == 0:
            raise ValueError("cannot train an IVF index on 0 vectors")
        if nlist is None:
            nlist = choose_nlist(n)
        if not 1 <= nlist <= n:
            raise ValueError(f"nlist must be between 1 and the number of training vectors ({n}), got {nlist}")
        if encoding is None:
            encoding = choose_encoding(expected_n)
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
        quantizer = fx.IndexFlatIP(dim)
        if encoding == "fp16":
            index = fx.IndexIVFScalarQuantizer(quantizer, dim, nlist, fx.ScalarQuantizer.QT_fp16,
                                                  fx.METRIC_INNER_PRODUCT)
        else:
            index = fx.IndexIVFFlat(quantizer, dim, nlist, fx.METRIC_INNER_PRODUCT)
        # An explicit nlist may leave fewer than 39 points per list; accept it without faiss's stderr warning.
        index.cp.min_points_per_centroid = 1
        index.cp.seed = 1234
        index.cp.verbose = False
        if gpu is not None:
            check_gpu(gpu)
            # k-means assigns every training vector to its nearest centroid each iteration: that search runs on
            # the GPU; the centroids it finds go to the CPU quantizer as usual.
            clustering = gpu_clone(fx.IndexFlatIP(dim), gpu)
            index.clustering_index = clustering
            try:
                index.train(x)
            finally:
                index.clustering_index = None
            del clustering
        else:
            index.train(x)
        index.nprobe = choose_nprobe(nlist)
        built = cls(index, quantizer)
        built.use_gpu(gpu)
        return built

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    @property
    def nlist(self) -> int:
        return int(self._index.nlist)

    @property
    def nprobe(self) -> int:
        return int(self._index.nprobe)

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if not 1 <= int(value) <= self.nlist:
            raise ValueError(f"nprobe must be between 1 and nlist ({self.nlist}), got {value}")
        self._index.nprobe = int(value)
        self._gpu_index = None

    @property
    def search_device(self) -> str:
        """Where :meth:`search` runs: ``"cpu"`` or ``"cuda:N"``."""
        return "cpu" if self._gpu is None else f"cuda:{self._gpu}"

    def use_gpu(self, gpu: int | None) -> None:
        """Search on GPU ``gpu`` (a faiss GPU build is needed; see :func:`faiss_gpu_for`), or on the CPU with None.

        The GPU holds a copy of the index, made at the next search and again after any add, remove or nprobe
        change; the CPU index stays the one that changes and is saved. A search with k > ``GPU_MAX_K`` runs on the CPU.

        Raises:
            ValueError: faiss cannot use GPU ``gpu``.
        """
        if gpu is not None:
            check_gpu(gpu)
        self._gpu = gpu
        self._gpu_index = None

    def _searcher(self, k: int) -> Any:
        if self._gpu is None or k > GPU_MAX_K or self._index.nprobe > GPU_MAX_K:
            return self._index
        if self._gpu_index is None:
            self._gpu_index = gpu_clone(self._index, self._gpu)
        return self._gpu_index

    @property
    def encoding(self) -> str:
        """``"flat"`` (float32 vectors in the lists) or ``"fp16"``."""
        return "flat" if isinstance(self._index, faiss().IndexIVFFlat) else "fp16"

    def describe(self) -> str:
        """E.g. ``"IVF64,Flat (inner product), nprobe 8"`` or ``"IVF2048,SQfp16 (inner product), nprobe 8"``."""
        kind = "Flat" if self.encoding == "flat" else "SQfp16"
        return f"IVF{self.nlist},{kind} (inner product), nprobe {self.nprobe}"

    def __repr__(self) -> str:
        return f"VectorIndex({self.describe()}, dim {self.dim}, {self.ntotal} vectors)"

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under the given ids.

        Args:
            ids: (n,) int64 store vector ids (FAISS does not check uniqueness; the store guarantees it).
            vectors: (n, dim) float32.
        """
        i = _as_ids(ids)
        x = _as_vectors(vectors, self.dim, "vectors")
        if x.shape[0] != i.shape[0]:
            raise ValueError(f"add got {i.shape[0]} ids for {x.shape[0]} vectors")
        if i.size == 0:
            return
        if (i < 0).any():
            raise ValueError("vector ids must be non-negative (-1 is FAISS's 'no result')")
        self._index.add_with_ids(x, i)
        self._gpu_index = None

    def remove(self, ids: np.ndarray) -> int:
        """Remove vectors by id; unknown ids are ignored. Returns how many were removed. ids: (n,) int64."""
        i = _as_ids(ids)
        if i.size == 0:
            return 0
        removed = int(self._index.remove_ids(i))
        if removed:
            self._gpu_index = None
        return removed

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k nearest vectors by inner product.

        Args:
            queries: (m, dim) float32.
            k: neighbours per query (>= 1).

        Returns:
            (scores (m, k) float32 descending, ids (m, k) int64); missing results have id -1 and score -inf.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = _as_vectors(queries, self.dim, "queries")
        if q.shape[0] == 0:
            return np.zeros((0, k), dtype=np.float32), np.zeros((0, k), dtype=np.int64)
        scores, ids = self._searcher(k).search(q, k)
        scores = np.asarray(scores, dtype=np.float32)
        ids = np.asarray(ids, dtype=np.int64)
        scores[ids < 0] = -np.inf
        return scores, ids

    def ids(self) -> np.ndarray:
        """Every id the index holds, (ntotal,) int64, in inverted-list order (for consistency checks)."""
        fx = faiss()
        ivf = fx.extract_index_ivf(self._index)
        parts = [fx.rev_swig_ptr(ivf.invlists.get_ids(i), ivf.invlists.list_size(i)).copy()
                 for i in range(ivf.nlist) if ivf.invlists.list_size(i)]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)

    def nbytes(self) -> int:
        """Approximate memory held: stored vectors, their ids and the centroids."""
        per_value = 4 if self.encoding == "flat" else 2
        return int(self.ntotal * (self.dim * per_value + 8) + self.nlist * self.dim * 4)

    def save(self, path: str | Path, *, generation: int, stamp: dict[str, str] | None = None) -> None:
        """Write the index atomically, recording the store ``generation`` it reflects and ``stamp`` (strings that
        tie the file to its store: see :class:`sora_search.index.keeper.Stamp`)."""
        if generation < 0:
            raise ValueError(f"generation must be >= 0, got {generation}")
        fx = faiss()
        header = {**(stamp or {}), "generation": int(generation), "ntotal": self.ntotal, "dim": self.dim,
                  "nlist": self.nlist, "nprobe": self.nprobe, "encoding": self.encoding}
        # Streamed to the file: a large index is never serialized whole in memory.
        fileformat.write(path, header, lambda sink: fx.write_index(self._index, fx.PyCallbackIOWriter(sink)))

    @classmethod
    def load(cls, path: str | Path) -> tuple[VectorIndex, int]:
        """Read an index written by :meth:`save`: (index, generation it reflects). See :meth:`read`."""
        index, header = cls.read(path)
        return index, int(header["generation"])

    @classmethod
    def read(cls, path: str | Path) -> tuple[VectorIndex, dict[str, Any]]:
        """Read an index written by :meth:`save`.

        Returns:
            (index, the file's header: ``generation``, the stamp's fields, sizes).

        Raises:
            IndexNotFound: no file at ``path``.
            StoreError: the file is truncated, corrupt or not a sora-search index.
        """
        fx = faiss()
        with fileformat.open_payload(path) as (header, f):
            try:
                index = fx.read_index(fx.PyCallbackIOReader(f.read))
            except RuntimeError as e:
                raise fileformat.corrupt(path, f"faiss could not read it: {e}") from e
        fp16 = isinstance(index, fx.IndexIVFScalarQuantizer) and index.sq.qtype == fx.ScalarQuantizer.QT_fp16
        if not (isinstance(index, fx.IndexIVFFlat) or fp16) or index.metric_type != fx.METRIC_INNER_PRODUCT:
            raise fileformat.corrupt(path, "expected an IVF-Flat or IVF-SQfp16 inner-product index, found "
                                     f"{type(index).__name__}")
        return cls(index), header
