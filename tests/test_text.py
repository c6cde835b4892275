"""The text check (``QueryParams.text``, ``query --read-text``): the verdict on words already read, then the real
reader (the ``tesseract`` command) on rendered slides, through the library and the CLI.

The reader's tests skip where ``tesseract`` is missing, except under ``SORA_SEARCH_REQUIRE_TESSERACT=1`` (CI), where
they fail.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sora_search import Library
from sora_search.cli import cli
from sora_search.embed.images import Box
from sora_search.errors import TextReaderMissing
from sora_search.params import QueryParams, TextParams
from sora_search.query.text import TextReader, Words, text_checked, verdict
from sora_search.types import Match, Span
from tests.media import ffmpeg, make_testsrc

REQUIRED = os.environ.get("SORA_SEARCH_REQUIRE_TESSERACT", "") not in ("", "0")
needs_reader = pytest.mark.skipif(shutil.which("tesseract") is None and not REQUIRED,
                                  reason="the tesseract command is not installed (apt-get install tesseract-ocr)")

SLIDE = frozenset(f"word{c}" for c in "abcdefghij")
OTHER = frozenset(f"other{c}" for c in "abcdefghij") | {"worda"}
P = TextParams()


def reader(text: dict[str, frozenset[str]]) -> Callable[[str, float], frozenset[str]]:
    """Words by file name, legible before 100 s only."""
    return lambda path, at_s: text[Path(path).name] if at_s < 100 else frozenset()


def span(q0: float, q1: float, r0: float, r1: float) -> Span:
    return Span(q0, q1, r0, r1, 0.5)


def test_a_majority_of_legible_pairs_that_read_differently_drops_the_match() -> None:
    dropped, judged = verdict(reader({"q.mp4": SLIDE, "r.mp4": OTHER}), "q.mp4", "r.mp4", span(0, 9, 10, 19), P)
    assert dropped and len(judged) == 3 and all(j < 0.1 for j in judged)
    # Two pairs that read alike settle it: the third is not read.
    assert verdict(reader({"q.mp4": SLIDE, "r.mp4": SLIDE}), "q.mp4", "r.mp4", span(0, 9, 10, 19), P) == \
        (False, [1.0, 1.0])


def test_reading_stops_once_the_match_cannot_be_dropped() -> None:
    """Pairs are read at 1.5, 4.5 and 7.5 s of the probe (11.5, 14.5 and 17.5 s of the reference)."""
    reads: list[tuple[str, float]] = []

    def counted(probe: frozenset[str], ref: Callable[[float], frozenset[str]]) -> Words:
        reads.clear()

        def words(path: str, at_s: float) -> frozenset[str]:
            reads.append((path, at_s))
            return probe if path == "q.mp4" else ref(at_s)
        return words

    # A probe without text: after two illegible frames of three too few pairs are left to judge; no reference read.
    assert verdict(counted(frozenset(), lambda t: OTHER), "q.mp4", "r.mp4", span(0, 9, 10, 19), P) == (False, [])
    assert reads == [("q.mp4", 1.5), ("q.mp4", 4.5)]
    # One pair differs and one reads alike: the third decides, so every frame is read.
    differs_first = counted(SLIDE, lambda t: OTHER if t < 12 else SLIDE)
    assert not verdict(differs_first, "q.mp4", "r.mp4", span(0, 9, 10, 19), P)[0] and len(reads) == 6


def test_frames_that_read_nothing_leave_the_match_alone() -> None:
    # Blurred: the probe reads one word, so no pair is judged.
    assert verdict(reader({"q.mp4": frozenset({"a"}), "r.mp4": OTHER}), "q.mp4", "r.mp4", span(0, 9, 10, 19), P) \
        == (False, [])
    # One pair of three judged (the probe legible only before 100 s): too few to drop it.
    assert not verdict(reader({"q.mp4": SLIDE, "r.mp4": OTHER}), "q.mp4", "r.mp4", span(0, 240, 0, 240), P)[0]


def test_a_copy_placed_in_the_wrong_stretch_of_its_reference_stands() -> None:
    """The reference shows the probe's slide from 30 s on; the match points at 10-19 s."""
    def placed_late(path: str, at_s: float) -> frozenset[str]:
        return SLIDE if path == "q.mp4" or at_s >= 30 else OTHER

    seen: list[float] = []

    def logged(path: str, at_s: float) -> frozenset[str]:
        seen.append(at_s) if path == "r.mp4" else None
        return placed_late(path, at_s)

    assert verdict(logged, "q.mp4", "r.mp4", span(0, 9, 10, 19), P) == (False, [1.0, 1.0, 1.0])
    assert max(seen) < 19 + P.search_s and min(seen) >= 0
    assert seen[3:5] == [14.0, 16.0]  # searched from the span's middle outwards
    # Not within search_s of the span, or past the reference's end: the match is dropped.
    assert verdict(placed_late, "q.mp4", "r.mp4", span(0, 9, 10, 19), TextParams(search_s=5))[0]
    assert verdict(placed_late, "q.mp4", "r.mp4", span(0, 9, 10, 19), P, reference_end_s=25.0)[0]


