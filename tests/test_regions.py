"""The query's region check (:mod:`sora_search.query.regions`): the scoring on its own, then through a real index
whose library seconds keep their quadrants."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sora_search import Library
from sora_search.cli import cli
from sora_search.params import QueryParams
from sora_search.query import regions
from sora_search.query.regions import centred, region_score, shifts
from sora_search.types import Span
from tests.media import concat, cut


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_two_spoiled_quadrants_still_match_and_the_best_reference_second_counts() -> None:
    rng = np.random.default_rng(0)
    ref = _unit(rng.standard_normal((3, 4, 16)))  # three reference seconds
    probe = ref[[1, 2]].copy()  # a copy of seconds 1-2 ...
    probe[:, :2] = _unit(rng.standard_normal((2, 2, 16)))  # ... with its top half covered
    span = Span(query_start_s=0.0, query_end_s=2.0, ref_start_s=1.0, ref_end_s=3.0, score=0.5)
    probe_s, ref_s = np.array([0.5, 1.5]), np.array([0.5, 1.5, 2.5])
    assert region_score(probe_s, probe, span, ref_s, ref) == pytest.approx(1.0)
    # Every quadrant a little alike (cosine 0.5) is worse than two matching exactly and two not at all.
    near = _unit(0.5 * ref + np.sqrt(0.75) * _unit(rng.standard_normal(ref.shape)))
    assert region_score(probe_s, ref[[1, 2]], span, ref_s, near) < 0.75
    outside = Span(query_start_s=5.0, query_end_s=6.0, ref_start_s=1.0, ref_end_s=3.0, score=0.5)
    assert region_score(probe_s, probe, outside, ref_s, ref) is None
    assert region_score(probe_s, probe, span, ref_s[:0], ref[:0]) is None


def test_shifts_rank_the_checked_videos_among_themselves_and_only_take_away() -> None:
    assert shifts({1: 0.9, 2: 0.5, 3: 0.3}, 0.25) == pytest.approx({1: 0.0, 2: -0.1, 3: -0.15})
    # A video without regions (indexed before they were stored) would never lose: then nothing moves.
    assert shifts({1: 0.9, 2: 0.5, 3: None}, 0.25) == {}
    assert shifts({1: 0.9}, 0.25) == {}  # one score has nothing to be compared with
    assert shifts({1: 0.9, 2: 0.5}, 0.0) == {}


def test_centred_regions_are_unit_length_and_a_region_equal_to_the_mean_stays_zero() -> None:
    mean = np.ones((2, 3), np.float32)
    out = centred(np.array([[[2, 1, 1], [1, 1, 1]]], np.float32), mean)
    np.testing.assert_allclose(out, [[[1, 0, 0], [0, 0, 0]]])


@pytest.fixture
def indexed(lite_index: Path) -> Path:
    return lite_index


def test_library_seconds_keep_their_quadrants_and_the_projection_their_mean(indexed: Path) -> None:
    with Library.open(indexed, create=False) as lib:
        _, projection = lib._keeper.searchable()
        assert projection.region_mean is not None and projection.region_mean.shape == (4, 704)
        for video in lib._store.videos(status="indexed"):
            times, stored = lib._store.regions_between(video.id, -1.0, 1e9)
            assert len(times) == video.n_vectors and stored.shape == (video.n_vectors, 4, 704)
        info = lib.info()
        assert info.extra["region_vectors"] == info.vectors > 0 and info.extra["region_check"] is True


def test_a_copy_with_a_quarter_covered_moves_ahead_of_the_other_videos(indexed: Path, media_dir: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Seconds 4-10 of pan_a (the astronaut, then the coffee pan_b shows too) under a white box over its top left.
    probe = cut(media_dir / "library" / "pan_a.mp4", tmp_path / "boxed.mp4", 4, 6,
                extra_vf="drawbox=x=0:y=0:w=iw*0.55:h=ih*0.55:color=white:t=fill")
    scored: list[float | None] = []  # one per checked video
    real = regions.region_score

    def spy(*args, **kwargs):
        scored.append(real(*args, **kwargs))
        return scored[-1]

    monkeypatch.setattr(regions, "region_score", spy)
    with Library.open(indexed, create=False) as lib:
        plain = lib.query(probe, params=QueryParams(views="fast", min_score=-1.0, region_weight=0.0))
        assert not scored  # weight 0: nothing checked
        checked = lib.query(probe, params=QueryParams(views="fast", min_score=-1.0))
    before = {Path(m.path).name: m.score for m in plain.matches}
    after = {Path(m.path).name: m.score for m in checked.matches}
    assert len(scored) >= 2 and sorted(before) == sorted(after)
    assert Path(checked.matches[0].path).name == "pan_a.mp4"
    # The copy's own video keeps its score (its parts agree best); the other loses.
    assert after["pan_a.mp4"] == before["pan_a.mp4"]
    assert all(after[name] < before[name] for name in after if name != "pan_a.mp4")


def test_a_query_of_an_indexed_video_is_checked_against_its_stored_regions(indexed: Path, media_dir: Path,
                                                                           tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # Boxed seconds of pan_a, then of mandel, indexed too; queried by its path, the clip is answered from its stored
    # vectors and regions, and both videos it holds are checked.
    lib_dir = media_dir / "library"
    box = "drawbox=x=0:y=0:w=iw*0.55:h=ih*0.55:color=white:t=fill"
    clip = concat([cut(lib_dir / "pan_a.mp4", tmp_path / "a.mp4", 0, 6, extra_vf=box),
                   cut(lib_dir / "mandel.mp4", tmp_path / "m.mp4", 2, 6, extra_vf=box)], tmp_path / "boxed.mp4")
    idx = shutil.copytree(indexed, tmp_path / "idx")
    with Library.open(idx, create=False) as lib:
        lib.index([clip])
    from sora_search.decode import DecodeWorker

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("decoded a video whose vectors and regions are stored")

    monkeypatch.setattr(DecodeWorker, "open", boom)
    scored: list[float | None] = []
    real = regions.region_score
    monkeypatch.setattr(regions, "region_score", lambda *a, **k: scored.append(real(*a, **k)) or scored[-1])
    with Library.open(idx, create=False) as lib:
        plain = lib.query(clip, params=QueryParams(min_score=-1.0, region_weight=0.0))
        assert not scored and plain.indexed
        checked = lib.query(clip, params=QueryParams(min_score=-1.0))
    before = {Path(m.path).name: m.score for m in plain.matches}
    after = {Path(m.path).name: m.score for m in checked.matches}
    assert len(scored) == len(before) >= 2 and sorted(before) == sorted(after) and "boxed.mp4" not in after
    assert {"pan_a.mp4", "mandel.mp4"} <= set(after)
    # The best-agreeing video keeps its score; every other loses.
    kept = [name for name in after if after[name] == before[name]]
    assert len(kept) == 1 and all(after[name] < before[name] for name in after if name not in kept)


def test_index_add_regions_fills_in_the_regions_of_videos_indexed_without_them(media_dir: Path, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from sora_search.encoder.sora import SoraLite0Encoder

    library, idx = media_dir / "library", tmp_path / "idx"
    with monkeypatch.context() as m:  # as an index from before schema 0003 stored regions
        m.setattr(SoraLite0Encoder, "region_count", 0)
        with Library.open(idx, encoder="sora-lite0", device="cpu") as lib:
            first = lib.index([library])
    with Library.open(idx, create=False) as lib:
        info = lib.info()
        assert info.extra["region_vectors"] == 0 and info.extra["region_check"] is False
        assert not lib.index([library]).updated  # without the flag, unchanged videos stay as they are
    shown = CliRunner().invoke(cli, ["info", "--index", str(idx)]).output
    assert "region check off (`index --add-regions PATH` adds the rest)" in shown, shown
    filled = CliRunner().invoke(cli, ["index", str(library), "--index", str(idx), "--add-regions"])
    assert filled.exit_code == 0 and f"0 added, {len(first.added)} updated" in filled.output, filled.output
    assert "region check on\n" in CliRunner().invoke(cli, ["info", "--index", str(idx)]).output
    with Library.open(idx, create=False) as lib:
        info = lib.info()
        assert info.extra["region_vectors"] == info.vectors > 0 and info.extra["region_check"] is True
        assert not lib.index([library], add_regions=True).updated  # nothing left to fill in
