"""PyAV backend: sequential decode through FFmpeg, converting only the sampled frames.

Slower than decord on sparse sampling (it decodes every frame) but reads almost anything FFmpeg reads, so it is
the fallback. It honours the display matrix (a video stored sideways with a rotation flag is sampled upright),
which decord cannot, so decord refuses such files and ``"auto"`` lands here. av is imported inside the reader,
never at module import.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Generator, Iterator

import numpy as np

from sora_search.decode.base import DEFAULT_SIZE, Held, StreamSampler, VideoReader, check_sample_args
from sora_search.decode.diagnose import mp4_rotation, no_video_stream, why_unreadable
from sora_search.errors import NoFramesError, VideoDecodeError
from sora_search.types import FrameBatch, VideoInfo

logger = logging.getLogger(__name__)

# Corrupt packets tolerated per file before giving up; a few are normal in damaged or cut-off downloads.
MAX_BAD_PACKETS = 100
# Skip non-reference frames when the video has at least this many frames per sampled frame.
SKIP_NONREF_FACTOR = 4.0
# ... and skip the in-loop deblocking filter too when the picture is shrunk at least this much (docs/tuning.md).
SKIP_LOOP_FILTER_SHRINK = 2.0


def _short(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return msg if len(msg) <= 200 else msg[:197] + "..."


class PyAVReader(VideoReader):
    """Reads a video with PyAV (FFmpeg bindings), first video stream only."""

    backend = "pyav"
    # Skip non-reference frames at sparse sampling (see sample()); False gives the exact "frame on screen" rule.
    skip_nonref = True
    # Skip the deblocking filter (H.264, HEVC, VP8) too where non-reference frames are skipped and the picture is
    # shrunk SKIP_LOOP_FILTER_SHRINK-fold or more: less decoding, at sizes where the block edges it smooths vanish.
    skip_loop_filter = True

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        try:
            import av
        except Exception as exc:  # a broken install must not stop the other backends
            raise VideoDecodeError(self.path, f"PyAV cannot be imported ({exc})") from exc
        self._av = av
        self._container: Any = None
        self._sampled = False
        self._held: Held | None = None
        self._packets = self._bad_packets = 0
        try:
            self._container = av.open(self.path, mode="r")
        except Exception as exc:
            # FFmpeg errors end with ": '<path>'"; strerror is the message without it.
            detail = getattr(exc, "strerror", None) or _short(exc)
            raise VideoDecodeError(self.path, why_unreadable(self.path, f"PyAV: {detail}")) from exc
        try:
            if not self._container.streams.video:
                raise VideoDecodeError(self.path, no_video_stream(self.path, bool(self._container.streams.audio)))
            stream = self._container.streams.video[0]
            # Frame-level threading decodes several frames at once; slice threading helps single large frames.
            stream.thread_type = "AUTO"
            self._stream = stream
            self._info = self._read_info(stream)
        except VideoDecodeError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise VideoDecodeError(self.path, f"PyAV cannot read the stream header: {_short(exc)}") from exc

    def _read_info(self, stream: Any) -> VideoInfo:
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif self._container.duration is not None:
            # Container duration is in AV_TIME_BASE (microseconds).
            duration = self._container.duration / 1_000_000
        frames = int(stream.frames or 0) or None
        if duration <= 0 and frames and fps > 0:
            duration = frames / fps
        cc = stream.codec_context
        width, height = int(cc.width or 0), int(cc.height or 0)
        if mp4_rotation(self.path) in (90, 270):
            width, height = height, width  # the size as displayed, like the frames sample() yields
        return VideoInfo(duration_s=max(duration, 0.0), fps=max(fps, 0.0), width=width, height=height,
                         frame_count=frames, backend=self.backend)

    @property
    def info(self) -> VideoInfo:
        return self._info

    def sample(self, fps: float = 1.0, size: int = DEFAULT_SIZE, chunk_size: int = 32) -> Iterator[FrameBatch]:
        """Stream frames sampled at ``fps``; see :meth:`VideoReader.sample`.

        Yields:
            FrameBatch: frames (n, size, size, 3) uint8 RGB, timestamps_s (n,) float64, n <= chunk_size.
        """
        check_sample_args(fps, size, chunk_size)
        if self._closed or self._container is None:
            raise VideoDecodeError(self.path, "reader is closed")
        container, stream = self._container, self._stream
        # At a sampling rate well below the frame rate, frames no other frame depends on (most B-frames) are never
        # needed: the nearest decoded frame is at most a couple of frame intervals from the sampling instant, and
        # skipping them halves decoding on typical H.264 (57% of Big Buck Bunny's frames are B-frames).
        # The sample for an instant is then the latest decoded frame at or before it, which may be a few frames
        # earlier than the one on screen.
        frame_dt = 1.0 / self._info.fps if self._info.fps > 0 else 1.0 / 25
        skipping = self.skip_nonref and self._info.fps >= SKIP_NONREF_FACTOR * fps
        stream.codec_context.skip_frame = "NONREF" if skipping else "DEFAULT"
        if self._sampled:
            # A second pass over the same reader starts from the beginning again.
            try:
                container.seek(0, stream=stream)
            except Exception as exc:
                raise VideoDecodeError(self.path, f"PyAV cannot rewind it: {_short(exc)}") from exc
        else:  # before the first decode: the codec opens with these, and a second pass keeps them
            if self.threads:
                stream.thread_count = self.threads
            shrunk = min(self._info.width, self._info.height) >= SKIP_LOOP_FILTER_SHRINK * size
            if skipping and shrunk and self.skip_loop_filter:
                stream.codec_context.options = {"skip_loop_filter": "all"}
        self._sampled = True
        sampler: StreamSampler[Any] = StreamSampler(fps, self._info.duration_s, skipping=skipping)
        first: float | None = None
        last_t = -np.inf
        frames: list[np.ndarray] = []
        times: list[float] = []
        emitted = 0
        self._held = None
        holding: list[tuple[Any, float]] | None = [] if self.hold_bytes > 0 else None
        held_bytes = 0

        def convert(frame: Any, t: float) -> None:
            nonlocal holding, held_bytes
            frames.append(_rgb(frame, size))
            times.append(t)
            if holding is not None:
                held_bytes += sum(plane.buffer_size for plane in frame.planes)
                if held_bytes <= self.hold_bytes:
                    holding.append((frame, t))
                else:  # too many to keep: let go of those kept so far
                    holding = None

        decoded = self._frames()
        try:
            # Decode to the end even past the declared duration: headers can understate it, and the sampling
            # rule is defined on the frames actually there.
            for frame in decoded:
                t_abs = frame.time
                if t_abs is None:
                    # No timestamp: place it one average frame interval after the previous one.
                    t = last_t + frame_dt if np.isfinite(last_t) else 0.0
                else:
                    if first is None:
                        first = float(t_abs)
                    t = float(t_abs) - first
                if t <= last_t:
                    continue  # duplicate or out-of-order timestamp: cannot be placed in time
                last_t = t
                out = sampler.push(frame, t)
                if out is not None:
                    convert(*out)
                    if len(frames) >= chunk_size:
                        emitted += len(frames)
                        yield _batch(frames, times)
                        frames, times = [], []
            out = sampler.finish()
            if out is not None:
                convert(*out)
        except VideoDecodeError:
            raise
        except Exception as exc:
            raise VideoDecodeError(self.path, f"PyAV failed after {emitted + len(frames)} sampled frames "
                                              f"(at {max(last_t, 0.0):.2f} s): {_short(exc)}") from exc
        finally:
            decoded.close()
        if frames:
            emitted += len(frames)
            yield _batch(frames, times)
        if emitted == 0:
            raise NoFramesError(self.path, f"no decodable frame ({self._packets} video packets, "
                                           f"{self._bad_packets} rejected by the decoder)")
        if holding is not None:
            self._held = _PyAVHeld(holding, held_bytes)

    def held(self) -> Held | None:
        return self._held

    def _frames(self) -> Generator[Any, None, None]:
        """Decoded frames in presentation order, skipping packets the decoder rejects.

        ``container.decode`` stops at the first corrupt packet; players conceal it and go on, and so does this,
        up to :data:`MAX_BAD_PACKETS` (then the file is treated as unreadable).
        """
        av = self._av
        self._packets = self._bad_packets = 0
        decoded = 0
        for packet in self._container.demux(self._stream):
            self._packets += packet.size > 0  # the flush packets at the end carry no data
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                self._bad_packets += 1
                logger.debug("%s: skipping undecodable packet at pts %s: %s", self.path, packet.pts, exc)
                if self._bad_packets > MAX_BAD_PACKETS:
                    what = "no decodable frame" if decoded == 0 else "truncated or corrupt"
                    raise VideoDecodeError(self.path, f"{what}: more than {MAX_BAD_PACKETS} undecodable "
                                                      f"packets (last: {_short(exc)})") from exc
                continue
            decoded += len(frames)
            yield from frames

    def close(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # closing a half-open container must not mask the real error
                logger.debug("closing %s raised", self.path, exc_info=True)
            self._container = None
        super().close()


def _rgb(frame: Any, size: int) -> np.ndarray:
    """A decoded picture as (size, size, 3) uint8 RGB, upright."""
    rgb = frame.to_ndarray(format="rgb24", width=size, height=size)
    # Honour the display matrix (phone videos shot upright are stored sideways). Frames are square here, so turning
    # after the resize equals turning first.
    quarter_turns = round((frame.rotation or 0) / 90) % 4
    return np.rot90(rgb, quarter_turns) if quarter_turns else rgb


class _PyAVHeld(Held):
    """Sampled PyAV frames, kept as decoded: each is converted again at the side asked for."""

    def __init__(self, frames: list[tuple[Any, float]], nbytes: int) -> None:
        self._frames = frames
        self.nbytes = nbytes

    def sample(self, size: int, chunk_size: int, every: int = 1) -> Iterator[FrameBatch]:
        frames = self._frames[::every]
        for start in range(0, len(frames), chunk_size):
            part = frames[start:start + chunk_size]
            yield _batch([_rgb(frame, size) for frame, _ in part], [t for _, t in part])


def _batch(frames: list[np.ndarray], times: list[float]) -> FrameBatch:
    return FrameBatch(frames=np.stack(frames), timestamps_s=np.asarray(times, dtype=np.float64))
