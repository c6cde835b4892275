"""sora-search: video similarity search. ``Library.open(path).query(clip)`` finds library videos containing a clip."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Library", "IndexParams", "RayParams", "QueryParams", "AlignParams", "DupesParams", "Match", "QueryResult",
           "Span", "IndexSummary", "LibraryInfo", "DuplicatesReport", "__version__"]

if TYPE_CHECKING:
    from .library import Library
    from .params import AlignParams, DupesParams, IndexParams, QueryParams, RayParams
    from .types import DuplicatesReport, IndexSummary, LibraryInfo, Match, QueryResult, Span


def __getattr__(name: str) -> Any:
    # Lazy, so `import sora_search` (and `sora-search --help`) stays fast: numpy, torch and faiss load on use.
    if name == "Library":
        from .library import Library

        return Library
    if name in ("IndexParams", "RayParams", "QueryParams", "AlignParams", "DupesParams"):
        from . import params

        return getattr(params, name)
    if name in ("Match", "QueryResult", "Span", "IndexSummary", "LibraryInfo", "DuplicatesReport"):
        from . import types

        return getattr(types, name)
    raise AttributeError(f"module 'sora_search' has no attribute {name!r}")
