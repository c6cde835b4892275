"""Run the copy-detection benchmark: every system on the same generated library and queries, one evaluator.

    python benchmarks/accuracy/generate.py benchmarks/results/accbench --media media-cache/media   # once
    python benchmarks/accuracy/run.py benchmarks/results/accbench          # sora-search, its ablation, baselines

``generate.py`` makes the references, queries and truth.json; ``--media`` is the media/ folder that
``bash benchmarks/fetch_media.sh`` makes (or use ``--synthetic``).

On the split benchmark (``generate.py --splits``, truth version 3) each split is run on its own library: the
split's references, plus its filler videos in order until the library holds ``--library-minutes`` (``0``: the
references alone), at each size asked for, smallest first. The engine's library grows from one size to the next and
its projection and IVF are refit at each (``IndexParams(retrain_growth=1 + 1e-9)``), as a fresh index of those
videos would be; a baseline indexes each size anew. Every metric is reported per split and library size, side by
side, with the low-motion subset, and the mean query time of queries with a true match and of those without.

Each system indexes ``refs/`` and answers every query in ``queries/`` with scored references (and spans when it
localises). The evaluator (:mod:`metrics`) ranks all (query, reference, score) predictions globally for micro-AP
(VSC2022 descriptor track), and reports recall@1 on positives, overall and per edit family, reference-side
localisation of the correct top-1 matches, precision and recall at each system's own threshold, and time spent.
Results go to ``benchmarks/results/accuracy.json`` and a Markdown table on stdout.

Systems: ``sora`` (the engine with its defaults, through the public :class:`sora_search.Library` API),
``sora-gap`` (the same engine with the ``sora-lite0-gap`` encoder: a plain global average pool of the backbone head
instead of multi-scale pooling, an ablation), ``sora-centre`` (the defaults with the projection centring only at
every library size, as libraries under ``IndexParams.pca_min_vectors`` get it), and the baselines of :mod:`baselines` that are installed
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
from systems import Prediction, System, reference_name  # noqa: E402

if TYPE_CHECKING:
    from sora_search import Library
    from sora_search.params import QueryParams

logger = logging.getLogger("accuracy")

RESULTS = HERE.parent / "results" / "accuracy.json"
PREDICTIONS_PER_QUERY = 20


class SoraSystem:
    """sora-search through its public API: ``Library.open`` / ``.index`` / ``.query``.

    Queries ask for the top ``PREDICTIONS_PER_QUERY`` videos with no score floor, so micro-AP sees the whole ranked
    list, with ``params`` otherwise (default: the engine's); ``threshold`` is their ``min_score``, used for
    precision/recall at the threshold.
    """

    def __init__(self, name: str, encoder: str, work: Path, pca: bool = True,
                 params: QueryParams | None = None) -> None:
        from sora_search.params import QueryParams

        self.name = name
        self._pca = pca
        self._params = params or QueryParams()
        self.threshold: float | None = self._params.min_score
        self._encoder = encoder
        self._location = work / name
        self._lib: Library | None = None

    def attach(self) -> None:
        """Search the index already at WORK/NAME as it is (no indexing): ``requery.py``."""
        from sora_search import Library

        self._lib = Library.open(self._location, create=False)

    def index(self, refs: list[Path]) -> None:
        from sora_search import Library
        from sora_search.params import IndexParams

        if self._location.exists():
            shutil.rmtree(self._location)
        # Refit the projection and IVF whenever the library grows (extend), as a fresh index of it would have.
        params = IndexParams(retrain_growth=1 + 1e-9)
        if not self._pca:  # centring only at every size: the projection of libraries under pca_min_vectors
            params = IndexParams(retrain_growth=1 + 1e-9, pca_min_vectors=2**62)
        self._lib = Library.open(self._location, encoder=self._encoder, params=params)
        self.extend(refs)

    def extend(self, paths: list[Path]) -> None:
        """Index ``paths`` too (those already indexed are left as they are)."""
        assert self._lib is not None, "index() first"
        summary = self._lib.index([str(p) for p in paths])
        if summary.failed:
            logger.warning("%s could not index %d videos: %s", self.name, len(summary.failed), summary.failed)

    def describe(self) -> dict[str, object]:
        """The library as searched: videos, vectors, minutes and the projection (``centre`` or ``pca-256``)."""
        assert self._lib is not None, "index() first"
        info = self._lib.info()
        return {"videos": info.videos, "vectors": info.vectors, "minutes": round(info.duration_s / 60, 2),
                "projection": info.projection, "index_type": info.index_type}

    def query(self, path: Path) -> list[Prediction]:
        assert self._lib is not None, "index() first"
        result = self._lib.query(path, params=self._params, k=PREDICTIONS_PER_QUERY, min_score=-1.0)
        out = []
        for m in result.matches:
            seg = m.segments[0] if m.segments else None
            out.append(Prediction(reference=reference_name(Path(m.path)), score=float(m.score),
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


def run_queries(system: System, queries: list[Path], run: Run, progress_every: int = 0) -> Run:
    """Ask ``system`` every query (indexed already), timing each, into ``run``."""
    started = time.perf_counter()
    for i, q in enumerate(queries, 1):
        t0 = time.perf_counter()
        try:
            preds = system.query(q)
        except Exception as exc:  # one query a system cannot handle is a miss, not the end of the benchmark
            run.errors[q.name] = f"{type(exc).__name__}: {exc}"
            preds = []
        run.query_s[q.name] = time.perf_counter() - t0
        run.predictions[q.name] = sorted(preds, key=lambda p: -p.score)
        if progress_every and i % progress_every == 0:
            logger.info("  %d/%d queries, %.0f s", i, len(queries), time.perf_counter() - started)
    return run


def run_system(system: System, refs: list[Path], queries: list[Path]) -> Run:
    run = Run(system.name, getattr(system, "threshold", None))
    t0 = time.perf_counter()
    system.index(refs)
    run.index_s = time.perf_counter() - t0
    run_queries(system, queries, run)
    system.close()
    return run


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def evaluate(run: Run, truth: dict) -> dict:
    """All metrics of one run against ``truth.json``'s queries (of one split, for a split benchmark)."""
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
        # Latency of a query with a true match and of one without (the engine looks harder at the latter).
        "query_s_mean_match": _mean([run.query_s[q["name"]] for q in positives if q["name"] in run.query_s]),
        "query_s_mean_no_match": _mean([run.query_s[q["name"]] for q in queries
                                        if not q["positive"] and q["name"] in run.query_s]),
        "errors": run.errors,
        "n_queries": len(queries),
        "n_positive": len(positives),
    }
    if run.threshold is not None:
        p, r = metrics.precision_recall_at(flat, true_pairs, run.threshold)
        out["precision_at_threshold"], out["recall_at_threshold"] = p, r
    if any("content" in q for q in queries):
        content = {q["name"]: q["content"] for q in positives}
        out["recall_at_1_by_content"] = metrics.recall_at_1_by_family(top1, true_pairs, content)
        low = {q["name"] for q in queries if q["content"] == "low-motion"}
        low_pairs = {pair for pair in true_pairs if pair[0] in low}
        out["low_motion"] = None if not low_pairs else {
            "n_positive": len(low_pairs), "n_negative": len(low) - len(low_pairs),
            "micro_ap": metrics.micro_ap([f for f in flat if f[0] in low], low_pairs),
            "recall_at_1": metrics.recall_at_1(top1, low_pairs)}
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


