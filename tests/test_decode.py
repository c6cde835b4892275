"""Decode stage: sampling rule, resizing, chunking, errors, and the worker process (timeouts, crashes, reuse).

Every reader test runs on every available backend. Clips are made once per session with ffmpeg.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sora_search import decode
from sora_search.decode import (
    DEFAULT_SIZE,
    DecodeWorker,
    available_backends,
    open_video,
)
from sora_search.decode.base import StreamSampler, select_indices
from sora_search.decode.pyav_backend import PyAVReader
from sora_search.decode.worker import decode_events
from sora_search.errors import DecodeTimeout, NoFramesError, VideoDecodeError, VideoError
from sora_search.types import FrameBatch
from tests.media import ffmpeg, make_testsrc

BACKENDS = available_backends()
HELPERS = "tests.decode_helpers_hang"
# A file of the media/ folder that benchmarks/fetch_media.sh makes; the slow test finds it via $SORA_SEARCH_MEDIA.
V2S = Path("video_derived/pypi_perception/v2s.mov")
FETCH_HINT = "bash benchmarks/fetch_media.sh, then set SORA_SEARCH_MEDIA to its media/ folder"

# The VFR clip: 30 frames at 10 fps (0.0 .. 2.9 s), then 90 frames at 30 fps (3.0 .. 5.967 s).
VFR_PTS = np.concatenate([np.arange(30) / 10, 3 + np.arange(90) / 30])


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("decode-clips")
    out = {
        "cfr": make_testsrc(d / "cfr.mp4", 10, fps=25),
        "short": make_testsrc(d / "short.mp4", 0.4, fps=25),
        "mandel": make_testsrc(d / "mandel.mp4", 3, fps=30, pattern="mandelbrot", size=(160, 120)),
    }
    vfr = d / "vfr.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=400x240:rate=10:duration=3",
           "-f", "lavfi", "-i", "testsrc2=size=400x240:rate=30:duration=3",
           "-filter_complex", "[0:v]settb=1/90000[a];[1:v]settb=1/90000[b];[a][b]concat=n=2:v=1:a=0[out]",
           "-map", "[out]", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-fps_mode", "vfr",
           "-video_track_timescale", "90000", str(vfr))
    out["vfr"] = vfr
    # Stream-copying from mid-GOP makes an MP4 edit list that hides the GOP's first 1.5 s.
    edit = d / "editlist.mp4"
    ffmpeg("-ss", "1.5", "-i", str(out["cfr"]), "-t", "3", "-c", "copy", str(edit))
    out["editlist"] = edit
    # Garbage over 20 KB of frame data in the middle, and a copy cut off before its index (moov at the end).
    data = bytearray(out["cfr"].read_bytes())
    mid = len(data) * 2 // 5
    data[mid:mid + 20_000] = bytes(range(256)) * (20_000 // 256) + bytes(20_000 % 256)
    (d / "corrupt.mp4").write_bytes(bytes(data))
    out["corrupt"] = d / "corrupt.mp4"
    (d / "truncated.mp4").write_bytes(out["cfr"].read_bytes()[: len(data) * 3 // 5])
    out["truncated"] = d / "truncated.mp4"
    text = d / "notes.mp4"
    text.write_text("this is a text file with a video extension\n" * 50)
    out["text"] = text
    for trigger in ("hang", "hangmid", "crash"):
        out[trigger] = Path(shutil.copy(out["cfr"], d / f"{trigger}.mp4"))
    return out


def _all(batches) -> tuple[np.ndarray, np.ndarray]:
    batches = list(batches)
    assert batches, "no batch yielded"
    return np.concatenate([b.frames for b in batches]), np.concatenate([b.timestamps_s for b in batches])


def _expected(pts: np.ndarray, fps: float, duration_s: float) -> np.ndarray:
    """The sampling rule spelled out the slow way: last frame with pts <= k / fps, each frame once, targets
    before the declared duration or the end of the last frame, whichever is later."""
    last_interval = pts[-1] - pts[-2] if len(pts) > 1 else 1 / fps
    end = max(duration_s, pts[-1] + last_interval) - 1e-6
    chosen = []
    k = 0
    while k / fps < end:
        on_screen = pts[pts <= k / fps + 1e-6]
        t = on_screen[-1] if len(on_screen) else pts[0]
        if not chosen or chosen[-1] != t:
            chosen.append(t)
        k += 1
    return np.array(chosen)


# -- readers, every backend ------------------------------------------------------------------------------------


def test_registry_order_and_names() -> None:
    assert BACKENDS, "no decoder installed"
    assert BACKENDS == [n for n in ("pyav", "decord") if n in BACKENDS]
    assert set(decode.BACKENDS) == set(BACKENDS)
    for name, cls in decode.BACKENDS.items():
        assert cls.backend == name


@pytest.fixture
def exact_pyav(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyAV without non-reference frame skipping: the exact sampling rule, frame for frame like decord."""
    monkeypatch.setattr(PyAVReader, "skip_nonref", False)


