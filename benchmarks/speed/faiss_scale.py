"""FAISS at scale: build time, memory, latency and recall@10 of the default VectorIndex at 100k and 1M vectors.

Vectors have the structure of real ones: they are generated from the projected (256-d, L2-normalised) descriptors
of a real sora-search index (``--index DIR``; or one is built from ``--media DIR``, the media/ folder that
``benchmarks/fetch_media.sh`` makes).
Ground truth is exact search (``faiss.IndexFlatIP``) over the same vectors, timed in the same run, so every speed
figure is also a ratio against exact search. recall@10 is faiss ``contrib.evaluation.knn_intersection_measure``
(the 10-NN sets' overlap). Search is timed three ways, each against exact search timed the same way: all queries in
one call (which favours exact search: one matrix product), in calls of 20 rows (what ``Library.query`` sends for a
10 s probe seen whole and mirrored), and one query at a time.

Generator (documented in benchmarks/README.md): the real vectors, in store order (per video, in time), are the
*seeds*. Generated vectors come in synthetic *clips* of ``--clip-len`` seconds. A clip starts at a random seed
position and walks forward through the seeds at a random speed (0.5-2 seeds per second), interpolating between
temporal neighbours; it is mixed with one random partner seed (weight 0-0.3: overlays, transitions), shifted by
one clip-wide noise vector (sigma 0.25-0.6) and each frame gets its own small noise (sigma 0.2); then L2. Noise is
half isotropic, half shaped like the seeds' covariance, with unit expected squared norm, so a generated vector's
cosine to its noise-free source is ~1/sqrt(1 + sigma_clip^2 + 0.2^2), 0.84-0.95. Queries are held out: half are
fresh perturbations of random frames of base clips (a re-encoded copy: new frame noise, an extra 0.2 of
"re-encoding" noise, a position between stored frames), half are frames of new clips not in the base (footage
near, but not in, the library).

Run (about 4 minutes on 2 cores; a few GB of RAM at 1M)::

    python benchmarks/speed/faiss_scale.py --index /path/to/idx            # or --media media-cache/media
    python benchmarks/speed/faiss_scale.py --index IDX --sizes 100000 --no-sweep   # quick
    python benchmarks/speed/faiss_scale.py --index IDX --sizes 1000000 --no-sweep --compressed --gpu  # GPU too

With ``--gpu`` (a GPU build of faiss), the default index is built again with k-means on GPU 0 and searched there
(``VectorIndex.use_gpu``); it is timed against exact search on the GPU and against the CPU figures of the run.

Writes ``benchmarks/results/faiss_scale-<timestamp>.json`` and prints tables to stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import sora_search
from sora_search.index import VectorIndex, choose_encoding, choose_nlist, choose_nprobe, faiss_gpu_count

DIM = 256
K = 10
LIBRARY_TRAIN_SAMPLE = 100_000  # Library._rebuild_index trains the IVF on (at most) a 100k sample of the store
# Rows per search call as Library.query sends them: a 10 s probe at 1 fps seen whole and mirrored.
PROBE_BATCH = 20
FRAME_SIGMA = 0.2
REENCODE_SIGMA = 0.2


# ----------------------------------------------------------------------------- real seeds
def load_seeds(index_dir: Path | None, media_dir: Path | None, work_dir: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """(m, 256) float32 L2-normalised real vectors in store order, and where they came from."""
    from sora_search.encoder import Projection

    if index_dir is None:
        if media_dir is None:
            raise SystemExit("give --index DIR (a sora-search index) or --media DIR "
                             "(the media/ folder made by benchmarks/fetch_media.sh)")
        index_dir = work_dir / "real-idx"
        folders = [p for p in (media_dir / "video_real", media_dir / "video_animated") if p.is_dir()] or [media_dir]
        with sora_search.Library.open(index_dir, create=True) as lib:
            lib.index(folders)
    with sora_search.Library.open(index_dir) as lib:
        parts = [raw for _, raw in lib._store.iter_vectors()]
        meta = lib._store.meta()
        stored = Projection.from_bytes(meta.projection) if meta is not None and meta.projection else None
    raw = np.concatenate(parts).astype(np.float32)
    if stored is not None and stored.out_dim == DIM:
        projection, how = stored, f"stored {stored.name}"
    else:
        # Under 1000 vectors the library only centres (704-d); fit the PCA-256 it switches to at 1000.
        projection = Projection.fit(raw, DIM, min_vectors=2)
        how = f"{projection.name} fitted on the stored vectors (index has {stored.name if stored else 'none'})"
    seeds = projection.apply(raw).astype(np.float32)
    return seeds, {"index": str(index_dir), "raw_vectors": int(raw.shape[0]), "raw_dim": int(raw.shape[1]),
                   "projection": how}


# ----------------------------------------------------------------------------- generator
class Generator:
    """Clips of perturbed, interpolated, mixed real vectors; see the module docstring."""

    def __init__(self, seeds: np.ndarray, clip_len: int, seed: int) -> None:
        self.s = seeds.astype(np.float32)
        self.m = seeds.shape[0]
        self.clip_len = clip_len
        self.seed = seed
        cov = np.cov(seeds.T.astype(np.float64))
        lam, vec = np.linalg.eigh(cov)
        lam = np.clip(lam, 0.0, None)
        # Noise covariance 0.5*I/d + 0.5*C/tr(C): E|g|^2 = 1, half of it along directions real vectors vary in.
        self._shape = (vec * np.sqrt(0.5 * lam / lam.sum())).T.astype(np.float32)  # z @ _shape ~ N(0, .5 C/trC)

    def noise(self, rng: np.random.Generator, n: int) -> np.ndarray:
        z1 = rng.standard_normal((n, DIM), dtype=np.float32) * np.float32(math.sqrt(0.5 / DIM))
        z2 = rng.standard_normal((n, DIM), dtype=np.float32) @ self._shape
        return z1 + z2

    def clips(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        return {
            "p0": rng.uniform(0, self.m, n),
            "speed": rng.uniform(0.5, 2.0, n),
            "partner": rng.integers(0, self.m, n),
            "mix": rng.uniform(0.0, 0.3, n).astype(np.float32),
            "sigma": rng.uniform(0.25, 0.6, n).astype(np.float32),
            "offset": self.noise(rng, n),
        }

    def frames(self, rng: np.random.Generator, clips: dict[str, np.ndarray], clip: np.ndarray, t: np.ndarray,
               extra_sigma: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(vectors (n, 256) float32 L2-normalised, cosine to their noise-free source (n,))."""
        pos = clips["p0"][clip] + t * clips["speed"][clip]
        j = np.floor(pos).astype(np.int64)
        f = (pos - j).astype(np.float32)[:, None]
        j %= self.m
        src = (1 - f) * self.s[j] + f * self.s[(j + 1) % self.m]
        src /= np.linalg.norm(src, axis=1, keepdims=True)
        a = clips["mix"][clip][:, None]
        src = (1 - a) * src + a * self.s[clips["partner"][clip]]
        src /= np.linalg.norm(src, axis=1, keepdims=True)
        sigma = math.sqrt(FRAME_SIGMA**2 + extra_sigma**2)
        v = src + clips["sigma"][clip][:, None] * clips["offset"][clip] + np.float32(sigma) * self.noise(rng, len(t))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        return v.astype(np.float32), np.einsum("ij,ij->i", v, src)

    def base(self, n: int, chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        rng = np.random.default_rng(self.seed)
        nclips = -(-n // self.clip_len)
        clips = self.clips(rng, nclips)
        out = np.empty((n, DIM), dtype=np.float32)
        cos = np.empty(n, dtype=np.float32)
        for lo in range(0, n, chunk):
            i = np.arange(lo, min(n, lo + chunk))
            out[i], cos[i] = self.frames(rng, clips, i // self.clip_len, (i % self.clip_len).astype(np.float64))
        return out, cos, clips

    def queries(self, n: int, n_base: int, clips: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Held-out queries: n//2 re-encoded copies of base frames, the rest frames of new clips. And the kinds."""
        rng = np.random.default_rng(self.seed + 1)
        n_copy = n // 2
        frame = rng.integers(0, n_base, n_copy)
        t = (frame % self.clip_len) + rng.uniform(0, 1, n_copy)  # between stored frames
        copies, _ = self.frames(rng, clips, frame // self.clip_len, t, extra_sigma=REENCODE_SIGMA)
        new_clips = self.clips(rng, n - n_copy)
        novel, _ = self.frames(rng, new_clips, np.arange(n - n_copy), rng.uniform(0, self.clip_len, n - n_copy))
        kind = np.array(["copy"] * n_copy + ["novel"] * (n - n_copy))
        return np.concatenate([copies, novel]), kind


# ----------------------------------------------------------------------------- measuring
def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    from faiss.contrib.evaluation import knn_intersection_measure

    return float(knn_intersection_measure(found[:, :K], truth[:, :K]))


def timed_batch(search: Any, queries: np.ndarray, repeat: int = 2) -> tuple[float, np.ndarray]:
    """Best of ``repeat`` wall times for searching the whole batch, and the ids found."""
    best, ids = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        _, ids = search(queries, K)
        best = min(best, time.perf_counter() - t0)
    assert ids is not None
    return best, ids


def timed_probes(search: Any, queries: np.ndarray, size: int = PROBE_BATCH, repeat: int = 2) -> dict[str, float]:
    """Best of ``repeat`` wall times for searching ``queries`` in calls of ``size`` rows, as a query sends them."""
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for lo in range(0, len(queries), size):
            search(queries[lo:lo + size], K)
        best = min(best, time.perf_counter() - t0)
    return {"size": size, "total_s": best, "per_query_ms": best / len(queries) * 1e3}


def single_latency(search: Any, queries: np.ndarray, n: int) -> dict[str, float]:
    times = []
    for q in queries[:n]:
        t0 = time.perf_counter()
        search(q[None, :], K)
        times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1e3
    return {"n": n, "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}


def train_sample(base: np.ndarray, seed: int) -> np.ndarray:
    n = base.shape[0]
    if n <= LIBRARY_TRAIN_SAMPLE:
        return base
    return base[np.sort(np.random.default_rng(seed).choice(n, LIBRARY_TRAIN_SAMPLE, replace=False))]


def build_vector_index(base: np.ndarray, train: np.ndarray, nlist: int,
                       gpu: int | None = None) -> tuple[VectorIndex, float, float]:
    t0 = time.perf_counter()
    # expected_n as Library._rebuild_index should pass it (it trains on a sample of the corpus).
    index = VectorIndex.build(DIM, train, nlist=nlist, expected_n=base.shape[0], gpu=gpu)
    t_train = time.perf_counter() - t0
    ids = np.arange(base.shape[0], dtype=np.int64)
    for lo in range(0, base.shape[0], 200_000):
        index.add(ids[lo:lo + 200_000], base[lo:lo + 200_000])
    return index, t_train, time.perf_counter() - t0 - t_train


def run_size(gen: Generator, n: int, args: argparse.Namespace) -> dict[str, Any]:
    import faiss

    out: dict[str, Any] = {"n": n, "encoding": choose_encoding(n)}
    t0 = time.perf_counter()
    base, cos, clips = gen.base(n)
    queries, kind = gen.queries(args.queries, n, clips)
    out["generate_s"] = time.perf_counter() - t0
    q = np.percentile(cos, [5, 50, 95])
    out["cosine_to_source"] = {"p5": float(q[0]), "p50": float(q[1]), "p95": float(q[2])}
    del clips

    flat = faiss.IndexFlatIP(DIM)
    flat.add(base)
    flat_s, truth = timed_batch(flat.search, queries, repeat=1)
    # Neighbour structure: how close the 10th true neighbour is, and how many ties crowd it.
    dtrue, _ = flat.search(queries[:200], K)
    out["flat"] = {"batch_s": flat_s, "per_query_ms": flat_s / len(queries) * 1e3,
                   "single": single_latency(flat.search, queries, args.single_flat),
                   "probe_batches": timed_probes(flat.search, queries, repeat=1),
                   "true_top1_p50": float(np.median(dtrue[:, 0])), "true_top10_p50": float(np.median(dtrue[:, -1]))}
    del flat, dtrue
    print(f"[{n}] generated in {out['generate_s']:.1f}s, exact search {flat_s:.2f}s / {len(queries)} queries",
          file=sys.stderr, flush=True)

    train = train_sample(base, args.seed)
    copy_rows, novel_rows = kind == "copy", kind == "novel"

    def measure(index: VectorIndex, nprobe: int, repeat: int = 2) -> dict[str, Any]:
        index.nprobe = nprobe
        batch_s, found = timed_batch(index.search, queries, repeat)
        return {"nlist": index.nlist, "nprobe": nprobe, "recall_at_10": recall(found, truth),
                "recall_copy": recall(found[copy_rows], truth[copy_rows]),
                "recall_novel": recall(found[novel_rows], truth[novel_rows]),
                "batch_s": batch_s, "per_query_ms": batch_s / len(queries) * 1e3, "speedup_vs_flat": flat_s / batch_s}

    # Defaults first, in a fresh-ish process state, so the RSS delta is the index's.
    nlist = choose_nlist(n)
    rss0 = rss_bytes()
    index, t_train, t_add = build_vector_index(base, train, nlist)
    rss1 = rss_bytes()
    d = measure(index, choose_nprobe(nlist, n))
    d.update({"describe": index.describe(), "train_vectors": int(train.shape[0]), "train_s": t_train, "add_s": t_add,
              "build_s": t_train + t_add, "index_bytes": index.nbytes(), "rss_delta_bytes": rss1 - rss0,
              "single": single_latency(index.search, queries, args.single)})
    d["single_speedup_vs_flat"] = out["flat"]["single"]["p50_ms"] / d["single"]["p50_ms"]
    d["probe_batches"] = timed_probes(index.search, queries)
    d["probe_batches_speedup_vs_flat"] = out["flat"]["probe_batches"]["total_s"] / d["probe_batches"]["total_s"]
    out["default"] = d
    print(f"[{n}] default {d['describe']}: recall@10 {d['recall_at_10']:.3f}, {d['speedup_vs_flat']:.1f}x flat",
          file=sys.stderr, flush=True)

    sweep: list[dict[str, Any]] = []
    if args.sweep:
        for nl in sorted(set(args.nlist_factors_for(n)) | {nlist}):
            if nl == nlist:
                idx, tt, ta = index, t_train, t_add
            else:
                idx, tt, ta = build_vector_index(base, train, nl)
            # Scanning more than 1/8 of the lists cannot beat exact search 20x (measured): skipped, for a short sweep.
            for p in args.nprobe:
                if p <= max(8, nl // 8):
                    row = measure(idx, p, repeat=1)
                    row["build_s"] = tt + ta
                    sweep.append(row)
                    print(f"[{n}] nlist {nl} nprobe {p}: recall@10 {row['recall_at_10']:.3f}, "
                          f"{row['speedup_vs_flat']:.1f}x flat", file=sys.stderr, flush=True)
            print(f"[{n}] swept nlist {nl}", file=sys.stderr, flush=True)
            if idx is not index:
                del idx
    out["sweep"] = sweep
    del index

    if args.gpu:
        out["gpu"] = measure_gpu(base, train, queries, truth, out, nlist, args)

    if args.compressed and n >= args.compressed_min_n:
        out["compressed"] = compare_compressed(base, train, queries, truth, flat_s, nlist, args)
    return out


def measure_gpu(base: np.ndarray, train: np.ndarray, queries: np.ndarray, truth: np.ndarray, out: dict[str, Any],
                nlist: int, args: argparse.Namespace) -> dict[str, Any]:
    """The default index with k-means and search on GPU 0 (VectorIndex.use_gpu), against exact search on the GPU
    (faiss GpuIndexFlatIP) and against the CPU figures of the same run."""
    import faiss

    res = faiss.StandardGpuResources()
    gflat = faiss.index_cpu_to_gpu(res, 0, faiss.IndexFlatIP(DIM))
    gflat.add(base)
    timed_batch(gflat.search, queries[:10], 1)  # warm-up (kernels, scratch memory)
    gflat_s, gtruth = timed_batch(gflat.search, queries)
    exact = {"batch_s": gflat_s, "per_query_ms": gflat_s / len(queries) * 1e3,
             "recall_vs_cpu_exact": recall(gtruth, truth),
             "single": single_latency(gflat.search, queries, args.single_flat),
             "probe_batches": timed_probes(gflat.search, queries)}
    del gflat
    index, t_train, t_add = build_vector_index(base, train, nlist, gpu=0)
    index.nprobe = choose_nprobe(nlist, len(base))
    t0 = time.perf_counter()
    index.search(queries[:1], K)  # makes the GPU copy
    copy_s = time.perf_counter() - t0
    batch_s, found = timed_batch(index.search, queries)
    single = single_latency(index.search, queries, args.single)
    probes = timed_probes(index.search, queries)
    cpu = out["default"]
    g = {"describe": index.describe(), "search_device": index.search_device, "train_s": t_train, "add_s": t_add,
         "copy_to_gpu_s": copy_s, "recall_at_10": recall(found, truth), "batch_s": batch_s,
         "per_query_ms": batch_s / len(queries) * 1e3, "single": single, "probe_batches": probes,
         "speedup_vs_gpu_flat": gflat_s / batch_s, "speedup_vs_cpu_flat": out["flat"]["batch_s"] / batch_s,
         "speedup_vs_cpu_ivf": cpu["batch_s"] / batch_s,
         "probe_batches_speedup_vs_cpu_ivf": cpu["probe_batches"]["total_s"] / probes["total_s"],
         "train_speedup_vs_cpu": cpu["train_s"] / t_train, "gpu_flat": exact,
         "gpu_name": _gpu_name()}
    print(f"[{len(base)}] GPU {g['describe']}: recall@10 {g['recall_at_10']:.3f}, {g['speedup_vs_gpu_flat']:.1f}x "
          f"GPU flat, {g['speedup_vs_cpu_ivf']:.1f}x CPU IVF", file=sys.stderr, flush=True)
    return g


def _gpu_name() -> str:
    try:
        import torch

        return str(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else "unknown"
    except ImportError:
        return "unknown"


def compare_compressed(base: np.ndarray, train: np.ndarray, queries: np.ndarray, truth: np.ndarray, flat_s: float,
                       nlist: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Candidate compressed IVF types, built with faiss directly (they are not in the public API)."""
    import faiss

    rows = []
    for spec in args.compressed:
        rss0 = rss_bytes()
        t0 = time.perf_counter()
        factory = spec.replace("IVF,", f"IVF{nlist},")
        index = faiss.index_factory(DIM, factory, faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.min_points_per_centroid = 1
        ivf.cp.seed = 1234
        if hasattr(ivf, "do_polysemous_training"):
            ivf.do_polysemous_training = False  # the factory turns it on; it costs minutes and is unused here
        index.train(train)
        t_train = time.perf_counter() - t0
        index.add(base)
        build_s = time.perf_counter() - t0
        rss_delta = rss_bytes() - rss0
        nbytes = len(faiss.serialize_index(index))
        for nprobe in args.compressed_nprobe:
            ivf.nprobe = nprobe
            for k_factor in ([1] if "RFlat" not in factory and "Refine" not in factory else args.k_factor):
                if k_factor > 1:
                    index.k_factor = k_factor
                batch_s, found = timed_batch(index.search, queries)
                print(f"{factory} nprobe {nprobe} kf {k_factor}: recall@10 {recall(found, truth):.3f}, "
                      f"{flat_s / batch_s:.1f}x flat", file=sys.stderr, flush=True)
                rows.append({"factory": factory, "nprobe": nprobe, "k_factor": k_factor, "train_s": t_train,
                             "build_s": build_s, "serialized_bytes": nbytes, "rss_delta_bytes": rss_delta,
                             "recall_at_10": recall(found, truth), "batch_s": batch_s,
                             "per_query_ms": batch_s / len(queries) * 1e3, "speedup_vs_flat": flat_s / batch_s})
        print(f"compared {factory}", file=sys.stderr, flush=True)
        del index, ivf
    return rows


# ----------------------------------------------------------------------------- report
def print_tables(result: dict[str, Any]) -> None:
    mib = 1 << 20
    for size in result["sizes"]:
        n, d, flat = size["n"], size["default"], size["flat"]
        c = size["cosine_to_source"]
        print(f"\n== {n:,} vectors (cosine to source p5/p50/p95 {c['p5']:.2f}/{c['p50']:.2f}/{c['p95']:.2f}; "
              f"true top-1/top-10 score p50 {flat['true_top1_p50']:.2f}/{flat['true_top10_p50']:.2f})")
        print(f"exact IndexFlatIP: {flat['per_query_ms']:.3f} ms/query in a batch of {result['queries']}, "
              f"single p50 {flat['single']['p50_ms']:.2f} ms")
        print(f"default {d['describe']}: build {d['build_s']:.1f}s (train {d['train_s']:.1f}s on "
              f"{d['train_vectors']:,}, add {d['add_s']:.1f}s), index {d['index_bytes'] / mib:.0f} MiB, "
              f"RSS +{d['rss_delta_bytes'] / mib:.0f} MiB")
        print(f"  recall@10 {d['recall_at_10']:.3f} (copies {d['recall_copy']:.3f}, novel {d['recall_novel']:.3f}); "
              f"batch {d['per_query_ms']:.3f} ms/query = {d['speedup_vs_flat']:.1f}x flat; single p50/p95 "
              f"{d['single']['p50_ms']:.2f}/{d['single']['p95_ms']:.2f} ms = {d['single_speedup_vs_flat']:.1f}x flat")
        pb = d["probe_batches"]
        print(f"  in calls of {pb['size']} (one 10 s probe, whole and mirrored): {pb['per_query_ms']:.3f} ms/query "
              f"against exact {flat['probe_batches']['per_query_ms']:.3f} = "
              f"{d['probe_batches_speedup_vs_flat']:.1f}x flat")
        if size.get("gpu"):
            g, gf = size["gpu"], size["gpu"]["gpu_flat"]
            print(f"GPU ({g['gpu_name']}) {g['describe']}: k-means {g['train_s']:.1f}s "
                  f"({g['train_speedup_vs_cpu']:.1f}x the CPU's), add {g['add_s']:.1f}s, copy to GPU "
                  f"{g['copy_to_gpu_s']:.2f}s")
            print(f"  recall@10 {g['recall_at_10']:.3f}; batch {g['per_query_ms']:.4f} ms/query = "
                  f"{g['speedup_vs_gpu_flat']:.1f}x exact search on the GPU ({gf['per_query_ms']:.4f} ms/query), "
                  f"{g['speedup_vs_cpu_ivf']:.1f}x the CPU IVF, {g['speedup_vs_cpu_flat']:.0f}x CPU exact")
            print(f"  single p50/p95 {g['single']['p50_ms']:.2f}/{g['single']['p95_ms']:.2f} ms (GPU exact "
                  f"{gf['single']['p50_ms']:.2f}); calls of {g['probe_batches']['size']}: "
                  f"{g['probe_batches']['per_query_ms']:.4f} ms/query = {g['probe_batches_speedup_vs_cpu_ivf']:.1f}x "
                  f"the CPU IVF")
        if size["sweep"]:
            print(f"{'nlist':>6} {'nprobe':>6} {'recall@10':>9} {'copy':>6} {'novel':>6} {'ms/q':>7} {'x flat':>7} "
                  f"{'build s':>7}")
            for r in size["sweep"]:
                print(f"{r['nlist']:>6} {r['nprobe']:>6} {r['recall_at_10']:>9.3f} {r['recall_copy']:>6.3f} "
                      f"{r['recall_novel']:>6.3f} {r['per_query_ms']:>7.3f} {r['speedup_vs_flat']:>7.1f} "
                      f"{r['build_s']:>7.1f}")
        if size.get("compressed"):
            print(f"{'compressed':<26} {'nprobe':>6} {'kf':>3} {'recall@10':>9} {'ms/q':>7} {'x flat':>7} "
                  f"{'MiB':>6} {'build s':>7}")
            for r in size["compressed"]:
                print(f"{r['factory']:<26} {r['nprobe']:>6} {r['k_factor']:>3} {r['recall_at_10']:>9.3f} "
                      f"{r['per_query_ms']:>7.3f} {r['speedup_vs_flat']:>7.1f} {r['serialized_bytes'] / mib:>6.0f} "
                      f"{r['build_s']:>7.1f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, help="a sora-search index whose stored vectors seed the generator")
    ap.add_argument("--media", type=Path, help="without --index: build one from this media/ folder "
                    "(made by benchmarks/fetch_media.sh)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--single", type=int, default=300, help="single-query latency samples (IVF)")
    ap.add_argument("--single-flat", type=int, default=30, help="single-query latency samples (exact)")
    ap.add_argument("--clip-len", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-sweep", dest="sweep", action="store_false")
    ap.add_argument("--nlist-factor", type=float, nargs="+", default=[0.5, 1.0, 2.0],
                    help="swept nlist values: these multiples of choose_nlist(n)")
    ap.add_argument("--nprobe", type=int, nargs="+", default=[4, 8, 12, 16, 24, 32, 64])
    ap.add_argument("--compressed", nargs="*", default=["IVF,Flat", "IVF,SQfp16", "IVF,SQ8"],
                    help="faiss factory strings (IVF gets the default nlist) compared at the largest size; "
                         "e.g. IVF,PQ64 or IVF,PQ32,RFlat (slow to train: minutes at 1M)")
    ap.add_argument("--compressed-nprobe", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--k-factor", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--gpu", action="store_true",
                    help="also measure the default index on GPU 0 (needs a GPU build of faiss: faiss-gpu-cu12)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results")
    args = ap.parse_args(argv)
    args.compressed_min_n = max(args.sizes)
    if args.gpu and faiss_gpu_count() == 0:
        raise SystemExit("--gpu: faiss sees no GPU (faiss-cpu is installed, or no CUDA device is visible); "
                         "install faiss-gpu-cu12 in place of faiss-cpu on a CUDA machine")

    def nlist_factors_for(n: int) -> list[int]:
        return [max(1, min(int(f * choose_nlist(n)), n // 39)) for f in args.nlist_factor]

    args.nlist_factors_for = nlist_factors_for

    import faiss

    faiss.omp_set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    seeds, source = load_seeds(args.index, args.media, args.out)
    gen = Generator(seeds, args.clip_len, args.seed)
    result: dict[str, Any] = {
        "benchmark": "faiss_scale", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seeds": source,
        "generator": {"clip_len": args.clip_len, "frame_sigma": FRAME_SIGMA, "reencode_sigma": REENCODE_SIGMA,
                      "clip_sigma": [0.25, 0.6], "mix": [0.0, 0.3], "speed": [0.5, 2.0], "seed": args.seed},
        "queries": args.queries, "k": K, "threads": args.threads, "faiss": faiss.__version__,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "sizes": [],
    }
    for n in sorted(args.sizes):
        result["sizes"].append(run_size(gen, n, args))
    result["total_s"] = time.perf_counter() - t_start
    path = args.out / f"faiss_scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=1))
    print_tables(result)
    print(f"\n{result['total_s']:.0f}s total; results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