# --- the split benchmark (truth version 3) ------------------------------------------------------------------------

@dataclass(frozen=True)
class LibrarySize:
    """One split's library at one size: its references and the first ``len(filler)`` filler videos."""

    split: str
    target_min: float
    refs: tuple[str, ...]
    filler: tuple[str, ...]
    duration_s: float

    def paths(self, bench: Path) -> list[Path]:
        return [bench / "refs" / r for r in self.refs] + [bench / "filler" / f for f in self.filler]


def library_sizes(truth: dict, split: str, minutes: list[float]) -> list[LibrarySize]:
    """The split's libraries for target sizes in minutes, smallest first (``0``: the references alone).

    Filler is added in truth order until the library holds at least the target; targets that give the same library
    are merged. Raises ValueError when the split's filler cannot reach a target.
    """
    refs = [r for r in truth["references"] if r["split"] == split]
    filler = [f for f in truth["filler"] if f["split"] == split]
    base = sum(r["duration_s"] for r in refs)
    out: list[LibrarySize] = []
    for target in sorted(set(minutes)):
        n, total = 0, base
        while total < target * 60 and n < len(filler):
            total += filler[n]["duration_s"]
            n += 1
        if total < target * 60:
            have = sum(f["duration_s"] for f in filler) / 60
            raise ValueError(f"the {split} split holds {base / 60:.1f} min of references and {have:.1f} min of "
                             f"filler, less than {target:g} min; make the benchmark again with a larger "
                             "generate.py --filler-minutes")
        names = tuple(f["name"] for f in filler[:n])
        if out and out[-1].filler == names:
            continue
        out.append(LibrarySize(split, target, tuple(r["name"] for r in refs), names, total))
    return out


