"""Several draws of one split read as one benchmark: their answers ranked together, twelve copies a family from two.

    python benchmarks/accuracy/draws.py --split SPLIT --draw BENCH RESULT [TEXT] --draw BENCH RESULT [TEXT] ...

Each ``--draw`` is a benchmark folder (``generate.py --splits``, with or without ``--tune-draw``/``--heldout-draw``)
and the ``run.py`` or ``requery.py`` result of its split; with TEXT, the ``text_veto.py --out`` file of that result,
whose dropped answers are left out (what the engine answers with ``query --read-text``). One draw has six copies a
family, so one miss moves a family's recall@1 by 0.17; two draws ranked together halve that. Queries of different
draws are told apart by the draw's number, so micro-AP ranks every draw's answers against one another, as one
threshold would have to serve them all.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import metrics
from scene_overlap import engine_run


def draw(bench: Path, result: Path, text: Path | None, split: str, tag: str) -> dict[str, Any]:
    """One draw's answers, true pairs, first answers and families, its query names prefixed with ``tag``."""
    queries = [q for q in json.loads((bench / "truth.json").read_text())["queries"] if q.get("split", split) == split]
    if not queries:
        sys.exit(f"{bench}: no query in split {split!r}")
    answers = engine_run(json.loads(result.read_text()))["predictions"]
    dropped = set()
    if text is not None:
        dropped = {(r["query"], r["reference"]) for r in json.loads(text.read_text())["rows"] if r["vetoed"]}
    out: dict[str, Any] = {"predictions": [], "truth": set(), "top1": {}, "family": {}}
    for q in queries:
        kept = [a for a in answers.get(q["name"], []) if (q["name"], a[0]) not in dropped]
        name = tag + q["name"]
        out["predictions"] += [(name, a[0], a[1]) for a in kept]
        out["top1"][name] = kept[0][0] if kept else None
        if q["positive"]:
            out["truth"].add((name, q["reference"]))
            out["family"][name] = q["family"]
    return out


def report(draws: list[dict[str, Any]]) -> dict[str, Any]:
    """Micro-AP, recall@1 and recall@1 by family of ``draws`` ranked together."""
    preds = [p for d in draws for p in d["predictions"]]
    truth = set().union(*(d["truth"] for d in draws))
    top1 = {q: r for d in draws for q, r in d["top1"].items()}
    family = {q: f for d in draws for q, f in d["family"].items()}
    by_family = metrics.recall_at_1_by_family(top1, truth, family)
    return {"copies": len(truth), "micro_ap": metrics.micro_ap(preds, truth),
            "recall_at_1": metrics.recall_at_1(top1, truth), "recall_at_1_by_family": by_family,
            "worst_family": min(by_family.values())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", required=True)
    ap.add_argument("--draw", nargs="+", action="append", required=True, metavar="BENCH RESULT [TEXT]",
                    help="a benchmark folder, its split's result and optionally text_veto.py's output for it")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if any(len(d) not in (2, 3) for d in args.draw):
        ap.error("each --draw takes BENCH RESULT and optionally TEXT")
    draws = [draw(Path(d[0]), Path(d[1]), Path(d[2]) if len(d) == 3 else None, args.split, f"{i}:")
             for i, d in enumerate(args.draw)]
    rows = [(" ".join(d), report([one])) for d, one in zip(args.draw, draws)]
    rows.append((f"{len(draws)} draws together", report(draws)))
    for label, r in rows:
        short = {f: round(v, 3) for f, v in r["recall_at_1_by_family"].items() if v < 1}
        print(f"{label}\n  {r['copies']} copies: micro-AP {r['micro_ap']:.4f}, recall@1 {r['recall_at_1']:.4f}, "
              f"worst family {r['worst_family']:.3f}; under 1: {short or 'none'}")
    if args.out:
        args.out.write_text(json.dumps([{"draws": label, **r} for label, r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
