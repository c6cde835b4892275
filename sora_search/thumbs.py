"""Thumbnails: a small JPEG of any (video, second), decoded on demand and cached in the index folder.

``<index>/thumbs/<video_id>/<fingerprint tag>-<ms>.jpg``. The fingerprint in the name means a re-encoded file never
serves an old picture; :meth:`ThumbnailCache.prune` drops folders of videos no longer indexed, files of an old
fingerprint, and then the least recently used files (by mtime, which a hit refreshes) until the cache is within
its size bound. Pruning is lazy: a write that takes the cache past its bound triggers it, and front ends may call it
with the current catalogue. JPEGs are encoded by FFmpeg's MJPEG encoder through PyAV, so no imaging library is
needed.
"""

from __future__ import annotations

import logging
import os
import tempfile
from fractions import Fraction
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sora_search.errors import VideoDecodeError

if TYPE_CHECKING:
    from sora_search.store import VideoRecord

logger = logging.getLogger(__name__)

THUMBS_DIR = "thumbs"
DEFAULT_WIDTH = 160
DEFAULT_MAX_BYTES = 256 * 2**20


def grab(path: str | Path, t_s: float, *, width: int = DEFAULT_WIDTH) -> bytes:
    """The frame on screen at ``t_s`` (clamped to the video), ``width`` pixels wide, as JPEG bytes.

    Raises:
        VideoDecodeError: the file cannot be opened or yields no frame.
    """
    frame = frame_at(path, t_s, "a thumbnail")
    try:
        return _jpeg(frame, width)
    except Exception as exc:  # FFmpeg errors of every kind
        raise VideoDecodeError(str(path), f"thumbnail at {t_s:.2f} s failed: {exc}") from exc


def frame_at(path: str | Path, t_s: float, purpose: str) -> Any:
    """The PyAV frame on screen at ``t_s`` (clamped to the video); ``purpose`` names the caller in errors.

    Raises:
        VideoDecodeError: the file cannot be opened or yields no frame.
    """
    import av

    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.video:
                raise VideoDecodeError(str(path), f"no video stream to take {purpose} from")
            stream = container.streams.video[0]
            target = max(0.0, float(t_s))
            if stream.time_base is not None and target > 0:
                container.seek(int(target / stream.time_base), stream=stream, backward=True)
            chosen: Any = None
            for frame in container.decode(stream):
                if chosen is not None and frame.time is not None and frame.time > target:
                    break
                chosen = frame
            if chosen is None:
                raise VideoDecodeError(str(path), f"no frame at {t_s:.2f} s for {purpose}")
            return chosen
    except VideoDecodeError:
        raise
    except Exception as exc:  # FFmpeg errors of every kind: the file is not readable here
        raise VideoDecodeError(str(path), f"{purpose} at {t_s:.2f} s failed: {exc}") from exc


def _jpeg(frame: Any, width: int) -> bytes:
    import av

    height = max(2, round(frame.height * width / max(frame.width, 1) / 2) * 2)
    small = frame.reformat(width=width, height=height, format="yuvj420p")
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuvj420p"
    codec.time_base = Fraction(1, 25)
    codec.options = {"qmin": "3", "qmax": "6"}
    return b"".join(bytes(p) for p in list(codec.encode(small)) + list(codec.encode(None)))


def duration_s(path: str | Path) -> float:
    """The video's duration in seconds (0.0 when the container does not say).

    Raises:
        VideoDecodeError: the file cannot be opened.
    """
    import av

    try:
        with av.open(str(path), mode="r") as container:
            stream = container.streams.video[0] if container.streams.video else None
            if stream is not None and stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            return float(container.duration or 0) / 1_000_000
    except Exception as exc:
        raise VideoDecodeError(str(path), f"cannot read its duration: {exc}") from exc


def _tag(fingerprint: str) -> str:
    """The file-name form of a fingerprint (``b2:<hex>``): its first 16 hex digits."""
    return fingerprint.rsplit(":", 1)[-1][:16]


class ThumbnailCache:
    """Thumbnails of indexed videos under ``<location>/thumbs``, at most ``max_bytes`` on disk (LRU by mtime)."""

    def __init__(self, location: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 width: int = DEFAULT_WIDTH) -> None:
        self.root = Path(location) / THUMBS_DIR
        self.max_bytes = max_bytes
        self.width = width
        self._written = 0

    def path_for(self, video_id: int, fingerprint: str, t_s: float) -> Path:
        return self.root / str(int(video_id)) / f"{_tag(fingerprint)}-{round(max(0.0, t_s) * 1000)}.jpg"

    def get(self, video_id: int, path: str | Path, fingerprint: str, t_s: float) -> bytes:
        """The thumbnail of indexed video ``video_id`` (file ``path``, ``fingerprint``) at ``t_s``: cached, or
        decoded and stored.

        Raises:
            VideoDecodeError: the file cannot be decoded.
        """
        cached = self.path_for(video_id, fingerprint, t_s)
        try:
            data = cached.read_bytes()
            os.utime(cached)
            return data
        except FileNotFoundError:
            pass
        data = grab(path, t_s, width=self.width)
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cached.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, cached)
        except OSError as exc:  # a read-only or full index folder still serves thumbnails, uncached
            logger.warning("cannot cache thumbnail %s: %s", cached, exc)
            return data
        self._written += len(data)
        if self._written > self.max_bytes // 8:
            self._written = 0
            self.prune()
        return data

    def prune(self, known: Mapping[int, str] | None = None) -> int:
        """Drop thumbnails of videos not in ``known`` (video id -> fingerprint; None keeps every video) or of an
        older fingerprint, then the least recently used until the cache fits ``max_bytes``.

        Returns:
            bytes freed.
        """
        if not self.root.is_dir():
            return 0
        freed = 0
        kept: list[tuple[float, int, Path]] = []
        for folder in self.root.iterdir():
            vid = int(folder.name) if folder.name.isdigit() else None
            stale_video = known is not None and (vid is None or vid not in known)
            for f in folder.iterdir() if folder.is_dir() else ():
                st = f.stat()
                stale = stale_video or f.suffix != ".jpg" or (
                    known is not None and vid is not None and not f.name.startswith(_tag(known[vid]) + "-"))
                if stale:
                    freed += st.st_size
                    f.unlink(missing_ok=True)
                else:
                    kept.append((st.st_mtime, st.st_size, f))
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        total = sum(size for _, size, _ in kept)
        for _, size, f in sorted(kept, key=lambda x: x[0]):
            if total <= self.max_bytes:
                break
            f.unlink(missing_ok=True)
            total -= size
            freed += size
        return freed


def catalogue(location: str | Path, db: Any = None) -> dict[str, VideoRecord]:
    """The indexed videos of the index at ``location`` (its catalogue ``db``: a URL or a ``Catalogue``, default
    ``$SORA_SEARCH_DB``, else the folder's own), by path (ids and fingerprints for thumbnails)."""
    from sora_search.store import Store
    from sora_search.store.catalogue import Catalogue

    with Store.open(Catalogue.resolve(Path(location), db), create=False) as store:
        return {v.path: v for v in store.videos(status="indexed")}
