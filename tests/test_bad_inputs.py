"""A library of bad inputs, made by the tests: one index run must go past every one of them with a clear reason.

The corpus mixes good clips (including the awkward but valid ones: odd names, 4K, variable frame rate, a rotation
flag, under one second) with files no decoder can use (empty, truncated, random bytes, an image, text, audio only,
zeroed video packets, unreadable, dangling and looping links, one that hangs its decoder). Everything is generated
here with ffmpeg and small sizes, so the module runs in well under a minute on two cores.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sora_search import Library
from sora_search.cli import cli
from sora_search.decode import available_backends, open_video
from sora_search.decode.diagnose import why_unreadable
from sora_search.errors import VideoError
from sora_search.params import IndexParams
from sora_search.threads import available_cpus
from tests.media import ffmpeg, make_testsrc

# The hang is simulated by a reader that decodes like backend="auto" but sleeps forever on "*hang*" files, passed to
# the Library as its decode backend.
HANG_READER = "tests.decode_helpers_hang:AutoUnlessHang"
HANG_TIMEOUT_S = 3.0
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
ODD_NAME = "ça va — clip.mp4"
SHELL_NAME = "$(rm -rf ~).mp4"

# name -> the words its recorded reason must contain
BAD = {
    "empty.mp4": "empty file (0 bytes)",
    "truncated.mp4": "truncated or corrupt: file ends inside its mdat box, before the moov index",
    "random.mp4": "not a video (unrecognised content)",
    "image.mp4": "not a video (PNG image)",
    "text.mp4": "not a video (text file)",
    "audio.mp4": "no video stream (audio only)",
    "zeroed.mp4": "no decodable frame",
    "fifo.mp4": "not a regular file (named pipe)",
    "dangling.mp4": "broken symbolic link",
    "loop_a.mp4": "symbolic link loop",
    "loop_b.mp4": "symbolic link loop",
    "hang.mp4": f"decoder made no progress for {HANG_TIMEOUT_S:g} s",
}
if not IS_ROOT:  # root reads a chmod 000 file, so there the named pipe is the only unreadable one
    BAD["locked.mp4"] = "permission denied"
# name -> (width, height as displayed, duration in seconds, the sample timestamps at 1 frame/s)
GOOD = {
    "good.mp4": (160, 120, 3.0, [0, 1, 2]),
    ODD_NAME: (160, 120, 2.0, [0, 1]),
    SHELL_NAME: (160, 120, 2.0, [0, 1]),
    "short.mp4": (160, 120, 0.4, [0]),
    "uhd.mp4": (3840, 2160, 2.0, [0, 1]),
    "vfr.mp4": (160, 120, 4.0, [0, 1, 2, 3]),
    "rotated.mp4": (120, 160, 2.0, [0, 1]),  # stored 160x120 with a 90-degree display matrix
}

def _zero_video_packets(src: Path, dst: Path) -> None:
    """Copy an MP4 whose index comes first (faststart) and zero every byte inside its mdat box."""
    data = bytearray(src.read_bytes())
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[pos + 8:pos + 16])[0], 16
        elif size == 0:
            size = len(data) - pos
        if kind == b"mdat":
            data[pos + header:pos + size] = bytes(size - header)
            dst.write_bytes(bytes(data))
            return
        pos += size
    raise AssertionError(f"no mdat box in {src}")


def build_corpus(root: Path) -> Path:
    """Write the good and bad files of the module docstring into ``root/library``; returns that folder."""
    lib = root / "library"
    lib.mkdir()
    scratch = root / "scratch"
    scratch.mkdir()
    small = (160, 120)
    make_testsrc(lib / "good.mp4", 3, size=small, fps=10)
    make_testsrc(lib / ODD_NAME, 2, size=small, fps=10, pattern="mandelbrot")
    make_testsrc(lib / SHELL_NAME, 2, size=small, fps=10, pattern="smptebars")
    make_testsrc(lib / "short.mp4", 0.4, size=small, fps=25, pattern="rgbtestsrc")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=3840x2160:rate=5", "-t", "2", "-c:v", "libx264",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(lib / "uhd.mp4"))
    # 10 frames at 5 fps, then 60 at 30 fps: timestamps, not frame indices, must place the samples.
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=5:duration=2",
           "-f", "lavfi", "-i", "testsrc=size=160x120:rate=30:duration=2",
           "-filter_complex", "[0:v]settb=1/90000[a];[1:v]settb=1/90000[b];[a][b]concat=n=2:v=1:a=0[out]",
           "-map", "[out]", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-fps_mode", "vfr",
           "-video_track_timescale", "90000", str(lib / "vfr.mp4"))
    # ffmpeg 5.1 writes a 90-degree display matrix from the "rotate" tag (6.0+ also has -display_rotation).
    upright = make_testsrc(scratch / "upright.mp4", 2, size=small, fps=10, pattern="smptehdbars")
    ffmpeg("-i", str(upright), "-c", "copy", "-metadata:s:v", "rotate=90", str(lib / "rotated.mp4"))
    make_testsrc(lib / "hang.mp4", 2, size=small, fps=10, pattern="yuvtestsrc")

    (lib / "empty.mp4").write_bytes(b"")
    cut_me = make_testsrc(scratch / "whole.mp4", 3, size=small, fps=10, pattern="testsrc")
    data = cut_me.read_bytes()
    (lib / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (lib / "random.mp4").write_bytes(random.Random(4).randbytes(64 * 1024))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120", "-frames:v", "1", str(scratch / "still.png"))
    shutil.copy(scratch / "still.png", lib / "image.mp4")
    (lib / "text.mp4").write_text("These are meeting notes, saved under the wrong name.\n" * 40)
    for name in ("audio.mp4", "audio.m4a"):
        ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:a", "aac", str(lib / name))
    faststart = scratch / "faststart.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10", "-t", "2", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(faststart))
    _zero_video_packets(faststart, lib / "zeroed.mp4")
    os.mkfifo(lib / "fifo.mp4")
    if not IS_ROOT:
        shutil.copy(lib / "good.mp4", lib / "locked.mp4")
        os.chmod(lib / "locked.mp4", 0)
    os.symlink("missing.mp4", lib / "dangling.mp4")
    os.symlink("loop_b.mp4", lib / "loop_a.mp4")  # loop_a -> loop_b -> loop_a
    os.symlink("loop_a.mp4", lib / "loop_b.mp4")
    return lib


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lib = build_corpus(tmp_path_factory.mktemp("bad-inputs"))
    yield lib
    locked = lib / "locked.mp4"
    if locked.exists():
        os.chmod(locked, 0o644)  # so pytest can clean up the tmp folder


@pytest.fixture(scope="module")
def runs(corpus: Path, tmp_path_factory: pytest.TempPathFactory):
    """Two index runs over the corpus with the tiny encoder, one file decoded at a time: (index folder, library,
    first, second summary)."""
    idx = tmp_path_factory.mktemp("bad-inputs-index") / "idx"
    with Library.open(idx, encoder="tiny", decode_backend=HANG_READER,
                      params=IndexParams(decode_timeout_s=HANG_TIMEOUT_S, decode_workers=1)) as lib:
        first = lib.index([corpus])
        second = lib.index([corpus])
        yield idx, lib, first, second


def _reasons(summary) -> dict[str, str]:
    return {os.path.basename(f.path): f.reason for f in summary.failed}


def test_every_bad_file_is_reported_with_its_reason(runs) -> None:
    _, _, first, _ = runs
    reasons = _reasons(first)
    assert sorted(reasons) == sorted(BAD), reasons
    for name, expected in BAD.items():
        assert expected in reasons[name], f"{name}: {reasons[name]!r} does not say {expected!r}"
    for reason in reasons.values():
        assert reason.isprintable() and len(reason) < 200


def test_every_good_file_is_indexed(runs, corpus: Path) -> None:
    _, lib, first, _ = runs
    assert sorted(os.path.basename(p) for p in first.added) == sorted(GOOD)
    assert (corpus / SHELL_NAME).is_file() and (corpus / ODD_NAME).is_file()
    videos = {os.path.basename(v.path): v for v in lib._store.videos() if v.status == "indexed"}
    for name, (width, height, seconds, samples) in GOOD.items():
        v = videos[name]
        assert (v.width, v.height) == (width, height), name
        assert v.duration_s == pytest.approx(seconds, abs=0.05), name
        _, ts, _ = lib._store.vectors_of_video(v.id)
        # Each sample is the latest decoded frame at its instant; PyAV skips non-reference frames at 1 frame/s, so
        # it may be up to a B-frame run (3 frames, <= 0.3 s in these clips) earlier than the frame on screen.
        assert len(ts) == len(samples), name
        assert np.all(ts <= np.asarray(samples) + 1e-3) and np.all(np.asarray(samples) - ts <= 0.3 + 1e-3), (name, ts)


# Files that reach a decoder (the rest are caught by the scan or the worker): every backend gives the same reason.
DECODER_CASES = ["empty.mp4", "truncated.mp4", "random.mp4", "image.mp4", "text.mp4", "audio.mp4", "zeroed.mp4"]


@pytest.mark.parametrize("backend", available_backends())
@pytest.mark.parametrize("name", DECODER_CASES)
def test_each_backend_gives_the_same_reason(backend: str, name: str, corpus: Path) -> None:
    with pytest.raises(VideoError) as err:
        with open_video(corpus / name, backend) as reader:
            list(reader.sample(fps=1.0, size=32))
    assert BAD[name] in err.value.reason and err.value.path == str(corpus / name)


def test_bytes_that_are_no_box_end_the_walk_rather_than_reach_the_reason(tmp_path: Path) -> None:
    """A "box type" with control characters is garbage: naming it would print them, and a \\x1c breaks the line."""
    head = struct.pack(">I4s", 24, b"ftyp") + b"isom" + bytes(12)
    (tmp_path / "garbage.mp4").write_bytes(head + struct.pack(">I4s", 1 << 30, b"&Q\x7f\x1c") + bytes(100))
    (tmp_path / "cut.mp4").write_bytes(head + struct.pack(">I4s", 1 << 30, b"mdat") + bytes(100))
    assert why_unreadable(str(tmp_path / "garbage.mp4"), "?") == "truncated or corrupt: no moov index box"
    assert why_unreadable(str(tmp_path / "cut.mp4"), "?") == ("truncated or corrupt: file ends inside its mdat box, "
                                                              "before the moov index (132 of 1,073,741,848 bytes)")


def test_rotated_video_is_sampled_upright(corpus: Path) -> None:
    """The display matrix is honoured: frames equal the upright source turned as a player shows them."""
    with open_video(corpus / "rotated.mp4") as reader:
        turned = np.concatenate([b.frames for b in reader.sample(fps=1.0, size=64)])
    with open_video(corpus.parent / "scratch" / "upright.mp4", "pyav") as reader:
        upright = np.concatenate([b.frames for b in reader.sample(fps=1.0, size=64)])
    np.testing.assert_array_equal(turned, np.rot90(upright, 1, axes=(1, 2)))


def test_audio_only_m4a_is_not_a_video(runs) -> None:
    """An .m4a is audio by name and by brand: skipped, neither indexed nor reported."""
    _, _, first, _ = runs
    assert not any(p.endswith("audio.m4a") for p in first.added)
    assert "audio.m4a" not in _reasons(first)


def test_unchanged_failures_are_not_retried(runs) -> None:
    _, _, first, second = runs
    assert second.encoded == 0 and second.vectors_added == 0
    assert _reasons(second) == _reasons(first)
    assert second.seconds < HANG_TIMEOUT_S  # the hanging file was not attempted again


@pytest.mark.skipif(IS_ROOT, reason="root reads a chmod 000 file anyway; the corpus's fifo.mp4 is its unreadable "
                                     "file there")
def test_unreadable_file_is_reported_when_not_root(runs) -> None:
    _, _, first, _ = runs
    assert "permission denied" in _reasons(first)["locked.mp4"]


def test_cli_exits_3_and_lists_each_failure_on_one_line(runs, corpus: Path) -> None:
    """The CLI over the same index: nothing left to decode, and the stored failures still reported, one a line."""
    idx, _, first, _ = runs
    result = CliRunner().invoke(cli, ["index", str(corpus), "--index", str(idx)])
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert f"{len(GOOD)} unchanged" in lines[0] and f"{len(BAD)} failed" in lines[0]
    for f in first.failed:
        assert lines.count(f"  failed  {f.path}: {f.reason}") == 1, (f, lines)


def _children() -> set[int]:
    """Process ids of this process's children (every thread's)."""
    return {int(pid) for task in Path("/proc/self/task").iterdir() for pid in (task / "children").read_text().split()}


def test_several_decode_workers_index_the_same_as_one(runs, corpus: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Files decoded three at once (what a GPU run does): the same files indexed, in the same order, with the same
    vectors, the same failures (the hang included, stopped in its own thread), and no decoding child left behind."""
    from sora_search.embed import Embedder

    _, lib, first, _ = runs
    before = _children()
    pooled_threads = set()
    mark = Embedder.pooled_thread
    monkeypatch.setattr(Embedder, "pooled_thread",
                        lambda self, size: (pooled_threads.add(threading.get_ident()), mark(self, size))[1])
    with Library.open(tmp_path / "idx", encoder="tiny", decode_backend=HANG_READER,
                      params=IndexParams(decode_timeout_s=HANG_TIMEOUT_S, decode_workers=3)) as pooled:
        got = pooled.index([corpus])
        assert got.added == first.added
        assert _reasons(got) == _reasons(first)
        for video in pooled._store.videos(status="indexed"):
            _, ts, vectors = pooled._store.vectors_of_video(video.id)
            _, ts0, vectors0 = lib._store.vectors_of_video(lib._store.video_by_path(video.path).id)
            np.testing.assert_array_equal(ts, ts0)
            np.testing.assert_allclose(vectors, vectors0, atol=1e-6)
        assert len(pooled_threads) == 3
        assert pooled._embedder._pool_threads == max(1, available_cpus() // 3)  # the decoders share the cores
        assert _children() <= before  # the pool's decoding children are stopped when the run ends
        assert pooled.query(corpus / "good.mp4").matches == lib.query(corpus / "good.mp4").matches


def test_decode_workers_default_to_two_on_a_cpu_and_half_the_cpus_on_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from sora_search import cluster

    monkeypatch.setattr(cluster, "available_cpus", lambda: 16)
    assert [cluster.decode_workers(0, d) for d in (None, "cpu", "cuda", "cuda:1")] == [1, 2, 8, 8]
    assert cluster.decode_workers(3, "cpu") == 3 and cluster.decode_workers(1, "cuda") == 1
    monkeypatch.setattr(cluster, "available_cpus", lambda: 2)
    assert cluster.decode_workers(0, "cuda") == 1 and cluster.decode_workers(0, "cpu") == 2
    monkeypatch.setattr(cluster, "available_cpus", lambda: 1)
    assert cluster.decode_workers(0, "cpu") == 1


def test_a_pool_of_two_starts_one_child_more_than_one_file_at_a_time(corpus: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The first file is embedded in the calling thread (the encoder loads meanwhile); the pool that takes over
    reuses that thread's decode child, so two files at once cost one process more than one at a time, not two."""
    import sora_search.decode as decode
    from sora_search import cluster

    started = []

    class Counted(decode.DecodeWorker):
        def __init__(self, *args, **kwargs) -> None:
            started.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(decode, "DecodeWorker", Counted)
    monkeypatch.setattr(cluster, "available_cpus", lambda: 2)  # the default: two at once on a CPU
    files = [corpus / "good.mp4", corpus / "short.mp4", corpus / "vfr.mp4"]
    for workers, expected in ((1, 1), (0, 2)):
        started.clear()
        with Library.open(tmp_path / f"idx{workers}", encoder="tiny",
                          params=IndexParams(decode_workers=workers)) as lib:
            assert len(lib.index(files).added) == 3
        assert len(started) == expected


def test_a_pool_encodes_in_one_thread(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files decode side by side, but one thread encodes them, one batch at a time, stopped when the library
    closes."""
    from sora_search.encoder.tiny import TinyEncoder

    threads: list[str] = []
    embed = TinyEncoder.embed

    def recorded(self, frames, batch_size=None):
        threads.append(threading.current_thread().name)
        return embed(self, frames, batch_size)

    monkeypatch.setattr(TinyEncoder, "embed", recorded)
    with Library.open(tmp_path / "idx", encoder="tiny", params=IndexParams(decode_workers=3)) as lib:
        assert len(lib.index([corpus / "good.mp4", corpus / "short.mp4", corpus / "vfr.mp4"]).added) == 3
    assert len(threads) >= 3 and len(set(threads)) == 1 and threads[0].startswith("sora-encode"), threads
    assert not [t for t in threading.enumerate() if t.name.startswith("sora-encode")]


def test_a_run_stopped_midway_stops_its_decode_pool(corpus: Path, tmp_path: Path) -> None:
    """An error in the committing thread (as Ctrl-C would be) ends the run at once: a pooled thread waiting on the
    hanging decoder is released by killing its child, not after the 60 s timeout, and no child is left."""
    import time

    def stop(p) -> None:
        if p.status == "added":
            raise KeyboardInterrupt

    before = _children()
    with Library.open(tmp_path / "idx", encoder="tiny", decode_backend=HANG_READER,
                      params=IndexParams(decode_timeout_s=60, decode_workers=3)) as lib:
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            lib.index([corpus / "good.mp4", corpus / "hang.mp4", corpus / "short.mp4", corpus / "vfr.mp4"],
                      progress=stop)
        assert time.monotonic() - start < 30
        assert _children() <= before
