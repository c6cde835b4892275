"""Thumbnails and the HTML report: JPEGs of any second, a cache that stays within its bound and forgets removed or
changed videos, and `query --html` writing one self-contained file."""

from __future__ import annotations

import os
import re
from html import unescape

import pytest
from click.testing import CliRunner

from sora_search.cli import cli
from sora_search.errors import VideoDecodeError
from sora_search.report import sample_times
from sora_search.thumbs import ThumbnailCache, catalogue, grab


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's start-of-frame marker."""
    i = 2
    while i < len(data):
        marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + length
    raise AssertionError("no SOF marker")


def test_grab_is_a_small_jpeg_of_that_second(media_dir):
    pan = media_dir / "library" / "pan_a.mp4"
    a, b = grab(pan, 1.0), grab(pan, 13.0)
    assert a[:2] == b"\xff\xd8" and a != b
    assert _jpeg_size(a) == (160, 120)
    assert grab(pan, 1e6)[:2] == b"\xff\xd8"  # past the end: the last frame


def test_grab_of_a_non_video_says_so(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("nope")
    with pytest.raises(VideoDecodeError, match="bad.mp4"):
        grab(bad, 0)


def test_cache_hits_bounds_and_prunes(media_dir, tmp_path):
    pan = media_dir / "library" / "pan_a.mp4"
    cache = ThumbnailCache(tmp_path, max_bytes=10**9)
    first = cache.get(7, pan, "b2:aaaa", 2.0)
    cached = cache.path_for(7, "b2:aaaa", 2.0)
    assert cached.read_bytes() == first and cache.get(7, pan, "b2:aaaa", 2.0) == first
    for t in (1.0, 3.0, 4.0):
        cache.get(7, pan, "b2:aaaa", t)
    cache.get(8, pan, "b2:bbbb", 1.0)
    cache.get(9, pan, "b2:cccc", 1.0)
    os.utime(cache.path_for(7, "b2:aaaa", 1.0), (1, 1))  # the least recently used
    cache.prune({7: "b2:aaaa", 8: "b2:changed"})
    assert not (cache.root / "9").exists() and not (cache.root / "8").exists()
    kept = sorted(p.name for p in (cache.root / "7").iterdir())
    assert len(kept) == 4
    cache.max_bytes = sum(p.stat().st_size for p in (cache.root / "7").iterdir()) - 1
    cache.prune()
    assert not cache.path_for(7, "b2:aaaa", 1.0).exists() and cache.path_for(7, "b2:aaaa", 2.0).exists()


@pytest.fixture
def tiny_index(tmp_path, library_copy):
    from sora_search import Library

    idx = tmp_path / "idx"
    with Library.open(idx, encoder="tiny") as lib:
        lib.index([library_copy])
    return idx


def test_query_html_is_one_self_contained_file(tiny_index, media_dir, tmp_path):
    out = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["query", str(media_dir / "probe_a.mp4"), "--index", str(tiny_index),
                                      "--html", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "pan_a.mp4" in html and "<svg" in html and 'tabindex="0"' in html
    images = re.findall(r'<img src="([^"]+)"', html)
    assert images and all(src.startswith("data:image/jpeg;base64,") for src in images)
    assert not re.search(r'(src|href)="(https?:)?//', html)
    ids = {v.id for v in catalogue(tiny_index).values() if v.path.endswith("pan_a.mp4")}
    assert {p.name for p in (tiny_index / "thumbs").iterdir()} == {str(i) for i in ids}


def test_query_html_with_no_match(tiny_index, media_dir, tmp_path):
    out = tmp_path / "none.html"
    result = CliRunner().invoke(cli, ["query", str(media_dir / "probe_other.mp4"), "--index", str(tiny_index),
                                      "--min-score", "0.99", "--html", str(out)])
    assert result.exit_code == 0 and "No library video matches" in out.read_text()


def test_the_report_says_where_in_the_clip_a_match_was_found(tiny_index, library_copy, media_dir):
    """A match found in the clip's inset names it and marks its rectangle on each of the clip's frames; a match found
    in the whole frame says nothing of it."""
    from sora_search.report import render
    from sora_search.types import Match, QueryResult, Span

    spans = (Span(0.0, 4.0, 2.0, 6.0, 0.5),)
    inset = Match(str(library_copy / "pan_a.mp4"), 0.5, spans, "inset", (0.6, 0.1, 0.35, 0.35))
    html = render(QueryResult(str(media_dir / "probe_pip.mp4"), (inset,)), media_dir / "probe_pip.mp4", tiny_index)
    assert "Found in the clip's inset, 60% across and 10% down, 35% x 35% of the frame" in unescape(html)
    marks = re.findall(r'class="region" style="left: ([\d.]+)%; top: ([\d.]+)%;\s+width: ([\d.]+)%; height: ([\d.]+)%',
                       html)
    assert marks and {tuple(float(v) for v in m) for m in marks} == {(60.0, 10.0, 35.0, 35.0)}
    assert len(marks) == html.count('alt="clip at')
    whole = render(QueryResult(str(media_dir / "probe_pip.mp4"), (Match(inset.path, 0.5, spans),)),
                   media_dir / "probe_pip.mp4", tiny_index)
    assert "Found in" not in whole and 'class="region"' not in whole
    assert Match("v.mp4", 0.5, spans, "hflip").found_in == "the clip's mirror image"
    assert Match("v.mp4", 0.5, spans, "win12", (0.5, 0.125, 0.5, 0.5)).found_in == \
        "the clip's window, 50% across and 13% down, 50% x 50% of the frame"


def test_sample_times_every_few_seconds():
    assert sample_times(0, 6) == [0, 2, 4, 6]
    assert sample_times(10, 10) == [0]
    assert len(sample_times(0, 600)) == 6 and sample_times(0, 3) == [0, 1, 2, 3]
