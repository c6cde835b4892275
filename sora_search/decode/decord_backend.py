"""decord (decord2 wheel) backend: random access through a frame index, decode and resize in C++.

decord is imported inside the reader, never at module import, so ``import sora_search.decode`` stays fast.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from sora_search.decode.base import DEFAULT_SIZE, VideoReader, check_sample_args, select_indices
from sora_search.decode.diagnose import mp4_rotation, no_video_stream, why_unreadable
from sora_search.errors import NoFramesError, VideoDecodeError
from sora_search.types import FrameBatch, VideoInfo

logger = logging.getLogger(__name__)

def _short(exc: BaseException) -> str:
    """decord errors carry a C++ stack trace; keep the first meaningful line."""
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("Stack trace")]
    msg = lines[0] if lines else type(exc).__name__
    # Drop the "[19:23:39] /project/src/video/...cc:218: " log prefixes decord puts before the actual check.
    msg = re.sub(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ", "", msg).strip() or type(exc).__name__
    return msg if len(msg) <= 200 else msg[:197] + "..."


def _to_numpy(arr: Any) -> np.ndarray:
    # decord returns its own NDArray under the default bridge; another library may have switched the global
    # bridge to torch, so accept anything array-like.
    if hasattr(arr, "asnumpy"):
        return arr.asnumpy()
    if hasattr(arr, "numpy"):
        return arr.numpy()
    return np.asarray(arr)


class DecordReader(VideoReader):
    """Reads a video with decord.

    The sampled frame indices come from decord's frame timestamp table (``get_frame_timestamp``), so variable
    frame rate video is sampled by time; every frame is decoded from the start, and only the sampled ones are resized
    and copied out (see :meth:`_decode_chosen` for why it never seeks).
    """

    backend = "decord"

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        try:
            import decord
        except Exception as exc:  # a broken install must not stop the other backends
            raise VideoDecodeError(self.path, f"decord cannot be imported ({exc})") from exc
        self._decord = decord
        self._vr: Any = None  # the native reader of the sample being read
        try:
            vr = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=self.threads)
        except Exception as exc:
            detail = _short(exc)
            if "cannot find video stream" in detail:
                raise VideoDecodeError(self.path, no_video_stream(self.path)) from exc
            if "Cannot create buffer source" in detail:
                # The stream's pixel format is unknown: FFmpeg decoded no frame while probing it.
                raise NoFramesError(self.path, "no decodable frame (decord: none decoded while probing the "
                                               "stream)") from exc
            if detail.startswith("Error reading"):  # "Error reading <path>...": the cause went to stderr
                detail = "cannot open it"
            raise VideoDecodeError(self.path, why_unreadable(self.path, f"decord: {detail}")) from exc
        try:
            n = len(vr)
            height, width = (int(x) for x in vr[0].shape[:2]) if n else (0, 0)
            pts = np.asarray(vr.get_frame_timestamp(np.arange(n)), dtype=np.float64) if n else np.zeros((0, 2))
            avg_fps = float(vr.get_avg_fps() or 0.0)
        except AssertionError as exc:
            # decord asserts on a zero frame count.
            raise NoFramesError(self.path, f"no decodable frame (decord found none: {_short(exc)})") from exc
        except Exception as exc:
            # The container opened; its first frame did not decode.
            raise NoFramesError(self.path, f"no decodable frame (decord: {_short(exc)})") from exc
        if n and not (np.all(np.isfinite(pts)) and np.all(np.diff(pts[:, 0]) > 0)):
            # Seen on AVI files with packed B-frames: decord reports missing timestamps as about -3.8e17 s, so
            # frames cannot be placed in time. PyAV decodes them in display order.
            raise VideoDecodeError(self.path, "decord reports missing or out-of-order frame timestamps; "
                                              "use backend='pyav'")
        if n and pts[0, 0] < -1e-3:
            # decord ignores MP4/MOV edit lists and returns the frames they hide with negative timestamps (v2s.mov
            # holds 574 frames of which players show 79). Sampling those would index pictures nobody sees and
            # disagree with PyAV, which applies the edit list.
            raise VideoDecodeError(self.path, "the video has an edit list, which decord does not apply; "
                                              "use backend='pyav'")
        if mp4_rotation(self.path):
            # decord ignores the display matrix; frames would be indexed sideways, unlike PyAV's.
            raise VideoDecodeError(self.path, "the video has a rotation flag, which decord does not apply; "
                                              "use backend='pyav'")
        self._start_s = float(pts[0, 0]) if n else 0.0
        self._pts = pts[:, 0] - self._start_s
        duration = float(pts[-1, 1] - self._start_s) if n else 0.0
        if not np.isfinite(duration) or duration <= 0:
            duration = n / avg_fps if avg_fps > 0 else 0.0
        self._info = VideoInfo(duration_s=max(duration, 0.0), fps=max(avg_fps, 0.0), width=width, height=height,
                               frame_count=n, backend=self.backend)
        # Decoding the first frame above moved the native reader; a fresh one at the wanted size is opened by
        # sample(), so drop this one now rather than hold two decoders.
        del vr

    @property
    def info(self) -> VideoInfo:
        return self._info

    def _reader(self, size: int) -> Any:
        """A native reader at ``size``, at the first frame: each sample reads from the start and never seeks."""
        self._vr = None
        decord = self._decord
        self._vr = decord.VideoReader(self.path, ctx=decord.cpu(0), width=size, height=size,
                                      num_threads=self.threads)
        return self._vr

    def sample(self, fps: float = 1.0, size: int = DEFAULT_SIZE, chunk_size: int = 32) -> Iterator[FrameBatch]:
        """Stream frames sampled at ``fps``; see :meth:`VideoReader.sample`.

        Yields:
            FrameBatch: frames (n, size, size, 3) uint8 RGB, timestamps_s (n,) float64, n <= chunk_size.
        """
        check_sample_args(fps, size, chunk_size)
        if self._closed:
            raise VideoDecodeError(self.path, "reader is closed")
        pts = self._pts
        chosen = select_indices(pts, fps, self._info.duration_s)
        if len(chosen) == 0:
            raise NoFramesError(self.path, "no decodable frame (decord found none)")
        try:
            vr = self._reader(size)
        except Exception as exc:
            raise VideoDecodeError(self.path, f"decord cannot open it at {size}x{size}: {_short(exc)}") from exc
        pending_frames: list[np.ndarray] = []
        pending_idx: list[int] = []
        try:
            for i, frame in self._decode_chosen(vr, chosen):
                pending_frames.append(frame)
                pending_idx.append(i)
                if len(pending_idx) == chunk_size:
                    yield self._batch(pending_frames, pending_idx, size)
                    pending_frames, pending_idx = [], []
        except VideoDecodeError:
            raise
        except Exception as exc:
            if "must exactly match" in str(exc):
                # decord2 3.4.0 mis-sizes its output buffer for some square sizes (2, 3, 4, 6, 8, 12, 16, 24,
                # 32, 48, 96, 144 in our tests) whatever the input; 224 and most others are fine.
                raise VideoDecodeError(self.path, f"decord cannot resize to {size}x{size} (a decord bug for "
                                                  f"some sizes); use another size or backend='pyav'") from exc
            raise VideoDecodeError(self.path, f"decord failed: {_short(exc)}") from exc
        if pending_idx:
            yield self._batch(pending_frames, pending_idx, size)

    def _decode_chosen(self, vr: Any, chosen: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """Decode the chosen frame indices in order, reading every frame up to each and converting only the chosen.

        The frames between two chosen ones are decoded but neither resized nor copied (``skip_frames``), and a skip
        never crosses a key frame: decord turns such a skip into a seek, and decord2 3.4.0's seek can land short
        ("Failed to skip frames effectively") and return an earlier picture under the requested index (on Big Buck
        Bunny, 720p H.264, 88 of 320 one-per-second samples were wrong). So the frame before each key frame is read
        whole instead, and the reader never seeks; the samples match a frame-by-frame read.
        """
        keys = np.asarray(_to_numpy(vr.get_key_indices()), dtype=np.int64)
        next_unread = 0
        for target in chosen.tolist():
            while next_unread < target:
                later = keys[np.searchsorted(keys, next_unread, side="right"):]
                key = int(later[0]) if len(later) and later[0] <= target else None
                stop = target if key is None else key - 1  # the next frame to read whole
                if stop > next_unread:
                    vr.skip_frames(stop - next_unread)
                if key is None:
                    next_unread = target
                else:
                    vr.next()  # the frame before the key frame
                    next_unread = key
            yield target, _to_numpy(vr.next())
            next_unread = target + 1

    def _batch(self, frames: list[np.ndarray], idx: list[int], size: int) -> FrameBatch:
        out = np.stack(frames)
        if out.shape != (len(idx), size, size, 3) or out.dtype != np.uint8:
            # decord2 3.4.0 mis-sizes some square outputs (see sample); frame by frame it returns them misshapen.
            raise VideoDecodeError(self.path, f"decord returned frames of shape {out.shape} {out.dtype}, expected "
                                              f"({len(idx)}, {size}, {size}, 3) uint8; use another size or "
                                              f"backend='pyav'")
        return FrameBatch(frames=out, timestamps_s=self._pts[np.asarray(idx)].astype(np.float64))

    def close(self) -> None:
        self._vr = None
        super().close()
