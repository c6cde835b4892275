"""The FAISS side: a vector index derived from the store, its sizing rules, its file, and its keeper.

    vectors     VectorIndex: IVF over inner product, keyed by the store's vector ids
    compressed  the IVF-PQ kind: re-ranked from float16, lists on disk
    shards      its sharded build: train once, encode shards apart, merge on disk
    rerank      the float16 re-rank vectors by id, memory-mapped
    sizing      how many lists, probes and which encoding for a corpus size
    fileformat  the checked, atomically written file
    gpu         faiss loaded once; which GPU it may use
    keeper      IndexKeeper: load, follow the store, retrain, save, check

Importing this package does not import faiss.
"""

from __future__ import annotations

from sora_search.index.gpu import GPU_MAX_K, faiss_gpu_count, faiss_gpu_for
from sora_search.index.keeper import FAISS_NAME, IndexDescription, IndexKeeper
from sora_search.index.sizing import (FP16_MIN_VECTORS, PQ_MIN_VECTORS, choose_encoding, choose_nlist,
                                      choose_nprobe)
from sora_search.index.vectors import VectorIndex

__all__ = ["FAISS_NAME", "FP16_MIN_VECTORS", "GPU_MAX_K", "PQ_MIN_VECTORS", "IndexDescription", "IndexKeeper",
           "VectorIndex", "choose_encoding", "choose_nlist", "choose_nprobe", "faiss_gpu_count", "faiss_gpu_for"]
