"""What a file holds, judged from its first bytes: the one table of container and file signatures.

``scan`` asks :func:`sniff_video` which files an index run should try and :func:`content_kind` what a file named
for indexing is instead; ``decode.diagnose`` asks :func:`content_kind` and :func:`iso_bmff` to name why a file no
decoder could open failed. Nothing here opens a file or imports anything heavy.
"""

from __future__ import annotations

from typing import BinaryIO

# Enough of a file's start for every check here, the MPEG transport stream's sync bytes included.
HEAD_BYTES = 512

# Box types an ISO-BMFF file (MP4, MOV, 3GP, M4A) may start with; the first box's type sits at bytes 4-8.
ISO_FIRST_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide")
# Major brands (bytes 8-12, after ftyp) that mean audio only: an .m4a is not a video though it has an ftyp box.
AUDIO_BRANDS = frozenset({b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "})
# RIFF files name their form at bytes 8-12: AVI is video; WebP and WAV are not.
RIFF_VIDEO_FORMS = (b"AVI ", b"AVIX")
RIFF_STILL_IMAGE = (b"WEBP", "WebP image")
RIFF_AUDIO = (b"WAVE", "WAV audio")
# Leading bytes of the other video containers.
VIDEO_MAGIC = (
    (b"\x1a\x45\xdf\xa3", "Matroska / WebM"),  # EBML
    (b"\x00\x00\x01\xba", "MPEG program stream"),
    (b"\x00\x00\x01\xb3", "MPEG video elementary stream"),
    (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "ASF / WMV"),
    (b"FLV\x01", "FLV"),
    (b".RMF", "RealMedia"),
    (b"YUV4MPEG2", "YUV4MPEG2"),
    (b"nut/multimedia container", "NUT"),
)
# An MPEG transport stream is packets of this many bytes, each starting with the sync byte 0x47.
TS_PACKET_BYTES = 188
# Still images FFmpeg would happily open as a one-frame "video": rejected before any decoder runs.
STILL_IMAGES = (
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"II*\x00", "TIFF image"),
    (b"MM\x00*", "TIFF image"),
)
# Other content that is recognisably not a video, only named when decoding has already failed.
OTHER_KINDS = (
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"%PDF", "PDF document"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"ID3", "MP3 audio"),
    (b"fLaC", "FLAC audio"),
)


def iso_bmff(head: bytes) -> bool:
    """Whether ``head`` starts like an ISO-BMFF file (MP4, MOV, M4A...), audio-only ones included."""
    return head[4:8] in ISO_FIRST_BOXES


def _riff_form(head: bytes) -> bytes | None:
    return head[8:12] if head.startswith(b"RIFF") else None


def sniff_video(head: bytes) -> bool:
    """Whether the first bytes of a file look like a video container.

    Args:
        head: the file's first bytes (at least 12; up to :data:`HEAD_BYTES` are used for MPEG-TS sync checks).
    """
    box = head[4:8]
    if box == b"ftyp":
        if len(head) >= 12:
            return head[8:12] not in AUDIO_BRANDS
    elif box in ISO_FIRST_BOXES:  # QuickTime files that start without an ftyp box
        return True
    if _riff_form(head) in RIFF_VIDEO_FORMS:
        return True
    if head.startswith(tuple(magic for magic, _ in VIDEO_MAGIC)):
        return True
    sync = (0, TS_PACKET_BYTES, 2 * TS_PACKET_BYTES)
    return len(head) >= 3 * TS_PACKET_BYTES + 1 and all(head[i] == 0x47 for i in sync)


GIF_MAGIC = (b"GIF87a", b"GIF89a")


def animated_gif(f: BinaryIO) -> bool:
    """Whether the GIF read from ``f`` (at its start) holds more than one image: an animation, which is a video.

    Walks the GIF blocks only as far as the second image descriptor; a truncated or malformed file is not animated.
    """
    head = f.read(13)
    if len(head) < 13 or not head.startswith(GIF_MAGIC):
        return False
    if head[10] & 0x80:  # a global colour table follows the screen descriptor
        f.seek(3 * 2 ** ((head[10] & 0x07) + 1), 1)
    images = 0
    while True:
        kind = f.read(1)
        if kind == b"\x2c":  # an image descriptor
            images += 1
            if images > 1:
                return True
            desc = f.read(9)
            if len(desc) < 9:
                return False
            if desc[8] & 0x80:  # a local colour table
                f.seek(3 * 2 ** ((desc[8] & 0x07) + 1), 1)
            f.read(1)  # LZW minimum code size, then the data sub-blocks
        elif kind == b"\x21":  # an extension: its label, then sub-blocks
            f.read(1)
        else:  # the trailer, or not a GIF after all
            return False
        while True:
            size = f.read(1)
            if not size:
                return False
            if size == b"\x00":
                break
            f.seek(size[0], 1)


def still_image(head: bytes) -> str | None:
    """``"PNG image"``, ``"JPEG image"``... if ``head`` starts a still image format, else None."""
    if _riff_form(head) == RIFF_STILL_IMAGE[0]:
        return RIFF_STILL_IMAGE[1]
    return next((kind for magic, kind in STILL_IMAGES if head.startswith(magic)), None)


def not_video_kind(head: bytes) -> str | None:
    """What the bytes are when their signature says they are not a video (an image, audio, a document), else None."""
    kind = still_image(head) or next((k for magic, k in OTHER_KINDS if head.startswith(magic)), None)
    if kind is None and _riff_form(head) == RIFF_AUDIO[0]:
        kind = RIFF_AUDIO[1]
    return kind


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # only a character cut at the end of the sample is acceptable
            return False
        text = head[:exc.start].decode("utf-8")
    return all(c.isprintable() or c in "\t\r\n\f" for c in text)


def content_kind(head: bytes) -> str | None:
    """What the bytes are when they are recognisably not a video, else None."""
    kind = not_video_kind(head)
    if kind is None and _looks_like_text(head):
        kind = "text file"
    return kind
