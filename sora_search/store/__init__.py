"""The SQLite store (source of truth) and its schema migrations. Never imports torch or faiss."""

from __future__ import annotations

from sora_search.store.store import (
    VECTOR_DTYPE,
    IndexMeta,
    RunRecord,
    Store,
    VideoRecord,
    head_revision,
    upgrade,
)

__all__ = ["VECTOR_DTYPE", "IndexMeta", "RunRecord", "Store", "VideoRecord", "head_revision", "upgrade"]
