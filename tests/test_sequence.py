"""The query's sequence check (:mod:`sora_search.query.sequence`): the diagonal run, the candidates, the winner over
a store of made-up vectors, how the check re-orders a weak answer, and what a real query hands it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from sora_search import Library
from sora_search.embed.views import FULL, HFLIP
from sora_search.encoder import Projection
from sora_search.params import QueryParams
from sora_search.query import passes
from sora_search.query.passes import Ranked, sequence_checked, shown
from sora_search.query.sequence import ProbeView, best_run, candidates, winner
from sora_search.types import Span


def test_the_best_run_follows_one_diagonal_and_says_where_it_lies() -> None:
    rng = np.random.default_rng(0)
    pairs = rng.normal(-1.5, 1.0, (10, 30))
    pairs[np.arange(3, 9), np.arange(3, 9) + 12] = 3.0  # probe steps 3-8 show reference steps 15-20
    run = best_run(pairs, np.arange(10.0), 100 + np.arange(30.0), 1.0)
    # Brute force over every diagonal stretch inside the matrix.
    brute = max(pairs[np.arange(a, b), np.arange(a, b) + off].sum()
                for off in range(-9, 30) for a in range(10) for b in range(a + 1, 11)
                if 0 <= a + off and b - 1 + off < 30)
    assert run.evidence == pytest.approx(brute)
    span = run.span
    assert span.query_start_s <= 3 and span.query_end_s >= 9
    assert span.ref_start_s - span.query_start_s == pytest.approx(112)
    assert span.ref_end_s - span.query_end_s == pytest.approx(112)


def test_a_missing_probe_second_neither_adds_to_nor_breaks_a_run() -> None:
    seconds = np.array([0.0, 1.0, 3.0, 4.0])  # second 2 was blank
    pairs = np.full((4, 6), -5.0)
    pairs[[0, 1, 2, 3], [1, 2, 4, 5]] = 1.0  # offset +1 throughout
    run = best_run(pairs, seconds, np.arange(6.0), 1.0)
    assert run.evidence == pytest.approx(4.0)
    span = run.span
    assert (span.query_start_s, span.query_end_s, span.ref_start_s, span.ref_end_s) == (0.0, 5.0, 1.0, 6.0)
    assert best_run(np.full((4, 6), -1.0), seconds, np.arange(6.0), 1.0).evidence == 0


def test_a_run_starts_at_its_first_pair_not_before_the_reference_begins() -> None:
    # Probe seconds 2-5 show reference seconds 0-3; on that diagonal probe seconds 0-1 have no reference second.
    pairs = np.full((6, 4), -5.0)
    pairs[[2, 3, 4, 5], [0, 1, 2, 3]] = 1.0
    span = best_run(pairs, np.arange(6.0), np.arange(4.0), 1.0).span
    assert (span.query_start_s, span.query_end_s, span.ref_start_s, span.ref_end_s) == (2.0, 6.0, 0.0, 4.0)


def test_candidates_are_the_videos_hit_most_each_from_where_its_hits_gather() -> None:
    view = ProbeView(np.arange(3.0), np.zeros((3, 4), np.float32),
                     np.array([[5, 7, -1], [5, 9, 7], [5, 8, 3]]),
                     np.array([[10.0, 2.0, 0.0], [12.0, 40.0, 4.0], [30.0, 1.0, 6.0]]))
    # Video 5's hits at 10, 12 and 30: the 5 s holding most of them start at 10.
    assert candidates([view], 2, 5.0) == {5: 10.0, 7: 2.0}
    assert candidates([view], 2, 30.0) == {5: 10.0, 7: 2.0}
    assert candidates([view], 10, 5.0, exclude=5) == {7: 2.0, 3: 6.0, 8: 1.0, 9: 40.0}
    view = ProbeView(np.arange(3.0), np.zeros((3, 4), np.float32), np.full((3, 2), 4),
                     np.array([[1.0, 50.0], [52.0, 53.0], [54.0, 100.0]]))
    assert candidates([view], 1, 5.0) == {4: 50.0}  # four hits in 50-55 against one at 1 and one at 100


class _Store:
    """Just what the sequence check reads: each video's stored raw vectors by time."""

    def __init__(self, videos: dict[int, np.ndarray]) -> None:
        self.videos = videos
        self.reads: list[int] = []
        self.seconds_read = 0

    def vectors_between(self, video_id: int, start_s: float, end_s: float) -> tuple[np.ndarray, np.ndarray]:
        self.reads.append(video_id)
        raw = self.videos[video_id]
        seconds = np.arange(len(raw), dtype=np.float64)
        keep = (seconds >= start_s) & (seconds <= end_s)
        self.seconds_read += int(keep.sum())
        return seconds[keep], raw[keep]


