"""How big the IVF index is for a corpus: lists, lists visited per query, and how vectors are stored.

The measurements behind each rule are in ``docs/tuning.md`` (``benchmarks/speed/faiss_scale.py`` reproduces them).
"""

from __future__ import annotations

import math

# faiss warns (on stderr) below 39 training points per centroid, and k-means is poor there anyway.
MIN_POINTS_PER_LIST = 39
MAX_NLIST = 65536
# From this corpus size on, IVF lists hold float16 vectors (IVF-SQfp16); see choose_encoding.
FP16_MIN_VECTORS = 100_000
# From this corpus size on, IVF lists hold product-quantized codes re-ranked from float16 (IVF-PQ; see
# choose_encoding): float16 lists win below it, and outgrow 8 GB to build by 10^7 (docs/tuning.md).
PQ_MIN_VECTORS = 5_000_000
# Bytes of PQ code per vector (8-bit sub-quantizers): 32 of the 256 projected dimensions' 512 float16 bytes.
PQ_BYTES = 32
# A PQ search fetches k * RERANK_FACTOR candidates and re-ranks them exactly from their float16 vectors.
RERANK_FACTOR = 32
ENCODINGS = ("flat", "fp16", "pq")
# A query visits at least this many lists, and at least one in this many (from 2,048 lists on); see choose_nprobe.
MIN_NPROBE = 8
LISTS_PER_PROBE = 256
# A query visits enough lists to scan about this many vectors: every list up to this corpus size (about 2.8 hours of
# video), so that its neighbours, and the background it takes from those past the tenth, hardly depend on how k-means
# happened to cut the corpus (docs/tuning.md).
SCAN_MIN_VECTORS = 10_000


def choose_nlist(n: int) -> int:
    """Number of IVF lists for a corpus of ``n`` vectors: ``sqrt(8 * n)`` rounded to a power of two.

    A query costs about ``nlist`` centroid products plus ``nprobe * n / nlist`` scanned vectors; with the 8
    probes :func:`choose_nprobe` uses up to 2048 lists this is smallest at ``nlist = sqrt(8 * n)`` (1024 at
    100k vectors, 2048 at 1M, 8192 at 10M). Capped so every list gets at least 39 training points (below that
    faiss warns and k-means is poor), and at 65536. Non-decreasing in ``n``; 1 for tiny corpora.
    """
    if n < 2 * MIN_POINTS_PER_LIST:
        return 1
    target = 2 ** round(math.log2(math.sqrt(MIN_NPROBE * n)))
    cap = 2 ** int(math.floor(math.log2(n // MIN_POINTS_PER_LIST)))
    return int(max(1, min(target, cap, MAX_NLIST)))


def choose_nprobe(nlist: int, n: int | None = None) -> int:
    """Number of lists to visit per query for a corpus of ``n`` vectors: enough to hold about ``SCAN_MIN_VECTORS`` of
    them (every list up to that size), and at least ``min(nlist, max(8, nlist // 256))`` (``n`` None: the latter).

    recall@10 at a fixed nprobe falls as lists get finer and holds roughly where ``nprobe / nlist`` is constant;
    8 is the smallest that keeps recall@10 >= 0.95 at 1M vectors. A query's scores also rest on the neighbours past
    the tenth (its background), which a few lists of a corpus of thousands miss; scanning that many costs little.
    """
    if nlist < 1:
        raise ValueError(f"nlist must be >= 1, got {nlist}")
    lists = max(MIN_NPROBE, nlist // LISTS_PER_PROBE)
    if n is not None:  # all of them while n <= SCAN_MIN_VECTORS
        lists = max(lists, math.ceil(nlist * SCAN_MIN_VECTORS / max(n, 1)))
    return int(min(nlist, lists))


def choose_encoding(n: int | None) -> str:
    """How the IVF lists store vectors for a corpus of ``n``: ``"flat"`` (float32), ``"fp16"`` (float16) or
    ``"pq"`` (product-quantized, re-ranked from float16 vectors on disk) from ``PQ_MIN_VECTORS`` on.

    IVF search is bound by scanning the lists' memory, so halving it speeds search up as well as halving the
    index; float16 keeps about 3 significant digits of a cosine, far below the gaps between neighbours. Smaller
    corpora keep float32: the index is small, a query fast, and scores exact.
    ``None`` (size unknown) is ``"flat"``.
    """
    if n is not None and n >= PQ_MIN_VECTORS:
        return "pq"
    return "fp16" if n is not None and n >= FP16_MIN_VECTORS else "flat"


def choose_pq_m(dim: int) -> int:
    """Sub-quantizers for ``dim``-d vectors: the largest divisor of ``dim`` up to ``PQ_BYTES`` (32 for 256-d)."""
    return max(m for m in range(1, min(dim, PQ_BYTES) + 1) if dim % m == 0)