def test_a_probe_that_reads_nothing_is_read_through_the_mirror_or_turn_its_match_was_found_in() -> None:
    """A mirrored copy of a slide reads nothing as it is; mirrored back (the ``hflip`` view its match came from) it
    reads its words, so a match with another slide is dropped and one with its own slide stands."""
    def mirrored(ref: frozenset[str]) -> Words:
        def words(path: str, at_s: float, view: str = "full") -> frozenset[str]:
            return ref if path == "r.mp4" else SLIDE if view == "hflip" else frozenset()
        return words

    assert verdict(mirrored(OTHER), "q.mp4", "r.mp4", span(0, 9, 10, 19), P, view="hflip")[0]
    assert verdict(mirrored(SLIDE), "q.mp4", "r.mp4", span(0, 9, 10, 19), P, view="hflip") == (False, [1.0, 1.0])
    assert verdict(mirrored(OTHER), "q.mp4", "r.mp4", span(0, 9, 10, 19), P) == (False, [])  # found whole: stands


def test_a_match_found_in_part_of_the_frame_is_read_there() -> None:
    """A picture-in-picture copy of a slide over footage with words of its own: its inset reads the slide."""
    inset = Box(0.5, 0.0, 0.5, 0.5)

    def pip(ref: frozenset[str]) -> Words:
        def words(path: str, at_s: float, view: str = "full", region: Box | None = None) -> frozenset[str]:
            return ref if path == "r.mp4" else SLIDE if region == inset else OTHER
        return words

    assert verdict(pip(SLIDE), "q.mp4", "r.mp4", span(0, 9, 10, 19), P, view="inset", region=inset) == \
        (False, [1.0, 1.0])
    assert verdict(pip(OTHER), "q.mp4", "r.mp4", span(0, 9, 10, 19), P, view="inset", region=inset)[0]
    assert verdict(pip(SLIDE), "q.mp4", "r.mp4", span(0, 9, 10, 19), P)[0]  # read whole, the frame reads otherwise


def test_only_matches_that_score_enough_and_say_where_they_were_found_are_read() -> None:
    """A match under ``min_score`` stands, as does one found in a view of part of the frame that does not say which
    part; the others are judged, each read where it was found."""
    class Fake:
        params = P

        def __call__(self, path: str, at_s: float, view: str = "full", region: Box | None = None) -> frozenset[str]:
            return SLIDE if Path(path).name == "q.mp4" else OTHER

    s = (span(0, 9, 10, 19),)
    matches = [Match("r1.mp4", 0.5, s, "full"), Match("r2.mp4", 0.5, s, "inset"), Match("r3.mp4", 0.5, s, "left"),
               Match("r4.mp4", 0.05, s, "full"), Match("r5.mp4", 0.4, s, "hflip"), Match("r6.mp4", 0.4, (), "full"),
               Match("r7.mp4", 0.5, s, "left", (0.0, 0.0, 0.5, 1.0))]
    kept = text_checked("q.mp4", matches, Fake())  # type: ignore[arg-type]
    assert [m.path for m in kept] == ["r2.mp4", "r3.mp4", "r4.mp4", "r6.mp4"]


