"""Run the copy-detection benchmark: every system on the same generated library and queries, one evaluator.

    python benchmarks/accuracy/generate.py benchmarks/results/accbench --media media-cache/media   # once
    python benchmarks/accuracy/run.py benchmarks/results/accbench          # sora-search, its ablation, baselines

``generate.py`` makes the references, queries and truth.json; ``--media`` is the media/ folder that
``bash benchmarks/fetch_media.sh`` makes (or use ``--synthetic``).

Each system indexes ``refs/`` and answers every query in ``queries/`` with scored references (and spans when it
localises). The evaluator (:mod:`metrics`) ranks all (query, reference, score) predictions globally for micro-AP
(VSC2022 descriptor track), and reports recall@1 on positives, overall and per edit family, reference-side
localisation of the correct top-1 matches, precision and recall at each system's own threshold, and time spent.
Results go to ``benchmarks/results/accuracy.json`` and a Markdown table on stdout.

Systems: ``sora`` (the engine with its defaults, through the public :class:`sora_search.Library` API),
``sora-gap`` (the same engine with the ``sora-lite0-gap`` encoder: a plain global average pool of the backbone head
instead of multi-scale pooling, an ablation), and the baselines of :mod:`baselines` that are installed
(``benchmarks/accuracy/install_baselines.sh``).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import metrics  # noqa: E402
from systems import Prediction, System  # noqa: E402

if TYPE_CHECKING:
    from sora_search import Library

logger = logging.getLogger("accuracy")

RESULTS = HERE.parent / "results" / "accuracy.json"
PREDICTIONS_PER_QUERY = 20


class SoraSystem:
    """sora-search through its public API: ``Library.open`` / ``.index`` / ``.query``.

    Queries ask for the top ``PREDICTIONS_PER_QUERY`` videos with no score floor, so micro-AP sees the whole ranked
    list; ``threshold`` is the engine's default ``min_score``, used for precision/recall at the threshold.
    """

    def __init__(self, name: str, encoder: str, work: Path, views: str = "auto") -> None:
        from sora_search.params import QueryParams

        self.name = name
        self.threshold: float | None = QueryParams().min_score
        self._encoder = encoder
        self._location = work / name
        self._views = views
        self._lib: Library | None = None

    def index(self, refs: list[Path]) -> None:
        from sora_search import Library

        if self._location.exists():
            shutil.rmtree(self._location)
        self._lib = Library.open(self._location, encoder=self._encoder)
        summary = self._lib.index([str(p) for p in refs])
        if summary.failed:
            logger.warning("%s could not index %d references: %s", self.name, len(summary.failed), summary.failed)

    def query(self, path: Path) -> list[Prediction]:
        assert self._lib is not None, "index() first"
        result = self._lib.query(path, k=PREDICTIONS_PER_QUERY, min_score=-1.0, views=self._views)
        out = []
        for m in result.matches:
            seg = m.segments[0] if m.segments else None
            out.append(Prediction(reference=Path(m.path).name, score=float(m.score),
                                  query_span=(seg.query_start_s, seg.query_end_s) if seg else None,
                                  ref_span=(seg.ref_start_s, seg.ref_end_s) if seg else None))
        return out

    def close(self) -> None:
        if self._lib is not None:
            self._lib.close()
            self._lib = None


@dataclass
class Run:
    """One system's answers to every query, and the time it took."""

    name: str
    threshold: float | None
    index_s: float = 0.0
    query_s: dict[str, float] = field(default_factory=dict)
    predictions: dict[str, list[Prediction]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def run_system(system: System, refs: list[Path], queries: list[Path]) -> Run:
    run = Run(system.name, getattr(system, "threshold", None))
    t0 = time.perf_counter()
    system.index(refs)
    run.index_s = time.perf_counter() - t0
    for q in queries:
        t0 = time.perf_counter()
        try:
            preds = system.query(q)
        except Exception as exc:  # one query a system cannot handle is a miss, not the end of the benchmark
            run.errors[q.name] = f"{type(exc).__name__}: {exc}"
            preds = []
        run.query_s[q.name] = time.perf_counter() - t0
        run.predictions[q.name] = sorted(preds, key=lambda p: -p.score)
    system.close()
    return run


def evaluate(run: Run, truth: dict) -> dict:
    """All metrics of one run against ``truth.json``'s queries."""
    queries = truth["queries"]
    positives = [q for q in queries if q["positive"]]
    true_pairs = {(q["name"], q["reference"]) for q in positives}
    flat = [(qn, p.reference, p.score) for qn, preds in run.predictions.items() for p in preds]
    top1 = {qn: (preds[0].reference if preds else None) for qn, preds in run.predictions.items()}
    family = {q["name"]: q["family"] for q in positives}
    correct = [q["name"] for q in positives if top1.get(q["name"]) == q["reference"]]
    spans = {qn: preds[0].ref_span for qn, preds in run.predictions.items() if preds and preds[0].ref_span}
    localised = [q for q in correct if q in spans]
    loc = metrics.localisation(spans, {q["name"]: (q["ref_start_s"], q["ref_end_s"]) for q in positives}, localised)
    out: dict = {
        "system": run.name,
        "micro_ap": metrics.micro_ap(flat, true_pairs),
        "recall_at_1": metrics.recall_at_1(top1, true_pairs),
        "recall_at_1_by_family": metrics.recall_at_1_by_family(top1, true_pairs, family),
        "localisation": None if not spans else {"mean_iou": loc.mean_iou, "share_iou_050": loc.share_iou_050,
                                                "n": loc.n},
        "threshold": run.threshold,
        "index_s": run.index_s,
        "query_s_mean": sum(run.query_s.values()) / max(1, len(run.query_s)),
        "errors": run.errors,
        "n_queries": len(queries),
        "n_positive": len(positives),
    }
    if run.threshold is not None:
        p, r = metrics.precision_recall_at(flat, true_pairs, run.threshold)
        out["precision_at_threshold"], out["recall_at_threshold"] = p, r
    kind_of = {q["name"]: q.get("negative_kind") or "negative" for q in queries if not q["positive"]}
    out["negatives_top_score"] = {
        kind: max((run.predictions[q][0].score for q, k in kind_of.items() if k == kind and run.predictions.get(q)),
                  default=None)
        for kind in sorted(set(kind_of.values()))
    }
    return out


def table(results: list[dict]) -> str:
    """Markdown: one column per system; overall rows, then recall@1 per edit family."""
    names = [r["system"] for r in results]
    rows = [("micro-AP", [f"{r['micro_ap']:.3f}" for r in results]),
            ("recall@1 (positives)", [f"{r['recall_at_1']:.3f}" for r in results]),
            ("localised, IoU >= 0.5", [f"{r['localisation']['share_iou_050']:.3f}" if r["localisation"] else "-"
                                       for r in results]),
            ("precision / recall at threshold", [
                f"{r['precision_at_threshold']:.2f} / {r['recall_at_threshold']:.2f} (>= {r['threshold']:g})"
                if r.get("threshold") is not None else "-" for r in results]),
            ("query time, mean (s)", [f"{r['query_s_mean']:.2f}" for r in results]),
            ("index time (s)", [f"{r['index_s']:.0f}" for r in results])]
    families = sorted({f for r in results for f in r["recall_at_1_by_family"]})
    for fam in families:
        rows.append((f"recall@1 {fam}", [f"{r['recall_at_1_by_family'].get(fam, float('nan')):.2f}"
                                         for r in results]))
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {label} | " + " | ".join(vals) + " |" for label, vals in rows]
    return "\n".join(lines)


def engine_systems(work: Path) -> dict[str, Callable[[], System]]:
    return {
        "sora": lambda: SoraSystem("sora", "sora-lite0", work),
        "sora-gap": lambda: SoraSystem("sora-gap", "sora-lite0-gap", work),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench", type=Path, help="folder made by generate.py (refs/, queries/, truth.json)")
    ap.add_argument("--systems", default="all",
                    help="comma-separated: sora, sora-gap, and installed baselines (default: all available)")
    ap.add_argument("--work", type=Path, default=None, help="where the engine indexes go (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    truth = json.loads((args.bench / "truth.json").read_text())
    refs = [args.bench / "refs" / r["name"] for r in truth["references"]]
    queries = [args.bench / "queries" / q["name"] for q in truth["queries"]]
    work = args.work or Path(tempfile.mkdtemp(prefix="sora-accuracy-"))
    factories: dict[str, Callable[[], System]] = engine_systems(work)
    try:
        import baselines

        factories.update(baselines.available_baselines())
        for name, why in baselines.unavailable_baselines().items():
            logger.warning("baseline %s not run: %s", name, why)
    except ImportError as exc:
        logger.warning("no baselines: %s", exc)
    wanted = list(factories) if args.systems == "all" else args.systems.split(",")
    unknown = [w for w in wanted if w not in factories]
    if unknown:
        ap.error(f"unknown or unavailable systems {unknown}; available: {sorted(factories)}")

    results = []
    for name in wanted:
        logger.info("running %s on %d references, %d queries", name, len(refs), len(queries))
        run = run_system(factories[name](), refs, queries)
        res = evaluate(run, truth)
        res["predictions"] = {q: [[p.reference, p.score, p.query_span, p.ref_span] for p in preds]
                              for q, preds in run.predictions.items()}
        results.append(res)
        logger.info("%s: micro-AP %.3f, recall@1 %.3f", name, res["micro_ap"], res["recall_at_1"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"bench": str(args.bench), "seed": truth.get("seed"), "results": results},
                                   indent=1))
    print(table(results))
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
