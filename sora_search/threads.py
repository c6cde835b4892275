"""How many CPUs this process may use: the one figure that caps torch's and FAISS's thread pools; and signals held
off while the main thread is inside a thread pool's locks."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_held = 0  # nesting depth of signals_held() in the main thread
_pending: list[BaseException] = []  # what a signal handler raised while held


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask in a container), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold off what a signal handler raises (through :func:`raise_from_handler`) until the block ends.

    Python runs handlers in the main thread between any two bytecodes; an exception raised inside
    ``ThreadPoolExecutor.submit`` can leave one of the pool's locks held, and its threads then wait for it forever
    (an index run stopped by SIGTERM hung so). Elsewhere than the main thread this does nothing: handlers never run
    there.
    """
    global _held
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _held += 1
    try:
        yield
    finally:
        _held -= 1
        if not _held and _pending:
            exc = _pending.pop()
            _pending.clear()
            raise exc


def raise_from_handler(exc: BaseException) -> None:
    """Raise ``exc`` from a signal handler now, or when the :func:`signals_held` block the main thread is in ends."""
    if _held:
        _pending.append(exc)
        return
    raise exc