def _library(seed: int = 0) -> tuple[_Store, np.ndarray, Projection]:
    """Three 40-second videos of unrelated random seconds; the probe is seconds 10-24 of video 2 under so much noise
    that any one of its seconds is barely nearer its original than anything else."""
    rng = np.random.default_rng(seed)
    videos = {v: rng.standard_normal((40, 32)).astype(np.float32) for v in (1, 2, 3)}
    probe = 0.35 * videos[2][10:25] + rng.standard_normal((15, 32)).astype(np.float32)
    return _Store(videos), probe, Projection("centre", 32, 32, 120, np.zeros(32, np.float32))


def _view(probe: np.ndarray, hit_videos: list[int]) -> ProbeView:
    n = len(probe)
    return ProbeView(np.arange(n, dtype=np.float64), probe, np.tile(hit_videos, (n, 1)),
                     np.tile(np.arange(len(hit_videos), dtype=np.float64) * 10, (n, 1)))


def test_the_winner_is_the_video_whose_seconds_follow_the_probe() -> None:
    store, probe, projection = _library()
    found = winner([_view(probe, [1, 2, 3])], store, projection, QueryParams())
    assert found is not None
    video_id, span = found
    assert video_id == 2
    assert span.ref_start_s - span.query_start_s == pytest.approx(10)
    assert set(store.reads) == {1, 2, 3}
    # The probe's own video is never a candidate, and a margin no run can meet names no one.
    left_out = winner([_view(probe, [1, 2, 3])], store, projection, QueryParams(), exclude=2)
    assert left_out is None or left_out[0] != 2
    assert winner([_view(probe, [1, 2, 3])], store, projection, QueryParams(sequence_margin=1e9)) is None


def test_a_long_candidate_is_read_only_where_its_hits_gather() -> None:
    rng = np.random.default_rng(3)
    long = rng.standard_normal((3600, 32)).astype(np.float32)  # an hour-long video
    store = _Store({1: rng.standard_normal((40, 32)).astype(np.float32), 2: long})
    probe = 0.35 * long[2000:2015] + rng.standard_normal((15, 32)).astype(np.float32)
    seconds = np.arange(15.0)
    # Its hits: most near the copied stretch, a few anywhere in the hour.
    hit_seconds = np.stack([2000 + seconds, rng.uniform(0, 3600, 15)], axis=1)
    view = ProbeView(seconds, probe, np.tile([2, 2], (15, 1)), hit_seconds)
    other = ProbeView(seconds, probe, np.tile([1, 1], (15, 1)), np.tile([5.0, 20.0], (15, 1)))
    projection = Projection("centre", 32, 32, 3640, np.zeros(32, np.float32))
    found = winner([view, other], store, projection, QueryParams())
    assert found is not None and found[0] == 2 and found[1].ref_start_s - found[1].query_start_s == pytest.approx(2000)
    assert store.seconds_read <= 40 + 3 * 16  # the short video whole, three probe lengths of the hour


def _ranked(*scores: tuple[int, float]) -> list[Ranked]:
    return [Ranked(v, s, (Span(0.0, 1.0, 0.0, 1.0, s),)) for v, s in scores]


def test_a_weak_answer_is_re_ordered_and_a_strong_one_is_not() -> None:
    store, probe, projection = _library()
    views = [_view(probe, [1, 2, 3])]
    weak = _ranked((1, 0.1), (3, 0.05), (2, 0.02))
    out = sequence_checked(weak, views, store, projection, QueryParams())
    assert [(r.video_id, r.score) for r in out] == [(2, 0.1), (1, 0.05), (3, 0.02)]
    assert all(sp.score == pytest.approx(r.score) for r in out for sp in r.spans)
    # The winner's span is its run (offset 10), not the span the search had found, which the run covers.
    assert len(out[0].spans) == 1 and out[0].spans[0].ref_start_s - out[0].spans[0].query_start_s == pytest.approx(10)
    # Not ranked at all: it enters first with the span of its run; the last video keeps its own score.
    out = sequence_checked(weak[:2], views, store, projection, QueryParams())
    assert [(r.video_id, r.score) for r in out] == [(2, 0.1), (1, 0.05), (3, 0.05)]
    assert out[0].spans[0].ref_start_s - out[0].spans[0].query_start_s == pytest.approx(10)
    # At or above sequence_below, or with the check off, nothing moves and nothing is read.
    store.reads.clear()
    strong = _ranked((1, 0.5), (2, 0.02))
    assert sequence_checked(strong, views, store, projection, QueryParams()) == strong
    assert sequence_checked(weak, views, store, projection, QueryParams(sequence_below=0)) == weak
    assert store.reads == []
    assert shown(weak, QueryParams(min_score=0.04, k=1)) == weak[:1]


