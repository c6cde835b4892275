"""Finding a picture-in-picture inset, and cutting it out (synthetic frames; the real encoder is in test_e2e)."""

from __future__ import annotations

import numpy as np
import pytest

from sora_search.embed.images import crop_resize
from sora_search.embed.inset import Box, InsetFinder, _median, best_rectangle
from sora_search.embed.views import INSET, make_view
from tests.media import inset_box, picture_in_picture

SIDE = 224  # the finder works at S; frames come at 2S


def _blobs(rng: np.random.Generator, n: int, side: int) -> np.ndarray:
    """(n, side, side, 3) uint8: smooth random grey footage that changes completely from frame to frame."""
    coarse = rng.integers(0, 256, (n, side // 16 + 1, side // 16 + 1, 1)).astype(np.float32).repeat(3, axis=3)
    t = np.linspace(0, side // 16, side)
    i = np.floor(t).astype(int).clip(0, side // 16 - 1)
    f = (t - i)[None, :, None, None]
    rows = coarse[:, i] * (1 - f) + coarse[:, i + 1] * f
    g = (t - i)[None, None, :, None]
    out = rows[:, :, i] * (1 - g) + rows[:, :, i + 1] * g
    return out.round().astype(np.uint8)


def _probe(n: int, box: Box | None, *, seed: int = 0, present: slice = slice(None)) -> np.ndarray:
    """Moving footage at 2S with, in frames ``present``, other moving footage pasted into ``box``."""
    rng = np.random.default_rng(seed)
    frames = _blobs(rng, n, 2 * SIDE)
    if box is not None:
        x0, y0, x1, y1 = box.pixels(2 * SIDE, 2 * SIDE)
        inset = _blobs(rng, n, 2 * SIDE)[:, :y1 - y0, :x1 - x0]
        frames[present, y0:y1, x0:x1] = inset[present]
    return frames


def _find(frames: np.ndarray, batch: int = 5) -> Box | None:
    finder = InsetFinder()
    for i in range(0, len(frames), batch):
        finder.add(frames[i:i + batch])
    return finder.find()


@pytest.mark.parametrize("box", [Box(0.58, 0.09, 0.31, 0.31), Box(0.1, 0.5, 0.45, 0.45),
                                 Box(0.0, 0.0, 0.4, 0.4), Box(0.6, 0.6, 0.4, 0.4)])
def test_the_inset_is_found_to_a_pixel_or_two(box: Box) -> None:
    found = _find(_probe(12, box))
    assert found is not None
    for got, want in zip((found.x, found.y, found.w, found.h), (box.x, box.y, box.w, box.h)):
        assert abs(got - want) <= 2 / SIDE, (found, box)


def test_footage_without_an_inset_has_none() -> None:
    assert _find(_probe(12, None)) is None


def test_an_inset_in_only_part_of_the_probe_is_found() -> None:
    box = Box(0.3, 0.2, 0.4, 0.4)
    found = _find(_probe(40, box, present=slice(24, 34)))
    assert found is not None and abs(found.x - box.x) <= 2 / SIDE and abs(found.w - box.w) <= 2 / SIDE, found


def test_rectangles_too_small_or_not_the_frame_s_shape_are_not_insets() -> None:
    assert _find(_probe(12, Box(0.4, 0.4, 0.1, 0.1))) is None
    assert _find(_probe(12, Box(0.1, 0.7, 0.8, 0.2))) is None  # a banner across the bottom


def test_three_frames_are_enough_and_fewer_find_nothing() -> None:
    assert _find(_probe(3, Box(0.2, 0.2, 0.5, 0.5))) is not None
    assert _find(_probe(2, Box(0.2, 0.2, 0.5, 0.5))) is None  # in two frames every edge persists
    assert InsetFinder().find() is None


@pytest.mark.parametrize("frames", [3, 4, 7, 8])
def test_a_stretch_s_median_is_numpy_s(frames: int) -> None:
    stack = np.random.default_rng(frames).random((frames, 6, 5), dtype=np.float32) * 255
    np.testing.assert_array_equal(_median(stack), np.median(stack, axis=0))


def test_an_inset_beats_the_rectangle_from_its_corner_to_the_frame_s_edges() -> None:
    # Contrast maps with only an inset's sides: top and right 60, left and bottom 40. The rectangle from its top-right
    # corner out to the left and bottom edges has two sides, each the inset's strong one run on a little (about 49):
    # its weakest side beats the inset's, and only the discount for its two uncounted sides puts it behind.
    vertical, horizontal = np.zeros((SIDE, SIDE - 1), np.float32), np.zeros((SIDE - 1, SIDE), np.float32)
    x0, y0, x1, y1 = 15, 140, 85, 210
    vertical[y0:y1, x0 - 1], vertical[y0:y1, x1 - 1] = 40, 60
    horizontal[y0 - 1, x0:x1], horizontal[y1 - 1, x0:x1] = 60, 40
    found = best_rectangle(vertical, horizontal)
    assert found is not None and found.pixels(SIDE, SIDE) == (x0, y0, x1, y1) and found.strength == 40, found
    corner = best_rectangle(vertical, horizontal, border_discount=1.0)
    assert corner is not None and corner.pixels(SIDE, SIDE) == (0, y0, x1, SIDE), corner


@pytest.mark.parametrize("clip, frac, x, y, seed", [
    ("pan_a.mp4", 0.3, 0.1, 0.9, 9),     # near the bottom-left corner
    ("pan_a.mp4", 0.45, 0.5, 0.5, 2),    # in the middle
    ("bars.mp4", 0.45, 0.5, 0.5, 42),
    ("pan_a.mp4", 0.25, 0.0, 0.0, 15),   # in the corner itself: two sides only
])
def test_an_inset_over_game_of_life_is_found(media_dir, tmp_path, clip, frac, x, y, seed) -> None:
    # Life leaves still, sharp-edged cells all over the frame, and the inset's own content is dark along some sides.
    # Each case made the earlier finder (coarse grid, no discount) pick a rectangle out to the frame's edges.
    from sora_search.decode import DecodeWorker

    probe = picture_in_picture(media_dir / "library" / clip, tmp_path / "pip.mp4", 2, 8, frac=frac, x=x, y=y,
                               seed=seed)
    finder = InsetFinder()
    with DecodeWorker() as worker, worker.open(probe, fps=1.0, size=2 * SIDE) as video:
        for batch in video:
            finder.add(batch.frames)
    found = finder.find()
    assert found is not None
    for got, want in zip((found.x, found.y, found.w, found.h), inset_box(frac, x, y)):
        assert abs(got - want) <= 2 / SIDE, (found, inset_box(frac, x, y))


def test_crop_resize_is_exact_at_scale_one_and_keeps_flat_colour() -> None:
    frames = np.random.default_rng(3).integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
    np.testing.assert_array_equal(crop_resize(frames, Box(0.25, 0.5, 0.5, 0.5), 20), frames[:, 20:40, 10:30])
    flat = np.full((1, 40, 40, 3), 77, np.uint8)
    for size in (7, 20, 64):
        out = crop_resize(flat, Box(0.1, 0.2, 0.3, 0.4), size)
        assert out.shape == (1, size, size, 3) and out.flags.c_contiguous and (out == 77).all()


def test_inset_view_cuts_the_box_and_needs_one() -> None:
    frames = np.random.default_rng(4).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    np.testing.assert_array_equal(make_view(frames, INSET, Box(0.5, 0.0, 0.5, 0.5)), frames[:, 0:8, 8:16])
    with pytest.raises(ValueError, match="needs the box"):
        make_view(frames, INSET)


def test_boxes_outside_the_frame_and_bad_frames_are_named() -> None:
    with pytest.raises(ValueError, match="inside the unit frame"):
        Box(0.8, 0.0, 0.5, 0.5)
    with pytest.raises(ValueError, match=r"\(n, 2S, 2S, 3\)"):
        InsetFinder().add(np.zeros((1, 10, 12, 3), np.uint8))
