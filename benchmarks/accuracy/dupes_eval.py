"""How well ``dupes`` finds the accuracy benchmark's copies when its queries are put into its library.

    python benchmarks/accuracy/dupes_eval.py benchmarks/results/accbench            # made by generate.py
    python benchmarks/accuracy/dupes_eval.py BENCH --runner-up-gap 0.5             # a knob of DupesParams
    python benchmarks/accuracy/dupes_eval.py BENCH3 --split heldout                # a split (generate.py --splits)

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

A split benchmark (version 3) is read one split at a time (``--split``, required there): its references and queries,
not its filler. Its truth lists what each file shows (``sources``: the footage, the photos, the footage a copy is
embedded in), so there a pair the truth does not explain is unexplained when the two files show a source in common
(they may share footage: a photo both show), and wrong otherwise. A same-scene negative reported with a reference of
its recording (another stretch of it) is wrong, and counted apart too: ``dupes`` should no more call it a copy than
a query should. Files go by their folder and name (``refs/t000.mp4``), which a split benchmark gives a reference
and a query alike.

Writes ``benchmarks/results/dupes_accuracy.json`` (``dupes_accuracy-SPLIT.json`` for a split) and prints a table per
family and a threshold sweep.
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


def _share_source(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether the truth lists a source both files show (split benchmarks only: version 1 lists none)."""
    return bool(set(a.get("sources") or ()) & set(b.get("sources") or ()))


def in_filler(q: dict[str, Any], start: float, end: float) -> bool:
    """Whether ``start..end`` of query ``q`` lies mostly outside its copy: in the unrelated footage around it (all of
    a negative is such footage)."""
    if not q["positive"]:
        return True
    inside = max(0.0, min(end, q["query_end_s"]) - max(start, q["query_start_s"]))
    return inside < 0.5 * (end - start)


