"""What a query's IVF lists cost: the few lists of large corpora, the ``SCAN_MIN_VECTORS`` rule, and every list.

    python benchmarks/speed/exact_scan.py                          # 1,000 to 100,000 vectors
    python benchmarks/speed/exact_scan.py --sizes 10000 1000000    # any sizes

A query's FAISS work is its searches: ``CALLS`` are those of a 30 s probe of footage no library holds (the whole frame,
its mirror and the last step's sample, each searched at the query's 64 neighbours, and some of their seconds again at
256 for the background), recorded from ``Library.query`` on a 20-minute library. At each size an index is built as the
library builds one (``choose_nlist`` lists, k-means on up to 100,000 of the vectors, float16 lists from 100,000 on) from
random unit vectors (a scan costs the same whatever the vectors hold), and the calls are timed with
``choose_nprobe(nlist)``'s few lists, with the lists ``choose_nprobe(nlist, n)`` visits (about ``SCAN_MIN_VECTORS``
vectors; every list up to that size) and with every list, in turn, ``--rounds`` times; the medians are reported. Writes
``benchmarks/results/exact_scan.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

# (probe vectors, neighbours) of each search of a 30 s no-match probe, in order.
CALLS: tuple[tuple[int, int], ...] = ((30, 64), (13, 256), (30, 64), (8, 256), (56, 64), (13, 256))


def run(sizes: list[int], rounds: int, seed: int = 0) -> list[dict[str, Any]]:
    """Median milliseconds of ``CALLS`` per size: few lists, the shipped rule's, every list."""
    from sora_search.index import VectorIndex, choose_nlist, choose_nprobe

    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        corpus = rng.standard_normal((n, 256)).astype(np.float32)
        corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
        # As the library builds it: trained on at most 100,000 vectors, lists encoded for the corpus size.
        index = VectorIndex.build(256, corpus[:100_000], nlist=choose_nlist(n), expected_n=n)
        index.add(np.arange(n, dtype=np.int64), corpus)
        queries = [(corpus[rng.choice(n, m)] + 0.05 * rng.standard_normal((m, 256)).astype(np.float32), min(k, n))
                   for m, k in CALLS]
        settings = {"few": choose_nprobe(index.nlist), "rule": choose_nprobe(index.nlist, n), "every": index.nlist}
        times: dict[str, list[float]] = {name: [] for name in settings}
        for _ in range(rounds):
            for name, nprobe in settings.items():
                index.nprobe = nprobe
                start = time.perf_counter()
                for q, k in queries:
                    index.search(q, k)
                times[name].append(time.perf_counter() - start)
        row: dict[str, Any] = {"vectors": n, "nlist": index.nlist}
        for name, nprobe in settings.items():
            row[f"nprobe_{name}"] = nprobe
            row[f"{name}_ms"] = round(1000 * float(np.median(times[name])), 2)
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 2500, 5000, 10000, 20000, 50000, 100000])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/exact_scan.json"))
    args = ap.parse_args(argv)
    rows = run(args.sizes, args.rounds)
    print(f"{'vectors':>8} {'lists':>6} {'few lists':>16} {'rule':>16} {'every list':>11}   "
          "(a 30 s no-match probe's FAISS calls; nprobe in brackets)")
    for r in rows:
        print(f"{r['vectors']:>8} {r['nlist']:>6} {r['few_ms']:>8.1f} ms ({r['nprobe_few']:>3}) "
              f"{r['rule_ms']:>8.1f} ms ({r['nprobe_rule']:>3}) {r['every_ms']:>8.1f} ms")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"calls": CALLS, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
