"""Shared fixtures: synthetic clips made once per test session with ffmpeg (never committed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.media import cut, make_photo_clip, make_testsrc, picture_in_picture, skimage_photos


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    """A small library: camera-motion clips over real photos, plus synthetic patterns, and probe clips.

    library/pan_a.mp4   16 s  chelsea, astronaut, coffee, rocket (4 s each, pan and zoom)
    library/pan_b.mp4   12 s  stereo_motorcycle, immunohistochemistry, coffee (coffee re-used: a near miss)
    library/mandel.mp4  12 s  ffmpeg mandelbrot zoom
    library/bars.mp4     8 s  ffmpeg testsrc2
    probe_a.mp4              seconds 5-11 of pan_a, re-encoded at half size
    probe_other.mp4          ffmpeg "life" pattern, never indexed
    probe_pip.mp4            seconds 2-10 of pan_a at 0.35 of the frame, inset over the "life" pattern (top right)
    """
    root = tmp_path_factory.mktemp("media")
    photos = skimage_photos(root / "photos")
    lib = root / "library"
    lib.mkdir()
    make_photo_clip(lib / "pan_a.mp4", photos[:4], 4.0)
    make_photo_clip(lib / "pan_b.mp4", [photos[4], photos[5], photos[2]], 4.0)
    make_testsrc(lib / "mandel.mp4", 12, pattern="mandelbrot")
    make_testsrc(lib / "bars.mp4", 8, pattern="testsrc2")
    cut(lib / "pan_a.mp4", root / "probe_a.mp4", 5, 6, scale=0.5)
    make_testsrc(root / "probe_other.mp4", 6, pattern="life")
    picture_in_picture(lib / "pan_a.mp4", root / "probe_pip.mp4", 2, 8, frac=0.35, x=0.8, y=0.2)
    return root


@pytest.fixture
def library_copy(media_dir, tmp_path) -> Path:
    """A private copy of the library folder that a test may modify."""
    dst = tmp_path / "library"
    shutil.copytree(media_dir / "library", dst)
    return dst
