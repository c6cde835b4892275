"""What visiting every IVF list costs a query, at the corpus sizes where the index does (``EXACT_MAX_VECTORS``).

    python benchmarks/speed/exact_scan.py                        # 1,000 to 10,000 vectors
    python benchmarks/speed/exact_scan.py --sizes 10000 40000    # past the limit, before a retrain

A query's FAISS work is its searches: ``CALLS`` are those of a 30 s probe of footage no library holds (the whole frame,
its mirror and the last step's sample, each searched at the query's 64 neighbours, and some of their seconds again at
256 for the background), recorded from ``Library.query`` on a 20-minute library. At each size an index is built as the
library builds one (``choose_nlist`` lists, k-means on the corpus) from random unit vectors (a scan costs the same
whatever the vectors hold), and the calls are timed with every list visited and with ``choose_nprobe``'s few,
alternating, ``--rounds`` times; the medians are reported. Writes ``benchmarks/results/exact_scan.json``.
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
    """Median milliseconds of ``CALLS`` per size, every list against ``choose_nprobe(nlist)``'s."""
    from sora_search.index import VectorIndex, choose_nlist, choose_nprobe

    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        corpus = rng.standard_normal((n, 256)).astype(np.float32)
        corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
        index = VectorIndex.build(256, corpus, nlist=choose_nlist(n))
        index.add(np.arange(n, dtype=np.int64), corpus)
        queries = [(corpus[rng.choice(n, m)] + 0.05 * rng.standard_normal((m, 256)).astype(np.float32), min(k, n))
                   for m, k in CALLS]
        few, every = choose_nprobe(index.nlist), index.nlist
        times: dict[int, list[float]] = {few: [], every: []}
        for _ in range(rounds):
            for nprobe in (few, every):
                index.nprobe = nprobe
                start = time.perf_counter()
                for q, k in queries:
                    index.search(q, k)
                times[nprobe].append(time.perf_counter() - start)
        out.append({"vectors": n, "nlist": index.nlist, "nprobe_few": few,
                    "few_ms": round(1000 * float(np.median(times[few])), 2),
                    "every_list_ms": round(1000 * float(np.median(times[every])), 2)})
    return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 2500, 5000, 10000])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/exact_scan.json"))
    args = ap.parse_args(argv)
    rows = run(args.sizes, args.rounds)
    print(f"{'vectors':>8} {'lists':>6} {'few lists':>12} {'every list':>12}   (a 30 s no-match probe's FAISS calls)")
    for r in rows:
        print(f"{r['vectors']:>8} {r['nlist']:>6} {r['few_ms']:>9.1f} ms {r['every_list_ms']:>9.1f} ms   "
              f"(nprobe {r['nprobe_few']} / {r['nlist']})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"calls": CALLS, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
