"""How well ``dupes`` finds the accuracy benchmark's copies when its queries are put into its library.

    python benchmarks/accuracy/dupes_eval.py benchmarks/results/accbench            # made by generate.py
    python benchmarks/accuracy/dupes_eval.py BENCH --runner-up-gap 0.5             # a knob of DupesParams

The references and the queries of a benchmark made by ``generate.py`` are indexed into one library (``--work``,
default ``benchmarks/results/dupes-accbench``; an index run there is incremental, so a second run decodes nothing),
and ``Library.duplicates`` runs once with a low floor (``--floor``), so one run gives every threshold.

Truth: a positive query shares footage with its reference, so each (query, reference) pair should be reported:
*pair recall*, per edit family, at the default threshold. The references hold no copies of one another (the
generator leaves duplicates out), so a reported pair of two references, or of a query and a reference other than
its own, is wrong. Two queries may rightly share footage: copies of overlapping parts of one reference, or
negatives cut from overlapping parts of one source; such query pairs count as right. Embedded queries also share
unrelated lead-in footage (non-indexed film pieces, the film's credits, clips of photos) with one another and with
the negatives, which truth.json does not record: a query pair whose segment lies in that footage on both sides is
counted apart, as *unexplained*, and listed; one whose segment lies in the copy of either is wrong. *Precision* is
over the other pairs: every pair with a reference in it, the explained query pairs and the wrong ones.

Writes ``benchmarks/results/dupes_accuracy.json`` and prints a table per family and a threshold sweep.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

from sora_search import Library
from sora_search.params import DupesParams

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "results"
# Families whose copies need another view of the probe (mirror, turn, half, window, inset): stored vectors are
# whole frames only, so a pair of library videos cannot be seen through them.
VIEW_FAMILIES = ("hflip", "rotate", "pip", "stack")
SWEEP = (0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3)


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return min(a[1], b[1]) - max(a[0], b[0]) > 0.5


def explained(q1: dict[str, Any], q2: dict[str, Any]) -> bool:
    """Whether two queries share footage by their truth: copies of overlapping parts of one reference, or
    negatives cut from overlapping parts of one source."""
    if q1["positive"] and q2["positive"]:
        return q1["reference"] == q2["reference"] and _overlap((q1["ref_start_s"], q1["ref_end_s"]),
                                                               (q2["ref_start_s"], q2["ref_end_s"]))
    if not q1["positive"] and not q2["positive"] and q1.get("source") and q2.get("source"):
        if "@" not in q1["source"] or "@" not in q2["source"]:
            return bool(q1["source"] == q2["source"])
        (s1, t1), (s2, t2) = (q["source"].rsplit("@", 1) for q in (q1, q2))
        # The durations are the query's; a speed edit changes them, so overlaps are judged generously.
        return s1 == s2 and _overlap((float(t1), float(t1) + 2 * q1["duration_s"]),
                                     (float(t2), float(t2) + 2 * q2["duration_s"]))
    return False


def in_filler(q: dict[str, Any], start: float, end: float) -> bool:
    """Whether ``start..end`` of query ``q`` lies mostly outside its copy: in the unrelated footage around it (all of
    a negative is such footage)."""
    if not q["positive"]:
        return True
    inside = max(0.0, min(end, q["query_end_s"]) - max(start, q["query_start_s"]))
    return inside < 0.5 * (end - start)


def judge(pairs: list[dict[str, Any]], truth: dict[str, Any], threshold: float) -> dict[str, Any]:
    """Recall per family and precision of the pairs scoring ``threshold`` or more.

    A pair of two queries whose truth says nothing is *unexplained* when its best segment lies in the unrelated
    footage of both (footage the truth does not record: they may well share it), and wrong when it lies in the copy
    of one of them (the copy of a reference is footage of that reference only).
    """
    queries = {q["name"]: q for q in truth["queries"]}
    refs = {r["name"] for r in truth["references"]}
    reported = {(p["a"], p["b"]): p for p in pairs if p["score"] >= threshold}
    right = wrong = unexplained = 0
    wrong_pairs, unexplained_pairs = [], []
    for (a, b), p in sorted(reported.items(), key=lambda kv: -kv[1]["score"]):
        seg = p["segments"][0]
        if a in refs or b in refs:
            q, r = (a, b) if b in refs else (b, a)
            ok = q in queries and queries[q]["positive"] and queries[q]["reference"] == r
        elif explained(queries[a], queries[b]):
            ok = True
        elif in_filler(queries[a], seg["a_start_s"], seg["a_end_s"]) and \
                in_filler(queries[b], seg["b_start_s"], seg["b_end_s"]):
            unexplained += 1
            unexplained_pairs.append((a, b, p["score"]))
            continue
        else:
            ok = False
        right += ok
        wrong += not ok
        if not ok:
            wrong_pairs.append((a, b, p["score"], p["a_covered"], p["b_covered"]))
    per_family: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for q in truth["queries"]:
        if q["positive"]:
            key = tuple(sorted((q["name"], q["reference"])))
            per_family[q["family"]][0] += key in reported
            per_family[q["family"]][1] += 1
    seen = [v for f, v in per_family.items() if f not in VIEW_FAMILIES]
    return {
        "threshold": threshold, "reported": len(reported), "right": right, "wrong": wrong,
        "precision": right / (right + wrong) if right + wrong else None,
        "unexplained_query_pairs": unexplained,
        "recall": sum(f for f, _ in per_family.values()) / sum(n for _, n in per_family.values()),
        "recall_whole_frame": sum(f for f, _ in seen) / sum(n for _, n in seen),
        "recall_per_family": {f: v[0] / v[1] for f, v in sorted(per_family.items())},
        "wrong_pairs": wrong_pairs, "unexplained_pairs": unexplained_pairs,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench", type=Path, help="a benchmark folder made by generate.py (refs/, queries/, truth.json)")
    ap.add_argument("--work", type=Path, default=RESULTS / "dupes-accbench", help="the index folder")
    ap.add_argument("--floor", type=float, default=0.05, help="min_score of the one run (the sweep's lowest)")
    ap.add_argument("--runner-up-gap", type=float, default=DupesParams().runner_up_gap)
    ap.add_argument("--out", type=Path, default=RESULTS / "dupes_accuracy.json")
    args = ap.parse_args(argv)
    truth = json.loads((args.bench / "truth.json").read_text())
    if truth.get("splits"):
        # A split benchmark names files alike across refs/, queries/ and filler/, and the pairs here go by file name.
        sys.exit(f"{args.bench} is a split benchmark (generate.py --splits); dupes_eval.py reads one without splits")
    default = DupesParams()
    with Library.open(args.work, encoder="sora-lite0") as lib:
        t0 = time.perf_counter()
        lib.index([args.bench / "refs", args.bench / "queries"])
        index_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = lib.duplicates(params=replace(default, min_score=args.floor, runner_up_gap=args.runner_up_gap))
        dupes_s = time.perf_counter() - t0
        info = lib.info()
    pairs = [p | {"a": Path(p["a"]).name, "b": Path(p["b"]).name} for p in report.to_dict()["pairs"]]
    results = {"bench": str(args.bench), "videos": info.videos, "vectors": info.vectors, "index_s": index_s,
               "dupes_s": dupes_s, "runner_up_gap": args.runner_up_gap, "default_threshold": default.min_score,
               "at_default": judge(pairs, truth, default.min_score),
               "sweep": [judge(pairs, truth, t) for t in SWEEP], "pairs": pairs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    d = results["at_default"]
    print(f"{info.videos} videos, {info.vectors} vectors; dupes {dupes_s:.1f} s (index run {index_s:.0f} s); "
          f"runner-up gap {args.runner_up_gap:g}")
    print(f"\nat the default threshold {default.min_score:g}: pair recall {d['recall']:.3f} (whole-frame families "
          f"{d['recall_whole_frame']:.3f}), precision {_f(d['precision'])} ({d['right']} right, {d['wrong']} wrong), "
          f"{d['unexplained_query_pairs']} query pairs not in the truth")
    print("\n| family | pair recall |\n|---|---|")
    for family, r in d["recall_per_family"].items():
        print(f"| {family}{' (needs views)' if family in VIEW_FAMILIES else ''} | {r:.2f} |")
    print("\n| threshold | recall | whole-frame recall | precision | wrong | query pairs not in the truth |")
    print("|---|---|---|---|---|---|")
    for s in results["sweep"]:
        print(f"| {s['threshold']:g} | {s['recall']:.3f} | {s['recall_whole_frame']:.3f} | {_f(s['precision'])} | "
              f"{s['wrong']} | {s['unexplained_query_pairs']} |")
    for a, b, score, ca, cb in d["wrong_pairs"]:
        print(f"wrong: {a} {b} {score:.3f} covered {ca:.2f}/{cb:.2f}")
    for a, b, score in d["unexplained_pairs"]:
        print(f"query pair not in the truth: {a} {b} {score:.3f}")
    print(f"\nresults in {args.out}")
    return 0


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    sys.exit(main())
