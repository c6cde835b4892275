"""The FAISS file: a checked header around faiss's own bytes, written atomically.

Layout::

    b"SORAIDX1" | u64 little-endian header length | JSON header (space-padded) | faiss.write_index bytes

The JSON header holds ``generation`` (the store generation the file reflects), the payload length and its CRC-32,
so truncation and bit rot are detected before FAISS parses anything. The payload streams to and from the file in
chunks, so saving or loading an index never holds a second copy of it in memory: the header's room is reserved
first and filled in once the payload's length and checksum are known. A write goes to a temp file in the same
folder, is fsynced, renamed over the target, and the folder fsynced.
"""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from sora_search._faults import fault_point
from sora_search.errors import IndexNotFound, StoreError

MAGIC = b"SORAIDX1"
FORMAT_VERSION = 1
REPAIR_HINT = "run `sora-search check --repair` to rebuild it from the database"
CHUNK = 1 << 20  # bytes checksummed per read

Sink = Callable[[bytes], int]


def write(path: str | Path, header: dict[str, Any], fill: Callable[[Sink], object]) -> None:
    """Write ``header`` (JSON-able; format, length and checksum are added) and a payload to ``path`` atomically.

    ``fill(sink)`` produces the payload by calling ``sink(chunk)`` as often as it likes.
    """
    base = {**header, "format": FORMAT_VERSION}
    # Room for the header with the widest length and checksum it can get, in whole 4 KiB blocks.
    widest = json.dumps({**base, "payload_bytes": 2**64 - 1, "crc32": 2**32 - 1}, sort_keys=True).encode()
    room = -(-len(widest) // 4096) * 4096
    with atomic_file(path) as f:
        f.write(MAGIC + struct.pack("<Q", room) + b" " * room)
        crc, size = 0, 0

        def sink(chunk: bytes) -> int:
            nonlocal crc, size
            crc, size = zlib.crc32(chunk, crc), size + len(chunk)
            return f.write(chunk)

        fill(sink)
        f.seek(len(MAGIC) + 8)
        f.write(json.dumps({**base, "payload_bytes": size, "crc32": crc}, sort_keys=True).encode().ljust(room))
        f.seek(0, os.SEEK_END)


@contextmanager
def open_payload(path: str | Path) -> Iterator[tuple[dict[str, Any], io.BufferedReader]]:
    """The header of a file made by :func:`write`, and the file positioned at its payload, after the payload was
    checked for length and checksum (read in chunks, never whole).

    Raises:
        IndexNotFound: no file at ``path``.
        StoreError: the file is truncated, corrupt or not a sora-search index.
    """
    p = Path(path)
    try:
        f = p.open("rb")
    except FileNotFoundError as e:
        raise IndexNotFound(f"no FAISS index file at {p}; {REPAIR_HINT}") from e
    except OSError as e:
        raise StoreError(f"cannot read the FAISS index {p}: {e}; {REPAIR_HINT}") from e
    with f:
        try:
            header, start = _check(p, f)
        except OSError as e:
            raise StoreError(f"cannot read the FAISS index {p}: {e}; {REPAIR_HINT}") from e
        f.seek(start)
        yield header, f


def header_length(f: BinaryIO, path: Path, magic: bytes = MAGIC, kind: str = "index") -> int:
    """The JSON header's length that a file read from its start declares after ``magic``.

    Raises:
        StoreError: the file does not start with ``magic``, or its header would run past its end.
    """
    lead = f.read(len(magic) + 8)
    if len(lead) < len(magic) + 8 or not lead.startswith(magic):
        raise corrupt(path, f"not a sora-search {kind} file")
    (hlen,) = struct.unpack_from("<Q", lead, len(magic))
    if len(magic) + 8 + hlen > os.fstat(f.fileno()).st_size:
        raise corrupt(path, "truncated header")
    return int(hlen)


def _check(p: Path, f: io.BufferedReader) -> tuple[dict[str, Any], int]:
    """The header and the payload's offset, once length and checksum hold."""
    total = os.fstat(f.fileno()).st_size
    hlen = header_length(f, p)
    start = len(MAGIC) + 8 + hlen
    try:
        header = json.loads(f.read(hlen))
        int(header["generation"])
        payload_bytes = int(header["payload_bytes"])
        crc = int(header["crc32"])
        fmt = int(header["format"])
    except (ValueError, KeyError, TypeError) as e:
        raise corrupt(p, f"bad header: {e}") from e
    if fmt != FORMAT_VERSION:
        raise corrupt(p, f"file format {fmt}, this sora-search reads {FORMAT_VERSION}")
    if total - start != payload_bytes:
        raise corrupt(p, f"{total - start} payload bytes, expected {payload_bytes} (truncated?)")
    seen, buf = 0, bytearray(CHUNK)
    view = memoryview(buf)
    while n := f.readinto(buf):
        seen = zlib.crc32(view[:n], seen)
    if seen != crc:
        raise corrupt(p, "checksum mismatch")
    return header, start


def read_header(path: str | Path) -> dict[str, Any] | None:
    """The JSON header of a file made by :func:`write`, unchecked (no payload is read), or None if unreadable."""
    try:
        with open(path, "rb") as f:
            header = json.loads(f.read(header_length(f, Path(path))))
    except (OSError, ValueError, StoreError):
        return None
    return header if isinstance(header, dict) else None


def corrupt(path: str | Path, why: str) -> StoreError:
    """The error for an unusable FAISS file at ``path``."""
    return StoreError(f"the FAISS index {path} is unusable ({why}); {REPAIR_HINT}")


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """A file to write that replaces ``path`` atomically once the block ends without error: a temp file in the same
    directory, fsynced, renamed over the target, the directory fsynced. An error leaves ``path`` as it was."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w+b") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        fault_point("faiss")
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(target.parent)


def atomic_write_bytes(path: str | Path, chunks: Iterable[bytes | memoryview]) -> None:
    """Write ``chunks`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path) as f:
        for chunk in chunks:
            f.write(chunk)
