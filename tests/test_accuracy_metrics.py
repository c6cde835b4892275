"""The accuracy benchmark's metrics, on cases worked out by hand."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "accuracy_metrics", Path(__file__).resolve().parent.parent / "benchmarks" / "accuracy" / "metrics.py")
assert _spec is not None and _spec.loader is not None
m = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = m  # dataclasses resolve their module through sys.modules
_spec.loader.exec_module(m)

TRUTH = {("q1", "a"), ("q2", "b"), ("q3", "c")}


def test_micro_ap_perfect_ranking_is_one():
    preds = [("q1", "a", 0.9), ("q2", "b", 0.8), ("q3", "c", 0.7), ("q4", "x", 0.2)]
    assert m.micro_ap(preds, TRUTH) == pytest.approx(1.0)


def test_micro_ap_by_hand():
    # Ranked: q1-a (hit, P=1), q4-x (miss), q2-b (hit, P=2/3); q3-c never predicted.
    preds = [("q1", "a", 0.9), ("q4", "x", 0.85), ("q2", "b", 0.8)]
    assert m.micro_ap(preds, TRUTH) == pytest.approx((1 + 2 / 3) / 3)


def test_a_confident_near_miss_from_another_query_costs_every_pair_below_it():
    good = [("q1", "a", 0.8), ("q2", "b", 0.8), ("q3", "c", 0.8)]
    assert m.micro_ap(good + [("q5", "a", 0.95)], TRUTH) == pytest.approx((1 / 2 + 2 / 3 + 3 / 4) / 3)


def test_duplicate_pairs_keep_their_best_score():
    preds = [("q1", "a", 0.1), ("q1", "a", 0.9), ("q2", "z", 0.5)]
    assert m.best_per_pair(preds) == {("q1", "a"): 0.9, ("q2", "z"): 0.5}
    assert m.micro_ap(preds, TRUTH) == pytest.approx(1 / 3)


def test_precision_recall_at_threshold():
    preds = [("q1", "a", 0.9), ("q4", "x", 0.7), ("q2", "b", 0.5)]
    assert m.precision_recall_at(preds, TRUTH, 0.6) == (0.5, pytest.approx(1 / 3))
    assert m.precision_recall_at(preds, TRUTH, 0.95) == (1.0, 0.0)


def test_recall_at_1_counts_positive_queries_only():
    top1 = {"q1": "a", "q2": "c", "q3": None, "q4": "x"}
    assert m.recall_at_1(top1, TRUTH) == pytest.approx(1 / 3)


def test_temporal_iou_and_localisation():
    assert m.temporal_iou((0, 10), (5, 15)) == pytest.approx(5 / 15)
    assert m.temporal_iou((0, 1), (2, 3)) == 0.0
    loc = m.localisation({"q1": (10, 20), "q2": (0, 4)}, {"q1": (11, 20), "q2": (0, 10)}, ["q1", "q2"])
    assert loc.n == 2 and loc.share_iou_050 == 0.5 and loc.mean_iou == pytest.approx((0.9 + 0.4) / 2)


def test_recall_at_1_by_family():
    top1 = {"q1": "a", "q2": "b", "q3": "x"}
    family = {"q1": "flip", "q2": "crop", "q3": "crop"}
    assert m.recall_at_1_by_family(top1, TRUTH, family) == {"crop": 0.5, "flip": 1.0}
