"""Can the quadrants order a weak answer? A search over the library's stored quadrants, for the queries whose whole
frames find nothing.

    python benchmarks/accuracy/region_fallback.py BENCH --index IDX --split tune [--below 0.1 0.15 0.2]
        [--weight 0.25 0.5] [--out FILE]

BENCH is a benchmark folder (``generate.py``), IDX the index ``run.py --work DIR`` built for that split
(DIR/<split>/sora). The engine answers every query of the split at its defaults. Then each query's whole-frame
quadrants (:meth:`~sora_search.encoder.Encoder.embed_regions`) are compared with every stored second's, position by
position, each centred on the library's mean at that position (:func:`sora_search.query.regions.centred`): a second
pair scores the mean of its best two of four (as the region check does), each probe second keeps each video's best
second, less the median over the videos; a video's region evidence is the mean over the probe's seconds (``mean``)
or over its better half (``half``: a copy cut into other footage fills only part of the probe).

Where the engine's best score is under ``--below`` B, its answer is re-ordered by that evidence: the videos the
evidence ranks highest take the engine's scores in turn, so the scores, and whatever the threshold lets through,
stay the same (``order``); with ``--weight`` W the engine's scores gain W times the evidence instead (a video outside
the engine's answer starts from its lowest score). Scored as ``run.py`` scores the engine (recall@1 counts the first
answer whatever its score).

A measurement for deciding whether a quadrant search is worth storing, not a score of the engine: see
docs/tuning.md. It scans every stored quadrant for every query (11 KB a second), which no index of a real library
could afford per query.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

BELOW = (0.06, 0.1, 0.15, 0.2, 0.25)
TOP = 2  # quadrants that count per second pair, as in sora_search.query.regions


def evidence(probe: np.ndarray, library: np.ndarray, video_of: np.ndarray, n_videos: int) -> dict[str, np.ndarray]:
    """(n_videos,) region evidence per mode, from (n, 4, d) and (m, 4, d) centred quadrants."""
    pair = np.sort(np.einsum("qkd,lkd->qlk", probe, library), axis=2)[:, :, -TOP:].mean(axis=2)
    best = np.full((len(probe), n_videos), -1.0, dtype=np.float32)
    for v in range(n_videos):
        best[:, v] = pair[:, video_of == v].max(axis=1)
    ev = best - np.median(best, axis=1, keepdims=True)
    half = max(1, len(ev) // 2)
    return {"mean": ev.mean(axis=0), "half": np.sort(ev, axis=0)[-half:].mean(axis=0)}


def reorder(answer: list[tuple[str, float]], ev: np.ndarray, names: list[str], weight: float | None
            ) -> list[tuple[str, float]]:
    """``answer`` (reference, score; best first) re-ordered by the region evidence ``ev`` over ``names``."""
    if weight is None:
        order = [names[i] for i in np.argsort(-ev)[:len(answer)]]
        return list(zip(order, [s for _, s in answer]))
    scores = dict(answer)
    floor = min(scores.values())
    combined = [(n, scores.get(n, floor) + weight * float(ev[i])) for i, n in enumerate(names)]
    return sorted(combined, key=lambda x: -x[1])[:len(answer)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", type=Path)
    ap.add_argument("--index", type=Path, required=True, help="the split's index as run.py built it")
    ap.add_argument("--split", required=True)
    ap.add_argument("--below", type=float, nargs="*", default=list(BELOW),
                    help="engine best scores under which the answer is re-ordered")
    ap.add_argument("--weight", type=float, nargs="*", default=[], help="also add W times the evidence")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    import run
    from systems import Prediction, reference_name

    from sora_search import Library
    from sora_search.embed.views import FULL
    from sora_search.params import QueryParams
    from sora_search.query.regions import centred

    truth = run.split_truth(json.loads((args.bench / "truth.json").read_text()), args.split)
    answers: dict[str, list[tuple[str, float]]] = {}
    evidences: dict[str, dict[str, np.ndarray]] = {}
    with Library.open(args.index, create=False) as lib:
        store, (_, projection) = lib._store, lib._keeper.searchable()
        mean = projection.region_mean
        if mean is None:
            sys.exit(f"{args.index} keeps no region mean: index the split with this version")
        videos = store.videos(status="indexed")
        names = [reference_name(Path(v.path)) for v in videos]
        stored = [centred(store.regions_between(v.id, -1.0, 1e12)[1], mean) for v in videos]
        video_of = np.concatenate([np.full(len(r), i) for i, r in enumerate(stored)])
        library = np.concatenate(stored).astype(np.float32)
        embedder, p = lib._embedder, QueryParams()
        for q in truth["queries"]:
            path = args.bench / "queries" / q["name"]
            result = lib.query(path, k=run.PREDICTIONS_PER_QUERY, min_score=-1.0)
            answers[q["name"]] = [(reference_name(Path(m.path)), float(m.score)) for m in result.matches]
            probe = embedder.probe(path, [FULL], timeout_s=p.decode_timeout_s, blank_std=p.blank_std)
            embedder.forget_probe()
            regions = probe.regions.get(FULL)
            if regions is not None and len(regions):
                evidences[q["name"]] = evidence(centred(regions, mean), library, video_of, len(names))

    rows = []
    for mode in ("mean", "half"):
        for below in args.below:
            for weight in [None, *args.weight]:
                result = run.Run("sora", QueryParams().min_score)
                changed = []
                for q in truth["queries"]:
                    answer = answers[q["name"]]
                    if answer and answer[0][1] < below and q["name"] in evidences:
                        new = reorder(answer, evidences[q["name"]][mode], names, weight)
                        if q["positive"] and (new[0][0] == q["reference"]) != (answer[0][0] == q["reference"]):
                            changed.append(("+" if new[0][0] == q["reference"] else "-") + q["name"])
                        answer = new
                    result.predictions[q["name"]] = [Prediction(reference=r, score=s) for r, s in answer]
                scored = run.evaluate(result, truth)
                row = {"mode": mode, "below": below, "weight": weight or "order",
                       "micro_ap": round(scored["micro_ap"], 3), "recall_at_1": round(scored["recall_at_1"], 3),
                       "changed": changed}
                print(json.dumps(row), flush=True)
                rows.append(row)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"split": args.split, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
