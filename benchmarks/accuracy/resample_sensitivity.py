"""How much an index's projection magnifies a small change of a probe: the same frames decoded at the encoder's side
S (as a query's whole-frame step decodes them) and pooled 2x2 from a decode at 2S (a slightly softer resampling, as
a region pass sees the whole frame).

    python benchmarks/accuracy/resample_sensitivity.py --index IDX QUERY... [--out FILE]

IDX is an index whose projection is measured (for example one that ``run.py --work DIR`` built); QUERY are video
files or folders of them. For every second of every query, 1 - cosine between the two versions: raw, centred on the
library's mean, and through the index's projection. A copy's score is a similarity less a background, so a
projection that turns a 0.001 resampling difference into 0.1 moves scores by as much.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".mpg"}


def distances(lib, path: Path) -> dict[str, np.ndarray]:
    """1 - cosine per second between the two resamplings of ``path``: raw, centred and projected."""
    from sora_search.embed.views import FULL
    from sora_search.encoder.projection import Projection

    embedder = lib._embedder
    at_s = embedder.probe(path, [FULL], timeout_s=120, blank_std=0.0).vectors[FULL]
    embedder.forget_probe()
    pooled = embedder.probe(path, [FULL, "left"], timeout_s=120, blank_std=0.0).vectors[FULL]  # decoded at 2S
    embedder.forget_probe()
    _, projection = lib._keeper.searchable()
    centre = Projection("centre", projection.in_dim, projection.in_dim, mean=projection.mean)
    out = {}
    for name, apply in (("raw", lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)), ("centred", centre.apply),
                        ("projected", projection.apply)):
        out[name] = 1.0 - (apply(at_s) * apply(pooled)).sum(axis=1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("queries", type=Path, nargs="+", help="video files or folders of them")
    ap.add_argument("--out", type=Path, default=None, help="write the summary as JSON here")
    args = ap.parse_args(argv)

    from sora_search import Library

    files = sorted(f for q in args.queries for f in ([q] if q.is_file() else q.iterdir())
                   if f.suffix.lower() in VIDEO_SUFFIXES)
    if not files:
        sys.exit("no video among the queries")
    per_second: dict[str, list[float]] = {"raw": [], "centred": [], "projected": []}
    worst: tuple[float, str] = (-1.0, "")
    with Library.open(args.index, create=False) as lib:
        projection_name = lib._keeper.searchable()[1].name
        for f in files:
            d = distances(lib, f)
            for name, values in d.items():
                per_second[name] += values.tolist()
            worst = max(worst, (float(d["projected"].max()), f.name))
    summary = {"index_projection": projection_name, "queries": len(files), "seconds": len(per_second["raw"]),
               "worst_projected": {"query": worst[1], "one_minus_cos": worst[0]}}
    raw = np.maximum(np.asarray(per_second["raw"]), 1e-9)
    for name, values in per_second.items():
        v = np.asarray(values)
        summary[name] = {"median": float(np.median(v)), "p90": float(np.percentile(v, 90)), "mean": float(v.mean()),
                         "median_over_raw": float(np.median(v / raw))}
        print(f"{name:9s} 1 - cos  median {np.median(v):.4f}  p90 {np.percentile(v, 90):.4f}  "
              f"(median {np.median(v / raw):.1f}x the raw change)")
    print(f"{len(files)} queries, {len(raw)} seconds, projection {projection_name}; largest projected change "
          f"{worst[0]:.3f} ({worst[1]})")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
