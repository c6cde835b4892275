"""The write lock: one index or remove run at a time, released by the OS (or the database server) if the process dies.

The index folder's lock file guards the FAISS file in it; a catalogue on a server also takes its own run lock there
(:func:`sora_search.store.postgres.run_lock`), so runs from other folders and machines wait for one another too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sora_search.errors import IndexLocked

if TYPE_CHECKING:
    from sora_search.store.catalogue import Catalogue

LOCK_NAME = "write.lock"


@contextmanager
def write_lock(location: Path, catalogue: Catalogue | None = None) -> Iterator[None]:
    """Hold the index folder's exclusive write lock (released by the OS if the process dies), and the catalogue's
    run lock when it is on a server.

    Raises:
        IndexLocked: another process holds either.
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
        if catalogue is None or catalogue.is_sqlite:
            yield
        else:
            from sora_search.store import postgres

            with postgres.run_lock(catalogue):
                yield
    finally:
        lock.release()
