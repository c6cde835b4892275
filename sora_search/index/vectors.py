"""The FAISS vector index: IVF over inner product (float32 lists, float16 for large corpora, product-quantized and
re-ranked from float16 on disk for the largest: :mod:`sora_search.index.compressed`), keyed by the store's vector ids.

The index is derived data: :class:`sora_search.store.Store` is the source of truth and the index can always be
rebuilt from ``Store.iter_vectors()``. Ids are the store's vector primary keys, added with ``add_with_ids``
directly on the IVF index (no IDMap2 wrapper: IVF keeps ids in its inverted lists and ``remove_ids`` works on
it directly). The file it is saved in is described in :mod:`sora_search.index.fileformat`.

On a machine with a GPU build of faiss (``faiss-gpu-cu12`` in place of ``faiss-cpu``), :meth:`VectorIndex.use_gpu`
moves searching to a GPU copy of the index and :meth:`VectorIndex.build` runs the IVF's k-means there; the CPU
index stays the one that is added to, removed from and saved, so the file format and every other path are the
same with or without a GPU. A PQ index always searches on the CPU (its lists are memory-mapped).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sora_search.index import compressed, fileformat
from sora_search.index.gpu import GPU_MAX_K, check_gpu, faiss, gpu_clone
from sora_search.index.rerank import RerankVectors
from sora_search.index.sizing import ENCODINGS, choose_encoding, choose_nlist, choose_nprobe, choose_pq_m


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


def _encoding_of(index: Any) -> str | None:
    """The encoding a faiss index has here, or None when it is none of this package's kinds."""
    fx = faiss()
    if index.metric_type != fx.METRIC_INNER_PRODUCT:
        return None
    if isinstance(index, fx.IndexIVFFlat):
        return "flat"
    if isinstance(index, fx.IndexIVFScalarQuantizer) and index.sq.qtype == fx.ScalarQuantizer.QT_fp16:
        return "fp16"
    if isinstance(index, fx.IndexPreTransform) and isinstance(compressed.ivf_of(index), fx.IndexIVFPQ):
        return "pq"
    return None


