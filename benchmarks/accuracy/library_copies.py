"""Queries against a library that holds its references several times: do stored copies hide one another?

    python benchmarks/accuracy/library_copies.py BENCH --index WORK/tune/sora --split tune [--refs 12] [--work DIR]
    python benchmarks/accuracy/library_copies.py BENCH --index WORK/tune/sora --split tune --copies edited

BENCH is a split benchmark (``generate.py --splits``), the index the one ``run.py --work WORK`` left for that split
(copied to ``--work`` first, so it stays as it was). The first ``--refs`` references of the split that positive
queries point at get five copies each and are indexed into the copy in two steps: two copies of each, then all
five. ``--copies stored`` (the default) makes them the way a library comes to hold one video several times
(re-encoded at CRF 23 and 28, downscaled to 0.75 and 0.5, and at 15 frames a second); ``--copies edited`` the way
re-uploads differ (a filled box over the lower part, a crop to 0.8, a colour shift, a blur, a shrink into a black
border). Before the first step and after each, the positive queries of those references and the same-scene near
misses cut from them are asked with the shipped settings, with ``copy_agreement=None`` (only near-identical copies
count once, as before edited copies did) and with ``copies_merged=0`` (every stored copy a video of the background,
as before 2026-12-06), one after the other.

Per step and setting: how many positives list the reference or one of its copies first and at or above 0.25
(``min_score``), the true reference's mean score (not listed: 0), the mean score of its listed copies, and the near
misses' best score. Writes ``--work``/library_copies.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from sora_search import Library
from sora_search.params import QueryParams

# ffmpeg output options of each copy, per --copies: how a library comes to hold a video more than once.
COPIES: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "stored": (
        ("crf23", ("-crf", "23")),
        ("crf28", ("-crf", "28")),
        ("s075", ("-vf", "scale=trunc(iw*0.75/2)*2:trunc(ih*0.75/2)*2", "-crf", "23")),
        ("s050", ("-vf", "scale=trunc(iw*0.5/2)*2:trunc(ih*0.5/2)*2", "-crf", "23")),
        ("fps15", ("-r", "15", "-crf", "23")),
    ),
    "edited": (
        ("box", ("-vf", "drawbox=x=iw*0.1:y=ih*0.7:w=iw*0.6:h=ih*0.18:color=0xF0C020:t=fill", "-crf", "23")),
        ("crop", ("-vf", "crop=trunc(iw*0.8/2)*2:trunc(ih*0.8/2)*2", "-crf", "23")),
        ("colour", ("-vf", "eq=brightness=0.06:contrast=1.2:saturation=1.4,hue=h=25", "-crf", "23")),
        ("blur", ("-vf", "boxblur=2:1", "-crf", "23")),
        ("border", ("-vf", "scale=trunc(iw*0.4)*2:trunc(ih*0.4)*2,pad=trunc(iw*1.25/2)*2:trunc(ih*1.25/2)*2:(ow-iw)/2:"
                           "(oh-ih)/2", "-crf", "23")),
    ),
}
STEPS = (0, 2, 5)  # copies of each reference added by each step, in all


def make_copy(src: Path, dst: Path, options: tuple[str, ...]) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src), *options,
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-an", str(dst)], check=True)


def ask(lib: Library, queries: list[dict[str, Any]], bench: Path, params: QueryParams) -> dict[str, Any]:
    """Each query's answer, as (file name, score) best first."""
    out = {}
    for q in queries:
        found = lib.query(bench / "queries" / q["name"], params=params).matches
        out[q["name"]] = [(Path(m.path).name, round(m.score, 4)) for m in found]
    return out


def summary(answers: dict[str, Any], positives: list[dict[str, Any]], near: list[dict[str, Any]],
            min_score: float) -> dict[str, Any]:
    true_scores, copy_scores, right = [], [], 0
    for q in positives:
        stem = Path(q["reference"]).stem
        listed = answers[q["name"]]
        true_scores.append(next((s for n, s in listed if n == q["reference"]), 0.0))
        copy_scores += [s for n, s in listed if n.startswith(f"{stem}__")]
        first = listed[0] if listed else None
        right += bool(first and first[1] >= min_score and (first[0] == q["reference"] or
                                                           first[0].startswith(f"{stem}__")))
    best_near = max((answers[q["name"]][0][1] for q in near if answers[q["name"]]), default=None)
    return {"positives": len(positives), "right_first_at_threshold": right,
            "true_score_mean": round(sum(true_scores) / max(1, len(true_scores)), 4),
            "copy_score_mean": round(sum(copy_scores) / len(copy_scores), 4) if copy_scores else None,
            "near_misses": len(near), "near_miss_best": best_near}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", type=Path)
    ap.add_argument("--index", type=Path, required=True, help="the split's index as run.py built it")
    ap.add_argument("--split", required=True)
    ap.add_argument("--refs", type=int, default=12, help="references that get copies")
    ap.add_argument("--copies", choices=sorted(COPIES), default="stored", help="how the copies differ (see above)")
    ap.add_argument("--work", type=Path, default=Path("benchmarks/results/library-copies"))
    args = ap.parse_args(argv)
    if not (args.index / "sora.db").exists():
        sys.exit(f"no index at {args.index}: run.py --work WORK leaves one per split in WORK/<split>/sora")
    if shutil.which("ffmpeg") is None:
        sys.exit("ffmpeg is not installed (apt-get install ffmpeg)")
    truth = json.loads((args.bench / "truth.json").read_text())
    queries = [q for q in truth["queries"] if q["split"] == args.split]
    pointed = sorted({q["reference"] for q in queries if q["positive"]})[:args.refs]
    if not pointed:
        sys.exit(f"no positive query in split {args.split!r}")
    positives = [q for q in queries if q["positive"] and q["reference"] in pointed]
    near = [q for q in queries if q["negative_kind"] == "near_miss_same_scene"
            and set(q["scene_references"] or []) & set(pointed)]

    index = args.work / "index"
    shutil.rmtree(args.work, ignore_errors=True)
    shutil.copytree(args.index, index, ignore=shutil.ignore_patterns("write.lock"))
    shipped = QueryParams()
    every = replace(shipped, min_score=-1.0, k=20)  # every answer, so that scores under the threshold show too
    settings = {"merged": every, "near_identical": replace(every, copy_agreement=None),
                "apart": replace(every, copies_merged=0)}
    result: dict[str, Any] = {"bench": str(args.bench), "split": args.split, "copies": args.copies,
                              "references": pointed, "steps": []}
    with Library.open(index, create=False) as lib:
        made = 0
        for step in STEPS:
            folder = args.work / f"copies{step}"
            folder.mkdir(parents=True)
            t0 = time.perf_counter()
            for ref in pointed:
                for tag, options in COPIES[args.copies][made:step]:
                    make_copy(args.bench / "refs" / ref, folder / f"{Path(ref).stem}__{tag}.mp4", options)
            if step > made:
                lib.index([folder])
            made = step
            row: dict[str, Any] = {"stored": 1 + step, "index_s": round(time.perf_counter() - t0, 1)}
            for name, params in settings.items():
                answers = ask(lib, positives + near, args.bench, params)
                row[name] = summary(answers, positives, near, shipped.min_score)
                row[f"{name}_answers"] = answers
            result["steps"].append(row)
            print(f"stored {1 + step}: " + "; ".join(
                f"{name} right {row[name]['right_first_at_threshold']}/{row[name]['positives']}, true score "
                f"{row[name]['true_score_mean']}, copies {row[name]['copy_score_mean']}, near miss best "
                f"{row[name]['near_miss_best']}" for name in settings), flush=True)
    (args.work / "library_copies.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
