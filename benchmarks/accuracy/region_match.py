"""Which descriptor finds a copy: the index's whole-frame vectors, the same centred only, or the pooling's regions
compared position by position.

    python benchmarks/accuracy/region_match.py BENCH --index IDX --split tune [--top 5] [--pca 128] [--shortlist 10]
        [--out FILE]

BENCH is a benchmark folder (``generate.py``), IDX the index ``run.py --work DIR`` built for that split (its library
and projection are used; DIR/<split>/sora). Every library video and every query of the split is decoded at 1 fps and
run through the encoder's backbone once, keeping each R-MAC region's maxima (the whole map, the 2x2 and the 3x3 grid;
:func:`sora_search.encoder.sora.region_grid`) instead of only their sum. Then, per positive query, over the seconds
the truth says hold the copy (an oracle: no localisation, no views, no alignment), each library video's best-matching
second per query second, averaged over the copy, less the median over videos: is the true reference first?

- ``map``: the index's projection of the whole-frame descriptor (what the engine searches).
- ``centred``: the whole-frame descriptor centred on the library's mean, nothing else.
- ``regions``: each of the 13 grid regions (2x2 and 3x3) centred on its position's library mean and compared only
  with the same region of a library second; the mean of the ``--top`` best of the 13. An overlay or a blend spoils
  the regions it covers; the rest still match.
- ``regions-pcaD``: the same through one PCA of D dimensions fitted on the library's regions, as an index that
  stored them would hold them.
- ``quadrants``: the 2x2 grid alone (4 regions a second), the mean of the best 2; ``quadrants-int8`` with the
  library's side rounded to 8 bits a value (a scale per region), as an index would store it.
- ``map+regions``, ``map+quadrants``: the sum of the ``map`` score and the other for the ``--shortlist`` videos the
  map scores highest (all of them with 0), as a re-ranking step after the engine's search would see it.

With ``--engine-weight W...`` it also asks the engine itself (every query of the split, default settings but its
own region and sequence checks turned off, as it was when this was measured) and re-ranks its answer as a step after
the search could: each of the ``--shortlist`` best matches gains W times its quadrant score over its first span (each
probe second's best reference second of the span, averaged) less the median of the shortlist's; scored as ``run.py``
scores the engine (W = 0: the engine without those checks). The engine's own region check
(``QueryParams.region_weight``, :mod:`sora_search.query.regions`) is this step built in.

A measurement for choosing what to store, not a score of the engine: see docs/tuning.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

TAP_SLICES = ((0, 80), (80, 192), (192, 384), (384, 704))  # sora-lite0's four stages in the 704-d descriptor
QUADRANTS = slice(0, 4)  # the 2x2 grid among the 13 regions after the whole map (region_grid's order)
QUADRANT_TOP = 2


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def region_vectors(encoder, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(n, 14, 704) float16 per sampled second: each region's per-stage maxima, each stage L2-normalised; and the
    (n,) timestamps in seconds."""
    import torch

    from sora_search.decode import open_video
    from sora_search.encoder.efficientnet import EfficientNetLite0
    from sora_search.encoder.sora import rmac

    with open_video(path) as reader:
        batches = list(reader.sample(1.0, encoder.identity.input_size))
    frames = np.concatenate([b.frames for b in batches])
    out = []
    with torch.inference_mode():
        for i in range(0, len(frames), 16):
            x = EfficientNetLite0.preprocess(torch.from_numpy(frames[i:i + 16]))
            stages = []
            for fmap in encoder.backbone.features(x, encoder.taps):
                regions: list[torch.Tensor] = []
                rmac(fmap, encoder.scales, regions)  # the pooling the engine runs, each region kept apart
                stages.append(torch.stack(regions, 1))
            out.append(torch.cat(stages, 2).numpy().astype(np.float16))
    return np.concatenate(out), np.concatenate([b.timestamps_s for b in batches])


def int8_rows(x: np.ndarray) -> np.ndarray:
    """``x`` rounded to 8 bits per value with one scale per row (last axis), back in float32."""
    scale = np.maximum(np.abs(x).max(axis=-1, keepdims=True), 1e-12) / 127.0
    return (np.round(x / scale) * scale).astype(np.float32)


def whole_frame(regions: np.ndarray) -> np.ndarray:
    """The engine's descriptor from the regions: per stage the normalised sum, stages concatenated, normalised."""
    return unit(np.concatenate([unit(regions[:, :, a:b].sum(axis=1)) for a, b in TAP_SLICES], axis=1))


