"""Deterministic fault injection for the crash-safety tests.

``SORA_SEARCH_FAULT=POINT[:N]`` kills this process with SIGKILL the N-th time (default 1) it reaches
``fault_point(POINT)``. The points sit where a real crash would hurt most: ``decode`` (a batch received),
``encode`` (a batch embedded), ``store`` (vectors written, transaction not yet committed), ``faiss`` (the new
FAISS file written to its temporary name, not yet renamed) and ``retrain`` (a retrained FAISS file saved, the store
not yet switched to its projection). Unset, a point costs one string comparison.
"""

from __future__ import annotations

import os
import signal

_POINT, _, _NTH = os.environ.get("SORA_SEARCH_FAULT", "").partition(":")
_seen: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Die here, as a power cut or ``kill -9`` would, if the environment asks for it."""
    if name != _POINT:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] == int(_NTH or 1):
        os.kill(os.getpid(), signal.SIGKILL)