@pytest.mark.skipif("pyav" not in BACKENDS, reason="PyAV not installed")
@pytest.mark.parametrize("clip", ["cfr", "vfr"])
@pytest.mark.parametrize("fps", [1.0, 2.0, 4.0])
def test_pyav_skipping_nonref_stays_close_to_exact(clip: str, fps: float, clips: dict[str, Path],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with open_video(clips[clip], "pyav") as reader:
        fast_frames, fast_ts = _all(reader.sample(fps=fps, size=64))
    monkeypatch.setattr(PyAVReader, "skip_nonref", False)
    with open_video(clips[clip], "pyav") as reader:
        frames, ts = _all(reader.sample(fps=fps, size=64))
    # Same sampling instants; each sample is the latest decoded frame, at most a B-frame run (x264: 3) earlier.
    assert len(fast_ts) == len(ts)
    assert np.all(fast_ts <= ts + 1e-6) and np.all(ts - fast_ts <= 3 * 0.1 + 1e-6)
    assert np.abs(fast_frames.astype(np.int16) - frames.astype(np.int16)).mean() < 20


@pytest.mark.skipif("pyav" not in BACKENDS, reason="PyAV not installed")
def test_pyav_skips_the_loop_filter_only_on_a_shrunk_sparse_sample(clips: dict[str, Path],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def sample(size: int, fps: float = 1.0) -> np.ndarray:
        with open_video(clips["cfr"], "pyav") as reader:  # 320x240 H.264 at 25 fps
            return _all(reader.sample(fps=fps, size=size))[0].astype(np.int16)

    fast = {size: sample(size) for size in (96, 160)}
    dense = sample(96, fps=10.0)
    monkeypatch.setattr(PyAVReader, "skip_loop_filter", False)
    # Shrunk 2.5-fold at 1 of 25 frames: deblocking skipped, the frames a little off.
    diff = np.abs(fast[96] - sample(96)).mean(axis=(1, 2, 3))
    assert diff.max() > 0 and diff.mean() < 2, diff
    # Shrunk 1.5-fold, or sampled densely (no frame skipped): decoded exactly.
    np.testing.assert_array_equal(fast[160], sample(160))
    np.testing.assert_array_equal(dense, sample(96, fps=10.0))


@pytest.mark.parametrize("backend", BACKENDS)
def test_info(backend: str, clips: dict[str, Path]) -> None:
    with open_video(clips["cfr"], backend) as reader:
        info = reader.info
    assert info.backend == backend
    assert (info.width, info.height) == (320, 240)
    assert info.fps == pytest.approx(25.0)
    assert info.duration_s == pytest.approx(10.0, abs=0.05)
    assert info.frame_count in (250, None)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fps", [1.0, 2.0])
def test_sampling_count_and_timestamps(backend: str, fps: float, clips: dict[str, Path], exact_pyav: None) -> None:
    with open_video(clips["cfr"], backend) as reader:
        frames, ts = _all(reader.sample(fps=fps))
    n = int(10 * fps)
    assert len(frames) == len(ts) == n
    np.testing.assert_allclose(ts, np.arange(n) / fps, atol=1 / 25 + 1e-6)
    assert np.all(np.diff(ts) > 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_shape_dtype_and_size(backend: str, clips: dict[str, Path]) -> None:
    with open_video(clips["mandel"], backend) as reader:
        for size in (DEFAULT_SIZE, 64):
            batches = list(reader.sample(fps=2.0, size=size))
            for b in batches:
                assert isinstance(b, FrameBatch)
                assert b.frames.shape[1:] == (size, size, 3) and b.frames.dtype == np.uint8
                assert b.timestamps_s.dtype == np.float64 and b.timestamps_s.shape == (len(b),)
            assert sum(len(b) for b in batches) == 6
            # Real pixels, not a blank buffer.
            assert batches[0].frames.std() > 5


@pytest.mark.parametrize("backend", BACKENDS)
def test_chunking_preserves_frames(backend: str, clips: dict[str, Path]) -> None:
    with open_video(clips["cfr"], backend) as reader:
        small = list(reader.sample(fps=2.0, size=40, chunk_size=3))
        big_frames, big_ts = _all(reader.sample(fps=2.0, size=40, chunk_size=40))
    assert all(1 <= len(b) <= 3 for b in small)
    assert [len(b) for b in small[:-1]] == [3] * (len(small) - 1)
    frames, ts = _all(small)
    np.testing.assert_array_equal(ts, big_ts)
    np.testing.assert_array_equal(frames, big_frames)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fps", [1.0, 4.0, 10.0])
def test_variable_frame_rate_uses_real_timestamps(backend: str, fps: float, clips: dict[str, Path],
                                                  exact_pyav: None) -> None:
    with open_video(clips["vfr"], backend) as reader:
        duration = reader.info.duration_s
        _, ts = _all(reader.sample(fps=fps, size=40, chunk_size=7))
    assert duration == pytest.approx(6.0, abs=0.05)
    # Index = t * average_fps would pick wrong frames here (the average is 19.7 fps, neither part's rate).
    np.testing.assert_allclose(ts, _expected(VFR_PTS, fps, duration), atol=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_short_clip_yields_its_first_frame(backend: str, clips: dict[str, Path]) -> None:
    with open_video(clips["short"], backend) as reader:
        frames, ts = _all(reader.sample(fps=1.0))
    assert len(frames) == 1 and ts[0] == pytest.approx(0.0, abs=1e-6)
    with open_video(clips["short"], backend) as reader:
        _, ts = _all(reader.sample(fps=0.1))
    assert len(ts) == 1


@pytest.mark.parametrize("backend", [*BACKENDS, "auto"])
def test_not_a_video_raises_decode_error(backend: str, clips: dict[str, Path]) -> None:
    with pytest.raises(VideoDecodeError) as err:
        with open_video(clips["text"], backend) as reader:
            list(reader.sample())
    assert err.value.path == str(clips["text"])
    assert str(clips["text"]) in str(err.value)


@pytest.mark.parametrize("backend", [*BACKENDS, "auto"])
@pytest.mark.parametrize("clip", ["corrupt", "truncated"])
def test_damaged_files_fail_typed_or_decode(backend: str, clip: str, clips: dict[str, Path]) -> None:
    try:
        with open_video(clips[clip], backend) as reader:
            _, ts = _all(reader.sample(fps=1.0, size=40))
    except VideoError as exc:
        assert exc.path == str(clips[clip])
    else:
        assert np.all(np.diff(ts) > 0) and len(ts) >= 5


@pytest.mark.parametrize("backend", [*BACKENDS, "auto"])
def test_missing_file_raises_decode_error(backend: str, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.mp4"
    with pytest.raises(VideoDecodeError, match="not found") as err:
        open_video(missing, backend)
    assert err.value.path == str(missing)


def test_unknown_backend_lists_available(clips: dict[str, Path]) -> None:
    with pytest.raises(ValueError) as err:
        open_video(clips["cfr"], backend="nope")
    for name in BACKENDS:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="not a sora_search.decode.VideoReader"):
        open_video(clips["cfr"], backend=f"{HELPERS}:NotAReader")
    with pytest.raises(ValueError, match="cannot load"):
        open_video(clips["cfr"], backend="tests.no_such_module:Reader")
    with pytest.raises(ValueError, match="unknown video backend"):
        DecodeWorker(backend="nope")


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_sample_arguments(backend: str, clips: dict[str, Path]) -> None:
    with open_video(clips["short"], backend) as reader:
        for kwargs in ({"fps": 0}, {"size": 0}, {"chunk_size": 0}):
            with pytest.raises(ValueError):
                list(reader.sample(**kwargs))


@pytest.mark.parametrize("backend", BACKENDS)
def test_close_is_idempotent_and_blocks_reuse(backend: str, clips: dict[str, Path]) -> None:
    reader = open_video(clips["short"], backend)
    reader.close()
    reader.close()
    with pytest.raises(VideoDecodeError, match="closed"):
        list(reader.sample())


@pytest.mark.skipif(len(BACKENDS) < 2, reason="needs two backends to compare")
@pytest.mark.parametrize("clip", ["cfr", "vfr"])
def test_backends_agree(clip: str, clips: dict[str, Path], exact_pyav: None) -> None:
    results = []
    for backend in BACKENDS:
        with open_video(clips[clip], backend) as reader:
            results.append(_all(reader.sample(fps=2.0, size=64)))
    (f0, t0), (f1, t1) = results[0], results[1]
    np.testing.assert_allclose(t0, t1, atol=1e-3)
    # Same frames; only the scalers' interpolation differs.
    assert np.abs(f0.astype(np.int16) - f1.astype(np.int16)).mean() < 8


@pytest.mark.skipif("decord" not in BACKENDS, reason="decord is not installed")
@pytest.mark.parametrize("fps", [1.0, 3.0])
def test_decord_samples_are_the_frames_a_frame_by_frame_read_gives(fps: float, tmp_path: Path) -> None:
    """decord skips the frames between samples without converting them, never across a key frame (its seek can
    land short on open-GOP H.264); with a key frame every 7 frames, samples fall on key frames, just before them
    and between them, and each must be the frame a plain read of every frame gives at that index."""
    import decord

    from sora_search.decode.decord_backend import _to_numpy

    path = tmp_path / "gop7.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-t", "6", "-c:v", "libx264", "-pix_fmt",
           "yuv420p", "-g", "7", "-keyint_min", "7", "-sc_threshold", "0", "-bf", "3", "-x264-params",
           "b-pyramid=normal:open-gop=1", str(path))
    whole = decord.VideoReader(str(path), ctx=decord.cpu(0), width=64, height=64)
    every = np.stack([_to_numpy(whole.next()) for _ in range(len(whole))])
    keys = set(_to_numpy(whole.get_key_indices()).tolist())
    with open_video(path, "decord") as reader:
        chosen = select_indices(reader._pts, fps, reader.info.duration_s)
        frames, _ = _all(reader.sample(fps=fps, size=64))
    assert len(keys) > 10 and keys & set(chosen.tolist()) and {k - 1 for k in keys} & set(chosen.tolist())
    np.testing.assert_array_equal(frames, every[chosen])


@pytest.mark.parametrize("backend", BACKENDS)
def test_awkward_sizes_never_leak_raw_errors(backend: str, clips: dict[str, Path]) -> None:
    # decord2 3.4.0 cannot produce 32x32 or 48x48 output; it must say so as a VideoDecodeError, not crash.
    for size in (32, 48):
        with open_video(clips["short"], backend) as reader:
            try:
                frames, _ = _all(reader.sample(fps=1.0, size=size))
            except VideoDecodeError as exc:
                assert backend == "decord" and "pyav" in exc.reason
            else:
                assert frames.shape == (1, size, size, 3)


def test_worker_auto_falls_back_on_awkward_size(clips: dict[str, Path]) -> None:
    with DecodeWorker(timeout_s=30) as w:
        with w.open(clips["cfr"], fps=1.0, size=32) as video:
            frames, ts = _all(video)
    assert frames.shape == (10, 32, 32, 3)
    np.testing.assert_allclose(ts, np.arange(10), atol=1 / 25 + 1e-6)


def test_edit_list_is_applied_or_refused(clips: dict[str, Path]) -> None:
    # decord ignores edit lists (it would return 1.5 s of hidden frames with negative timestamps), so it refuses
    # such files and "auto" moves on to PyAV, which applies them.
    if "decord" in BACKENDS:
        with pytest.raises(VideoDecodeError, match="edit list"):
            open_video(clips["editlist"], "decord")
    if "pyav" in BACKENDS:
        with open_video(clips["editlist"]) as reader:
            assert reader.backend == "pyav"
            frames, ts = _all(reader.sample(fps=1.0, size=40))
        np.testing.assert_allclose(ts, [0, 1, 2, 3], atol=1 / 25 + 1e-6)
        with open_video(clips["cfr"], "pyav") as reader:
            every, every_ts = _all(reader.sample(fps=25.0, size=40))
        # What it shows at 0 s is what the source showed at about 1.5 s, not the hidden GOP start.
        diff = np.abs(every.astype(np.int16) - frames[0].astype(np.int16)).mean(axis=(1, 2, 3))
        assert every_ts[int(np.argmin(diff))] == pytest.approx(1.5, abs=0.1)


def test_auto_opens_with_first_backend(clips: dict[str, Path]) -> None:
    with open_video(clips["cfr"]) as reader:
        assert reader.backend == BACKENDS[0]


def test_import_does_not_load_decoders() -> None:
    code = "import sys, sora_search.decode; print('decord' in sys.modules, 'av' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent.parent)
    assert out.stdout.split() == ["False", "False"]


# -- the sampling rule -----------------------------------------------------------------------------------------


def test_stream_sampler_matches_table_rule() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 60))
        pts = np.cumsum(rng.uniform(0.01, 0.7, n)) - 0.01
        pts -= pts[0]
        fps = float(rng.choice([0.5, 1.0, 2.0, 3.0, 7.5]))
        duration = float(pts[-1] + rng.uniform(-0.5, 0.5)) * float(rng.choice([0.0, 1.0]))
        table = select_indices(pts, fps, duration)
        sampler: StreamSampler[int] = StreamSampler(fps, duration)
        streamed = []
        for i, t in enumerate(pts):
            out = sampler.push(i, float(t))
            if out is not None:
                streamed.append(out[0])
        out = sampler.finish()
        if out is not None:
            streamed.append(out[0])
        assert streamed == table.tolist(), (pts, fps, duration)
        np.testing.assert_allclose(pts[table], _expected(pts, fps, duration))


# -- auto fallback (in-process, with a registry where "decord" misbehaves) -------------------------------------


@pytest.mark.skipif("pyav" not in BACKENDS, reason="fallback target is PyAV")
@pytest.mark.parametrize("flaky", ["FailBeforeFirstFrame", "FailAfterFirstBatch"])
def test_auto_falls_back_to_pyav(flaky: str, clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    cls = getattr(importlib.import_module(HELPERS), flaky)
    monkeypatch.setattr(decode, "BACKENDS", {"decord": cls, "pyav": decode.BACKENDS["pyav"]})
    events = list(decode_events(str(clips["cfr"]), "auto", 1.0, 40, 4))
    kinds = [e[0] for e in events]
    ts = np.concatenate([e[2] for e in events if e[0] == "batch"])
    np.testing.assert_allclose(ts, np.arange(10), atol=1 / 25 + 1e-6)
    assert np.all(np.diff(ts) > 0)
    assert kinds[0] == "info"
    if flaky == "FailBeforeFirstFrame":
        assert events[0][1].backend == "pyav" and "backend" not in kinds
    else:
        assert events[0][1].backend == "decord" and ("backend", "pyav") in events


# -- the worker process ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def worker() -> DecodeWorker:
    with DecodeWorker(timeout_s=30) as w:
        yield w


@pytest.mark.parametrize("backend", [*BACKENDS, "auto"])
def test_worker_matches_direct_reader(backend: str, clips: dict[str, Path]) -> None:
    with open_video(clips["vfr"], backend) as reader:
        want_frames, want_ts = _all(reader.sample(fps=4.0, size=56, chunk_size=5))
        want_info = reader.info
    with DecodeWorker(backend=backend, timeout_s=30) as w:
        with w.open(clips["vfr"], fps=4.0, size=56, chunk_size=5) as video:
            assert video.info == want_info and video.backend == want_info.backend
            batches = list(video)
    assert all(len(b) <= 5 for b in batches)
    frames, ts = _all(batches)
    np.testing.assert_array_equal(ts, want_ts)
    np.testing.assert_array_equal(frames, want_frames)


@pytest.mark.parametrize("backend", BACKENDS)
def test_worker_gives_held_pictures_at_another_size_without_decoding(backend: str, clips: dict[str, Path],
                                                                    tmp_path: Path) -> None:
    """An open with hold_bytes keeps the file's sampled pictures in the child; the next such open of the same file
    gets them at its own size, undecoded, and equal to a decode at that size. Another file, an open without
    hold_bytes, forget(), a change to the file, or too few bytes: decoded again. decord cannot hold."""
    clip = Path(shutil.copy(clips["vfr"], tmp_path / "vfr.mp4"))

    def read(w: DecodeWorker, size: int, hold: int = 64 << 20) -> tuple[bool, np.ndarray, np.ndarray]:
        with w.open(clip, fps=4.0, size=size, chunk_size=5, hold_bytes=hold) as video:
            frames, ts = _all(video)
            return video.held, frames, ts

    with open_video(clip, backend) as reader:
        want_frames, want_ts = _all(reader.sample(fps=4.0, size=56))
    can_hold = backend == "pyav"
    with DecodeWorker(backend=backend, timeout_s=30) as w:
        assert not read(w, 40)[0]
        held, frames, ts = read(w, 56)
        assert held == can_hold
        np.testing.assert_array_equal(frames, want_frames)
        np.testing.assert_array_equal(ts, want_ts)
        assert read(w, 40)[0] == can_hold  # still held for a third open
        w.forget()
        assert [read(w, 40)[0], read(w, 40, hold=0)[0], read(w, 40)[0]] == [False, False, False]
        with w.open(clips["cfr"], fps=4.0, size=40):
            pass  # another file, not read to the end
        assert not read(w, 40)[0] and read(w, 40)[0] == can_hold
        clip.write_bytes(clips["cfr"].read_bytes())
        assert not read(w, 40)[0]
        assert not read(w, 40, hold=1000)[0] and not read(w, 40, hold=1000)[0]  # too few bytes to hold any


@pytest.mark.parametrize("backend", BACKENDS)
def test_worker_sends_a_sample_of_every_nth_held_picture(backend: str, clips: dict[str, Path], tmp_path: Path) -> None:
    """``every`` on an open served from held pictures: the first and each N-th after it, across batches, the same
    frames and times as a full decode's, and what is held stays whole for the next open. A decode sends every frame
    (it costs as much to make), and decord, which cannot hold, always decodes."""
    clip = Path(shutil.copy(clips["vfr"], tmp_path / "vfr.mp4"))
    with open_video(clip, backend) as reader:
        want_frames, want_ts = _all(reader.sample(fps=4.0, size=56))
    assert len(want_ts) > 10
    with DecodeWorker(backend=backend, timeout_s=30) as w:
        for every in (1, 3, 4):
            for _ in range(2):  # decoded, then (PyAV) from the pictures the first open held
                with w.open(clip, fps=4.0, size=56, chunk_size=5, hold_bytes=64 << 20, every=every) as video:
                    frames, ts = _all(video)
                    step = every if video.held else 1
                np.testing.assert_array_equal(ts, want_ts[::step])
                np.testing.assert_array_equal(frames, want_frames[::step])
            assert video.held == (backend == "pyav")
            w.forget()
        with w.open(clip, fps=4.0, size=56, hold_bytes=64 << 20) as video:
            assert not video.held and len(_all(video)[1]) == len(want_ts)
        with w.open(clip, fps=4.0, size=56, hold_bytes=64 << 20, every=4) as video:
            _all(video)  # read to the end: an open left midway lets its pictures go
        with w.open(clip, fps=4.0, size=56, hold_bytes=64 << 20) as video:
            assert video.held == (backend == "pyav")
            np.testing.assert_array_equal(_all(video)[0], want_frames)
        with pytest.raises(ValueError, match="every"):
            w.open(clip, every=0)


@pytest.mark.skipif("pyav" not in BACKENDS, reason="PyAV not installed")
def test_worker_decodes_with_the_threads_it_is_given(clips: dict[str, Path]) -> None:
    """0 lets FFmpeg pick; a worker given a share of the cores opens each file's codec with that many threads,
    changed between files as a pool's share changes."""
    with DecodeWorker(backend=f"{HELPERS}:ThreadCountReader", timeout_s=30, threads=1) as w:
        got = []
        for threads in (1, 3, 0):
            w.threads = threads
            with w.open(clips["cfr"], fps=1.0, size=40) as video:
                got.append({int(v) for batch in video for v in np.unique(batch.frames)})
    assert got[:2] == [{1}, {3}]
    assert got[2] != {0} and len(got[2]) == 1  # FFmpeg's own choice, at least one thread


def test_worker_reused_across_files(worker: DecodeWorker, clips: dict[str, Path]) -> None:
    pids = set()
    for name, n in [("cfr", 10), ("short", 1), ("vfr", 6), ("cfr", 10)]:
        with worker.open(clips[name], fps=1.0, size=40) as video:
            assert sum(len(b) for b in video) == n
        pids.add(worker._proc.pid)
    assert len(pids) == 1


def test_worker_abandon_midway_then_next_file(worker: DecodeWorker, clips: dict[str, Path]) -> None:
    video = worker.open(clips["cfr"], fps=10.0, size=40, chunk_size=2)
    first = next(iter(video))
    assert len(first) == 2
    pid = worker._proc.pid
    video.close()
    video.close()
    with worker.open(clips["vfr"], fps=2.0, size=40) as other:
        _, ts = _all(other)
    assert len(ts) == 12
    # Opening a new file while a stream is still live abandons the old stream instead of mixing them.
    stale = worker.open(clips["cfr"], fps=10.0, size=40, chunk_size=2)
    next(iter(stale))
    with worker.open(clips["short"], fps=1.0, size=40) as short:
        assert sum(len(b) for b in short) == 1
    assert worker._proc.pid == pid, "a cancel should not need a new process"


def test_worker_reports_child_errors(worker: DecodeWorker, clips: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(VideoDecodeError) as err:
        worker.open(clips["text"])
    assert err.value.path == str(clips["text"]) and not isinstance(err.value, DecodeTimeout)
    with pytest.raises(VideoDecodeError, match="not found"):
        worker.open(tmp_path / "gone.mp4")
    with worker.open(clips["short"], size=40) as video:
        assert sum(len(b) for b in video) == 1


def test_worker_auto_recovers_damaged_file(worker: DecodeWorker, clips: dict[str, Path]) -> None:
    # decord gives up on the first batch of this file; the worker's auto mode hands it to PyAV.
    with worker.open(clips["corrupt"], fps=1.0, size=40) as video:
        _, ts = _all(video)
    assert len(ts) >= 5 and np.all(np.diff(ts) > 0)


def test_worker_plugin_errors(clips: dict[str, Path]) -> None:
    with DecodeWorker(backend="tests.no_such_module:Reader", timeout_s=30) as w:
        with pytest.raises(ValueError, match="cannot load"):
            w.open(clips["short"])


def test_worker_kills_hanging_decoder(clips: dict[str, Path]) -> None:
    with DecodeWorker(backend=f"{HELPERS}:HangingReader", timeout_s=1.5) as w:
        start = time.monotonic()
        with pytest.raises(DecodeTimeout) as err:
            w.open(clips["hang"])
        assert time.monotonic() - start < 10
        assert err.value.path == str(clips["hang"]) and err.value.timeout_s == 1.5
        assert w._proc is None
        # A hang after the first batch surfaces while iterating.
        video = w.open(clips["hangmid"], fps=1.0, size=40, chunk_size=2)
        batches = iter(video)
        assert len(next(batches)) == 2
        with pytest.raises(DecodeTimeout):
            next(batches)
        # The worker starts a fresh child and goes on.
        with w.open(clips["cfr"], fps=1.0, size=40) as video:
            assert sum(len(b) for b in video) == 10


def test_worker_survives_crashing_decoder(clips: dict[str, Path]) -> None:
    with DecodeWorker(backend=f"{HELPERS}:CrashingReader", timeout_s=30) as w:
        with pytest.raises(VideoDecodeError, match=r"decoder process died \(exit code 3\)") as err:
            w.open(clips["crash"])
        assert err.value.path == str(clips["crash"])
        with w.open(clips["cfr"], fps=2.0, size=40) as video:
            assert sum(len(b) for b in video) == 20


def test_worker_close_is_idempotent(clips: dict[str, Path]) -> None:
    w = DecodeWorker(timeout_s=30)
    w.close()  # never started
    w = DecodeWorker(timeout_s=30)
    video = w.open(clips["cfr"], size=40, chunk_size=2)
    proc = w._proc
    w.close()
    w.close()
    assert proc.poll() is not None
    with pytest.raises(RuntimeError):
        w.open(clips["cfr"])


def test_errors_are_video_errors() -> None:
    assert issubclass(DecodeTimeout, VideoError) and issubclass(NoFramesError, VideoError)


@pytest.fixture
def v2s() -> Path:
    root = os.environ.get("SORA_SEARCH_MEDIA")
    if not root:
        pytest.skip(f"SORA_SEARCH_MEDIA is not set ({FETCH_HINT})")
    path = Path(root) / V2S
    if not path.is_file():
        pytest.skip(f"{path} not found ({FETCH_HINT})")
    return path


@pytest.mark.slow
def test_worker_decodes_v2s_that_hangs_old_decord(v2s: Path) -> None:
    with DecodeWorker(timeout_s=60) as w:
        with w.open(v2s, fps=1.0) as video:
            frames, ts = _all(video)
            backend = video.backend
    assert len(frames) > 0 and frames.shape[1:] == (DEFAULT_SIZE, DEFAULT_SIZE, 3)
    assert np.all(np.diff(ts) > 0)
    assert backend in BACKENDS
    assert os.environ.get("SORA_SEARCH_EXPECT_BACKEND", backend) == backend


def test_worker_works_from_a_script_without_main_guard(tmp_path: Path, clips: dict[str, Path]) -> None:
    # multiprocessing's "spawn" would re-import this script in the child and recurse; the worker must not.
    script = tmp_path / "unguarded.py"
    script.write_text("from sora_search.decode import DecodeWorker\n"
                      f"with DecodeWorker(timeout_s=30) as w, w.open({str(clips['cfr'])!r}) as v:\n"
                      "    print('FRAMES', sum(len(b) for b in v))\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "FRAMES 10" in out.stdout


def test_worker_child_imports_the_parents_package_not_one_in_the_working_directory(
        tmp_path: Path, clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from a folder that holds another ``sora_search`` (a checkout of another version), the child must still
    import the parent's: ``python -m`` would put the working directory first and decode with the other one."""
    other = tmp_path / "sora_search"
    other.mkdir()
    (other / "__init__.py").write_text("raise ImportError('the sora_search of the working directory')\n")
    monkeypatch.chdir(tmp_path)
    with DecodeWorker(timeout_s=30) as w, w.open(clips["cfr"], fps=1.0, size=40) as video:
        assert sum(len(b) for b in video) == 10
