"""Interleaved A/B of IVF-Flat (nlist, nprobe) pairs of about equal recall at 1M, on faiss_scale.py's vectors.

Single timings on a shared machine swing 2x; here every round times exact search and each configuration back
to back, and the median of the per-round ratios is reported. Used to pick between 2048/8, 4096/12 and 8192/16
(see ``sora_search.index.choose_nlist``). About 5 minutes on 2 cores::

    python benchmarks/speed/faiss_ab.py --index path/to/idx
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CONFIGS = [(2048, 8), (2048, 12), (4096, 12), (4096, 16), (8192, 16), (8192, 24)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", type=Path, required=True, help="a sora-search index whose vectors seed the generator")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    spec = importlib.util.spec_from_file_location("faiss_scale", HERE / "faiss_scale.py")
    assert spec is not None and spec.loader is not None
    fs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fs)
    import faiss

    faiss.omp_set_num_threads(2)
    out_dir = HERE.parent / "results"
    seeds, _ = fs.load_seeds(args.index, None, out_dir)
    gen = fs.Generator(seeds, 60, 0)
    base, _, clips = gen.base(args.n)
    queries, _ = gen.queries(1000, args.n, clips)
    flat = faiss.IndexFlatIP(fs.DIM)
    flat.add(base)
    _, truth = flat.search(queries, fs.K)
    train = fs.train_sample(base, 0)
    built, build_s = {}, {}
    for nl in sorted({c[0] for c in CONFIGS}):
        t0 = time.perf_counter()
        # Flat lists (encoding pinned): the choice of nlist/nprobe was made on IVF-Flat.
        index = fs.VectorIndex.build(fs.DIM, train, nlist=nl, encoding="flat")
        index.add(np.arange(args.n, dtype=np.int64), base)
        built[nl], build_s[nl] = index, time.perf_counter() - t0
        print(f"built {nl} lists in {build_s[nl]:.1f}s", file=sys.stderr, flush=True)
    ratios: dict[tuple[int, int], list[float]] = {c: [] for c in CONFIGS}
    rec = {}
    for r in range(args.rounds):
        t0 = time.perf_counter()
        flat.search(queries, fs.K)
        t_flat = time.perf_counter() - t0
        for nl, p in CONFIGS:
            built[nl].nprobe = p
            t0 = time.perf_counter()
            _, found = built[nl].search(queries, fs.K)
            ratios[(nl, p)].append(t_flat / (time.perf_counter() - t0))
            rec[(nl, p)] = fs.recall(found, truth)
        print(f"round {r}: " + ", ".join(f"{a}/{b} {ratios[(a, b)][-1]:.1f}x" for a, b in CONFIGS), file=sys.stderr)
    result = {f"{a}/{b}": {"recall_at_10": rec[(a, b)], "speedup_median": float(np.median(ratios[(a, b)])),
                           "speedup_rounds": ratios[(a, b)], "build_s": build_s[a]} for a, b in CONFIGS}
    path = out_dir / f"faiss_ab-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"{'nlist/nprobe':>12} {'recall@10':>9} {'x flat (median)':>15} {'build s':>7}")
    for key, v in result.items():
        print(f"{key:>12} {v['recall_at_10']:>9.3f} {v['speedup_median']:>15.1f} {v['build_s']:>7.1f}")
    print(f"results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
