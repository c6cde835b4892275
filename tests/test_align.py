"""Temporal alignment on synthetic hits: offsets, speed changes, partial overlap, noise, several segments."""

from __future__ import annotations

import numpy as np
import pytest

from sora_search.params import AlignParams, QueryParams
from sora_search.query.align import Hits, align, group_hits, novelty_weights
from sora_search.query.background import Copies, background, background_similarity, merge_copies


def _hits(pairs, sim=0.9, noise=0, seed=0, probe_len=20, ref_len=120):
    rng = np.random.default_rng(seed)
    q = [p[0] for p in pairs]
    r = [p[1] for p in pairs]
    s = [sim] * len(pairs)
    for _ in range(noise):  # chance hits: anywhere, near the background level (normalised similarity about 0)
        q.append(float(rng.integers(0, probe_len)))
        r.append(float(rng.integers(0, ref_len)))
        s.append(float(rng.uniform(-0.3, 0.1)))
    return Hits(np.array(q, float), np.array(r, float), np.array(s, np.float32))


def test_constant_offset_is_one_segment_with_exact_spans():
    hits = _hits([(t, t + 30) for t in range(10)], noise=30)
    spans = align(hits, probe_duration_s=10)
    top = spans[0]
    assert (top.query_start_s, top.query_end_s) == (0, 10)
    assert (top.ref_start_s, top.ref_end_s) == (30, 40)
    assert top.score == pytest.approx(0.9 * 10 / 11, rel=1e-5)


@pytest.mark.parametrize("speed", [0.5, 0.8, 1.25, 2.0])
def test_speed_change_is_followed(speed):
    # Probe played at `speed`: probe second t shows reference second 50 + speed*t (sampled at 1 fps).
    pairs = [(t, float(np.floor(50 + speed * t))) for t in range(12)]
    top = align(_hits(pairs, noise=40, seed=1, probe_len=12), probe_duration_s=12)[0]
    assert top.query_start_s == 0 and top.query_end_s == 12
    assert abs(top.ref_start_s - 50) <= 1
    assert abs(top.ref_end_s - (50 + speed * 12)) <= 2


def test_partial_overlap_locates_the_copied_part():
    # Probe 0-30 s; only probe 10-20 s is a copy of reference 60-70 s.
    top = align(_hits([(t, t + 50) for t in range(10, 20)], noise=60, seed=2, probe_len=30), 30)[0]
    assert (top.query_start_s, top.query_end_s) == (10, 20)
    assert (top.ref_start_s, top.ref_end_s) == (60, 70)


def test_two_pieces_of_one_video_give_two_segments():
    pairs = [(t, t + 100) for t in range(0, 8)] + [(t, t - 10) for t in range(20, 28)]
    spans = align(_hits(pairs), probe_duration_s=28)
    assert len(spans) == 2
    assert {(s.ref_start_s, s.ref_end_s) for s in spans} == {(100, 108), (10, 18)}


def test_chance_hits_score_below_a_real_copy():
    noise_only = align(_hits([], noise=40, seed=3), 20)
    copy = align(_hits([(t, t + 5) for t in range(20)], sim=0.8), 20)
    best_noise = noise_only[0].score if noise_only else 0.0
    assert copy[0].score > best_noise + 0.2


def test_backwards_hits_do_not_chain():
    pairs = [(t, 40 - t) for t in range(10)]  # reversed playback is not a copy in time order
    spans = align(_hits(pairs), 10, AlignParams(min_hits=3))
    assert not spans


def test_group_hits_splits_by_video_and_drops_missing():
    probe_s = np.array([0.0, 1.0])
    vids = np.array([[1, 2, -1], [2, 1, 1]])
    ref = np.array([[5.0, 7.0, np.nan], [8.0, 6.0, 9.0]])
    sims = np.array([[0.9, 0.8, 0.0], [0.7, 0.6, 0.5]], np.float32)
    groups = group_hits(probe_s, vids, ref, sims)
    assert set(groups) == {1, 2}
    np.testing.assert_array_equal(groups[1].ref_s, [5.0, 6.0, 9.0])
    np.testing.assert_array_equal(groups[2].query_s, [0.0, 1.0])


