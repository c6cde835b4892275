"""Motion agreement: a copy changes as its original does, another stretch of the same scene does not."""

from __future__ import annotations

from types import SimpleNamespace

import faiss
import numpy as np
import pytest

from sora_search.encoder import Projection
from sora_search.params import QueryParams
from sora_search.query.motion import motion_agreement
from sora_search.query.passes import ProbeSearch
from sora_search.types import Span

DIM = 32


def _walk(n: int, seed: int, step: float = 0.3, start: np.ndarray | None = None) -> np.ndarray:
    """(n, DIM) L2-normalised vectors that drift: a scene that keeps changing a little."""
    rng = np.random.default_rng(seed)
    x = (np.ones(DIM) if start is None else start) + np.cumsum(rng.normal(0, step, (n, DIM)), axis=0)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _noisy(x: np.ndarray, seed: int, sigma: float = 0.01) -> np.ndarray:
    y = x + np.random.default_rng(seed).normal(0, sigma, x.shape)
    return y / np.linalg.norm(y, axis=1, keepdims=True)


def _span(q0: float, q1: float, r0: float, r1: float) -> Span:
    return Span(query_start_s=q0, query_end_s=q1, ref_start_s=r0, ref_end_s=r1, score=0.3)


def test_a_copy_agrees_and_another_stretch_does_not():
    ref = _walk(60, seed=0)
    ref_s = np.arange(60.0)
    probe_s = np.arange(12.0)
    copy = _noisy(ref[20:32], seed=1)
    assert motion_agreement(probe_s, copy, _span(0, 12, 20, 32), ref_s, ref, min_step=0.05) > 0.8
    # Another stretch starting from the same picture: same scene, its own changes.
    other = _walk(12, seed=2, start=ref[20] * np.linalg.norm(np.ones(DIM)))
    assert abs(motion_agreement(probe_s, other, _span(0, 12, 20, 32), ref_s, ref, min_step=0.05)) < 0.4


def test_a_copy_played_at_twice_the_speed_still_agrees():
    ref, ref_s = _walk(80, seed=3), np.arange(80.0)
    copy = _noisy(ref[10:50:2], seed=4)  # probe second t shows reference second 10 + 2t
    agreement = motion_agreement(np.arange(20.0), copy, _span(0, 20, 10, 50), ref_s, ref, min_step=0.05)
    assert agreement > 0.9


def test_changes_the_other_way_round_disagree():
    ref, ref_s = _walk(30, seed=5), np.arange(30.0)
    mirrored = _noisy(2 * ref[5] - ref[5:15], seed=6)  # every change reversed
    assert motion_agreement(np.arange(10.0), mirrored, _span(0, 10, 5, 15), ref_s, ref, min_step=0.05) < -0.8


def test_still_footage_gets_no_verdict():
    still = np.tile(_walk(1, seed=7), (20, 1))
    ref = _noisy(still, seed=8, sigma=0.001)
    s = np.arange(20.0)
    assert motion_agreement(s, _noisy(still, seed=9, sigma=0.001), _span(0, 20, 0, 20), s, ref, min_step=0.05) is None
    # Outside the probe or the library: nothing to compare either.
    assert motion_agreement(s, ref, _span(30, 40, 0, 10), s, ref, min_step=0.05) is None
    assert motion_agreement(s, ref, _span(0, 10, 0, 10), s[:0], ref[:0], min_step=0.05) is None


class _Store:
    """The store calls ProbeSearch makes; video v's vector at second t has the id 100 (v - 1) + t."""

    def __init__(self, videos: dict[int, np.ndarray]) -> None:
        self.videos = videos

    def locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(ids)
        return np.where(ids < 0, -1, 1 + ids // 100), (ids % 100).astype(np.float64)

    def vectors_between(self, video_id: int, start_s: float, end_s: float) -> tuple[np.ndarray, np.ndarray]:
        s = np.arange(len(self.videos[video_id]), dtype=np.float64)
        keep = (s >= start_s) & (s <= end_s)
        return s[keep], self.videos[video_id][keep].astype(np.float32)

    def vectors_by_id(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        found = [i for i in np.unique(np.asarray(ids, dtype=np.int64)).tolist()
                 if i >= 0 and 1 + i // 100 in self.videos and i % 100 < len(self.videos[1 + i // 100])]
        vectors = [self.videos[1 + i // 100][i % 100] for i in found]
        dim = next(iter(self.videos.values())).shape[1]
        return np.asarray(found, dtype=np.int64), np.asarray(vectors, dtype=np.float32).reshape(len(found), dim)

    def vectors_near(self, video_id: int, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        at = np.clip(np.rint(times_s), 0, len(self.videos[video_id]) - 1).astype(int)
        return at.astype(np.float64), self.videos[video_id][at].astype(np.float32)

    def video(self, video_id: int) -> SimpleNamespace:
        return SimpleNamespace(duration_s=float(len(self.videos[video_id])))


def _probe(vectors: np.ndarray):
    """A probe seen whole, one vector a second, without region vectors (no region check)."""
    from sora_search.embed import Embedded
    from sora_search.types import VideoInfo

    return Embedded(VideoInfo(duration_s=float(len(vectors)), fps=25.0, width=64, height=64),
                    np.arange(len(vectors), dtype=np.float64), {"full": vectors.astype(np.float32)},
                    {"full": np.zeros(len(vectors), dtype=bool)})


@pytest.mark.parametrize("weight", [0.0, 0.3])
def test_the_video_that_moves_with_the_probe_gains_and_the_other_loses(weight):
    # Video 1 holds the probe's footage; video 2 is another stretch of the same scene, as close frame by frame.
    original = _walk(40, seed=10, step=0.25)
    probe = _noisy(original[10:22], seed=11, sigma=0.05)
    stretch = np.concatenate([original[:10], _noisy(original[10:22], seed=12, sigma=0.05)[::-1], original[22:]])
    videos = {1: original, 2: stretch, **{v: _walk(40, seed=v) for v in range(3, 9)}}  # and unrelated footage
    index = faiss.IndexIDMap(faiss.IndexFlatIP(DIM))
    for v, x in videos.items():
        index.add_with_ids(x.astype(np.float32), 100 * (v - 1) + np.arange(40, dtype=np.int64))
    params = QueryParams(motion_weight=weight, runner_up_gap=0.0, min_score=-1.0, background_floor=0.0)
    search = ProbeSearch(index, Projection.identity(DIM), _Store(videos), len(videos), params)
    search.add(_probe(probe))
    before = {v: spans[0].score for v, spans in search.best.items()}
    after = {r.video_id: r.score for r in search.ranked()}
    if weight == 0:
        assert after == pytest.approx(before)
    else:
        assert after[1] > before[1] and after[2] < before[2]
        assert next(iter(after)) == 1