def truth_files(truth: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{folder/name: its truth entry} for the references and queries (``refs/t000.mp4``, ``queries/t000.mp4``)."""
    return {f"refs/{r['name']}": r for r in truth["references"]} | {f"queries/{q['name']}": q for q in truth["queries"]}


def judge(pairs: list[dict[str, Any]], truth: dict[str, Any], threshold: float) -> dict[str, Any]:
    """Recall per family and precision of the pairs scoring ``threshold`` or more.

    Pairs name files by folder and name (``refs/x.mp4``, ``queries/y.mp4``). A pair of two queries whose truth says
    nothing is *unexplained* when its best segment lies in the unrelated footage of both (footage the truth does not
    record: they may well share it), and wrong when it lies in the copy of one of them (the copy of a reference is
    footage of that reference only). In a split benchmark a pair the truth does not explain is unexplained when the
    two files show a source in common, and wrong otherwise.
    """
    files = truth_files(truth)
    reported = {(p["a"], p["b"]): p for p in pairs if p["score"] >= threshold}
    split = bool(truth.get("splits"))
    right = wrong = unexplained = same_scene = 0
    wrong_pairs, unexplained_pairs = [], []
    for (a, b), p in sorted(reported.items(), key=lambda kv: -kv[1]["score"]):
        seg = p["segments"][0]
        fa, fb = files[a], files[b]
        if a.startswith("refs/") and b.startswith("refs/"):
            ok, loose = False, split and _share_source(fa, fb)
        elif a.startswith("refs/") or b.startswith("refs/"):
            q, r = (fa, b) if b.startswith("refs/") else (fb, a)
            ok = q["positive"] and f"refs/{q['reference']}" == r
            scene = not ok and r.removeprefix("refs/") in (q.get("scene_references") or ())
            same_scene += scene
            loose = split and not ok and not scene and _share_source(q, files[r])
        else:
            ok = explained(fa, fb)
            loose = not ok and (_share_source(fa, fb) if split else
                                in_filler(fa, seg["a_start_s"], seg["a_end_s"]) and
                                in_filler(fb, seg["b_start_s"], seg["b_end_s"]))
        if loose:
            unexplained += 1
            unexplained_pairs.append((a, b, p["score"]))
            continue
        right += ok
        wrong += not ok
        if not ok:
            wrong_pairs.append((a, b, p["score"], p["a_covered"], p["b_covered"]))
    per_family: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_content: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for q in truth["queries"]:
        if q["positive"]:
            found = tuple(sorted((f"queries/{q['name']}", f"refs/{q['reference']}"))) in reported
            for tally, key in ((per_family, q["family"]), (per_content, q.get("content"))):
                if key is not None:
                    tally[key][0] += found
                    tally[key][1] += 1
    seen = [v for f, v in per_family.items() if f not in VIEW_FAMILIES]
    return {
        "threshold": threshold, "reported": len(reported), "right": right, "wrong": wrong,
        "precision": right / (right + wrong) if right + wrong else None,
        "unexplained": unexplained, "same_scene": same_scene,
        "recall": sum(f for f, _ in per_family.values()) / sum(n for _, n in per_family.values()),
        "recall_whole_frame": sum(f for f, _ in seen) / sum(n for _, n in seen),
        "recall_per_family": {f: v[0] / v[1] for f, v in sorted(per_family.items())},
        "recall_per_content": {c: v[0] / v[1] for c, v in sorted(per_content.items())},
        "wrong_pairs": wrong_pairs, "unexplained_pairs": unexplained_pairs,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench", type=Path, help="a benchmark folder made by generate.py (refs/, queries/, truth.json)")
    ap.add_argument("--split", default=None, help="the split of a split benchmark to read (required there)")
    ap.add_argument("--work", type=Path, default=None,
                    help="the index folder (default benchmarks/results/dupes-accbench, -SPLIT for a split)")
    ap.add_argument("--floor", type=float, default=0.05, help="min_score of the one run (the sweep's lowest)")
    ap.add_argument("--runner-up-gap", type=float, default=DupesParams().runner_up_gap)
    ap.add_argument("--motion-weight", type=float, default=DupesParams().query.motion_weight,
                    help="QueryParams.motion_weight for the pairs (0: no motion agreement)")
    ap.add_argument("--out", type=Path, default=None,
                    help="the results (default benchmarks/results/dupes_accuracy.json, -SPLIT for a split)")
    args = ap.parse_args(argv)
    truth = json.loads((args.bench / "truth.json").read_text())
    if truth.get("splits"):
        if args.split not in truth["splits"]:
            sys.exit(f"{args.bench} is a split benchmark: name one of its splits with --split "
                     f"({', '.join(truth['splits'])})")
        truth = truth | {key: [e for e in truth[key] if e["split"] == args.split] for key in ("references", "queries")}
    elif args.split is not None:
        sys.exit(f"{args.bench} has no splits (it was made without generate.py --splits): leave --split out")
    tag = f"-{args.split}" if args.split else ""
    work, out = args.work or RESULTS / f"dupes-accbench{tag}", args.out or RESULTS / f"dupes_accuracy{tag}.json"
    paths = [args.bench / "refs" / r["name"] for r in truth["references"]] + \
            [args.bench / "queries" / q["name"] for q in truth["queries"]]
    default = DupesParams()
    with Library.open(work, encoder="sora-lite0") as lib:
        t0 = time.perf_counter()
        lib.index(paths)
        index_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = lib.duplicates(params=replace(default, min_score=args.floor, runner_up_gap=args.runner_up_gap,
                                               query=replace(default.query, motion_weight=args.motion_weight)))
        dupes_s = time.perf_counter() - t0
        info = lib.info()
    pairs = [p | {"a": _key(p["a"]), "b": _key(p["b"])} for p in report.to_dict()["pairs"]]
    strangers = sorted({name for p in pairs for name in (p["a"], p["b"])} - truth_files(truth).keys())
    if strangers:
        sys.exit(f"the index in {work} holds videos this benchmark{' split' if args.split else ''} does not list "
                 f"({', '.join(strangers[:3])}{', ...' if len(strangers) > 3 else ''}): give a fresh --work")
    results = {"bench": str(args.bench), "split": args.split, "videos": info.videos, "vectors": info.vectors,
               "index_s": index_s, "dupes_s": dupes_s, "runner_up_gap": args.runner_up_gap,
               "motion_weight": args.motion_weight,
               "default_threshold": default.min_score,
               "at_default": judge(pairs, truth, default.min_score),
               "sweep": [judge(pairs, truth, t) for t in SWEEP], "pairs": pairs}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    d = results["at_default"]
    print(f"{info.videos} videos, {info.vectors} vectors; dupes {dupes_s:.1f} s (index run {index_s:.0f} s); "
          f"runner-up gap {args.runner_up_gap:g}, motion weight {args.motion_weight:g}")
    print(f"\nat the default threshold {default.min_score:g}: pair recall {d['recall']:.3f} (whole-frame families "
          f"{d['recall_whole_frame']:.3f}), precision {_f(d['precision'])} ({d['right']} right, {d['wrong']} wrong), "
          f"{d['unexplained']} pairs the truth cannot judge, {d['same_scene']} same-scene pairs (wrong)")
    print("\n| family | pair recall |\n|---|---|")
    for family, r in d["recall_per_family"].items():
        print(f"| {family}{' (needs views)' if family in VIEW_FAMILIES else ''} | {r:.2f} |")
    if d["recall_per_content"]:
        print("\n| content | pair recall |\n|---|---|")
        for content, r in d["recall_per_content"].items():
            print(f"| {content} | {r:.2f} |")
    print("\n| threshold | recall | whole-frame recall | precision | wrong | same-scene | pairs the truth cannot "
          "judge |")
    print("|---|---|---|---|---|---|---|")
    for s in results["sweep"]:
        print(f"| {s['threshold']:g} | {s['recall']:.3f} | {s['recall_whole_frame']:.3f} | {_f(s['precision'])} | "
              f"{s['wrong']} | {s['same_scene']} | {s['unexplained']} |")
    for a, b, score, ca, cb in d["wrong_pairs"]:
        print(f"wrong: {a} {b} {score:.3f} covered {ca:.2f}/{cb:.2f}")
    for a, b, score in d["unexplained_pairs"]:
        print(f"not in the truth: {a} {b} {score:.3f}")
    print(f"\nresults in {out}")
    return 0


def _key(path: str) -> str:
    """A library path as the truth names it: its folder and name (``refs/t000.mp4``)."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}"


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    sys.exit(main())