def split_truth(truth: dict, split: str) -> dict:
    return {**truth, "queries": [q for q in truth["queries"] if q["split"] == split]}


def run_splits(name: str, factory: Callable[[str], System], truth: dict, bench: Path, splits: list[str],
               minutes: list[float], on_result: Callable[[dict], None] | None = None) -> list[dict]:
    """One system on each split's libraries; a result per split and library size.

    Sizes go smallest first, each split in turn at one size before the next size, so a run cut short has both
    splits at the sizes it finished. ``factory(split)`` makes the system for a split's library; ``on_result`` gets
    each result as it is made.
    """
    plans = {split: library_sizes(truth, split, minutes) for split in splits}
    subs = {split: split_truth(truth, split) for split in splits}
    systems: dict[str, System] = {}
    indexed: dict[str, list[Path]] = {split: [] for split in splits}
    index_s = {split: 0.0 for split in splits}
    results = []
    try:
        for step in range(max(len(p) for p in plans.values())):
            for split in splits:
                if step >= len(plans[split]):
                    continue
                size = plans[split][step]
                queries = [bench / "queries" / q["name"] for q in subs[split]["queries"]]
                paths = size.paths(bench)
                logger.info("%s, %s split: %d references + %d filler videos (%.1f min), %d queries", name, split,
                            len(size.refs), len(size.filler), size.duration_s / 60, len(queries))
                t0 = time.perf_counter()
                system = systems.get(split)
                extend = getattr(system, "extend", None)
                if system is not None and extend is not None:
                    extend([p for p in paths if p not in indexed[split]])
                else:
                    if system is not None:  # a system that cannot grow its index makes it again
                        system.close()
                        index_s[split] = 0.0
                    system = systems[split] = factory(split)
                    system.index(paths)
                index_s[split] += time.perf_counter() - t0
                indexed[split] = paths
                describe = getattr(system, "describe", None)
                library = {"target_min": size.target_min, "minutes": round(size.duration_s / 60, 2),
                           "references": len(size.refs), "filler": len(size.filler),
                           **(describe() if describe is not None else {})}
                run = Run(system.name, getattr(system, "threshold", None), index_s=index_s[split])
                run_queries(system, queries, run, progress_every=25)
                res = evaluate(run, subs[split])
                res.update(split=split, library=library)
                res["predictions"] = {q: [[p.reference, p.score, p.query_span, p.ref_span] for p in preds]
                                      for q, preds in run.predictions.items()}
                results.append(res)
                logger.info("%s, %s, %.1f min: micro-AP %.3f, recall@1 %.3f", name, split, size.duration_s / 60,
                            res["micro_ap"], res["recall_at_1"])
                if on_result is not None:
                    on_result(res)
    finally:
        for system in systems.values():
            system.close()
    return results


def _f(value: float | None, fmt: str = ".3f") -> str:
    return "-" if value is None else format(value, fmt)


