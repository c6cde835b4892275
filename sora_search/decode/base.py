"""The decoder interface: a small ABC every backend implements, plus the sampling rule they share.

Modelled on PySceneDetect's ``scenedetect/video_stream.py``: a reader opens in ``__init__`` (failing with a typed
error), describes the stream through :attr:`VideoReader.info`, and is a context manager with an idempotent
:meth:`VideoReader.close`.

Sampling rule (identical for every backend, so an index built with one can be queried with another): the
targets are ``t_k = k / fps`` for ``k = 0, 1, ...`` while ``t_k < end``; each target takes the frame on screen
at ``t_k`` (the last frame whose timestamp is ``<= t_k``, or the first frame if none is yet); a source frame is
used at most once. ``end`` is the later of the stream's declared duration and the end of its last frame (last
timestamp plus the last frame interval): containers disagree on whether "duration" includes the last frame, and
backends read different fields, so the decoded timestamps decide. Timestamps are real frame timestamps in
seconds, relative to the first frame, so variable frame rate video is sampled by time, not by
``index / average_fps``.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Generic, Iterator, TypeVar

import numpy as np

from sora_search.containers import still_image
from sora_search.decode.diagnose import read_head
from sora_search.errors import VideoDecodeError
from sora_search.types import FrameBatch, VideoInfo

logger = logging.getLogger(__name__)

DEFAULT_SIZE = 224

T = TypeVar("T")


class VideoReader(ABC):
    """One open video file. Subclasses set :attr:`backend` and implement :attr:`info` and :meth:`sample`.

    Args:
        path: the video file. The constructor opens it and raises
            :class:`~sora_search.errors.VideoDecodeError` if it cannot be opened or has no video stream; the base
            class already rejects missing, empty, unreadable and still-image files. Reasons for files a backend
            cannot open come from :func:`sora_search.decode.diagnose.why_unreadable`, so every backend agrees.
    """

    backend: ClassVar[str]
    # Bytes of decoded pictures the next sample() may keep for held(); 0 keeps none.
    hold_bytes = 0
    # Threads the decoder of the next sample() may use; 0 lets the backend pick (FFmpeg: about one per core).
    threads = 0

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._closed = False
        p = Path(path)
        if not p.exists():
            raise VideoDecodeError(self.path, "file not found")
        if not p.is_file():
            raise VideoDecodeError(self.path, "not a regular file")
        # Cheap checks no backend needs to be asked about; FFmpeg would open a PNG as a one-frame video.
        try:
            head = read_head(self.path, 16)
        except OSError as exc:
            raise VideoDecodeError(self.path, f"cannot read: {exc.strerror or exc}") from None
        if not head:
            raise VideoDecodeError(self.path, "empty file (0 bytes)")
        image = still_image(head)
        if image is not None:
            raise VideoDecodeError(self.path, f"not a video ({image})")

    @property
    @abstractmethod
    def info(self) -> VideoInfo:
        """Duration, average fps, native size and frame count (``None`` if unknown) of the video stream."""

    @abstractmethod
    def sample(self, fps: float = 1.0, size: int = DEFAULT_SIZE, chunk_size: int = 32) -> Iterator[FrameBatch]:
        """Stream frames sampled at ``fps`` frames per second of video time.

        Args:
            fps: sampling rate, frames per second of video time (> 0).
            size: output side; frames are squashed to (size, size), ignoring aspect ratio.
            chunk_size: most frames per yielded batch; bounds memory for long videos.

        Yields:
            FrameBatch: frames (n, size, size, 3) uint8 RGB with n <= chunk_size, timestamps_s (n,) float64
            strictly increasing across the whole stream.

        Raises:
            NoFramesError: the file opened but no frame could be decoded.
            VideoDecodeError: decoding failed.
        """

    def held(self) -> Held | None:
        """The sampled pictures the last :meth:`sample` kept, as decoded, to give them at another side without
        decoding again: only when ``hold_bytes`` was set before it, the sample ran to the end and its pictures fit;
        None otherwise, and always for a backend that cannot keep them (the default)."""
        return None

    def close(self) -> None:
        """Release the decoder. Safe to call more than once."""
        self._closed = True

    def __enter__(self: _R) -> _R:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"


_R = TypeVar("_R", bound=VideoReader)


class Held(ABC):
    """A file's sampled pictures kept as decoded (:meth:`VideoReader.held`), to be given at any side."""

    nbytes: int

    @abstractmethod
    def sample(self, size: int, chunk_size: int, every: int = 1) -> Iterator[FrameBatch]:
        """The kept pictures at ``size``, as :meth:`VideoReader.sample` would give them, in batches of at most
        ``chunk_size``; with ``every`` > 1 only the first and each ``every``-th after it (none other converted)."""


