"""The sequence check at scale: what it adds to a query against libraries of 10^4 to 10^6 vectors.

    python benchmarks/speed/sequence_scale.py --index benchmarks/results/idx              # seeds from any index
    python benchmarks/speed/sequence_scale.py --index IDX --sizes 20000 --probes 5        # quick

The check runs only when a query's best match is weak. It reads, of each of its ``sequence_candidates`` videos, the
probe's length where that video's hits gather and as much again on either side, so its work should not grow with the
library. This measures that. Libraries are made as ``dupes_scale.py`` makes them (the real descriptors of ``--index``,
walked through in 60 s clips, each its own footage by default, stored as float16; no video is decoded) and grown size by
size, each FAISS index rebuilt from the stored vectors. At each size, ``--probes`` of the library's videos are queried
from their stored vectors (``stored_query``, what a query of an indexed video runs) twice: with the check forced on
every probe (``sequence_below`` 1, ``min_score`` -1 so that every aligned video is ranked) and with it off (0),
alternating, ``--rounds`` times. Reported per size: the median query time of each, the check's share, and the median
time of the check alone (``sequence.winner`` on the same probe and its neighbours).

Writes ``benchmarks/results/sequence_scale-<timestamp>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from dupes_scale import Library, RawGenerator, load_raw_seeds  # noqa: E402

from sora_search.index import IndexKeeper  # noqa: E402
from sora_search.params import DupesParams, IndexParams, QueryParams  # noqa: E402
from sora_search.query.dupes import search_rows, stored_query  # noqa: E402
from sora_search.query.sequence import ProbeView, winner  # noqa: E402


def timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(library: Library, probes: int, rounds: int, seed: int) -> dict[str, Any]:
    """Median stored-query times with the check forced on and off, and of the check alone, over ``probes`` videos."""
    store = library.store
    index, projection = IndexKeeper(library.location, store, IndexParams(), "cpu").searchable()
    # min_score -1 keeps every aligned video (as the accuracy benchmark's ranked lists do), so the check always runs.
    on, off = QueryParams(sequence_below=1.0, min_score=-1.0), QueryParams(sequence_below=0.0, min_score=-1.0)
    videos = store.videos()
    rng = np.random.default_rng(seed)
    chosen = [videos[int(i)] for i in rng.choice(len(videos), size=min(probes, len(videos)), replace=False)]
    times: dict[str, list[float]] = {"on": [], "off": [], "check": []}
    for video in chosen:
        _, ts, raw = store.vectors_of_video(video.id)
        vectors = projection.apply(raw)
        own = np.full(len(ts), video.id, dtype=np.int64)
        hits, seconds, _ = search_rows(index, store.locate, vectors, own, store.indexed_video_count(), on,
                                       DupesParams(query=on).copy_bound)
        view = ProbeView(ts, raw, hits, seconds)
        for _ in range(rounds):
            for name, params in (("on", on), ("off", off)):
                times[name].append(timed(lambda: stored_query(store, index, projection, video, params, 1.0)))
            times["check"].append(timed(lambda: winner([view], store, projection, on, video.id)))
    med = {name: float(np.median(values)) for name, values in times.items()}
    return {"probes": len(chosen), "rounds": rounds, "query_on_s": med["on"], "query_off_s": med["off"],
            "check_s": med["check"], "ratio": med["on"] / med["off"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", type=Path, required=True, help="a sora-search index whose stored vectors are the seeds")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--probes", type=int, default=20, help="library videos queried at each size")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clip-sigma", type=float, nargs=2, default=(0.6, 1.0), metavar=("LO", "HI"),
                    help="range of the clip-wide offset that makes each clip its own footage (as dupes_scale.py)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=HERE.parent / "results" / "sequence-scale")
    ap.add_argument("--keep", action="store_true", help="keep the generated library")
    ap.add_argument("--out", type=Path, default=HERE.parent / "results")
    args = ap.parse_args(argv)
    seeds = load_raw_seeds(args.index)
    gen = RawGenerator(seeds, args.seed)
    library = Library(args.work, gen, 0.01, 0.1, tuple(args.clip_sigma), args.seed)
    result: dict[str, Any] = {"benchmark": "sequence_scale", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                              "seeds": {"index": str(args.index), "vectors": len(seeds)},
                              "defaults": {k: getattr(QueryParams(), k) for k in
                                           ("sequence_candidates", "sequence_below", "neighbours")},
                              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "sizes": []}
    try:
        for n in sorted(args.sizes):
            built = library.grow(n)
            row = {"n": n, "vectors": library.vectors, "videos": len(library.store.videos()), **built,
                   **measure(library, args.probes, args.rounds, args.seed)}
            result["sizes"].append(row)
            print(f"[{n}] query {row['query_off_s'] * 1e3:.0f} ms, with the check {row['query_on_s'] * 1e3:.0f} ms "
                  f"({row['ratio']:.2f}x), the check alone {row['check_s'] * 1e3:.0f} ms", file=sys.stderr, flush=True)
    finally:
        library.close()
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"sequence_scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=1))
    print("| vectors | videos | query, check off | check forced on | ratio | the check alone |")
    print("|---|---|---|---|---|---|")
    for r in result["sizes"]:
        print(f"| {r['vectors']:,} | {r['videos']:,} | {r['query_off_s'] * 1e3:.0f} ms | {r['query_on_s'] * 1e3:.0f} ms"
              f" | {r['ratio']:.2f}x | {r['check_s'] * 1e3:.0f} ms |")
    print(f"results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
