"""Copies inside the library (``dupes``, ``Library.duplicates``) and ``query`` of an indexed video.

The bookkeeping (batches, formats, keep rules, a library of one, an empty index, nothing decoded) runs with the
``tiny`` encoder; what depends on the real one (two bitrates, a compilation, a trailer-like cut, a shared intro, black
openings) runs on one library indexed once with ``sora-lite0``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from sora_search import Library
from sora_search.cli import cli
from sora_search.errors import EmptyIndex
from sora_search.params import KEEP_RULES, DupesParams, QueryParams
from sora_search.types import DuplicatePair
from tests.media import concat, cut, ffmpeg, lavfi_source, make_photo_clip, skimage_photos


def _forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    from sora_search.decode import DecodeWorker

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("decoded a video whose vectors are stored")

    monkeypatch.setattr(DecodeWorker, "open", boom)


def _names(pair: DuplicatePair) -> tuple[str, str]:
    return Path(pair.a).name, Path(pair.b).name


def _by_names(report) -> dict[tuple[str, str], DuplicatePair]:
    return {_names(p): p for p in report.pairs}


# ----------------------------------------------------------------------------------------- tiny encoder
@pytest.fixture
def two_bitrates(library_copy: Path) -> Path:
    """The test library plus pan_a.mp4 again at half the size and a much lower bitrate."""
    cut(library_copy / "pan_a.mp4", library_copy / "pan_a_low.mp4", 0, 16, scale=0.5, crf=40)
    return library_copy


@pytest.fixture
def tiny_lib(tmp_path: Path, two_bitrates: Path):
    with Library.open(tmp_path / "idx", encoder="tiny") as lib:
        lib.index([two_bitrates])
        yield lib


def test_two_bitrates_are_one_group_and_the_sharper_copy_is_kept(tiny_lib, two_bitrates, monkeypatch):
    _forbid_decoding(monkeypatch)
    report = tiny_lib.duplicates()
    pair = _by_names(report)[("pan_a.mp4", "pan_a_low.mp4")]
    assert pair.relation == "same" and pair.a_covered >= 0.9 and pair.b_covered >= 0.9, pair
    seg = pair.segments[0]
    assert abs(seg.a_start_s - seg.b_start_s) <= 1 and abs(seg.a_end_s - seg.b_end_s) <= 1, seg
    assert [(g.keep, g.members) for g in report.groups] == [
        (str(two_bitrates / "pan_a.mp4"), (str(two_bitrates / "pan_a.mp4"), str(two_bitrates / "pan_a_low.mp4")))]
    assert report.videos == 5 and report.vectors == tiny_lib.info().vectors


def test_keep_rules(tmp_path, two_bitrates):
    # pan_a_low.mp4 is the smaller file at the lower resolution; make it the newer file as well.
    os.utime(two_bitrates / "pan_a.mp4", (1_000_000_000, 1_000_000_000))
    os.utime(two_bitrates / "pan_a_low.mp4", (1_500_000_000, 1_500_000_000))
    with Library.open(tmp_path / "idx", encoder="tiny") as lib:
        lib.index([two_bitrates])
        kept = {rule: Path(lib.duplicates(keep=rule).groups[0].keep).name for rule in KEEP_RULES}
    assert kept == {"resolution": "pan_a.mp4", "duration": "pan_a.mp4", "size": "pan_a.mp4",
                    "newest": "pan_a_low.mp4", "oldest": "pan_a.mp4"}
    with pytest.raises(ValueError, match="keep='largest'"):
        DupesParams(keep="largest")


def test_batches_and_the_threshold_change_nothing_but_what_is_shown(tiny_lib):
    whole = tiny_lib.duplicates(min_score=-1.0)
    assert whole.pairs, "the tiny encoder finds no pair at all"
    small = tiny_lib.duplicates(params=DupesParams(min_score=-1.0, batch_vectors=7))
    assert small == whole
    above = tiny_lib.duplicates()
    expected = [(p.a, p.b, p.score) for p in whole.pairs if p.score >= DupesParams().min_score]
    assert [(p.a, p.b, p.score) for p in above.pairs] == expected


def test_each_pair_once_in_path_order(tiny_lib):
    report = tiny_lib.duplicates(min_score=-1.0)
    keys = [(p.a, p.b) for p in report.pairs]
    assert len(keys) == len(set(keys)) and all(a < b for a, b in keys)
    assert [p.score for p in report.pairs] == sorted((p.score for p in report.pairs), reverse=True)
    assert all(0 <= p.a_covered <= 1 and 0 <= p.b_covered <= 1 for p in report.pairs)


def test_a_library_of_one_video_has_no_pairs(tmp_path, library_copy):
    with Library.open(tmp_path / "idx", encoder="tiny") as lib:
        lib.index([library_copy / "pan_a.mp4"])
        report = lib.duplicates(min_score=-1.0)
    assert report.pairs == () and report.groups == () and report.videos == 1


def test_an_empty_index_is_one_line_and_exit_1(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with Library.open(tmp_path / "idx", encoder="tiny") as lib:
        lib.index([empty])
        with pytest.raises(EmptyIndex, match="sora-search index"):
            lib.duplicates()
    runner = CliRunner()
    for where in (tmp_path / "idx", tmp_path / "nowhere"):
        result = runner.invoke(cli, ["dupes", "--index", str(where)])
        assert result.exit_code == 1, result.output
        assert len(result.output.strip().splitlines()) == 1 and "sora-search index" in result.output


def test_cli_json_csv_and_table(tiny_lib, two_bitrates):
    runner = CliRunner()
    args = ["dupes", "--index", str(tiny_lib.location), "--min-score", "-1"]
    data = json.loads(runner.invoke(cli, [*args, "--json"]).stdout)
    assert set(data) == {"pairs", "groups"}
    assert set(data["pairs"][0]) == {"a", "b", "score", "a_covered", "b_covered", "relation", "segments"}
    assert set(data["pairs"][0]["segments"][0]) == {"a_start_s", "a_end_s", "b_start_s", "b_end_s", "score"}
    assert data == tiny_lib.duplicates(min_score=-1.0).to_dict()
    rows = runner.invoke(cli, [*args, "--csv"]).stdout.splitlines()
    assert rows[0] == "a,b,score,a_covered,b_covered,relation,segments" and len(rows) == 1 + len(data["pairs"])
    table = runner.invoke(cli, args)
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert lines[0].startswith("same video, group 1 of 1") and lines[1] == f"  keep    {two_bitrates / 'pan_a.mp4'}"
    both = runner.invoke(cli, [*args, "--json", "--csv"])
    assert both.exit_code == 2 and "not both" in both.output


def test_nothing_is_changed_on_disk(tiny_lib, two_bitrates):
    before = {p: (p.stat().st_size, p.stat().st_mtime) for p in two_bitrates.iterdir()}
    db = tiny_lib.location / "sora.db"
    generation = tiny_lib._store.meta().generation
    CliRunner().invoke(cli, ["dupes", "--index", str(tiny_lib.location)])
    assert {p: (p.stat().st_size, p.stat().st_mtime) for p in two_bitrates.iterdir()} == before
    assert tiny_lib._store.meta().generation == generation and db.exists()


def test_query_of_an_indexed_video_decodes_nothing_and_leaves_it_out(tiny_lib, two_bitrates, monkeypatch):
    from sora_search.decode import DecodeWorker

    pan_a = two_bitrates / "pan_a.mp4"
    real_open = DecodeWorker.open
    _forbid_decoding(monkeypatch)
    found = tiny_lib.query(pan_a, min_score=-1.0).matches
    paths = [m.path for m in found]
    assert str(pan_a) not in paths and paths[0] == str(two_bitrates / "pan_a_low.mp4"), found
    # The same pair and score as dupes gives it, seen from pan_a's side.
    pair = _by_names(tiny_lib.duplicates())[("pan_a.mp4", "pan_a_low.mp4")]
    assert found[0].score == pytest.approx(pair.score, abs=0.02)
    # A file changed since it was indexed is decoded, and still left out of its own answer.
    decoded = []
    monkeypatch.setattr(DecodeWorker, "open", lambda self, p, **kw: decoded.append(p) or real_open(self, p, **kw))
    os.utime(pan_a, (1_000_000_000, 1_000_000_000))
    again = tiny_lib.query(pan_a, min_score=-1.0).matches
    assert decoded and str(pan_a) not in [m.path for m in again]
    assert [m.path for m in again][0] == str(two_bitrates / "pan_a_low.mp4")


def test_views_beyond_the_whole_frame_decode_an_indexed_video(tiny_lib, two_bitrates, monkeypatch):
    from sora_search.decode import DecodeWorker

    real_open = DecodeWorker.open
    decoded = []
    monkeypatch.setattr(DecodeWorker, "open", lambda self, p, **kw: decoded.append(p) or real_open(self, p, **kw))
    found = tiny_lib.query(two_bitrates / "pan_a.mp4", views="standard", min_score=-1.0).matches
    assert decoded and str(two_bitrates / "pan_a.mp4") not in [m.path for m in found]


def test_dupes_params_name_bad_values():
    with pytest.raises(ValueError, match="same_video=0.0"):
        DupesParams(same_video=0.0)
    with pytest.raises(ValueError, match="batch_vectors=0"):
        replace(DupesParams(), batch_vectors=0)


# ----------------------------------------------------------------------------------------- the real encoder
def _black(dst: Path, seconds: float) -> Path:
    ffmpeg("-f", "lavfi", "-i", "color=c=black:size=320x240:rate=25", "-t", f"{seconds}", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", str(dst))
    return dst


def _pattern(dst: Path, pattern: str, seconds: float, seed: int) -> Path:
    src = lavfi_source(pattern, (320, 240), 25, seed=seed)
    ffmpeg("-f", "lavfi", "-i", src, "-t", f"{seconds}", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(dst))
    return dst


@pytest.fixture(scope="module")
def scenes(media_dir, tmp_path_factory) -> Path:
    """A library of the test clips and of copies inside it.

    pan_a_low.mp4   pan_a.mp4 at half size and a low bitrate (the same video)
    tour.mp4        12 s over three photos of its own
    compilation.mp4 pan_b.mp4 then tour.mp4 (it contains both)
    film.mp4        30 s over six photos of its own, 5 s each; trailer.mp4: its second, fourth and sixth photo
    show_1.mp4, show_2.mp4    the same 5 s intro ("life"), then footage of their own
    night_1.mp4, night_2.mp4  5 s of black, then footage of their own
    """
    root = tmp_path_factory.mktemp("dupes")
    lib, parts = root / "library", root / "parts"
    shutil.copytree(media_dir / "library", lib)
    parts.mkdir()
    photos = skimage_photos(root / "photos", ("camera", "coins", "moon", "hubble_deep_field", "retina", "colorwheel",
                                              "clock", "horse", "logo", "page", "text", "cell", "microaneurysms"))
    cut(lib / "pan_a.mp4", lib / "pan_a_low.mp4", 0, 16, scale=0.5, crf=38)
    make_photo_clip(lib / "tour.mp4", photos[:3], 4.0)
    concat([lib / "pan_b.mp4", lib / "tour.mp4"], lib / "compilation.mp4")
    film = make_photo_clip(lib / "film.mp4", photos[3:9], 5.0)
    pieces = [cut(film, parts / f"piece{i}.mp4", start, 5) for i, start in enumerate((5, 15, 25))]
    concat(pieces, lib / "trailer.mp4")
    intro = _pattern(parts / "intro.mp4", "life", 5, seed=3)
    concat([intro, make_photo_clip(parts / "body1.mp4", photos[9:11], 5.0)], lib / "show_1.mp4")
    concat([intro, _pattern(parts / "body2.mp4", "gradients", 10, seed=5)], lib / "show_2.mp4")
    black = _black(parts / "black.mp4", 5)
    concat([black, make_photo_clip(parts / "body3.mp4", photos[11:13], 5.0)], lib / "night_1.mp4")
    concat([black, _pattern(parts / "body4.mp4", "smptebars", 10, seed=0), black], lib / "night_2.mp4")
    return lib


@pytest.fixture(scope="module")
def scene_lib(scenes, tmp_path_factory):
    with Library.open(tmp_path_factory.mktemp("dupes-idx") / "idx", encoder="sora-lite0") as lib:
        summary = lib.index([scenes])
        assert not summary.failed, summary.failed
        yield lib


@pytest.fixture(scope="module")
def scene_pairs(scene_lib) -> dict[tuple[str, str], DuplicatePair]:
    return _by_names(scene_lib.duplicates())


def test_real_two_bitrates_are_the_same_video(scene_lib, scene_pairs, scenes):
    pair = scene_pairs[("pan_a.mp4", "pan_a_low.mp4")]
    assert pair.relation == "same" and pair.score >= DupesParams().min_score, pair
    groups = scene_lib.duplicates().groups
    assert [(Path(g.keep).name, [Path(m).name for m in g.members]) for g in groups] == [
        ("pan_a.mp4", ["pan_a.mp4", "pan_a_low.mp4"])]


def test_a_compilation_contains_both_of_its_videos(scene_pairs):
    for other, start in (("pan_b.mp4", 0.0), ("tour.mp4", 12.0)):
        pair = scene_pairs[("compilation.mp4", other)]
        assert pair.relation == "a_contains_b" and pair.b_covered >= 0.8 and 0.3 <= pair.a_covered <= 0.7, pair
        seg = pair.segments[0]
        assert abs(seg.a_start_s - start) <= 1.5 and abs(seg.a_end_s - (start + 12)) <= 1.5, seg
        assert abs(seg.b_start_s) <= 1.5 and abs(seg.b_end_s - 12) <= 1.5, seg


def test_a_trailer_like_cut_is_found_piece_by_piece(scene_pairs):
    pair = scene_pairs[("film.mp4", "trailer.mp4")]
    assert pair.relation == "a_contains_b" and pair.b_covered >= 0.8 and pair.a_covered <= 0.7, pair
    assert len(pair.segments) >= 2, pair.segments
    for seg in pair.segments:  # each piece where it came from: trailer 0-5 = film 5-10, 5-10 = 15-20, 10-15 = 25-30
        assert abs((seg.a_start_s - seg.b_start_s) - {0: 5, 1: 10, 2: 15}[int(seg.b_start_s // 5)]) <= 1.5, seg


def test_a_shared_intro_or_black_opening_does_not_pair_two_videos(scene_lib, scene_pairs):
    for pair in (("show_1.mp4", "show_2.mp4"), ("night_1.mp4", "night_2.mp4")):
        assert pair not in scene_pairs, scene_pairs[pair]
    # The intro is real shared footage: without the opening rule it pairs the two shows. The black is one second
    # of evidence however long it lasts: without that rule too, it pairs the two nights. So the test can fail.
    no_openings = _by_names(scene_lib.duplicates(params=DupesParams(opening_max_s=0.0)))
    assert ("show_1.mp4", "show_2.mp4") in no_openings, sorted(no_openings)
    no_rules = _by_names(scene_lib.duplicates(params=DupesParams(opening_max_s=0.0, min_novel_s=0.0)))
    assert ("night_1.mp4", "night_2.mp4") in no_rules, sorted(no_rules)


def test_a_copy_of_moving_footage_gains_by_motion_agreement(scene_lib, scene_pairs):
    # pan_b.mp4 is a camera pan: inside the compilation it changes second by second as it does on its own, so the pair
    # gains what a query's match would (QueryParams.motion_weight); with the weight at 0 it does not.
    still = _by_names(scene_lib.duplicates(params=DupesParams(query=QueryParams(motion_weight=0.0))))
    pair = ("compilation.mp4", "pan_b.mp4")
    gain = scene_pairs[pair].score - still[pair].score
    assert gain > 0.1, (scene_pairs[pair], still[pair])


def test_query_of_an_indexed_video_agrees_with_dupes(scene_lib, scenes, scene_pairs, monkeypatch):
    _forbid_decoding(monkeypatch)
    found = {Path(m.path).name: m for m in scene_lib.query(scenes / "compilation.mp4").matches}
    assert "compilation.mp4" not in found and {"pan_b.mp4", "tour.mp4"} <= set(found), found
    assert found["pan_b.mp4"].segments[0].query_start_s <= 1.5
    for name in ("pan_b.mp4", "tour.mp4"):
        # The query's runner-up rule takes at most half the gap to the best away.
        assert found[name].score <= scene_pairs[("compilation.mp4", name)].score + 0.01


def test_the_cli_table_shows_groups_then_containment(scene_lib):
    out = CliRunner().invoke(cli, ["-q", "dupes", "--index", str(scene_lib.location)]).stdout
    lines = out.splitlines()
    assert lines[0].startswith("same video, group 1 of 1") and lines[1].endswith("pan_a.mp4")
    assert "contains: " in out and "compilation.mp4 contains " in out and "film.mp4 contains " in out