def test_bad_settings_name_themselves() -> None:
    with pytest.raises(ValueError, match="differ_below"):
        TextParams(differ_below=0)
    with pytest.raises(ValueError, match="pairs"):
        TextParams(pairs=0)


def test_a_missing_reader_is_one_clear_error_before_any_work(monkeypatch, lite_index, media_dir) -> None:
    import sora_search.query.text as text

    monkeypatch.setattr(text.shutil, "which", lambda name: None)
    with pytest.raises(TextReaderMissing, match="apt-get install tesseract-ocr"):
        TextReader()
    result = CliRunner().invoke(cli, ["query", str(media_dir / "probe_a.mp4"), "--index", str(lite_index),
                                      "--read-text"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and "tesseract" in result.output


# ------------------------------------------------------------------ the real reader

TITLE_A, LINES_A = "Quarterly budget review", ["Revenue grew across northern regions",
                                                "Marketing spending stayed within plan",
                                                "Hiring continues through winter"]
TITLE_B, LINES_B = "Garden planting schedule", ["Tomatoes need sunny sheltered beds",
                                                 "Water seedlings every morning early",
                                                 "Harvest pumpkins before frost arrives"]


def render_slide(title: str, lines: list[str], size: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) uint8: a title bar and three lines of text on a pale page, the same layout for every slide."""
    from PIL import Image, ImageDraw, ImageFont

    w, h = size
    img = Image.new("RGB", size, (244, 241, 232))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, w, h // 5], fill=(30, 60, 110))
    font_file = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"

    def font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        return ImageFont.truetype(font_file, px) if os.path.exists(font_file) else ImageFont.load_default(px)

    draw.text((w // 20, h // 20), title, fill=(255, 255, 255), font=font(h // 12))
    for i, line in enumerate(lines):
        draw.text((w // 12, h // 4 + i * h // 6), line, fill=(20, 20, 20), font=font(h // 16))
    return np.asarray(img)


def slide_clip(path: Path, slides: list[tuple[str, list[str]]], seconds_each: float,
               size: tuple[int, int] = (640, 360), fps: int = 5) -> Path:
    """An H.264 clip holding each slide ``seconds_each`` seconds, with a small moving pointer so the seconds differ."""
    w, h = size
    raw = path.with_suffix(".rgb")
    with open(raw, "wb") as f:
        for title, lines in slides:
            page = render_slide(title, lines, size)
            for n in range(round(seconds_each * fps)):
                frame = page.copy()
                x = (w // 3 + n * 7) % (w - 12)
                frame[h - 30:h - 18, x:x + 12] = (200, 40, 40)
                f.write(frame.tobytes())
    ffmpeg("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", str(raw),
           "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path))
    raw.unlink()
    return path


@pytest.fixture(scope="module")
def slides(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("slides")
    (d / "library").mkdir()
    slide_clip(d / "library" / "garden.mp4", [(TITLE_B, LINES_B)], 8)
    for pattern in ("testsrc2", "mandelbrot", "smptebars"):  # unrelated footage, the library's background
        make_testsrc(d / "library" / f"{pattern}.mp4", 8, size=(320, 180), fps=5, pattern=pattern)
    slide_clip(d / "budget.mp4", [(TITLE_A, LINES_A)], 6, size=(480, 270))  # the deck's other slide, not indexed
    slide_clip(d / "copy.mp4", [(TITLE_B, LINES_B)], 6, size=(480, 270))  # a smaller copy of the indexed slide
    return d


@needs_reader
def test_the_reader_reads_a_slide_and_nothing_in_a_blank_frame(slides: Path, tmp_path: Path) -> None:
    words = TextReader()(str(slides / "budget.mp4"), 2.0)
    assert {"quarterly", "budget", "review", "revenue", "northern", "marketing", "hiring", "winter"} <= words
    assert TextReader(threads=None)(str(slides / "budget.mp4"), 2.0) == words  # one thread reads the same
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:size=320x240:rate=5", "-t", "2", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", str(tmp_path / "grey.mp4"))
    assert TextReader()(str(tmp_path / "grey.mp4"), 1.0) == frozenset()
    assert TextReader()(str(tmp_path / "gone.mp4"), 1.0) == frozenset()  # a file that went away reads nothing


@needs_reader
def test_the_reader_reads_a_mirrored_or_turned_slide_through_its_view(slides: Path, tmp_path: Path) -> None:
    read = TextReader()
    upright = read(str(slides / "budget.mp4"), 2.0)
    for name, vf, view in (("mirrored", "hflip", "hflip"), ("turned", "transpose=clock", "rot90")):
        ffmpeg("-i", str(slides / "budget.mp4"), "-vf", vf, "-c:v", "libx264", "-pix_fmt", "yuv420p",
               str(tmp_path / f"{name}.mp4"))
        assert len(read(str(tmp_path / f"{name}.mp4"), 2.0, view) & upright) >= 8
    assert len(read(str(tmp_path / "mirrored.mp4"), 2.0)) < TextParams().min_words  # mirrored text reads nothing
    with pytest.raises(ValueError, match="inset"):
        read(str(tmp_path / "mirrored.mp4"), 2.0, "inset")


@needs_reader
def test_the_reader_reads_the_part_of_the_frame_it_is_given(slides: Path, tmp_path: Path) -> None:
    """The slide shrunk to a quarter of the frame, top right, over another slide: read there, it reads its own words."""
    ffmpeg("-i", str(slides / "copy.mp4"), "-i", str(slides / "budget.mp4"), "-filter_complex",
           "[0:v]scale=480:270[bg];[1:v]scale=240:136[in];[bg][in]overlay=240:0,format=yuv420p", "-c:v", "libx264",
           str(tmp_path / "pip.mp4"))
    read = TextReader()
    inset = read(str(tmp_path / "pip.mp4"), 2.0, region=Box(0.5, 0.0, 0.5, 0.5))
    assert len(inset & read(str(slides / "budget.mp4"), 2.0)) >= 8
    assert not inset & {"garden", "tomatoes", "pumpkins", "seedlings"}


@needs_reader
def test_a_query_drops_another_slide_and_keeps_the_copy(slides: Path, tmp_path: Path) -> None:
    lib = Library.open(tmp_path / "idx")
    lib.index([slides / "library"])
    listed = lambda result: [Path(m.path).name for m in result.matches]  # noqa: E731
    everything = QueryParams(min_score=-1, views="fast")
    checked = QueryParams(min_score=-1, views="fast", text=TextParams(min_score=-1))
    # The deck's other slide, not indexed: the same layout finds the indexed slide, the words tell them apart.
    assert listed(lib.query(slides / "budget.mp4", params=everything))[0] == "garden.mp4"
    assert "garden.mp4" not in listed(lib.query(slides / "budget.mp4", params=checked))
    # A copy reads the same words: kept, with its score and spans.
    plain = lib.query(slides / "copy.mp4", params=everything)
    assert listed(plain)[0] == "garden.mp4"
    assert lib.query(slides / "copy.mp4", params=checked).matches[0] == plain.matches[0]


@needs_reader
def test_the_cli_and_the_service_take_the_check(slides: Path, tmp_path: Path) -> None:
    with Library.open(tmp_path / "idx") as lib:
        lib.index([slides / "library"])
    args = ["query", str(slides / "budget.mp4"), "--index", str(tmp_path / "idx"), "--min-score", "-1",
            "--views", "fast", "--json"]
    plain = CliRunner().invoke(cli, args)
    assert plain.exit_code == 0 and "garden.mp4" in plain.output
    score = json.loads(plain.output)["matches"][0]["score"]
    checked = CliRunner().invoke(cli, [*args, "--read-text"])
    assert checked.exit_code == 0, checked.output
    # --read-text reads matches from TextParams().min_score on, so garden goes where it scores that much.
    assert ("garden.mp4" in checked.output) == (score < TextParams().min_score)
