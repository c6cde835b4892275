"""The sharded build of a PQ index: train once on a sample, encode shards independently (each a worker's job, in
any process or machine that has the trained bytes), merge their inverted lists into one on-disk index.

    trained = train(dim, sample, expected_n=n)                       # once
    encode_shard(trained, batches_of_shard_i, "shard-i.faiss")        # per shard, anywhere
    index = merge_shards(trained, ["shard-0.faiss", ...], folder / "vectors.faiss", generation=g)

The merged index is the one :meth:`VectorIndex.read` loads: lists and re-rank vectors memory-mapped. Searching it
gives what an in-memory index made from the same trained bytes and vectors gives: the codes are the same.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from sora_search.index import compressed
from sora_search.index.gpu import faiss
from sora_search.index.rerank import RerankVectors, write_parts
from sora_search.index.sizing import RERANK_FACTOR, choose_nlist
from sora_search.index.vectors import VectorIndex

SHARD_TOKEN = "shard"


def train(dim: int, sample: np.ndarray, *, expected_n: int, nlist: int | None = None,
          pq_m: int | None = None) -> bytes:
    """Train once, for every shard: the serialized trained, empty PQ index for a corpus of ``expected_n``.

    Args:
        dim: vector dimension.
        sample: (n, dim) float32 training vectors, L2-normalised.
        expected_n: corpus size (picks the number of lists when ``nlist`` is None).
        nlist, pq_m: lists and sub-quantizers; default :func:`choose_nlist` and :func:`choose_pq_m`.
    """
    built = VectorIndex.build(dim, sample, nlist=nlist or min(choose_nlist(expected_n), len(sample)),
                              expected_n=expected_n, encoding="pq", pq_m=pq_m)
    assert built.pq is not None
    return built.pq.trained


def encode_shard(trained: bytes, batches: Iterable[tuple[np.ndarray, np.ndarray]], shard: str | Path) -> int:
    """Encode one shard (a worker's job): add (ids (b,) int64, vectors (b, dim) float32) batches to a copy of the
    trained index and write it to ``shard`` (faiss's own format) and its re-rank vectors to ``shard``.f16.
    The shard's float16 vectors are held in memory until it is written. Returns the vectors encoded."""
    shard = Path(shard)
    index = compressed.read_bytes(trained)
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    for ids, x in batches:
        ids64 = np.ascontiguousarray(ids, dtype=np.int64)
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        index.add_with_ids(x32, ids64)
        parts.append((ids64, x32.astype(np.float16)))
    faiss().write_index(index, str(shard))
    write_parts(f"{shard}.f16", int(index.d), SHARD_TOKEN, parts)
    return int(index.ntotal)


def merge_shards(trained: bytes, shards: list[str | Path], path: str | Path, *, generation: int,
                 stamp: dict[str, str] | None = None) -> VectorIndex:
    """Merge shards made by :func:`encode_shard` into one on-disk index at ``path`` and return it, loaded
    memory-mapped. The shards' ids must be disjoint; the shard files may be deleted afterwards."""
    fx = faiss()
    target = Path(path)
    token = secrets.token_hex(8)
    ivfdata, rr = f"{target.name}.{token}.ivfdata", f"{target.name}.{token}.f16"
    target.parent.mkdir(parents=True, exist_ok=True)
    opened = [fx.read_index(str(s), fx.IO_FLAG_MMAP) for s in shards]  # kept alive: the merge reads their lists
    out = compressed.merge_lists(trained, [compressed.ivf_of(i).invlists for i in opened], target.parent / ivfdata)
    payload = compressed.serialize(out)
    dim = int(out.d)
    del out, opened
    compressed.fsync(target.parent / ivfdata)
    vectors = [RerankVectors.open(f"{s}.f16", SHARD_TOKEN) for s in shards]
    write_parts(target.parent / rr, dim, token, [p for v in vectors for p in v.parts()])
    header = {"pq_token": token, "ivfdata": ivfdata, "rerank": rr, "rerank_factor": RERANK_FACTOR}
    index = VectorIndex(compressed.load(target, header, memoryview(payload)))
    index.save(target, generation=generation, stamp=stamp)
    return index