class VectorIndex:
    """An IVF inner-product FAISS index (IVF-Flat, IVF-SQfp16, or IVF-PQ re-ranked from float16) whose ids are the
    store's vector ids.

    With L2-normalised vectors the scores are cosine similarities. Build with :meth:`build`, or
    :meth:`load` a saved one. Searches run on the CPU unless :meth:`use_gpu` says otherwise.
    """

    def __init__(self, index: Any, quantizer: Any = None) -> None:
        # A PQ index is held by its PQState (base index, re-rank vectors, delta, tombstones).
        self.pq: compressed.PQState | None = index if isinstance(index, compressed.PQState) else None
        self._index = index.index if self.pq is not None else index
        # Keeps a quantizer that the IVF index borrows (built here) alive as long as the index.
        self._quantizer = quantizer
        self._gpu: int | None = None
        self._gpu_index: Any = None  # made at the first search after use_gpu or a change; see _searcher

    @classmethod
    def build(cls, dim: int, train: np.ndarray, *, nlist: int | None = None, expected_n: int | None = None,
              encoding: str | None = None, gpu: int | None = None, pq_m: int | None = None) -> VectorIndex:
        """Train an empty IVF (inner product) index.

        Args:
            dim: vector dimension.
            train: (n, dim) float32 training vectors (n >= nlist; a sample of the corpus is enough).
            nlist: number of lists; default :func:`choose_nlist` of n.
            expected_n: size of the corpus the index is built for, when ``train`` is only a sample of it; picks
                the encoding (:func:`choose_encoding`).
            encoding: ``"flat"`` (float32), ``"fp16"`` or ``"pq"``; default ``choose_encoding(expected_n)``.
            gpu: run k-means on this GPU (see :func:`faiss_gpu_for`) and search there (:meth:`use_gpu`).
            pq_m: PQ sub-quantizers (bytes a vector), a divisor of ``dim``; default :func:`choose_pq_m`.
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
        if encoding == "pq":
            m = choose_pq_m(dim) if pq_m is None else pq_m
            if m < 1 or dim % m:
                raise ValueError(f"pq_m must divide the dimension {dim}, got {m}")
            index = compressed.untrained(dim, nlist, m)
            quantizer = None
        elif encoding == "fp16":
            index = fx.IndexIVFScalarQuantizer(quantizer, dim, nlist, fx.ScalarQuantizer.QT_fp16,
                                                  fx.METRIC_INNER_PRODUCT)
        else:
            index = fx.IndexIVFFlat(quantizer, dim, nlist, fx.METRIC_INNER_PRODUCT)
        ivf = compressed.ivf_of(index)
        # An explicit nlist may leave fewer than 39 points per list; accept it without faiss's stderr warning.
        ivf.cp.min_points_per_centroid = 1
        ivf.cp.seed = 1234
        ivf.cp.verbose = False
        if gpu is not None:
            check_gpu(gpu)
            # k-means assigns every training vector to its nearest centroid each iteration: that search runs on
            # the GPU; the centroids it finds go to the CPU quantizer as usual.
            clustering = gpu_clone(fx.IndexFlatIP(dim), gpu)
            ivf.clustering_index = clustering
            try:
                index.train(x)
            finally:
                ivf.clustering_index = None
            del clustering
        else:
            index.train(x)
        ivf.nprobe = choose_nprobe(nlist, len(x) if expected_n is None else expected_n)
        if encoding == "pq":
            built = cls(compressed.PQState(index, compressed.serialize(index), RerankVectors(dim)))
        else:
            built = cls(index, quantizer)
        built.use_gpu(gpu)
        return built

    @classmethod
    def from_trained(cls, trained: bytes) -> VectorIndex:
        """An empty PQ index (in memory) from a trained one (:func:`sora_search.index.compressed.train`)."""
        index = compressed.read_bytes(trained)
        return cls(compressed.PQState(index, trained, RerankVectors(int(index.d))))

    @property
    def ntotal(self) -> int:
        return self.pq.ntotal if self.pq is not None else int(self._index.ntotal)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    @property
    def nlist(self) -> int:
        return int(compressed.ivf_of(self._index).nlist)

    @property
    def nprobe(self) -> int:
        return int(compressed.ivf_of(self._index).nprobe)

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if not 1 <= int(value) <= self.nlist:
            raise ValueError(f"nprobe must be between 1 and nlist ({self.nlist}), got {value}")
        if self.pq is not None:
            self.pq.set_nprobe(int(value))
        else:
            self._index.nprobe = int(value)
        self._gpu_index = None

    @property
    def search_device(self) -> str:
        """Where :meth:`search` runs: ``"cpu"`` or ``"cuda:N"``."""
        return "cpu" if self._gpu is None or self.pq is not None else f"cuda:{self._gpu}"

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
        """``"flat"`` (float32 vectors in the lists), ``"fp16"`` or ``"pq"``."""
        if self.pq is not None:
            return "pq"
        return "flat" if isinstance(self._index, faiss().IndexIVFFlat) else "fp16"

    def describe(self) -> str:
        """E.g. ``"IVF64,Flat (inner product), nprobe 8"``, ``"IVF2048,SQfp16 (inner product), nprobe 8"`` or
        ``"OPQ32,IVF8192,PQ32 (inner product), nprobe 32, re-ranked x32 from float16, lists on disk"``."""
        if self.pq is not None:
            ivf = self.pq.ivf
            where = "on disk" if self.pq.files is not None else "in memory"
            return (f"{compressed.factory(self.dim, self.nlist, int(ivf.pq.M))} (inner product), nprobe "
                    f"{self.nprobe}, re-ranked x{self.pq.factor} from float16, lists {where}")
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
        if self.pq is not None:
            self.pq.add(i, x)
        else:
            self._index.add_with_ids(x, i)
            self._gpu_index = None
        self._follow_size()

    def remove(self, ids: np.ndarray) -> int:
        """Remove vectors by id; unknown ids are ignored. Returns how many were removed. ids: (n,) int64."""
        i = _as_ids(ids)
        if i.size == 0:
            return 0
        removed = self.pq.remove(i) if self.pq is not None else int(self._index.remove_ids(i))
        if removed:
            self._gpu_index = None
            self._follow_size()
        return removed

    def _follow_size(self) -> None:
        """Visit as many lists as :func:`choose_nprobe` says for the vectors held now: a corpus that grows between
        two trainings visits fewer of its lists, one that shrinks more (an nprobe set by hand lasts until the next
        change)."""
        nprobe = choose_nprobe(self.nlist, self.ntotal)
        if nprobe != self.nprobe:
            self.nprobe = nprobe

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
        if self.pq is not None:
            return self.pq.search(q, k)
        scores, ids = self._searcher(k).search(q, k)
        scores = np.asarray(scores, dtype=np.float32)
        ids = np.asarray(ids, dtype=np.int64)
        scores[ids < 0] = -np.inf
        return scores, ids

    def ids(self) -> np.ndarray:
        """Every id the index holds, (ntotal,) int64, in inverted-list order (for consistency checks)."""
        return self.pq.ids() if self.pq is not None else compressed.list_ids(compressed.ivf_of(self._index))

    def nbytes(self) -> int:
        """Approximate memory held: stored vectors (or PQ codes), their ids and the centroids."""
        if self.pq is not None:
            return self.pq.nbytes()
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
        if self.pq is None:
            # Streamed to the file: a large index is never serialized whole in memory.
            fileformat.write(path, header, lambda sink: fx.write_index(self._index, fx.PyCallbackIOWriter(sink)))
            return
        # Lists and re-rank vectors first, under a new token; the header that names them is renamed in last.
        side, payload = self.pq.write(Path(path))
        fileformat.write(path, {**header, **side}, lambda sink: sink(payload))
        if self.pq.changed:
            # Serve from what was just written: changes held in memory are freed, and the next save of an unchanged
            # index writes only the header.
            self.pq = compressed.load(Path(path), {**header, **side}, memoryview(payload))
            self._index = self.pq.index
        compressed.drop_stale_files(Path(path), [side["ivfdata"], side["rerank"]])

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
            said = header.get("encoding")
            if said == "pq":
                # The PQ payload is the index without its lists (those are on disk): small, read whole.
                state = compressed.load(Path(path), header, memoryview(f.read()))
                found: str | None = _encoding_of(state.index)
                loaded = cls(state) if found == "pq" else None
            else:
                try:
                    index = fx.read_index(fx.PyCallbackIOReader(f.read))
                except RuntimeError as e:
                    raise fileformat.corrupt(path, f"faiss could not read it: {e}") from e
                found = _encoding_of(index)
                loaded = cls(index) if found is not None and found != "pq" and said in (None, found) else None
        if loaded is not None:
            loaded._follow_size()  # a file saved with another rule, or by hand, searches as its size calls for
            return loaded, header
        raise fileformat.corrupt(path, f"its header says {said or 'no'} encoding, faiss found "
                                 f"{found or 'no sora-search index kind'}")
