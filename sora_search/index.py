"""The FAISS vector index: IVF over inner product (float32 lists, or float16 for large corpora), keyed by the
store's vector ids.

The index is derived data: :class:`sora_search.store.Store` is the source of truth and the index can always be
rebuilt from ``Store.iter_vectors()``. Ids are the store's vector primary keys, added with ``add_with_ids``
directly on the IVF index (no IDMap2 wrapper: IVF keeps ids in its inverted lists and ``remove_ids`` works on
it directly).

File format (written atomically: temp file in the same directory, fsync, ``os.replace``, fsync of the
directory)::

    b"SORAIDX1" | u64 little-endian header length | JSON header | faiss.serialize_index bytes

The JSON header holds ``generation`` (the store generation the file reflects), the payload length and its
CRC-32, so truncation and bit rot are detected before FAISS parses anything.

On a machine with a GPU build of faiss (``faiss-gpu-cu12`` in place of ``faiss-cpu``), :meth:`VectorIndex.use_gpu`
moves searching to a GPU copy of the index and :meth:`VectorIndex.build` runs the IVF's k-means there; the CPU
index stays the one that is added to, removed from and saved, so the file format and every other path are the
same with or without a GPU. faiss-cpu (CI, this project's default install) has no GPU support: it searches on CPU.

faiss is imported lazily, so importing this module is cheap.
"""

from __future__ import annotations

import json
import logging
import math
import os
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from sora_search._faults import fault_point
from sora_search.errors import IndexNotFound, StoreError

logger = logging.getLogger(__name__)

_MAGIC = b"SORAIDX1"
_FORMAT_VERSION = 1
# faiss warns (on stderr) below 39 training points per centroid, and k-means is poor there anyway.
MIN_POINTS_PER_LIST = 39
MAX_NLIST = 65536
# From this corpus size on, IVF lists hold float16 vectors (IVF-SQfp16); see choose_encoding.
FP16_MIN_VECTORS = 100_000
ENCODINGS = ("flat", "fp16")
_REPAIR_HINT = "run `sora-search check --repair` to rebuild it from the database"
# faiss's GPU k-selection handles k (and nprobe) up to 2048; a larger k searches the CPU index.
GPU_MAX_K = 2048

_faiss_module: Any = None
# One StandardGpuResources per GPU for the process: each one reserves scratch memory on its device.
_gpu_resources: dict[int, Any] = {}


def _faiss() -> Any:
    """Import faiss once, capping its OpenMP threads at the CPUs this process may use."""
    global _faiss_module
    if _faiss_module is None:
        import faiss

        try:
            available = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            available = os.cpu_count() or 1
        if faiss.omp_get_max_threads() > available:
            faiss.omp_set_num_threads(available)
        _faiss_module = faiss
    return _faiss_module


def faiss_gpu_count() -> int:
    """GPUs the installed faiss can use: 0 with faiss-cpu (built without GPU support) or when none is visible."""
    faiss = _faiss()
    if not hasattr(faiss, "StandardGpuResources"):
        return 0
    try:
        return int(faiss.get_num_gpus())
    except (AttributeError, RuntimeError):
        return 0


def faiss_gpu_for(device: str | None) -> int | None:
    """The GPU FAISS should use for a device setting (the encoder's ``--device``), or None for the CPU.

    ``None`` (auto) takes GPU 0 when the faiss build has GPU support and sees a GPU. ``"cuda"`` / ``"cuda:N"``
    take GPU 0 / N when faiss can use it and otherwise fall back to the CPU (logged, not an error: faiss-cpu is
    the default install, and the encoder may still run on CUDA). ``"cpu"`` keeps FAISS on the CPU.

    Raises:
        ValueError: ``device`` is not ``cpu``, ``cuda`` or ``cuda:N``.
    """
    text = None if device is None else device.strip().lower()
    if text == "cpu":
        return None
    if text is None or text == "cuda":
        gpu = 0
    elif text.startswith("cuda:") and text[5:].isdigit():
        gpu = int(text[5:])
    else:
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'")
    count = faiss_gpu_count()
    if gpu < count:
        return gpu
    if text is not None:
        logger.info("FAISS searches on the CPU although device %r was asked for: %s", device, _gpu_shortfall(count))
    return None