def test_sequence_settings_are_validated() -> None:
    for bad in ({"sequence_margin": 0.9}, {"sequence_cost": -1.0}, {"sequence_candidates": 1},
                {"sequence_below": 2.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            QueryParams(**bad)


@pytest.fixture
def indexed(lite_index: Path) -> Path:
    return lite_index


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[ProbeView], object]]:
    """Every call of the check's winner: the views it was given and what it named."""
    calls: list[tuple[list[ProbeView], object]] = []
    real = passes.winner

    def spy(views, *args, **kwargs):
        calls.append((list(views), real(views, *args, **kwargs)))
        return calls[-1][1]

    monkeypatch.setattr(passes, "winner", spy)
    return calls


def test_a_query_that_finds_nothing_hands_the_check_its_whole_frame_and_mirror(indexed: Path, media_dir: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _spy(monkeypatch)
    with Library.open(indexed, create=False) as lib:
        lib.query(media_dir / "probe_other.mp4", params=QueryParams(min_score=-1.0, mirror_gate=-1.0))
        assert len(calls) == 1
        views, _ = calls[0]
        assert len(views) == 2  # auto looked at the whole mirror too: nothing scored escalate_below, and its gate
        # passes every sample
        for view in views:
            assert view.raw.shape == (len(view.seconds), 704)
            assert view.hit_videos.shape == view.hit_seconds.shape and len(view.hit_videos) == len(view.seconds)
            assert set(np.unique(view.hit_videos)) <= {v.id for v in lib._store.videos(status="indexed")}


def test_a_clear_copy_keeps_its_answer_when_the_check_looks_at_it(indexed: Path, media_dir: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # sequence_below=1 makes the check look at every answer: a plain copy's own video also wins on order.
    calls = _spy(monkeypatch)
    with Library.open(indexed, create=False) as lib:
        plain = lib.query(media_dir / "probe_a.mp4", params=QueryParams(min_score=-1.0, sequence_below=0))
        assert not calls
        looked = lib.query(media_dir / "probe_a.mp4", params=QueryParams(min_score=-1.0, sequence_below=1.0))
        pan_a = lib._store.video_by_path(str(media_dir / "library" / "pan_a.mp4"))
    assert len(calls) == 1 and calls[0][1] is not None and calls[0][1][0] == pan_a.id
    span = calls[0][1][1]
    assert span.ref_start_s - span.query_start_s == pytest.approx(5.0, abs=1.0)  # probe_a is pan_a from 5 s
    assert [(m.path, m.score) for m in looked.matches] == [(m.path, m.score) for m in plain.matches]
    assert Path(looked.matches[0].path).name == "pan_a.mp4"


def test_a_query_of_an_indexed_video_hands_the_check_its_stored_seconds(indexed: Path, media_dir: Path,
                                                                       tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    idx = shutil.copytree(indexed, tmp_path / "idx")
    clip = shutil.copy(media_dir / "probe_a.mp4", tmp_path / "copy_a.mp4")
    with Library.open(idx, create=False) as lib:
        lib.index([clip])
    calls = _spy(monkeypatch)
    with Library.open(idx, create=False) as lib:
        result = lib.query(clip, params=QueryParams(min_score=-1.0, sequence_below=1.0))
        own = lib._store.video_by_path(str(clip))
        _, stored_s, _ = lib._store.vectors_of_video(own.id)
    assert result.indexed and len(calls) == 1
    views, found = calls[0]
    assert len(views) == 1 and np.array_equal(views[0].seconds, stored_s)
    assert found is not None and found[0] != own.id
    assert Path(result.matches[0].path).name == "pan_a.mp4" and "copy_a.mp4" not in {Path(m.path).name
                                                                                      for m in result.matches}
