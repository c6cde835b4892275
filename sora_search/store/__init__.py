"""The SQLite store (source of truth) and its schema migrations. Never imports torch or faiss."""

from __future__ import annotations

from sora_search.store.migrate import head_revision, upgrade
from sora_search.store.records import VECTOR_DTYPE, IndexMeta, RunRecord, VideoRecord
from sora_search.store.store import Store

__all__ = ["VECTOR_DTYPE", "IndexMeta", "RunRecord", "Store", "VideoRecord", "head_revision", "upgrade"]
