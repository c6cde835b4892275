"""The engine's text check (``QueryParams.text``) applied to answers already made: how it moves micro-AP and recall@1.

    python benchmarks/accuracy/text_veto.py BENCH --split SPLIT --result RESULT [--index INDEX] [--min-words 8]
                                            [--jaccard 0.3] [--pairs 3] [--min-score 0.1] [--search-s 30] [--out FILE]

RESULT is ``run.py`` or ``requery.py`` output for that split. Each answer is judged by
:func:`sora_search.query.text.verdict` with the reader the engine uses (the ``tesseract`` command: Debian's
``tesseract-ocr``), as ``Library.query`` judges its matches, and an answer it drops is removed, as the engine would
not have reported it. Micro-AP and recall@1 are then computed again, against the truth, beside the answers as they
were. Reading the answers again is far cheaper than querying again, and gives the same answers: the check runs after
the query and changes no other match. The engine reads a probe where its match was found: a half or the inset alone,
and through the mirror or turn where the frame as it is reads nothing. Saved answers do not record that view: with
INDEX (the split's index that made RESULT), each probe with an answer to read is queried again there (the same
defaults) for it, and without INDEX every answer counts as found in the whole frame.

The default settings are the engine's, which come from ``slide_text.py --ocr`` (rendered slides: another slide of
the deck shares 0.18 of its words on average, a legible copy about half or more), not from any split: see
docs/tuning.md ("The text check").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import metrics
import run
from scene_overlap import engine_run
from sora_search.embed.images import Box
from sora_search.embed.views import FULL, WHOLE_FRAME_VIEWS
from sora_search.errors import TextReaderMissing
from sora_search.params import TextParams
from sora_search.query.text import TextReader, verdict
from sora_search.thumbs import duration_s
from sora_search.types import Span


class Views:
    """The probe's view each answer came from and the part of the probe's frame it looks at (None: the whole frame),
    by querying the split's index again (once a probe)."""

    def __init__(self, index: Path, bench: Path) -> None:
        from sora_search import Library

        self.lib = Library.open(index, create=False)
        self.bench = bench
        self.found: dict[str, dict[str, tuple[str, Box | None]]] = {}

    def __call__(self, name: str, reference: str) -> tuple[str, Box | None]:
        if name not in self.found:
            result = self.lib.query(self.bench / "queries" / name, k=run.PREDICTIONS_PER_QUERY, min_score=-1.0)
            self.found[name] = {run.reference_name(Path(m.path)): (m.view, m.region and Box(*m.region))
                                for m in result.matches}
        return self.found[name].get(reference, (FULL, None))


def scores(predictions: dict[str, list[Any]], truth: dict[str, Any]) -> dict[str, float]:
    """Micro-AP and recall@1 of ``predictions`` ({query: [[reference, score, ...], ...]}) against the split's truth."""
    true_pairs = {(q["name"], q["reference"]) for q in truth["queries"] if q["positive"]}
    flat = [(q, p[0], p[1]) for q, preds in predictions.items() for p in preds]
    top1 = {q: (preds[0][0] if preds else None) for q, preds in predictions.items()}
    return {"micro_ap": metrics.micro_ap(flat, true_pairs), "recall_at_1": metrics.recall_at_1(top1, true_pairs)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", type=Path)
    ap.add_argument("--split", required=True)
    ap.add_argument("--result", type=Path, required=True, help="run.py or requery.py output for the split")
    d = TextParams()
    ap.add_argument("--min-words", type=int, default=d.min_words)
    ap.add_argument("--jaccard", type=float, default=d.differ_below)
    ap.add_argument("--pairs", type=int, default=d.pairs)
    ap.add_argument("--min-score", type=float, default=d.min_score)
    ap.add_argument("--search-s", type=float, default=d.search_s,
                    help="how far either side of its span an answer the pairs drop is read again "
                         "(0: along the span only)")
    ap.add_argument("--index", type=Path, default=None, help="the split's index that made RESULT")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    truth = json.loads((args.bench / "truth.json").read_text())
    truth = truth | {"queries": [q for q in truth["queries"] if q.get("split", args.split) == args.split]}
    if not truth["queries"]:
        sys.exit(f"no query in split {args.split!r}")
    run = engine_run(json.loads(args.result.read_text()))
    queries = {q["name"]: q for q in truth["queries"]}
    before = {q: preds for q, preds in run["predictions"].items() if q in queries}

    params = replace(TextParams(), min_words=args.min_words, differ_below=args.jaccard, pairs=args.pairs,
                     min_score=args.min_score, search_s=args.search_s)
    try:
        reader = TextReader(params)
    except TextReaderMissing as exc:
        sys.exit(str(exc))
    after: dict[str, list[Any]] = {}
    rows = []
    checked, check_s = 0, 0.0
    views = Views(args.index, args.bench) if args.index else None
    for name, preds in sorted(before.items()):
        kept = []
        for p in preds:
            reference, score, q_span, r_span = p[0], p[1], p[2], p[3]
            if score < params.min_score or not q_span or not r_span:
                kept.append(p)
                continue
            view, region = views(name, reference) if views else (FULL, None)
            if view not in WHOLE_FRAME_VIEWS and region is None:  # the engine cannot tell where to read
                kept.append(p)
                continue
            ref_path = args.bench / (reference if "/" in reference else f"refs/{reference}")
            span = Span(q_span[0], q_span[1], r_span[0], r_span[1], score)
            start = time.perf_counter()
            vetoed, judged = verdict(reader, str(args.bench / "queries" / name), str(ref_path), span, params,
                                     duration_s(ref_path), view, region)
            checked += 1
            check_s += time.perf_counter() - start
            q = queries[name]
            right = q["positive"] and q["reference"] == reference
            if judged:
                rows.append({"query": name, "reference": reference, "score": score, "right": right,
                             "jaccard": [round(j, 3) for j in judged], "vetoed": vetoed, "view": view,
                             "kind": q["family"] if q["positive"] else q["negative_kind"]})
                print(f"{name} {reference:<22} {score:.3f} {'copy' if right else 'not':<4} "
                      f"{rows[-1]['kind']:<22} jaccard {rows[-1]['jaccard']}{'  VETOED' if vetoed else ''}"
                      f"{f'  (found in {view})' if view != FULL else ''}", flush=True)
            if not vetoed:
                kept.append(p)
        after[name] = kept
    was, now = scores(before, truth), scores(after, truth)
    vetoed_rows = [r for r in rows if r["vetoed"]]
    print(f"\n{len(rows)} answers judged; vetoed {len(vetoed_rows)}: "
          f"{sum(not r['right'] for r in vetoed_rows)} wrong, {sum(r['right'] for r in vetoed_rows)} copies")
    print(f"{checked} answers checked in {check_s:.0f} s ({reader.frames_read} frames read; "
          f"{check_s / max(checked, 1):.1f} s an answer)")
    print(f"micro-AP {was['micro_ap']:.4f} -> {now['micro_ap']:.4f}, "
          f"recall@1 {was['recall_at_1']:.4f} -> {now['recall_at_1']:.4f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"before": was, "after": now, "checked": checked, "check_s": round(check_s, 1),
                                        "frames_read": reader.frames_read, "settings": vars(args) | {
            "bench": str(args.bench), "result": str(args.result), "out": str(args.out),
            "index": args.index and str(args.index)}, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