def video_scores(sims: np.ndarray, video_of: np.ndarray, n_videos: int) -> np.ndarray:
    """(query seconds, library seconds) similarities -> (n_videos,): each video's best second per query second,
    averaged, less the median over videos."""
    best = np.full((sims.shape[0], n_videos), -9.0, dtype=np.float32)
    for v in range(n_videos):
        best[:, v] = sims[:, video_of == v].max(axis=1)
    per_video = best.mean(axis=0)
    return per_video - np.median(per_video)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", type=Path)
    ap.add_argument("--index", type=Path, required=True, help="the split's index as run.py built it")
    ap.add_argument("--split", required=True)
    ap.add_argument("--top", type=int, default=5, help="regions averaged (of 13)")
    ap.add_argument("--pca", type=int, nargs="*", default=[128], help="dimensions of the stored-regions variants")
    ap.add_argument("--shortlist", type=int, default=10, help="videos the map+regions score re-ranks (0: all)")
    ap.add_argument("--engine-weight", type=float, nargs="*", default=[],
                    help="re-rank the engine's answers with these weights of the quadrant score")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    from sora_search import Library
    from sora_search.encoder import load_encoder

    truth = json.loads((args.bench / "truth.json").read_text())
    queries = [q for q in truth["queries"] if q["split"] == args.split and q["positive"]]
    if not queries:
        sys.exit(f"no positive query in split {args.split!r}")
    encoder = load_encoder("sora-lite0", precision="fp32")
    with Library.open(args.index, create=False) as lib:
        _, projection = lib._keeper.searchable()
        videos = lib._store.videos(status="indexed")
    names = [Path(v.path).resolve() for v in videos]
    lib_sampled = [region_vectors(encoder, p) for p in names]
    lib_regions = [r for r, _ in lib_sampled]
    video_of = np.concatenate([np.full(len(r), i) for i, r in enumerate(lib_regions)])
    regions = np.concatenate(lib_regions).astype(np.float32)
    whole = whole_frame(regions)
    mean = whole.mean(axis=0)
    lib_map, lib_centred = projection.apply(whole), unit(whole - mean)
    region_mean = regions[:, 1:].mean(axis=0)  # per position
    lib_reg = unit(regions[:, 1:] - region_mean)
    bases = {d: np.linalg.svd(lib_reg[::3].reshape(-1, lib_reg.shape[2]), full_matrices=False)[2][:d].T
             for d in args.pca}
    lib_pca = {d: unit(lib_reg @ b) for d, b in bases.items()}
    lib_quad = lib_reg[:, QUADRANTS]
    lib_quad8 = int8_rows(lib_quad)

    def top_mean(sims: np.ndarray, top: int = args.top) -> np.ndarray:  # (q, l, regions) -> (q, l)
        return np.sort(sims, axis=2)[:, :, -top:].mean(axis=2)

    fused = ["map+regions", "map+quadrants"]
    methods = (["map", "centred", "regions"] + [f"regions-pca{d}" for d in args.pca]
               + ["quadrants", "quadrants-int8"] + fused)
    hits: dict[str, list[str]] = {m: [] for m in methods}
    rows = []
    sampled: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # query -> its regions and timestamps, for the engine mode
    for q in queries:
        qr, t = sampled[q["name"]] = region_vectors(encoder, args.bench / "queries" / q["name"])
        copy = (t >= q["query_start_s"]) & (t < q["query_end_s"])
        qr = (qr[copy] if copy.any() else qr).astype(np.float32)
        true = names.index((args.bench / "refs" / q["reference"]).resolve())
        qw = whole_frame(qr)
        q_reg = unit(qr[:, 1:] - region_mean)
        sims = {"map": projection.apply(qw) @ lib_map.T, "centred": unit(qw - mean) @ lib_centred.T,
                "regions": top_mean(np.einsum("qkd,lkd->qlk", q_reg, lib_reg))}
        for d, b in bases.items():
            sims[f"regions-pca{d}"] = top_mean(np.einsum("qkd,lkd->qlk", unit(q_reg @ b), lib_pca[d]))
        q_quad = q_reg[:, QUADRANTS]
        sims["quadrants"] = top_mean(np.einsum("qkd,lkd->qlk", q_quad, lib_quad), QUADRANT_TOP)
        sims["quadrants-int8"] = top_mean(np.einsum("qkd,lkd->qlk", q_quad, lib_quad8), QUADRANT_TOP)
        row = {"query": q["name"], "family": q["family"]}
        per_video = {m: video_scores(v, video_of, len(names)) for m, v in sims.items()}
        shortlist = np.argsort(-per_video["map"])[:args.shortlist or None]
        for m in fused:
            per_video[m] = np.full(len(names), -9.0)
            per_video[m][shortlist] = per_video["map"][shortlist] + per_video[m.split("+")[1]][shortlist]
        for m in methods:
            scores = per_video[m]
            rival = float(np.delete(scores, true).max())
            row[m] = [round(float(scores[true]), 4), round(rival, 4)]
            if scores[true] > rival:
                hits[m].append(q["name"])
        rows.append(row)
        if not all(q["name"] in hits[m] for m in methods):
            print(q["name"], q["family"], {m: row[m] for m in methods}, flush=True)
    summary = {m: {"recall_at_1": round(len(hits[m]) / len(queries), 3), "misses": len(queries) - len(hits[m])}
               for m in methods}
    print(json.dumps({"split": args.split, "positives": len(queries), "top": args.top, **summary}))
    engine = []
    if args.engine_weight:
        library = {str(p): (lib_quad[video_of == i], t) for i, (p, (_, t)) in enumerate(zip(names, lib_sampled))}
        engine = engine_rerank(args, truth, library, region_mean[QUADRANTS], encoder, sampled)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"split": args.split, "top": args.top, "summary": summary, "queries": rows,
                                        "engine": engine}))
    return 0