def file_stamp(path: str | Path) -> tuple[str, int, int] | None:
    """What tells a file's contents apart without reading it: its resolved path, size and modification time (ns);
    None when it cannot be stat'ed. Frames kept for a file are reused only while its stamp holds."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return str(Path(path).resolve()), st.st_size, st.st_mtime_ns


def check_sample_args(fps: float, size: int, chunk_size: int) -> None:
    """Reject sampling arguments no backend can honour, naming the bad value."""
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer, got {size}")
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")


def target_count(duration_s: float, fps: float) -> int:
    """How many targets ``k / fps`` fall before ``duration_s``; at least 1, so a tiny clip keeps its first frame.

    Computed as ``k / fps`` per target rather than by repeated addition so 0.1 s steps do not drift.
    """
    n = int(np.ceil(duration_s * fps)) if duration_s > 0 else 1
    # ceil can be off by one when duration * fps is within float error of an integer.
    while n > 1 and (n - 1) / fps >= duration_s:
        n -= 1
    while n / fps < duration_s:
        n += 1
    return max(n, 1)


def stream_end(duration_s: float, last_s: float, prev_s: float | None, fps: float) -> float:
    """Where targets stop: the later of the declared duration and the end of the last frame.

    Args:
        duration_s: declared stream duration (0 if unknown).
        last_s: timestamp of the last frame.
        prev_s: timestamp of the frame before it, or None for a one-frame video.
        fps: sampling rate; only used as the last frame's length when there is no previous frame.
    """
    interval = last_s - prev_s if prev_s is not None else 1.0 / fps
    # 9.96 + 0.04 is 10.000000000000002: without the margin a target at exactly the end would count as inside.
    return max(duration_s, last_s + interval) - 1e-6


def select_indices(pts_s: np.ndarray, fps: float, duration_s: float) -> np.ndarray:
    """Apply the sampling rule to a whole, known timestamp table.

    Args:
        pts_s: (n_frames,) float, frame timestamps in seconds relative to the first frame, strictly increasing.
        fps: sampling rate (> 0).
        duration_s: declared stream duration (0 if unknown); see :func:`stream_end`.

    Returns:
        (m,) int64 strictly increasing frame indices, m >= 1 when ``n_frames >= 1``.
    """
    n = len(pts_s)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    last = float(pts_s[-1])
    end = stream_end(duration_s, last, float(pts_s[-2]) if n > 1 else None, fps)
    # Targets past the last frame all pick it, so one sampling interval past it is enough; this also keeps a
    # bogus declared duration from allocating a huge target array.
    end = min(end, last + 1.0 / fps)
    targets = np.arange(target_count(end, fps), dtype=np.float64) / fps
    # A tiny tolerance so a frame stamped 1.9999999 by float32 timestamps still counts as on screen at 2.0.
    idx = np.searchsorted(pts_s, targets + 1e-6, side="right") - 1
    return np.unique(np.clip(idx, 0, n - 1)).astype(np.int64)


class StreamSampler(Generic[T]):
    """The sampling rule for decoders that see frames one by one, in presentation order.

    Feed every decoded frame to :meth:`push` with its timestamp relative to the first frame; it returns the
    previous frame as ``(item, t_s)`` when that frame is the one on screen at one or more targets (known only
    once the next frame's timestamp is). Call :meth:`finish` at end of stream for the last frame. Holds one
    frame at a time, so memory stays flat on long videos.

    Args:
        fps: sampling rate (> 0).
        duration_s: declared stream duration, or 0 if unknown; see :func:`stream_end`.
        skipping: the decoder skips frames (non-reference ones): the gap between the last two decoded frames then
            overstates how long the last one is on screen, so the smallest gap seen stands in for it.
    """

    def __init__(self, fps: float, duration_s: float, skipping: bool = False) -> None:
        self.fps = fps
        self.duration_s = duration_s
        self.skipping = skipping
        self._min_gap = np.inf
        self._k = 0
        self._held: T | None = None
        self._held_t = 0.0
        self._prev_t: float | None = None
        self._emitted = 0

    def push(self, item: T, t_s: float) -> tuple[T, float] | None:
        """Offer the next frame (timestamps strictly increasing); maybe returns the previous frame to emit."""
        if self._held is None:
            self._held, self._held_t = item, t_s
            return None
        chosen = False
        self._min_gap = min(self._min_gap, t_s - self._held_t)
        # Target k comes before the new frame appears, so the held frame is on screen at it (the first frame
        # also covers targets before its own timestamp). The tolerance absorbs float32 timestamps.
        while self._k / self.fps < t_s - 1e-6:
            self._k += 1
            chosen = True
        out = self._take() if chosen else None
        self._prev_t = self._held_t
        self._held, self._held_t = item, t_s
        return out

    def finish(self) -> tuple[T, float] | None:
        """End of stream: returns the last frame if a target is left for it (or no frame was emitted at all)."""
        if self._held is None:
            return None
        prev_t = self._prev_t
        if self.skipping and np.isfinite(self._min_gap):
            prev_t = self._held_t - self._min_gap
        end = stream_end(self.duration_s, self._held_t, prev_t, self.fps)
        if self._k / self.fps < end or self._emitted == 0:
            return self._take()
        self._held = None
        return None

    def _take(self) -> tuple[T, float]:
        assert self._held is not None
        out = (self._held, self._held_t)
        self._held = None
        self._emitted += 1
        return out
