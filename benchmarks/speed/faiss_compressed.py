"""The compressed FAISS index (IVF-PQ re-ranked from float16, built in shards, merged on disk, memory-mapped): build
time, peak RSS, bytes per vector, recall@10 against exact search, single-query p50 warm and cold; optionally
today's kind (``choose_encoding`` below ``PQ_MIN_VECTORS``) on the same vectors, to place the crossover.

Vectors come from ``faiss_scale.py``'s generator (the real PCA-256 descriptors of ``--index`` or ``--media`` as
seeds; see benchmarks/README.md), generated chunk by chunk, each chunk from its own seeded stream (so a shard is
made without the chunks before it, and 10^7 vectors are never all in memory; the same distribution as
``Generator.base``, not the same rows): one pass takes the training sample and streams the exact ground truth (faiss
``contrib.exhaustive_search.knn_ground_truth``), a second encodes the shards. Queries are faiss_scale's held-out
1,000 (half re-encoded copies of base frames, half frames of new clips).

Timed: training on the sample the library would take (``max(100k, 39 nlist)``), encoding ``--shards`` shards one
after another (each could be a worker's), merging them on disk. Then the merged index is read back as
``Library`` would read it (lists and re-rank vectors memory-mapped): recall@10 of the whole query batch, single
queries after a warm-up pass (p50/p95), and cold: the index closed, its files dropped from the page cache with
``posix_fadvise(DONTNEED)`` (no root needed; the nearest to a cold start this can measure), read again and one
query timed, ``--cold`` times.

Run (100k: a few minutes on 2 busy cores)::

    python benchmarks/speed/faiss_compressed.py --index /path/to/idx --n 100000
    python benchmarks/speed/faiss_compressed.py --index IDX --n 10000000 --shards 10 --baseline   # the issue's run

Writes ``benchmarks/results/faiss_compressed-<timestamp>.json`` and prints a summary.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faiss_scale import DIM, K, Generator, load_seeds, recall, rss_bytes  # noqa: E402

from sora_search.index import PQ_MIN_VECTORS, VectorIndex, choose_encoding, choose_nlist, shards  # noqa: E402
from sora_search.index.compressed import side_files  # noqa: E402

CHUNK = 100_000  # rows generated at a time, each chunk from its own random stream
LIBRARY_TRAIN_SAMPLE = 100_000  # IndexParams.projection_sample: what IndexKeeper._build trains on at least


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Stream:
    """Base vectors as ``Generator.base(n)`` makes them, chunk by chunk, without holding them all."""

    def __init__(self, gen: Generator, n: int) -> None:
        self.gen, self.n = gen, n
        self.clips = gen.clips(np.random.default_rng(gen.seed), -(-n // gen.clip_len))

    def chunks(self, lo: int = 0, hi: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids (b,) int64 = row numbers, vectors (b, 256) float32) for rows [lo, hi); lo a multiple of CHUNK."""
        hi = self.n if hi is None else hi
        for start in range(lo, hi, CHUNK):
            rng = np.random.default_rng([self.gen.seed, 1, start // CHUNK])
            i = np.arange(start, min(hi, start + CHUNK))
            v, _ = self.gen.frames(rng, self.clips, i // self.gen.clip_len, (i % self.gen.clip_len).astype(np.float64))
            yield i.astype(np.int64), v


def first_pass(stream: Stream, queries: np.ndarray, sample_n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training sample (sample_n, 256) float32, exact top-K ids of ``queries``), in one pass over the base."""
    import faiss
    from faiss.contrib.exhaustive_search import knn_ground_truth

    rows = np.sort(np.random.default_rng(seed).choice(stream.n, min(sample_n, stream.n), replace=False))
    parts: list[np.ndarray] = []

    def blocks() -> Iterator[np.ndarray]:
        for ids, v in stream.chunks():
            parts.append(v[rows[(rows >= ids[0]) & (rows <= ids[-1])] - ids[0]])
            yield v

    _, truth = knn_ground_truth(queries, blocks(), K, metric_type=faiss.METRIC_INNER_PRODUCT)
    return np.concatenate(parts), truth


def single(index: VectorIndex, queries: np.ndarray, n: int, k: int = K) -> dict[str, float]:
    ms = []
    for q in queries[:n]:
        t0 = time.perf_counter()
        index.search(q[None, :], k)
        ms.append((time.perf_counter() - t0) * 1e3)
    return {"n": n, "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}


def drop_from_cache(paths: list[Path]) -> None:
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def measure_pq(stream: Stream, sample: np.ndarray, queries: np.ndarray, truth: np.ndarray, work: Path,
               args: argparse.Namespace) -> dict[str, Any]:
    n = stream.n
    nlist = args.nlist or choose_nlist(n)
    out: dict[str, Any] = {"nlist": nlist, "shards": args.shards}
    t0 = time.perf_counter()
    trained = shards.train(DIM, sample, expected_n=n, nlist=nlist, pq_m=args.pq_m or None)
    out["train_s"] = time.perf_counter() - t0
    out["peak_rss_after_train"] = peak_rss()
    bounds = [round(n * s / args.shards / CHUNK) * CHUNK for s in range(args.shards)] + [n]
    files = []
    t0 = time.perf_counter()
    for s, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        files.append(work / f"shard{s}.faiss")
        shards.encode_shard(trained, stream.chunks(lo, hi), files[-1])
        print(f"[{n}] shard {s + 1}/{args.shards} encoded", file=sys.stderr, flush=True)
    out["encode_s"] = time.perf_counter() - t0
    out["peak_rss_after_encode"] = peak_rss()
    path = work / "idx" / "vectors.faiss"
    t0 = time.perf_counter()
    index = shards.merge_shards(trained, files, path, generation=1)
    out["merge_s"] = time.perf_counter() - t0
    out["build_s"] = out["train_s"] + out["encode_s"] + out["merge_s"]
    out["describe"] = index.describe()
    for f in files:
        f.unlink()
        Path(f"{f}.f16").unlink()
    del index
    gc.collect()
    sizes = {p.suffix or ".faiss": p.stat().st_size for p in [path, *side_files(path)]}
    out["file_bytes"] = sizes
    out["bytes_per_vector"] = {"lists_and_header": (sizes[".faiss"] + sizes[".ivfdata"]) / n,
                               "rerank_f16": sizes[".f16"] / n, "total": sum(sizes.values()) / n}
    rss0 = rss_bytes()
    index, _ = VectorIndex.read(path)
    out["rss_after_read_delta"] = rss_bytes() - rss0
    out["nprobe"] = index.nprobe
    t0 = time.perf_counter()
    _, found = index.search(queries, K)
    out["batch_s"] = time.perf_counter() - t0
    out["recall_at_10"] = recall(found, truth)
    single(index, queries, len(queries))  # warm-up: every query once
    out["warm"] = single(index, queries, args.single, args.single_k)
    out["rss_after_warm"] = rss_bytes()
    cold = []
    for q in range(args.cold):
        del index
        gc.collect()
        drop_from_cache([path, *side_files(path)])
        t0 = time.perf_counter()
        index, _ = VectorIndex.read(path)
        t1 = time.perf_counter()
        index.search(queries[q:q + 1], K)
        cold.append(((t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3))
    load_ms, query_ms = np.array(cold).T
    out["cold"] = {"n": args.cold, "read_p50_ms": float(np.median(load_ms)),
                   "first_query_p50_ms": float(np.median(query_ms)), "first_query_max_ms": float(query_ms.max())}
    out["peak_rss"] = peak_rss()
    return out


def measure_baseline(stream: Stream, sample: np.ndarray, queries: np.ndarray, truth: np.ndarray, work: Path,
                     args: argparse.Namespace) -> dict[str, Any]:
    """Today's kind for this size (the encoding below the crossover), in memory, as IndexKeeper builds it."""
    n = stream.n
    below = min(n, PQ_MIN_VECTORS - 1)
    t0 = time.perf_counter()
    index = VectorIndex.build(DIM, sample, nlist=args.nlist or choose_nlist(n), expected_n=below)
    for ids, v in stream.chunks():
        index.add(ids, v)
    out: dict[str, Any] = {"encoding": choose_encoding(below), "describe": index.describe(),
                           "build_s": time.perf_counter() - t0}
    path = work / "baseline.faiss"
    index.save(path, generation=1)
    out["bytes_per_vector"] = path.stat().st_size / n
    path.unlink()
    _, found = index.search(queries, K)
    out["recall_at_10"] = recall(found, truth)
    single(index, queries, len(queries))
    out["warm"] = single(index, queries, args.single, args.single_k)
    out["peak_rss"] = peak_rss()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, help="a sora-search index whose stored vectors seed the generator")
    ap.add_argument("--media", type=Path, help="without --index: build one from this media/ folder")
    ap.add_argument("--n", type=int, default=100_000, help="vectors in the index")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--nlist", type=int, default=0, help="lists (default choose_nlist(n))")
    ap.add_argument("--pq-m", type=int, default=0, help="PQ bytes a vector (default choose_pq_m(256) = 32)")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--single", type=int, default=300, help="single queries timed warm")
    ap.add_argument("--single-k", type=int, default=K, help="neighbours a timed single query asks for (a sora-search "
                    "query asks for 64)")
    ap.add_argument("--cold", type=int, default=10, help="cold reads + first query timed")
    ap.add_argument("--baseline", action="store_true", help="also today's kind on the same vectors (in memory)")
    ap.add_argument("--clip-len", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, help="folder for shards and the merged index (default: a temp folder)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results")
    args = ap.parse_args(argv)

    import faiss

    faiss.omp_set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="faiss_compressed-", dir=args.work))
    t_start = time.perf_counter()
    seeds, source = load_seeds(args.index, args.media, args.out)
    gen = Generator(seeds, args.clip_len, args.seed)
    stream = Stream(gen, args.n)
    queries, kind = gen.queries(args.queries, args.n, stream.clips)
    nlist = args.nlist or choose_nlist(args.n)
    t0 = time.perf_counter()
    sample, truth = first_pass(stream, queries, max(LIBRARY_TRAIN_SAMPLE, 39 * nlist), args.seed)
    result: dict[str, Any] = {
        "benchmark": "faiss_compressed", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seeds": source,
        "n": args.n, "queries": args.queries, "k": K, "threads": args.threads, "faiss": faiss.__version__,
        "ground_truth_s": time.perf_counter() - t0, "train_vectors": len(sample),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    print(f"[{args.n}] sample and exact ground truth in {result['ground_truth_s']:.1f}s", file=sys.stderr, flush=True)
    try:
        result["pq"] = measure_pq(stream, sample, queries, truth, work, args)
        if args.baseline:
            result["baseline"] = measure_baseline(stream, sample, queries, truth, work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["total_s"] = time.perf_counter() - t_start
    path = args.out / f"faiss_compressed-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=1))
    p, mib = result["pq"], 1 << 20
    bpv = p["bytes_per_vector"]
    print(f"{args.n:,} vectors, {p['describe']}")
    print(f"  build {p['build_s']:.1f}s (train {p['train_s']:.1f}s on {len(sample):,}, encode {p['encode_s']:.1f}s "
          f"in {p['shards']} shards, merge {p['merge_s']:.1f}s); peak RSS {p['peak_rss'] / mib:.0f} MiB")
    print(f"  bytes/vector: {bpv['lists_and_header']:.1f} lists (+ {bpv['rerank_f16']:.0f} float16 re-rank on disk)")
    print(f"  recall@10 {p['recall_at_10']:.3f}; single query (k={args.single_k}) p50/p95 warm {p['warm']['p50_ms']:.2f}/"
          f"{p['warm']['p95_ms']:.2f} ms; cold: read {p['cold']['read_p50_ms']:.1f} ms + first query "
          f"{p['cold']['first_query_p50_ms']:.2f} ms (p50 of {p['cold']['n']})")
    if "baseline" in result:
        b = result["baseline"]
        print(f"today's kind {b['describe']}: build {b['build_s']:.1f}s, {b['bytes_per_vector']:.0f} bytes/vector, "
              f"recall@10 {b['recall_at_10']:.3f}, single (k={args.single_k}) p50 {b['warm']['p50_ms']:.2f} ms")
    print(f"{result['total_s']:.0f}s total; results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
