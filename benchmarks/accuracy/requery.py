"""Search an index ``run.py`` built again, with some query settings changed, and score it as ``run.py`` does.

    python benchmarks/accuracy/requery.py BENCH --index WORK/tune/sora --split tune [FIELD=VALUE ...] [--out FILE]

BENCH is a split benchmark folder (``generate.py --splits``), the index the one ``run.py --work WORK`` left for that
split (its largest library). Each FIELD=VALUE replaces a :class:`sora_search.params.QueryParams` field
(``align.FIELD`` one of its :class:`~sora_search.params.AlignParams`; ``none`` for an optional number); nothing is
indexed again, so a setting is compared on the very same library and projection, one run beside the other. This is
how docs/tuning.md's "re-querying the split's index" figures are made. Prints the scores and the positives whose
true reference does not come first; ``--out`` keeps ``run.py``'s result (with each query's five best answers).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import run


def _value(text: str, current: Any, name: str) -> Any:
    if isinstance(current, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{name} is true or false, not {text!r}")
        return text.lower() in ("true", "1")
    if text.lower() == "none":
        return None
    if isinstance(current, int):
        return int(text)
    if isinstance(current, float) or current is None:
        return float(text)
    return text


def query_params(settings: list[str]) -> Any:
    """QueryParams with each ``FIELD=VALUE`` of ``settings`` applied.

    Raises:
        ValueError: not FIELD=VALUE, an unknown field, or a value of the wrong kind.
    """
    from sora_search.params import QueryParams

    params = QueryParams()
    changes: dict[str, dict[str, Any]] = {"": {}, "align": {}}
    for setting in settings:
        key, sep, text = setting.partition("=")
        group, _, name = key.rpartition(".")
        target = params if not group else params.align if group == "align" else None
        if not sep or target is None or name not in {f.name for f in fields(target)}:
            raise ValueError(f"{setting!r} is not FIELD=VALUE with FIELD a QueryParams field or align.FIELD")
        changes[group][name] = _value(text, getattr(target, name), key)
    return replace(params, **changes[""], align=replace(params.align, **changes["align"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", type=Path)
    ap.add_argument("--index", type=Path, required=True, help="the split's index as run.py built it")
    ap.add_argument("--split", required=True)
    ap.add_argument("settings", nargs="*", metavar="FIELD=VALUE")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_intermixed_args(argv)
    try:
        params = query_params(args.settings)
    except ValueError as exc:
        sys.exit(str(exc))
    if not (args.index / "sora.db").exists():
        sys.exit(f"no index at {args.index}: run.py --work WORK leaves one per split in WORK/<split>/sora")
    truth = run.split_truth(json.loads((args.bench / "truth.json").read_text()), args.split)
    if not truth["queries"]:
        sys.exit(f"no query in split {args.split!r}")

    system = run.SoraSystem(args.index.name, "sora-lite0", args.index.parent, params=params)
    system.attach()
    try:
        answers = run.run_queries(system, [args.bench / "queries" / q["name"] for q in truth["queries"]],
                                  run.Run(system.name, system.threshold), progress_every=25)
    finally:
        system.close()
    result = run.evaluate(answers, truth)
    result.update(split=args.split, settings=args.settings, library=str(args.index))
    result["predictions"] = {q: [[p.reference, p.score, p.query_span, p.ref_span] for p in preds[:5]]
                             for q, preds in answers.predictions.items()}
    print(json.dumps({k: round(result[k], 3) for k in ("micro_ap", "recall_at_1", "precision_at_threshold",
                                                        "recall_at_threshold", "query_s_mean_match",
                                                        "query_s_mean_no_match") if result[k] is not None}))
    print("families under 1:", {k: round(v, 2) for k, v in result["recall_at_1_by_family"].items() if v < 1})
    for q in truth["queries"]:
        first = (result["predictions"].get(q["name"]) or [None])[0]
        if q["positive"] and (first is None or first[0] != q["reference"]):
            print("missed", q["name"], q["family"], q["edits"], "first:", first and first[:2])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