def engine_alone():
    """The query settings of the engine mode: the defaults without the region and sequence checks."""
    from sora_search.params import QueryParams

    return QueryParams(region_weight=0.0, sequence_below=0.0)


def engine_rerank(args: argparse.Namespace, truth: dict, library: dict[str, tuple[np.ndarray, np.ndarray]],
                  quad_mean: np.ndarray, encoder, sampled: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[dict]:
    """The engine's answers to every query of the split, re-ranked by quadrant scores at each weight; scored.

    ``library``: resolved path -> ((n, 4, 704) centred, normalised quadrants, (n,) timestamps); ``sampled``: the
    queries' regions and timestamps already computed (the rest are computed here)."""
    import run
    from systems import Prediction, reference_name

    from sora_search import Library
    from sora_search.params import QueryParams
    from sora_search.query.regions import region_score
    from sora_search.types import Span

    split_truth = run.split_truth(truth, args.split)
    answers: dict[str, list[tuple[str, float, Span | None]]] = {}
    probes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with Library.open(args.index, create=False) as lib:
        for q in split_truth["queries"]:
            path = args.bench / "queries" / q["name"]
            result = lib.query(path, k=run.PREDICTIONS_PER_QUERY, min_score=-1.0,
                               params=engine_alone())
            answers[q["name"]] = [(str(Path(m.path).resolve()), float(m.score), m.segments[0] if m.segments else None)
                                  for m in result.matches]
            r, t = sampled[q["name"]] if q["name"] in sampled else region_vectors(encoder, path)
            probes[q["name"]] = unit(r[:, 1:][:, QUADRANTS].astype(np.float32) - quad_mean), t

    def quadrant_score(query: str, path: str, span: Span | None) -> float | None:
        """The engine's region score (its probe seconds within half a second, reference seconds within one)."""
        if span is None or path not in library:
            return None
        (pq, pt), (lq, lt) = probes[query], library[path]
        cols = (lt >= span.ref_start_s - 1) & (lt <= span.ref_end_s + 1)
        return region_score(pt, pq, span, lt[cols], lq[cols], top=QUADRANT_TOP)

    out = []
    for weight in args.engine_weight:
        result = run.Run("sora", QueryParams().min_score)
        for name, matches in answers.items():
            scores = [m[1] for m in matches]
            shortlist = np.argsort(-np.asarray(scores))[:args.shortlist or None] if matches else []
            quad = {int(i): quadrant_score(name, matches[i][0], matches[i][2]) for i in shortlist}
            known = [v for v in quad.values() if v is not None]
            if weight and len(known) >= 2:
                median = float(np.median(known))
                scores = [s + weight * (quad[i] - median) if quad.get(i) is not None else s
                          for i, s in enumerate(scores)]
            preds = [Prediction(reference=reference_name(Path(m[0])), score=s) for m, s in zip(matches, scores)]
            result.predictions[name] = sorted(preds, key=lambda p: -p.score)
        scored = run.evaluate(result, split_truth)
        row = {"weight": weight, "micro_ap": round(scored["micro_ap"], 3),
               "recall_at_1": round(scored["recall_at_1"], 3),
               "precision_at_threshold": round(scored["precision_at_threshold"], 3),
               "recall_at_threshold": round(scored["recall_at_threshold"], 3),
               "families_under_1": {k: round(v, 2) for k, v in scored["recall_at_1_by_family"].items() if v < 1}}
        print(json.dumps({"engine": row}), flush=True)
        out.append(row)
    return out


if __name__ == "__main__":
    sys.exit(main())
