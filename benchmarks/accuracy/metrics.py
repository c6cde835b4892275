"""Copy-detection metrics, as the field reports them (VSC2022 descriptor track), for the accuracy benchmark.

A prediction is ``(query, reference, score)``; the ground truth is the set of ``(query, reference)`` pairs where the
query contains a copy of the reference. NumPy only, no engine imports: the benchmark feeds it any system's output.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

Pair = tuple[str, str]


def best_per_pair(predictions: Iterable[tuple[str, str, float]]) -> dict[Pair, float]:
    """One score per (query, reference): the highest predicted (a system may report a pair once per segment)."""
    best: dict[Pair, float] = {}
    for q, r, s in predictions:
        if (q, r) not in best or s > best[(q, r)]:
            best[(q, r)] = float(s)
    return best


def micro_ap(predictions: Iterable[tuple[str, str, float]], truth: set[Pair]) -> float:
    """Micro-average precision over all (query, reference) predictions ranked globally by score.

    ``sum over the ranked list of precision@i * correct_i / |truth|``: a true pair never predicted counts as a miss,
    and a confident false pair from any query lowers the precision of every true pair ranked below it, so one
    threshold must work across queries. Ties are broken by (query, reference) so the value is deterministic.
    """
    if not truth:
        raise ValueError("micro_ap needs at least one true pair")
    scored = sorted(best_per_pair(predictions).items(), key=lambda kv: (-kv[1], kv[0]))
    correct = np.array([pair in truth for pair, _ in scored], dtype=bool)
    if not correct.any():
        return 0.0
    precision = np.cumsum(correct) / np.arange(1, len(correct) + 1)
    return float(precision[correct].sum() / len(truth))


def precision_recall_at(predictions: Iterable[tuple[str, str, float]], truth: set[Pair],
                        threshold: float) -> tuple[float, float]:
    """(precision, recall) of the pairs scoring at least ``threshold`` (precision 1.0 when nothing is kept)."""
    kept = {pair for pair, s in best_per_pair(predictions).items() if s >= threshold}
    hits = len(kept & truth)
    return (hits / len(kept) if kept else 1.0), (hits / len(truth) if truth else 1.0)


def recall_at_1(top1: Mapping[str, str | None], truth: set[Pair]) -> float:
    """Share of positive queries whose first-ranked reference is a true one (``top1``: query -> best ref or None)."""
    positives = {q for q, _ in truth}
    if not positives:
        raise ValueError("recall_at_1 needs at least one positive query")
    return sum((q, top1.get(q)) in truth for q in positives) / len(positives)


def temporal_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Intersection over union of two time spans in seconds (0 when disjoint or empty)."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class Localisation:
    """Of the correct top-1 matches: mean reference-side IoU, and the share with IoU >= 0.5."""

    mean_iou: float
    share_iou_050: float
    n: int


def localisation(top1_spans: Mapping[str, tuple[float, float]], truth_spans: Mapping[str, tuple[float, float]],
                 correct: Iterable[str]) -> Localisation:
    """Reference-side localisation of the queries in ``correct`` (those whose top-1 reference was right).

    Args:
        top1_spans: query -> predicted (ref_start_s, ref_end_s) of the top match.
        truth_spans: query -> true (ref_start_s, ref_end_s), adjusted for speed changes.
    """
    ious = [temporal_iou(top1_spans[q], truth_spans[q]) for q in correct]
    if not ious:
        return Localisation(0.0, 0.0, 0)
    return Localisation(float(np.mean(ious)), float(np.mean([i >= 0.5 for i in ious])), len(ious))


def recall_at_1_by_family(top1: Mapping[str, str | None], truth: set[Pair],
                          family: Mapping[str, str]) -> dict[str, float]:
    """recall@1 per edit family (``family``: positive query -> its family name)."""
    out: dict[str, float] = {}
    for name in sorted(set(family.values())):
        pairs = {(q, r) for q, r in truth if family.get(q) == name}
        if pairs:
            out[name] = recall_at_1(top1, pairs)
    return out
