"""How much of each same-scene negative shows what its recording's reference shows, frame by frame.

    python benchmarks/accuracy/scene_overlap.py BENCH [--split tune] [--result FILE] [--side 64] [--out FILE]

BENCH is a split benchmark folder (``generate.py --splits``). A ``near_miss_same_scene`` query is another stretch of a
recording whose reference is indexed; it should score under the threshold. This measures how close it comes in
pixels: every query second and every second of its ``scene_references`` is decoded at 1 fps, squashed to a grey
SIDE x SIDE picture (as the encoder squashes frames), and each query second takes its best correlation (zero mean,
unit norm) with any reference second. A negative whose every second reaches 0.9 is a frame of its reference but for
small parts: for the rendered lectures and presenters, another slide on the same layout whose text differs. With
``--result`` (``run.py`` or ``requery.py`` output for that split) each line also shows the engine's score for the
recording's reference, so the negatives that come close in pixels can be read beside the ones that scored high.

A measurement of the benchmark, not of the engine: see docs/tuning.md ("How close same-scene negatives ... are").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from sora_search.decode import open_video

NEAR_MISS = "near_miss_same_scene"
CLOSE = 0.9  # a query second this well correlated with a reference second shows that frame but for small parts


def grey_seconds(path: Path, side: int) -> np.ndarray:
    """(n, side * side) one grey frame a second, each zero-mean and of unit norm (a flat frame stays zero)."""
    frames = []
    with open_video(path) as reader:
        for batch in reader.sample(fps=1.0, size=side):
            frames.append(batch.frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
    grey = np.concatenate(frames).reshape(-1, side * side)
    grey -= grey.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(grey, axis=1, keepdims=True)
    return np.divide(grey, norms, out=np.zeros_like(grey), where=norms > 0)


def best_correlations(query: np.ndarray, references: list[np.ndarray]) -> np.ndarray:
    """(n,) each query second's best correlation with any second of any of ``references``."""
    return np.max([(query @ ref.T).max(axis=1) for ref in references], axis=0)


def engine_run(result: dict[str, Any]) -> dict[str, Any]:
    """The engine's run in a run.py / requery.py result of one split (its first run if none is named ``sora``)."""
    runs = result.get("results", [result])
    return ([r for r in runs if r.get("system") == "sora"] or runs)[0]


def engine_scores(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{query: {answered video: score}} from a run.py / requery.py result of one split."""
    return {q: {p[0]: p[1] for p in preds} for q, preds in engine_run(result)["predictions"].items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", type=Path)
    ap.add_argument("--split", default=None, help="only this split's negatives (default: all)")
    ap.add_argument("--result", type=Path, default=None, help="run.py or requery.py output for the split")
    ap.add_argument("--side", type=int, default=64, help="side of the grey pictures compared")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    truth_file = args.bench / "truth.json"
    if not truth_file.exists():
        sys.exit(f"no truth.json in {args.bench}: make the benchmark with generate.py --splits")
    truth = json.loads(truth_file.read_text())
    negatives = [q for q in truth["queries"] if q.get("negative_kind") == NEAR_MISS
                 and (args.split is None or q["split"] == args.split)]
    if not negatives:
        sys.exit(f"no same-scene negative{'' if args.split is None else f' in split {args.split!r}'}")
    scores = engine_scores(json.loads(args.result.read_text())) if args.result else {}

    refs: dict[str, np.ndarray] = {}
    rows = []
    for q in negatives:
        for name in q["scene_references"]:
            if name not in refs:
                refs[name] = grey_seconds(args.bench / "refs" / name, args.side)
        best = best_correlations(grey_seconds(args.bench / "queries" / q["name"], args.side),
                                 [refs[name] for name in q["scene_references"]])
        answered = scores.get(q["name"], {})
        engine = max((answered[n] for n in q["scene_references"] if n in answered), default=None)
        rows.append({"query": q["name"], "split": q["split"], "source": q["source"], "edits": q["edits"],
                     "seconds": len(best), "close": int((best >= CLOSE).sum()), "weakest": round(float(best.min()), 3),
                     "engine": engine})
        r = rows[-1]
        print(f"{r['query']}  {r['source']:<40}  {r['close']:>2}/{r['seconds']:<2} seconds >= {CLOSE}"
              f"  weakest {r['weakest']:.3f}  engine {'-' if engine is None else f'{engine:.3f}'}  {r['edits']}")
    whole = [r for r in rows if r["close"] == r["seconds"]]
    print(f"{len(whole)} of {len(rows)} same-scene negatives reach {CLOSE} at every second")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
