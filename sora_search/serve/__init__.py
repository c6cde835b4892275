"""``sora-search serve``: the library as a web service and a page, one warm :class:`~sora_search.library.Library`
per process.

FastAPI routes (:mod:`sora_search.serve.app`) take the library through a dependency; the library and its store are
used from one worker thread only (neither is thread-safe), queries wait in a bounded queue (503 with Retry-After
when it is full), and everything else stays async. Errors become HTTP codes in one handler. Needs the ``serve``
extra: ``pip install 'sora-search[serve]'``.
"""

from __future__ import annotations

import importlib.util

NEEDS = ("fastapi", "uvicorn", "multipart")
INSTALL_HINT = "pip install 'sora-search[serve]'"


def missing() -> list[str]:
    """The modules of the ``serve`` extra that are not installed."""
    return [m for m in NEEDS if importlib.util.find_spec(m) is None]
