"""Deterministic fault injection for the crash-safety tests.

``SORA_SEARCH_FAULT=POINT[:N]`` kills this process with SIGKILL the N-th time (default 1) it reaches
``fault_point(POINT)``. The points sit where a real crash would hurt most: ``decode`` (a batch received),
``encode`` (a batch embedded), ``store`` (vectors written, transaction not yet committed), ``faiss`` (the new
FAISS file written to its temporary name, not yet renamed) and ``retrain`` (a retrained FAISS file saved, the store
not yet switched to its projection). Unset, a point costs one string comparison.

``SORA_SEARCH_FAULT_ONCE=FILE`` makes the fault fire once across processes: only the process that creates FILE
dies, so a Ray task or actor that is run again after the kill (:mod:`sora_search.cluster`) goes through.
"""

from __future__ import annotations

import os
import signal

_POINT, _, _NTH = os.environ.get("SORA_SEARCH_FAULT", "").partition(":")
_ONCE = os.environ.get("SORA_SEARCH_FAULT_ONCE", "")
_seen: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Die here, as a power cut or ``kill -9`` would, if the environment asks for it."""
    if name != _POINT:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] == int(_NTH or 1):
        if _ONCE:
            try:
                os.close(os.open(_ONCE, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
        os.kill(os.getpid(), signal.SIGKILL)