def test_static_footage_is_aligned_at_real_time_speed():
    # Every probe second matches every reference second equally well (a fixed camera on a still scene).
    pairs = [(float(t), float(u)) for t in range(10) for u in range(30)]
    top = align(_hits(pairs, sim=0.85), probe_duration_s=10)[0]
    assert top.query_end_s - top.query_start_s == 10
    assert top.ref_end_s - top.ref_start_s == pytest.approx(10, abs=1)


def test_background_is_the_mean_of_the_next_best_videos():
    # Row 0: video 7 is the copy (best); videos 1-5 follow at 0.5 .. 0.1, each seen twice (the second, weaker
    # neighbour of a video must not count as another video).
    vid = np.array([[7, 7, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]])
    sims = np.array([[0.9, 0.8, 0.5, 0.45, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1, 0.05]], np.float32)
    bg = background_similarity(vid, sims, n_videos=100, skip=1, take=5)
    assert bg[0] == pytest.approx(np.mean([0.5, 0.4, 0.3, 0.2, 0.1]))


def test_background_ignores_neighbour_order():
    vid = np.array([[7, 1, 2, 3, 4, 5, 7, 1]])
    sims = np.array([[0.9, 0.5, 0.4, 0.3, 0.2, 0.1, 0.8, 0.45]], np.float32)
    perm = np.random.default_rng(0).permutation(8)
    assert background_similarity(vid[:, perm], sims[:, perm], 100)[0] == pytest.approx(0.3)


def test_background_fills_unseen_videos_with_the_last_neighbour():
    # A full row that saw only videos 7 and 1: the other videos of a large library score at most the last hit.
    vid = np.array([[7, 7, 7, 1]])
    sims = np.array([[0.9, 0.8, 0.7, 0.6]], np.float32)
    assert background_similarity(vid, sims, n_videos=100)[0] == pytest.approx((0.6 + 4 * 0.6) / 5)


def test_background_of_small_libraries_counts_only_videos_that_exist():
    # Padded rows (-1) hold the whole library: nothing unseen to fill in.
    vid = np.array([[7, 1, -1, -1], [7, 7, -1, -1]])
    sims = np.array([[0.9, 0.1, 0, 0], [0.9, 0.8, 0, 0]], np.float32)
    bg = background_similarity(vid, sims, n_videos=2, floor=0.0)
    assert bg[0] == pytest.approx(0.1)
    assert bg[1] == 0.0  # one video seen and it is the best: no background
    assert background_similarity(np.array([[7, 7]]), np.array([[0.9, 0.8]], np.float32), n_videos=1, floor=0.0)[0] == 0.0


def test_background_never_falls_below_the_floor():
    # A small library of unrelated videos is a weak background: the prior floor stands in for footage in general.
    vid = np.array([[7, 1, 2, -1], [7, 7, -1, -1]])
    sims = np.array([[0.9, 0.1, 0.05, 0], [0.9, 0.8, 0, 0]], np.float32)
    bg = background_similarity(vid, sims, n_videos=3, floor=0.2)
    assert bg == pytest.approx([0.2, 0.2])
    vid = np.array([[7, 1, 2, 3]])
    sims = np.array([[0.9, 0.5, 0.4, 0.3]], np.float32)
    assert background_similarity(vid, sims, n_videos=4, floor=0.2)[0] == pytest.approx(0.4)  # above it: unchanged


