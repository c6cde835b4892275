"""What a text reader would do to the engine's answers: veto a match whose two frames are legible and read differently.

    python benchmarks/accuracy/text_veto.py BENCH --split SPLIT --result RESULT [--min-words 8] [--jaccard 0.3]
                                            [--pairs 3] [--min-score 0.1] [--out FILE]

RESULT is ``run.py`` or ``requery.py`` output for that split. For each answer scoring ``--min-score`` or more,
``--pairs`` probe times spread over its query span are mapped along the span onto its reference span; both frames are
decoded at their own size (ffmpeg), enlarged to 720 lines, and read by the ``tesseract`` command (Debian's
``tesseract-ocr``; not a dependency of the engine; words as ``slide_text.py --ocr`` reads them). A pair is judged only
where both frames give ``--min-words`` words, and differs where the Jaccard index of the two sets is under
``--jaccard``. An answer is vetoed where most of its pairs were judged and most of those differ: dropped from the
answer, as if the engine had not reported it. Micro-AP and recall@1 are then computed again, against the truth, beside
the answers as they were.

The settings come from ``slide_text.py --ocr`` (rendered slides: another slide of the deck shares 0.18 of its words on
average, a legible copy about half or more), not from any split. A measurement, not part of the engine: see
docs/tuning.md ("That veto applied to the engine's answers").
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import metrics
from scene_overlap import engine_run
from slide_text import read_words

OCR_LINES = 720  # frames are enlarged to this height before reading (small text reads badly)


class Words:
    """The words of a frame of a file at a time, read once."""

    def __init__(self, work: Path) -> None:
        if shutil.which("tesseract") is None or shutil.which("ffmpeg") is None:
            sys.exit("text_veto.py needs the tesseract and ffmpeg commands on PATH "
                     "(Debian: apt-get install tesseract-ocr ffmpeg)")
        self.work = work
        self.cache: dict[tuple[Path, float], frozenset[str]] = {}

    def __call__(self, path: Path, at_s: float) -> frozenset[str]:
        key = (path, round(at_s, 1))
        if key not in self.cache:
            png = self.work / "frame.png"
            subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-ss", f"{at_s:.3f}", "-i", str(path),
                            "-frames:v", "1", str(png)], check=True)
            words: frozenset[str] = frozenset()
            if png.exists():
                img = Image.open(png).convert("RGB")
                scale = max(1.0, OCR_LINES / img.height)
                img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC)
                img.save(png)
                words = read_words(png)
                png.unlink()
            self.cache[key] = words
        return self.cache[key]


def verdict(words: Callable[[Path, float], frozenset[str]], query: Path, reference: Path, q_span: list[float],
            r_span: list[float], *, pairs: int, min_words: int, jaccard: float) -> tuple[bool, list[float]]:
    """(vetoed, the Jaccard index of each judged pair) for one answer; ``words`` reads a file at a time
    (:class:`Words`)."""
    q0, q1 = q_span
    r0, r1 = r_span
    judged = []
    for f in (np.arange(pairs) + 0.5) / pairs:
        tq = q0 + f * (q1 - q0)
        probe = words(query, tq)
        if len(probe) < min_words:
            continue  # nothing legible in the probe: no need to read the reference
        ref = words(reference, r0 + f * (r1 - r0))
        if len(ref) >= min_words:
            judged.append(len(probe & ref) / len(probe | ref))
    differ = sum(j < jaccard for j in judged)
    return 2 * len(judged) > pairs and 2 * differ > len(judged), judged


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
    ap.add_argument("--min-words", type=int, default=8)
    ap.add_argument("--jaccard", type=float, default=0.3)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--min-score", type=float, default=0.1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    truth = json.loads((args.bench / "truth.json").read_text())
    truth = truth | {"queries": [q for q in truth["queries"] if q.get("split", args.split) == args.split]}
    if not truth["queries"]:
        sys.exit(f"no query in split {args.split!r}")
    run = engine_run(json.loads(args.result.read_text()))
    queries = {q["name"]: q for q in truth["queries"]}
    before = {q: preds for q, preds in run["predictions"].items() if q in queries}

    with tempfile.TemporaryDirectory() as tmp:
        words = Words(Path(tmp))
        after: dict[str, list[Any]] = {}
        rows = []
        for name, preds in sorted(before.items()):
            kept = []
            for p in preds:
                reference, score, q_span, r_span = p[0], p[1], p[2], p[3]
                if score < args.min_score or not q_span or not r_span:
                    kept.append(p)
                    continue
                ref_path = args.bench / (reference if "/" in reference else f"refs/{reference}")
                vetoed, judged = verdict(words, args.bench / "queries" / name, ref_path, q_span, r_span,
                                         pairs=args.pairs, min_words=args.min_words, jaccard=args.jaccard)
                q = queries[name]
                right = q["positive"] and q["reference"] == reference
                if judged:
                    rows.append({"query": name, "reference": reference, "score": score, "right": right,
                                 "jaccard": [round(j, 3) for j in judged], "vetoed": vetoed,
                                 "kind": q["family"] if q["positive"] else q["negative_kind"]})
                    print(f"{name} {reference:<22} {score:.3f} {'copy' if right else 'not':<4} "
                          f"{rows[-1]['kind']:<22} jaccard {rows[-1]['jaccard']}{'  VETOED' if vetoed else ''}",
                          flush=True)
                if not vetoed:
                    kept.append(p)
            after[name] = kept
    was, now = scores(before, truth), scores(after, truth)
    vetoed_rows = [r for r in rows if r["vetoed"]]
    print(f"\n{len(rows)} answers judged; vetoed {len(vetoed_rows)}: "
          f"{sum(not r['right'] for r in vetoed_rows)} wrong, {sum(r['right'] for r in vetoed_rows)} copies")
    print(f"micro-AP {was['micro_ap']:.4f} -> {now['micro_ap']:.4f}, "
          f"recall@1 {was['recall_at_1']:.4f} -> {now['recall_at_1']:.4f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"before": was, "after": now, "settings": vars(args) | {
            "bench": str(args.bench), "result": str(args.result), "out": str(args.out)}, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
