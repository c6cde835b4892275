"""Short, human reasons for files a decoder cannot use, judged from their bytes rather than from decoder messages.

Decoder errors say little ("Invalid data found when processing input"; decord prints its detail to stderr and
raises "Error reading <path>..."), and they differ between backends. An index summary needs the same reason
whichever backend tried: "empty file (0 bytes)", "not a video (PNG image)", "truncated or corrupt: ...".
Every backend calls :func:`why_unreadable` when it cannot open a file, so ``"auto"`` reports the same text as
either backend alone.
"""

from __future__ import annotations

import math
import os
import struct
from typing import BinaryIO

from sora_search.containers import HEAD_BYTES, content_kind, iso_bmff, sniff_video

_MAX_MOOV_BYTES = 64 * 1024 * 1024  # a moov box this large is corrupt; do not read it into memory


def read_head(path: str, n: int = HEAD_BYTES) -> bytes:
    """The first ``n`` bytes of ``path`` (fewer if it is shorter). Raises OSError if it cannot be read."""
    with open(path, "rb") as f:
        return f.read(n)


def _boxes(f: BinaryIO, start: int, end: int) -> list[tuple[bytes, int, int, int]]:
    """ISO-BMFF boxes in ``[start, end)`` as (type, offset, header size, declared size); stops at garbage."""
    out = []
    pos = start
    while pos + 8 <= end:
        f.seek(pos)
        header = f.read(16)
        if len(header) < 8:
            break
        size, kind = struct.unpack(">I4s", header[:8])
        hsize = 8
        if size == 1 and len(header) == 16:
            size, hsize = struct.unpack(">Q", header[8:16])[0], 16
        elif size == 0:
            size = end - pos
        if size < hsize or not all(0x20 <= c < 0x7F for c in kind):  # box types are printable ASCII
            break
        out.append((kind, pos, hsize, size))
        pos += size
    return out


def mp4_tracks(path: str) -> list[str] | None:
    """Handler types of the tracks of an ISO-BMFF file (``"vide"``, ``"soun"``...), or None if unknown."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            moov = next((b for b in _boxes(f, 0, size) if b[0] == b"moov"), None)
            if moov is None or moov[3] > _MAX_MOOV_BYTES or moov[1] + moov[3] > size:
                return None
            handlers = []
            for trak in (b for b in _boxes(f, moov[1] + moov[2], moov[1] + moov[3]) if b[0] == b"trak"):
                handlers += _handlers(f, _boxes(f, trak[1] + trak[2], trak[1] + trak[3]))
            return handlers
    except OSError:
        return None


def no_video_stream(path: str, has_audio: bool | None = None) -> str:
    """The reason for a file that opened but has no video stream; says "audio only" when that is known."""
    if has_audio is None:
        has_audio = "soun" in (mp4_tracks(path) or [])
    return "no video stream (audio only)" if has_audio else "no video stream"


def _iso_truncation(path: str, file_size: int) -> str | None:
    """For an MP4/MOV file: where it was cut off, if a top-level box runs past the end or the index is missing."""
    with open(path, "rb") as f:
        boxes = _boxes(f, 0, file_size)
    if not boxes:
        return None
    kind, pos, _, size = boxes[-1]
    name = kind.decode("ascii", "replace")
    has_moov = any(b[0] == b"moov" for b in boxes)
    if pos + size > file_size:
        missing = "" if has_moov else ", before the moov index"
        return f"file ends inside its {name} box{missing} ({file_size:,} of {pos + size:,} bytes)"
    if not has_moov:
        return "no moov index box"
    return None


def why_unreadable(path: str, detail: str) -> str:
    """The reason to report for a file no decoder could open.

    Args:
        path: the file.
        detail: the decoder's own message, kept when the bytes say nothing more specific.

    Returns:
        "empty file (0 bytes)", "not a video (<kind>)", "truncated or corrupt: <where or detail>", or
        "cannot read: <OS error>".
    """
    try:
        size = os.path.getsize(path)
        head = read_head(path)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    if size == 0:
        return "empty file (0 bytes)"
    kind = content_kind(head)
    if kind is not None:
        return f"not a video ({kind})"
    if iso_bmff(head):
        try:
            where = _iso_truncation(path, size)
        except OSError:
            where = None
        return f"truncated or corrupt: {where or detail}"
    if sniff_video(head):
        return f"truncated or corrupt: {detail}"
    return "not a video (unrecognised content)"


def mp4_rotation(path: str) -> int:
    """Degrees counter-clockwise (0, 90, 180, 270) that an MP4/MOV's first video track is turned for display.

    Read from the track header's matrix (where phones and ``-metadata:s:v rotate=`` put it); the same angle
    FFmpeg reports as the display matrix rotation. 0 for other containers, no rotation, or a damaged file.
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if not iso_bmff(read_head(path, 8)):
                return 0
            moov = next((b for b in _boxes(f, 0, size) if b[0] == b"moov"), None)
            if moov is None or moov[3] > _MAX_MOOV_BYTES or moov[1] + moov[3] > size:
                return 0
            for trak in (b for b in _boxes(f, moov[1] + moov[2], moov[1] + moov[3]) if b[0] == b"trak"):
                children = _boxes(f, trak[1] + trak[2], trak[1] + trak[3])
                if "vide" not in _handlers(f, children):
                    continue
                tkhd = next((b for b in children if b[0] == b"tkhd"), None)
                if tkhd is None:
                    return 0
                f.seek(tkhd[1] + tkhd[2])
                version = f.read(1)[0]
                # version/flags, times and ids (20 or 32 bytes), reserved, layer, group, volume, reserved (16)
                f.seek(tkhd[1] + tkhd[2] + (32 if version == 1 else 20) + 4 + 16)
                a, b = struct.unpack(">ii", f.read(8))
                # FFmpeg's convention: the display matrix rotates clockwise, the reported angle is its negative.
                return int(round(-math.degrees(math.atan2(b, a)) / 90)) % 4 * 90
    except (OSError, struct.error, IndexError):
        return 0
    return 0


def _handlers(f: BinaryIO, trak_children: list[tuple[bytes, int, int, int]]) -> list[str]:
    out = []
    for mdia in (b for b in trak_children if b[0] == b"mdia"):
        for hdlr in (b for b in _boxes(f, mdia[1] + mdia[2], mdia[1] + mdia[3]) if b[0] == b"hdlr"):
            f.seek(hdlr[1] + hdlr[2] + 8)  # version+flags (4), pre_defined (4), then handler_type
            out.append(f.read(4).decode("ascii", "replace"))
    return out
