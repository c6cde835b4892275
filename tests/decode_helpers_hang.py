"""Misbehaving video readers for the decode worker tests, loaded in the child as ``"tests.decode_helpers_hang:X"``.

Each one behaves like :class:`PyAVReader` except on files whose name contains a trigger word, so a single worker
can be shown to fail on one file and then decode the next one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterator

from sora_search.decode import DEFAULT_SIZE, DecordReader, PyAVReader, VideoReader, open_video
from sora_search.decode.worker import decode_events
from sora_search.errors import VideoDecodeError
from sora_search.types import FrameBatch, VideoInfo


class HangingReader(PyAVReader):
    """Never returns from ``sample`` on ``*hang*`` files (like a native decoder stuck in a loop);
    on ``*hangmid*`` files it yields the first batch, then hangs."""

    backend = "test-hang"

    def sample(self, fps: float = 1.0, size: int = DEFAULT_SIZE, chunk_size: int = 32) -> Iterator[FrameBatch]:
        name = Path(self.path).name
        batches = super().sample(fps, size, chunk_size)
        if "hangmid" in name:
            yield next(batches)
        if "hang" in name:
            time.sleep(3600)
        yield from batches


class CrashingReader(PyAVReader):
    """Kills its process with exit code 3 on ``*crash*`` files, as a segfaulting decoder would."""

    backend = "test-crash"

    def sample(self, fps: float = 1.0, size: int = DEFAULT_SIZE, chunk_size: int = 32) -> Iterator[FrameBatch]:
        if "crash" in Path(self.path).name:
            os._exit(3)
        yield from super().sample(fps, size, chunk_size)


class FailAfterFirstBatch(DecordReader):
    """Registered as ``decord`` in fallback tests: yields one batch, then fails like a corrupt stream."""

    def sample(self, fps: float = 1.0, size: int = DEFAULT_SIZE, chunk_size: int = 32) -> Iterator[FrameBatch]:
        batches = super().sample(fps, size, chunk_size)
        yield next(batches)
        raise VideoDecodeError(self.path, "simulated corrupt packet")


class FailBeforeFirstFrame(DecordReader):
    """Registered as ``decord`` in fallback tests: opens, then fails before producing a frame."""

    def sample(self, fps: float = 1.0, size: int = DEFAULT_SIZE, chunk_size: int = 32) -> Iterator[FrameBatch]:
        raise VideoDecodeError(self.path, "simulated failure on the first batch")
        yield  # pragma: no cover - makes this a generator


class ThreadCountReader(PyAVReader):
    """Decodes as :class:`PyAVReader` does, then paints every frame with the thread count the codec opened with, so
    the parent can see how many threads the child's decoder got."""

    backend = "test-threads"

    def sample(self, fps: float = 1.0, size: int = DEFAULT_SIZE, chunk_size: int = 32) -> Iterator[FrameBatch]:
        for batch in super().sample(fps, size, chunk_size):
            batch.frames[:] = self._stream.codec_context.thread_count
            yield batch


class NotAReader:
    """Not a VideoReader subclass; naming it as a backend must be refused."""

    info = VideoInfo(duration_s=0, fps=0, width=0, height=0)


class AutoUnlessHang(VideoReader):
    """Decodes exactly as ``backend="auto"`` does (decord, PyAV fallback, same errors), except that ``sample``
    never returns on ``*hang*`` files. Lets one index run over a mixed corpus include a hanging decoder."""

    backend = "test-auto-hang"

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        with open_video(path) as reader:  # the "auto" open errors, raised from here as they would be
            self._info = reader.info

    @property
    def info(self) -> VideoInfo:
        return self._info

    def sample(self, fps: float = 1.0, size: int = DEFAULT_SIZE, chunk_size: int = 32) -> Iterator[FrameBatch]:
        if "hang" in Path(self.path).name:
            time.sleep(3600)
        for event in decode_events(self.path, "auto", fps, size, chunk_size):
            if event[0] == "info":
                self._info = event[1]
            elif event[0] == "batch":
                yield FrameBatch(frames=event[1], timestamps_s=event[2])