def split_tables(results: list[dict]) -> str:
    """Markdown for the split benchmark: an overview (a row per system and library size, both splits side by side),
    then a table per library size with a column per system and split: every metric, per content, per family."""
    splits = list(dict.fromkeys(r["split"] for r in results))
    by_key = {(r["system"], r["split"], r["library"]["target_min"]): r for r in results}
    systems = list(dict.fromkeys(r["system"] for r in results))
    targets = sorted({r["library"]["target_min"] for r in results})

    def lib(r: dict) -> str:
        lb = r["library"]
        extra = f", {lb['vectors']} vectors, {lb['projection']}" if "vectors" in lb else ""
        return f"{lb['minutes']:.1f} min{extra}"

    def low(r: dict, key: str) -> str:
        return _f(r["low_motion"][key]) if r.get("low_motion") else "-"

    head = ["system", "library size"]
    for label in ("micro-AP", "recall@1", "low-motion recall@1", "query s, match / no match"):
        head += [f"{label} {s}" for s in splits]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in systems:
        for t in targets:
            rs = [by_key.get((name, s, t)) for s in splits]
            if not all(rs):
                continue
            row = [name, " / ".join(lib(r) for r in rs if r)]
            row += [_f(r["micro_ap"]) for r in rs if r]
            row += [_f(r["recall_at_1"]) for r in rs if r]
            row += [low(r, "recall_at_1") for r in rs if r]
            row += [f"{_f(r['query_s_mean_match'], '.2f')} / {_f(r['query_s_mean_no_match'], '.2f')}"
                    for r in rs if r]
            lines.append("| " + " | ".join(row) + " |")
    out = ["\n".join(lines)]

    for t in targets:
        cols = [by_key[(n, s, t)] for n in systems for s in splits if (n, s, t) in by_key]
        names = [f"{r['system']} {r['split']}" for r in cols]
        rows = [
            ("library", [lib(r) for r in cols]),
            ("queries (positives / negatives)", [f"{r['n_positive']} / {r['n_queries'] - r['n_positive']}"
                                                 for r in cols]),
            ("micro-AP", [_f(r["micro_ap"]) for r in cols]),
            ("recall@1 (positives)", [_f(r["recall_at_1"]) for r in cols]),
            ("localised, IoU >= 0.5", [_f(r["localisation"]["share_iou_050"]) if r["localisation"] else "-"
                                       for r in cols]),
            ("precision / recall at threshold", [
                f"{r['precision_at_threshold']:.2f} / {r['recall_at_threshold']:.2f} (>= {r['threshold']:g})"
                if r.get("threshold") is not None else "-" for r in cols]),
            ("low-motion micro-AP", [low(r, "micro_ap") for r in cols]),
            ("low-motion recall@1", [f"{low(r, 'recall_at_1')} ({r['low_motion']['n_positive']})"
                                     if r.get("low_motion") else "-" for r in cols]),
            ("query time, mean (s)", [_f(r["query_s_mean"], ".2f") for r in cols]),
            ("query time, match / no match (s)", [
                f"{_f(r['query_s_mean_match'], '.2f')} / {_f(r['query_s_mean_no_match'], '.2f')}" for r in cols]),
            ("index time (s)", [f"{r['index_s']:.0f}" for r in cols]),
        ]
        kinds = sorted({k for r in cols for k in r["negatives_top_score"]})
        for kind in kinds:
            rows.append((f"best score, {kind}", [_f(r["negatives_top_score"].get(kind), ".2f") for r in cols]))
        for key, label in (("recall_at_1_by_content", "recall@1"), ("recall_at_1_by_family", "recall@1")):
            for group in sorted({g for r in cols for g in r.get(key, {})}):
                rows.append((f"{label} {group}", [_f(r.get(key, {}).get(group), ".2f") for r in cols]))
        lines = [f"Library of {t:g} min per split (0: the references alone):", "",
                 "| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        lines += [f"| {label} | " + " | ".join(vals) + " |" for label, vals in rows]
        out.append("\n".join(lines))
    return "\n\n".join(out)


def engine_systems(work: Path) -> dict[str, Callable[[], System]]:
    return {
        "sora": lambda: SoraSystem("sora", "sora-lite0", work),
        "sora-gap": lambda: SoraSystem("sora-gap", "sora-lite0-gap", work),
        "sora-centre": lambda: SoraSystem("sora-centre", "sora-lite0", work, pca=False),
    }


def engine_split_systems(work: Path) -> dict[str, Callable[[str], System]]:
    """The engine systems of the split benchmark: one library folder per split, so both can be open at once."""
    return {
        "sora": lambda split: SoraSystem("sora", "sora-lite0", work / split),
        "sora-gap": lambda split: SoraSystem("sora-gap", "sora-lite0-gap", work / split),
        "sora-centre": lambda split: SoraSystem("sora-centre", "sora-lite0", work / split, pca=False),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench", type=Path, nargs="?", help="folder made by generate.py (refs/, queries/, truth.json)")
    ap.add_argument("--systems", default="all",
                    help="comma-separated: sora, sora-gap, and installed baselines (default: all available)")
    ap.add_argument("--work", type=Path, default=None, help="where the engine indexes go (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--library-minutes", default="0",
                    help="split benchmark: comma-separated library sizes per split in minutes, references plus "
                         "filler (0: the references alone); e.g. 0,30")
    ap.add_argument("--splits", default="tune,heldout", help="split benchmark: which splits to run")
    ap.add_argument("--report", type=Path, nargs="+", metavar="JSON",
                    help="split benchmark: print the tables of results written by earlier runs (e.g. one run per "
                         "split, side by side) and run nothing")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.report:
        print(report(args.report))
        return 0
    if args.bench is None:
        ap.error("give the benchmark folder (or --report JSON...)")

    truth = json.loads((args.bench / "truth.json").read_text())
    version = truth.get("version", 1)
    try:
        minutes = [float(m) for m in args.library_minutes.split(",")]
    except ValueError:
        ap.error(f"--library-minutes {args.library_minutes!r}: give minutes separated by commas, e.g. 0,30")
    if version != 3 and (minutes != [0.0] or args.splits != "tune,heldout"):
        ap.error("--library-minutes and --splits need a split benchmark (generate.py --splits)")
    splits = args.splits.split(",")
    if version == 3 and not set(splits) <= set(truth["splits"]):
        ap.error(f"--splits {args.splits}: this benchmark's splits are {', '.join(truth['splits'])}")
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

    if version == 3:
        return main_splits(args, truth, {n: factories[n] for n in wanted}, splits, minutes, work)
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


def report(paths: list[Path]) -> str:
    """The split tables of saved results (``--out`` files of split-benchmark runs) taken together."""
    saved = [json.loads(p.read_text()) for p in paths]
    digests = {d.get("heldout_sha256") for d in saved}
    if len(digests) != 1 or None in digests:
        raise SystemExit("these results are not all from one split benchmark "
                         f"(held-out sha256: {', '.join(sorted(map(str, digests)))})")
    results = [r for d in saved for r in d["results"]]
    return split_tables(results) + f"\n\nheld-out split sha256 {digests.pop()}"


def _any_split(factory: Callable[[], System]) -> Callable[[str], System]:
    """A baseline's factory as a split benchmark takes it: the same system for any split's library."""
    return lambda split: factory()


def main_splits(args: argparse.Namespace, truth: dict, factories: dict[str, Callable[[], System]], splits: list[str],
                minutes: list[float], work: Path) -> int:
    from splits import files_digest, heldout_digest

    digest = heldout_digest(truth)
    if digest != truth["heldout_sha256"]:
        logger.warning("the held-out split is not the one generated: sha256 %s, truth.json says %s",
                       digest, truth["heldout_sha256"])
    files = files_digest(args.bench, truth)
    logger.info("held-out split sha256 %s, its files %s", digest, files)
    for split in splits:
        library_sizes(truth, split, minutes)  # fail before any work when the filler is short
    started = time.perf_counter()
    results: list[dict] = []

    def save(result: dict | None = None) -> None:
        """Write what is done so far: a run cut short still leaves its finished splits and sizes."""
        if result is not None:
            results.append(result)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps({"bench": str(args.bench), "seed": truth.get("seed"), "version": 3,
                                   "heldout_sha256": digest, "heldout_files_sha256": files,
                                   "library_minutes": minutes,
                                   "wall_s": round(time.perf_counter() - started, 1), "results": results}, indent=1))
        tmp.replace(args.out)

    engines = engine_split_systems(work)
    for name, factory in factories.items():
        run_splits(name, engines.get(name) or _any_split(factory), truth, args.bench, splits, minutes,
                   on_result=save)
    save()
    print(split_tables(results))
    print(f"\nheld-out split sha256 {digest}, its files {files}; {time.perf_counter() - started:.0f} s")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