def _gpu_shortfall(count: int) -> str:
    if not hasattr(_faiss(), "StandardGpuResources"):
        return "this faiss build has no GPU support (faiss-cpu); install faiss-gpu-cu12 in its place"
    return f"faiss sees {count} GPU(s)" + (" (no CUDA device is visible)" if count == 0 else "")


def _gpu_clone(index: Any, gpu: int) -> Any:
    """A copy of the CPU ``index`` on GPU ``gpu`` (faiss's own kernels; 64-bit ids as on the CPU)."""
    faiss = _faiss()
    if gpu not in _gpu_resources:
        _gpu_resources[gpu] = faiss.StandardGpuResources()
    options = faiss.GpuClonerOptions()
    if hasattr(options, "use_cuvs"):
        options.use_cuvs = False  # cuVS has no IVF-SQ; one implementation for both encodings
    return faiss.index_cpu_to_gpu(_gpu_resources[gpu], gpu, index, options)


# Lists visited per query at the smallest sizes, and the lists-per-probe ratio above them; see choose_nprobe.
MIN_NPROBE = 8
LISTS_PER_PROBE = 256


def choose_nlist(n: int) -> int:
    """Number of IVF lists for a corpus of ``n`` vectors: ``sqrt(8 * n)`` rounded to a power of two.

    A query costs about ``nlist`` centroid products plus ``nprobe * n / nlist`` scanned vectors; with the 8
    probes :func:`choose_nprobe` uses up to 2048 lists this is smallest at ``nlist = sqrt(8 * n)`` (1024 at
    100k vectors, 2048 at 1M, 8192 at 10M). Capped so every list gets at least 39 training points (below that
    faiss warns and k-means is poor), and at 65536. Non-decreasing in ``n``; 1 for tiny corpora.

    Measured with ``benchmarks/speed/faiss_scale.py`` (vectors generated from real PCA-256 descriptors,
    recall@10 against exact ``IndexFlatIP`` search, 1000 held-out queries, 2 threads; speed-ups are against a
    batched exact search in the same run and swing 2x with machine load, so compare them within a row).
    recall@10 at 1M, IVF-Flat: nlist 1024/2048/4096/8192 with nprobe 8 give 0.982/0.965/0.941/0.924; at equal
    recall (~0.965) 2048 lists with nprobe 8, 4096 with 12 and 8192 with 16 were 13.0x/14.0x/15.1x faster than
    exact search (medians of 5 interleaved rounds), but took 19 s/40 s/67 s to build, and the library trains on
    a 100k sample, 49 points per list at 2048 and 24 at 4096. The former default (``4 * sqrt(n)``: 4096 lists,
    nprobe 256) had recall 1.000 at 1.1x. At 100k, 1024 lists with nprobe 8: 0.990 (512: 0.994, 2048: 0.983).
    """
    if n < 2 * MIN_POINTS_PER_LIST:
        return 1
    target = 2 ** round(math.log2(math.sqrt(MIN_NPROBE * n)))
    cap = 2 ** int(math.floor(math.log2(n // MIN_POINTS_PER_LIST)))
    return int(max(1, min(target, cap, MAX_NLIST)))


def choose_nprobe(nlist: int) -> int:
    """Number of lists to visit per query: ``min(nlist, max(8, nlist // 256))``.

    recall@10 at a fixed nprobe falls as lists get finer and holds roughly where ``nprobe / nlist`` is
    constant: at 1M vectors, 2048 lists with 8 probes give 0.965, 4096 with 16 0.980, 8192 with 32 0.990. The
    floor of 8 keeps small indexes at recall >= 0.98 (100k: 0.990), where extra lists are cheap. At the
    1M default (2048 lists, float16, see :func:`choose_encoding`): recall@10 0.964, 17.7-24.3x faster than
    batched exact search over three runs, 214-280x than single-query exact search (p50 0.46 ms, p95 0.69 ms),
    which meets the 1M target (recall@10 >= 0.95 at >= 20x) only just; nprobe 16 gives 0.991 at 9-13x, and
    nprobe 4 0.910, so 8 is the smallest that keeps recall@10 >= 0.95. Copies of indexed footage are the
    harder queries (0.932 at nprobe 8, 0.983 at 16): their true top 10 are near-ties from one clip.
    """
    if nlist < 1:
        raise ValueError(f"nlist must be >= 1, got {nlist}")
    return int(min(nlist, max(MIN_NPROBE, nlist // LISTS_PER_PROBE)))


def choose_encoding(n: int | None) -> str:
    """How the IVF lists store vectors for a corpus of ``n``: ``"flat"`` (float32) or ``"fp16"`` (float16).

    IVF search is bound by scanning the lists' memory, so halving it speeds search up as well as halving the
    index. Measured with ``benchmarks/speed/faiss_scale.py`` (same run, default nlist, nprobe 8), IVF-Flat
    against IVF-SQfp16: at 1M 986 vs 498 MiB, recall@10 0.965 vs 0.964, 9.6x vs 18.0x faster than batched
    exact search (another run: 18.7x vs 29.8x); at 250k 247 vs 125 MiB, 0.985 vs 0.984, 11.2x vs 16.4x; at
    100k 99 vs 51 MiB, 0.990 vs 0.990, 13.7x vs 21.7x. float16 keeps ~3 significant digits of a cosine, far
    below the gaps between neighbours. 8-bit scalar quantisation (254 MiB at 1M) lost recall (0.927), and PQ64
    or PQ32 with a x16 float32 refine stayed under 0.76. Below FP16_MIN_VECTORS (100k, the smallest size
    measured) float32 is kept: the index is under 100 MiB, a query under 0.1 ms, and scores stay exact.
    ``None`` (size unknown) is ``"flat"``.
    """
    return "fp16" if n is not None and n >= FP16_MIN_VECTORS else "flat"


def _check_gpu(gpu: int) -> None:
    count = faiss_gpu_count()
    if not 0 <= gpu < count:
        raise ValueError(f"faiss cannot use GPU {gpu}: {_gpu_shortfall(count)}")


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


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, chunks: list[bytes | memoryview]) -> None:
    """Write ``chunks`` to ``path`` atomically: temp file in the same directory, fsync, rename, fsync dir."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        fault_point("faiss")
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(target.parent)


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
        faiss = _faiss()
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
        quantizer = faiss.IndexFlatIP(dim)
        if encoding == "fp16":
            index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_fp16,
                                                  faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        # An explicit nlist may leave fewer than 39 points per list; accept it without faiss's stderr warning.
        index.cp.min_points_per_centroid = 1
        index.cp.seed = 1234
        index.cp.verbose = False
        if gpu is not None:
            _check_gpu(gpu)
            # k-means assigns every training vector to its nearest centroid each iteration: that search runs on
            # the GPU; the centroids it finds go to the CPU quantizer as usual.
            clustering = _gpu_clone(faiss.IndexFlatIP(dim), gpu)
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
            _check_gpu(gpu)
        self._gpu = gpu
        self._gpu_index = None

    def _searcher(self, k: int) -> Any:
        if self._gpu is None or k > GPU_MAX_K or self._index.nprobe > GPU_MAX_K:
            return self._index
        if self._gpu_index is None:
            self._gpu_index = _gpu_clone(self._index, self._gpu)
        return self._gpu_index

    @property
    def encoding(self) -> str:
        """``"flat"`` (float32 vectors in the lists) or ``"fp16"``."""
        return "flat" if isinstance(self._index, _faiss().IndexIVFFlat) else "fp16"

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
        faiss = _faiss()
        ivf = faiss.extract_index_ivf(self._index)
        parts = [faiss.rev_swig_ptr(ivf.invlists.get_ids(i), ivf.invlists.list_size(i)).copy()
                 for i in range(ivf.nlist) if ivf.invlists.list_size(i)]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)

    def nbytes(self) -> int:
        """Approximate memory held: stored vectors, their ids and the centroids."""
        per_value = 4 if self.encoding == "flat" else 2
        return int(self.ntotal * (self.dim * per_value + 8) + self.nlist * self.dim * 4)

    def save(self, path: str | Path, *, generation: int) -> None:
        """Write the index atomically, recording the store ``generation`` it reflects."""
        faiss = _faiss()
        if generation < 0:
            raise ValueError(f"generation must be >= 0, got {generation}")
        payload = faiss.serialize_index(self._index)
        view = memoryview(payload).cast("B")
        header = json.dumps(
            {
                "format": _FORMAT_VERSION,
                "generation": int(generation),
                "payload_bytes": len(view),
                "crc32": zlib.crc32(view),
                "ntotal": self.ntotal,
                "dim": self.dim,
                "nlist": self.nlist,
                "nprobe": self.nprobe,
                "encoding": self.encoding,
            },
            sort_keys=True,
        ).encode()
        atomic_write_bytes(path, [_MAGIC, struct.pack("<Q", len(header)), header, view])

    @classmethod
    def load(cls, path: str | Path) -> tuple[VectorIndex, int]:
        """Read an index written by :meth:`save`.

        Returns:
            (index, generation it reflects).

        Raises:
            IndexNotFound: no file at ``path``.
            StoreError: the file is truncated, corrupt or not a sora-search index.
        """
        p = Path(path)
        try:
            data = p.read_bytes()
        except FileNotFoundError as e:
            raise IndexNotFound(f"no FAISS index file at {p}; {_REPAIR_HINT}") from e
        except OSError as e:
            raise StoreError(f"cannot read the FAISS index {p}: {e}; {_REPAIR_HINT}") from e

        def corrupt(why: str) -> StoreError:
            return StoreError(f"the FAISS index {p} is unusable ({why}); {_REPAIR_HINT}")

        if len(data) < len(_MAGIC) + 8 or not data.startswith(_MAGIC):
            raise corrupt("not a sora-search index file")
        (hlen,) = struct.unpack_from("<Q", data, len(_MAGIC))
        start = len(_MAGIC) + 8
        if start + hlen > len(data):
            raise corrupt("truncated header")
        try:
            header = json.loads(data[start : start + hlen])
            generation = int(header["generation"])
            payload_bytes = int(header["payload_bytes"])
            crc = int(header["crc32"])
            fmt = int(header["format"])
        except (ValueError, KeyError, TypeError) as e:
            raise corrupt(f"bad header: {e}") from e
        if fmt != _FORMAT_VERSION:
            raise corrupt(f"file format {fmt}, this sora-search reads {_FORMAT_VERSION}")
        payload = memoryview(data)[start + hlen :]
        if len(payload) != payload_bytes:
            raise corrupt(f"{len(payload)} payload bytes, expected {payload_bytes} (truncated?)")
        if zlib.crc32(payload) != crc:
            raise corrupt("checksum mismatch")
        faiss = _faiss()
        try:
            index = faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8))
        except RuntimeError as e:
            raise corrupt(f"faiss could not read it: {e}") from e
        fp16 = isinstance(index, faiss.IndexIVFScalarQuantizer) and index.sq.qtype == faiss.ScalarQuantizer.QT_fp16
        if not (isinstance(index, faiss.IndexIVFFlat) or fp16) or index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise corrupt(f"expected an IVF-Flat or IVF-SQfp16 inner-product index, found {type(index).__name__}")
        return cls(index), generation
