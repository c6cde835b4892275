"""Query views: exact S x S cuts of a probe decoded at 2S, or whole frames decoded at S."""

from __future__ import annotations

import numpy as np
import pytest

from sora_search.embed.views import (
    FULL, HALVES, HFLIP, INSET, ROTATIONS, VIEW_SETS, WINDOWS, blank_frames, decode_side, make_view, region_of,
)
from sora_search.params import QueryParams


@pytest.fixture
def frames() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)


def test_every_view_is_s_by_s(frames: np.ndarray) -> None:
    for name in (FULL, HFLIP) + ROTATIONS + HALVES + WINDOWS:
        v = make_view(frames, name)
        assert v.shape == (3, 8, 8, 3) and v.dtype == np.uint8 and v.flags.c_contiguous, name


def test_full_is_the_2x2_mean_and_hflip_its_mirror(frames: np.ndarray) -> None:
    expected = frames.astype(np.float64).reshape(3, 8, 2, 8, 2, 3).mean(axis=(2, 4))
    full = make_view(frames, FULL)
    assert np.abs(full - expected).max() <= 1.0
    np.testing.assert_array_equal(make_view(frames, HFLIP), full[:, :, ::-1])


def test_frames_at_s_give_the_whole_views_as_they_are(frames: np.ndarray) -> None:
    small = frames[:, :8, :8]
    np.testing.assert_array_equal(make_view(small, FULL, side=8), small)
    np.testing.assert_array_equal(make_view(small, HFLIP, side=8), small[:, :, ::-1])
    with pytest.raises(ValueError, match="'left' view needs"):
        make_view(small, "left", side=8)
    assert decode_side([FULL, HFLIP], 8) == decode_side(ROTATIONS, 8) == 8
    assert decode_side([FULL, "win11"], 8) == decode_side([INSET], 8) == 16


def test_rotations_turn_the_whole_frame_back_counter_clockwise(frames: np.ndarray) -> None:
    small = frames[:, :8, :8]
    turned_clockwise = np.rot90(small, -1, axes=(1, 2))  # what ffmpeg's transpose=clock does to a square frame
    np.testing.assert_array_equal(make_view(turned_clockwise, "rot90", side=8), small)
    np.testing.assert_array_equal(make_view(small, "rot180", side=8), small[:, ::-1, ::-1])
    np.testing.assert_array_equal(make_view(make_view(small, "rot270", side=8), "rot90", side=8), small)
    full = make_view(frames, FULL)
    np.testing.assert_array_equal(make_view(frames, "rot270"), np.rot90(full, 3, axes=(1, 2)))


def test_halves_recover_the_two_parts_of_a_stack() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (1, 8, 8, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (1, 8, 8, 3), dtype=np.uint8)
    # Side by side, each part stretched to full height (as a 2S x 2S decode of an hstack would be).
    side = np.concatenate([a.repeat(2, axis=1), b.repeat(2, axis=1)], axis=2)
    np.testing.assert_array_equal(make_view(side, "left"), a)
    np.testing.assert_array_equal(make_view(side, "right"), b)
    top = np.concatenate([a.repeat(2, axis=2), b.repeat(2, axis=2)], axis=1)
    np.testing.assert_array_equal(make_view(top, "top"), a)
    np.testing.assert_array_equal(make_view(top, "bottom"), b)


def test_windows_are_plain_crops_on_a_quarter_grid(frames: np.ndarray) -> None:
    np.testing.assert_array_equal(make_view(frames, "win00"), frames[:, 0:8, 0:8])
    np.testing.assert_array_equal(make_view(frames, "win12"), frames[:, 4:12, 8:16])
    np.testing.assert_array_equal(make_view(frames, "win22"), frames[:, 8:16, 8:16])


def test_the_region_of_a_view_is_the_part_of_the_frame_it_cuts(frames: np.ndarray) -> None:
    """region_of says in fractions of the frame what make_view cuts out (a 2S frame of 16 px: S = 8)."""
    from sora_search.embed.images import Box

    for name in (*HALVES, *WINDOWS):
        box = region_of(name)
        assert box is not None
        x0, y0, x1, y1 = box.pixels(16, 16)
        cut = frames[:, y0:y1, x0:x1]
        if cut.shape[1:3] == (16, 8):  # a left or right half is averaged by 2 down its rows
            cut = cut.reshape(3, 8, 2, 8, 3).mean(axis=2).round()
        elif cut.shape[1:3] == (8, 16):
            cut = cut.reshape(3, 8, 8, 2, 3).mean(axis=3).round()
        np.testing.assert_allclose(make_view(frames, name), cut, atol=1, err_msg=name)
    inset = Box(0.25, 0.5, 0.5, 0.25, strength=9.0)
    assert region_of(INSET, inset) == Box(0.25, 0.5, 0.5, 0.25) and region_of(INSET) is None
    assert all(region_of(v) is None for v in (FULL, HFLIP, *ROTATIONS))


def test_bad_shapes_and_names_are_named(frames: np.ndarray) -> None:
    with pytest.raises(ValueError, match="unknown view 'diagonal'"):
        make_view(frames, "diagonal")
    with pytest.raises(ValueError, match=r"\(n, 2S, 2S, 3\)"):
        make_view(frames[:, :, :14], FULL)


def test_view_sets_name_known_views() -> None:
    known = {FULL, HFLIP, *ROTATIONS, *HALVES, *WINDOWS, INSET}
    for name, views in VIEW_SETS.items():
        assert set(views) <= known, name


def test_blank_frames_are_black_uniform_or_nearly_so() -> None:
    rng = np.random.default_rng(1)
    black = np.zeros((16, 16, 3), np.uint8)
    teal = np.broadcast_to(np.array([20, 90, 110], np.uint8), (16, 16, 3))
    grain = np.clip(40 + rng.normal(0, 1.5, (16, 16, 3)), 0, 255).astype(np.uint8)  # a dark frame with codec noise
    ramp = np.broadcast_to(np.linspace(0, 60, 16, dtype=np.uint8)[None, :, None], (16, 16, 3))  # a dim gradient
    noise = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    # green triangles on blue of the same brightness (ffmpeg's cellauto scaled down): luma is nearly flat
    tiles = np.where((np.arange(16)[:, None] // 4 + np.arange(16)[None, :] // 4)[..., None] % 2 == 0,
                     np.array([140, 220, 60], np.uint8), np.array([120, 190, 240], np.uint8)).astype(np.uint8)
    # fine cells of two near colours, as a downscaled copy of an automaton keeps them: deviations of about 3.5
    faint = np.where(rng.integers(0, 2, (16, 16, 1)) == 1, np.array([142, 37, 129], np.uint8),
                     np.array([135, 30, 122], np.uint8)).astype(np.uint8)
    frames = np.stack([black, teal, grain, ramp, noise, tiles, faint])
    np.testing.assert_array_equal(blank_frames(frames, QueryParams().blank_std),
                                  [True, True, True, False, False, False, False])
    assert blank_frames(frames[:0], QueryParams().blank_std).shape == (0,)  # a batch whose frames all repeat
    with pytest.raises(ValueError, match="blank_frames needs"):
        blank_frames(black, QueryParams().blank_std)
