"""The index folder's write lock: one index or remove run at a time, released by the OS if the process dies."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sora_search.errors import IndexLocked

LOCK_NAME = "write.lock"


@contextmanager
def write_lock(location: Path) -> Iterator[None]:
    """Hold the index folder's exclusive write lock (released by the OS if the process dies).

    Raises:
        IndexLocked: another process holds it.
    """
    import filelock

    path = location / LOCK_NAME
    lock = filelock.FileLock(path, timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        holder = path.read_text().strip() or "another process"
        raise IndexLocked(f"{location} is being written by {holder}; wait for it to finish "
                          "(only one index or remove run at a time)") from None
    try:
        path.write_text(f"pid {os.getpid()}")  # for the message above; flock is on filelock's own descriptor
        yield
    finally:
        lock.release()