def _unit(rows):
    v = np.asarray(rows, np.float64)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class _Timelines:
    """A store of videos' raw descriptors, one per second: video v's second t has the vector id 100 v + t."""

    def __init__(self, videos: dict[int, np.ndarray]) -> None:
        self.videos = videos

    def _where(self, ids: np.ndarray) -> list[int]:
        return [i for i in np.unique(np.asarray(ids, dtype=np.int64)).tolist()
                if i // 100 in self.videos and i % 100 < len(self.videos[i // 100])]

    def vectors_by_id(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        found = self._where(ids)
        return np.asarray(found, dtype=np.int64), np.asarray([self.videos[i // 100][i % 100] for i in found])

    def locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(ids, dtype=np.int64)
        return ids // 100, (ids % 100).astype(np.float64)

    def vectors_near(self, video_id: int, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        at = np.clip(np.rint(times_s), 0, len(self.videos[video_id]) - 1).astype(int)
        return at.astype(np.float64), self.videos[video_id][at]

    def video(self, video_id: int):
        from types import SimpleNamespace

        return SimpleNamespace(duration_s=float(len(self.videos[video_id])))


def _copies_library(seed: int = 0) -> dict[int, np.ndarray]:
    """Video 7 (20 s of distinct seconds), 8 and 9 re-encodes of it, 3 a video that shares its first 4 s (an intro),
    1-6 and 10-12 unrelated."""
    rng = np.random.default_rng(seed)
    original = rng.standard_normal((20, 16))
    videos = {v: rng.standard_normal((20, 16)) for v in (1, 2, 4, 5, 6, 10, 11, 12)}
    videos[7] = original
    videos[8] = original + 0.01 * rng.standard_normal(original.shape)
    videos[9] = original + 0.01 * rng.standard_normal(original.shape)
    videos[3] = np.concatenate([original[:4], rng.standard_normal((16, 16))])
    return videos


def test_copies_of_the_best_video_count_as_it_and_a_shared_intro_does_not():
    store = _Timelines(_copies_library())
    # One probe second in the intro (second 2 of each video), one past it (second 10; video 3 is not there).
    vid = np.array([[7, 8, 3, 9, 1, 2, 4, 5, 6], [7, 8, 9, 1, 2, 4, 5, 6, 10]])
    ids = np.array([[702, 802, 302, 902, 102, 202, 402, 502, 602], [710, 810, 910, 110, 210, 410, 510, 610, 1010]])
    times = ids % 100.0
    merged = merge_copies(vid, ids, times, Copies(store, 0.995), most=8, ranks=6)
    assert merged.tolist() == [[7, 7, 3, 7, 1, 2, 4, 5, 6], [7, 7, 7, 1, 2, 4, 5, 6, 10]]
    # More copies than ``most``: footage that many videos hold stays background; none merges.
    assert merge_copies(vid, ids, times, Copies(store, 0.995), most=1, ranks=6).tolist() == vid.tolist()
    assert merge_copies(vid, ids, times, Copies(store, 0.995), most=0, ranks=6) is vid


def _edited_library(seed: int = 0) -> dict[int, np.ndarray]:
    """Video 7 (20 s near a common look, each second its own), 8 an edited copy of it (the same seconds shifted by
    one fixed edit), 3 a look-alike (as close to 7 second by second, changing its own way), 1-2 and 4-6 unrelated."""
    rng = np.random.default_rng(seed)
    common = _unit([rng.standard_normal(16)])[0]
    edit = _unit([rng.standard_normal(16)])[0]
    videos = {v: rng.standard_normal((20, 16)) for v in (1, 2, 4, 5, 6)}
    videos[7] = common + 0.07 * rng.standard_normal((20, 16))
    videos[8] = videos[7] + 0.12 * edit
    videos[3] = common + 0.07 * rng.standard_normal((20, 16))
    return videos


def test_an_edited_copy_counts_as_the_video_where_its_changes_agree_and_a_look_alike_does_not():
    store = _Timelines(_edited_library())
    rows = np.arange(4, 10)  # six probe seconds whose best video is 7, its copy 8 and the look-alike 3 next
    vid = np.array([[7, 8, 3, 1, 2, 4, 5, 6]] * len(rows))
    ids = 100 * vid + rows[:, None]
    judge = Copies(store, 0.995, 0.5)
    assert not judge.whole(7, 8, 0.0) and not judge.whole(7, 3, 0.0)  # neither is near-identical
    assert judge.edited(7, 8, 0.0) and not judge.edited(7, 3, 0.0)
    merged = merge_copies(vid, ids, ids % 100.0, judge, most=8, ranks=6)
    assert merged.tolist() == [[7, 7, 3, 1, 2, 4, 5, 6]] * len(rows)
    # Off by default where the judge has no agreement to ask for; and an offset only two seconds share is chance.
    assert merge_copies(vid, ids, ids % 100.0, Copies(store, 0.995), most=8, ranks=6).tolist() == vid.tolist()
    assert merge_copies(vid[:2], ids[:2], ids[:2] % 100.0, judge, most=8, ranks=6).tolist() == vid[:2].tolist()


def test_two_videos_that_drift_one_way_all_along_are_not_edited_copies():
    # A zoom into two different scenes: every second moves the same way in both (their changes' cosine, pooled over
    # the stretch, is 0.68), with small changes of their own on top; at no moment more alike than at any other.
    rng = np.random.default_rng(3)
    scene, other, drift = _unit(rng.standard_normal((3, 16)))
    walk = 0.1 * np.arange(20)[:, None] * drift
    store = _Timelines({1: scene + walk + 0.01 * rng.standard_normal((20, 16)),
                        2: scene + 0.3 * other + walk + 0.01 * rng.standard_normal((20, 16))})
    judge = Copies(store, 0.995, 0.55)
    assert not judge.whole(1, 2, 0.0) and not judge.edited(1, 2, 0.0)


def test_footage_that_does_not_change_gets_no_verdict_on_edited_copies():
    still = np.tile(_unit([np.arange(1.0, 17.0)]), (20, 1))
    store = _Timelines({1: still, 2: still + 0.05})
    assert not Copies(store, 0.995, 0.5).edited(1, 2, 0.0)
    assert Copies(store, 0.995, 0.5).whole(1, 2, 0.0)  # near-identical all the same


def test_a_video_left_out_is_not_the_best_one_copies_are_judged_against():
    # The probe is library video 7 (a query of an indexed video): its copies 8 and 9 merge into 8, the best other.
    store = _Timelines(_copies_library())
    vid = np.array([[7, 8, 9, 1, 2]])
    ids = np.array([[705, 805, 905, 105, 205]])
    merged = merge_copies(vid, ids, ids % 100.0, Copies(store, 0.995), most=8, ranks=6, exclude=np.array([7]))
    assert merged.tolist() == [[7, 8, 8, 1, 2]]


def test_a_video_stored_six_times_is_one_video_of_the_background():
    # Six copies of one video and five unrelated ones: the copies would be each other's whole background (ranks
    # 2-6), as a query of any of them would see; merged, the background is the unrelated videos'.
    library = _copies_library()
    for v in (13, 14, 15):
        library[v] = library[7] + 0.01 * np.random.default_rng(v).standard_normal(library[7].shape)
    store = _Timelines(library)
    vid = np.array([[7, 8, 9, 13, 14, 15, 1, 2, 4, 5, 6]])
    sims = np.array([[0.9, 0.89, 0.88, 0.88, 0.87, 0.86, 0.3, 0.28, 0.26, 0.24, 0.22]], np.float32)
    ids = 100 * vid + 5

    def bg(**knobs) -> float:
        params = QueryParams(background_floor=0.0, **knobs)
        return float(background(lambda q, k: (sims, ids), store.locate, 11, np.zeros((1, 4)), vid, sims, 100, params,
                                ids=ids, times=ids % 100.0, copies_of=Copies(store, params.copy_similarity))[0])

    assert bg() == pytest.approx(np.mean([0.3, 0.28, 0.26, 0.24, 0.22]))
    assert bg(copies_merged=0) == pytest.approx(np.mean([0.89, 0.88, 0.88, 0.87, 0.86]))


def test_novelty_is_how_far_a_second_moved_from_the_one_before():
    a, b = [1.0, 0.0], [0.0, 1.0]
    w = novelty_weights(_unit([a, a, b, b, a, [1.0, 0.25]]))
    # first second: 1; a held frame: 0; a cut: 1; a change between NOVELTY_FLOOR and NOVELTY_FULL: in between.
    dist = 1 - 1 / np.sqrt(1 + 0.25 ** 2)
    floor, full = QueryParams().novelty_floor, QueryParams().novelty_full
    assert full is not None and floor < dist < full
    expected = (dist - floor) / (full - floor)
    np.testing.assert_allclose(w, [1, 0, 1, 0, 1, expected], atol=1e-12)


def test_novelty_off_weighs_every_second_fully():
    np.testing.assert_array_equal(novelty_weights(_unit([[1.0, 0.0]] * 4), full=None), np.ones(4))


def test_a_held_frame_counts_as_one_second_of_evidence():
    pairs = [(t, t + 30) for t in range(10)]
    moving = align(_hits(pairs, sim=0.6), 10)[0]
    held = Hits(*[np.array(x) for x in zip(*[(q, r, 0.6) for q, r in pairs])], weight=np.array([1.0] + [0.0] * 9))
    still = align(held, 10)[0]
    assert moving.score == pytest.approx(0.6 * 10 / 11)
    assert still.score == pytest.approx(0.6 / 2)
    assert (still.ref_start_s, still.ref_end_s) == (moving.ref_start_s, moving.ref_end_s) == (30, 40)


def test_a_segment_starting_inside_a_held_stretch_counts_its_first_second():
    # Weight 0 everywhere (a chain that starts after the probe's first second, inside a still): not a score of 0.
    hits = Hits(np.arange(5.0, 10.0), np.arange(35.0, 40.0), np.full(5, 0.6, np.float32), weight=np.zeros(5))
    assert align(hits, 10)[0].score == pytest.approx(0.6 / 2)


def test_group_hits_carries_each_probe_seconds_weight():
    groups = group_hits(np.array([0.0, 1.0]), np.array([[1, 2], [1, -1]]), np.array([[5.0, 7.0], [6.0, np.nan]]),
                        np.array([[0.9, 0.8], [0.7, 0.0]], np.float32), weights=np.array([1.0, 0.25]))
    np.testing.assert_array_equal(groups[1].weight, [1.0, 0.25])
    np.testing.assert_array_equal(groups[2].weight, [1.0])


@pytest.mark.parametrize("repeat_weight, distinct", [(0.0, 5), (None, 10)])
def test_a_reference_second_seen_twice_counts_once(repeat_weight, distinct):
    # A copy slowed to 0.5x: probe seconds 0..9 show reference seconds 30, 30, 31, 31, ... 34, 34.
    pairs = [(float(t), float(30 + t // 2)) for t in range(10)]
    top = align(_hits(pairs, sim=0.6), 10, AlignParams(repeat_weight=repeat_weight))[0]
    assert (top.query_start_s, top.query_end_s, top.ref_start_s, top.ref_end_s) == (0, 10, 30, 35)
    assert top.score == pytest.approx(0.6 * distinct / (distinct + 1))


def _chain_over_every_earlier_hit(q, r, s, p: AlignParams) -> np.ndarray:
    """The chain search written plainly, each hit looking back over every earlier hit in the gap: the oracle for the
    one that looks only at hits whose chains weigh more than 0."""
    n = len(q)
    sa = s - p.hit_threshold
    best, prev, first = sa.copy(), np.full(n, -1), np.arange(n)
    tol = p.interval_s
    for i in range(n):
        for j in range(i):
            dq, dr, gq, gr = q[i] - q[j], r[i] - r[j], q[i] - q[first[j]], r[i] - r[first[j]]
            if not (0 < dq <= p.max_gap_s and 0 <= dr and p.min_speed * dq - tol <= dr <= p.max_speed * dq + tol
                    and p.min_speed * gq - tol <= gr <= p.max_speed * gq + tol):
                continue
            cand = best[j] - p.speed_penalty * abs(dr - dq)
            if cand > 0 and (prev[i] < 0 or cand > best[i] - sa[i]):
                best[i], prev[i], first[i] = sa[i] + cand, j, first[j]
    i = int(np.argmax(best))
    chain = []
    while best[i] > 0 and i >= 0:
        chain.append(i)
        i = int(prev[i])
    return np.array(chain[::-1], dtype=np.int64)


def test_the_chain_search_finds_the_chain_a_look_at_every_earlier_hit_finds() -> None:
    from sora_search.query.align import _best_chain

    rng = np.random.default_rng(7)
    for trial in range(200):
        n = int(rng.integers(1, 60))
        q = np.sort(rng.integers(0, 30, n)).astype(np.float64)
        r = rng.integers(0, 60, n).astype(np.float64)
        r[: n // 3] = q[: n // 3] + 10  # a copy among chance hits
        s = np.round(rng.uniform(-0.2, 1.0 if trial % 2 else 0.3, n), 3)
        order = np.lexsort((r, q))
        q, r, s = q[order], r[order], s[order]
        p = AlignParams(hit_threshold=float(rng.uniform(0, 0.4)), speed_penalty=float(rng.uniform(0, 0.1)))
        got = _best_chain(q, r, s, np.ones(n, dtype=bool), p)
        want = _chain_over_every_earlier_hit(q, r, s, p)
        assert np.array_equal(got, want), (trial, got, want)
