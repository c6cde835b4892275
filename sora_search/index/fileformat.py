"""The FAISS file: a checked header around faiss's own bytes, written atomically.

Layout::

    b"SORAIDX1" | u64 little-endian header length | JSON header | faiss.serialize_index bytes

The JSON header holds ``generation`` (the store generation the file reflects), the payload length and its CRC-32,
so truncation and bit rot are detected before FAISS parses anything. A write goes to a temp file in the same folder,
is fsynced, renamed over the target, and the folder fsynced.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

from sora_search._faults import fault_point
from sora_search.errors import IndexNotFound, StoreError

MAGIC = b"SORAIDX1"
FORMAT_VERSION = 1
REPAIR_HINT = "run `sora-search check --repair` to rebuild it from the database"


def write(path: str | Path, header: dict[str, Any], payload: memoryview) -> None:
    """Write ``header`` (JSON-able; format, length and checksum are added) and ``payload`` to ``path`` atomically."""
    full = {**header, "format": FORMAT_VERSION, "payload_bytes": len(payload), "crc32": zlib.crc32(payload)}
    encoded = json.dumps(full, sort_keys=True).encode()
    atomic_write_bytes(path, [MAGIC, struct.pack("<Q", len(encoded)), encoded, payload])


def read(path: str | Path) -> tuple[dict[str, Any], memoryview]:
    """The header and payload of a file made by :func:`write`, checked for length and checksum.

    Raises:
        IndexNotFound: no file at ``path``.
        StoreError: the file is truncated, corrupt or not a sora-search index.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError as e:
        raise IndexNotFound(f"no FAISS index file at {p}; {REPAIR_HINT}") from e
    except OSError as e:
        raise StoreError(f"cannot read the FAISS index {p}: {e}; {REPAIR_HINT}") from e
    if len(data) < len(MAGIC) + 8 or not data.startswith(MAGIC):
        raise corrupt(p, "not a sora-search index file")
    (hlen,) = struct.unpack_from("<Q", data, len(MAGIC))
    start = len(MAGIC) + 8
    if start + hlen > len(data):
        raise corrupt(p, "truncated header")
    try:
        header = json.loads(data[start : start + hlen])
        int(header["generation"])
        payload_bytes = int(header["payload_bytes"])
        crc = int(header["crc32"])
        fmt = int(header["format"])
    except (ValueError, KeyError, TypeError) as e:
        raise corrupt(p, f"bad header: {e}") from e
    if fmt != FORMAT_VERSION:
        raise corrupt(p, f"file format {fmt}, this sora-search reads {FORMAT_VERSION}")
    payload = memoryview(data)[start + hlen :]
    if len(payload) != payload_bytes:
        raise corrupt(p, f"{len(payload)} payload bytes, expected {payload_bytes} (truncated?)")
    if zlib.crc32(payload) != crc:
        raise corrupt(p, "checksum mismatch")
    return header, payload


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


def atomic_write_bytes(path: str | Path, chunks: list[bytes | memoryview]) -> None:
    """Write ``chunks`` to ``path`` atomically: temp file in the same directory, fsync, rename, fsync dir."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
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
