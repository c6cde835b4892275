"""SQLAlchemy ORM models of the store (the live schema).

Tables:

    videos       one row per file seen (indexed or failed); ``path`` unique, ``fingerprint`` indexed
    vectors      one row per sampled second; ``id`` is INTEGER PRIMARY KEY AUTOINCREMENT (never reused) and is
                 the id FAISS holds; ``data`` is the raw vector as float16 little-endian bytes (raw_dim * 2 bytes);
                 ``regions`` the frame's region vectors or NULL (see :func:`sora_search.store.records.encode_regions`)
    index_meta   exactly one row (``id = 1``): the encoder identity, projection and FAISS bookkeeping
    runs         one row per index run with its counters

Migration scripts in ``migrations/versions`` must never import this module: they describe the schema as it
was at their revision. ``migrations/env.py`` imports it only for autogenerate.
"""

from __future__ import annotations

import os

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Stable constraint names so that batch migrations on SQLite can find and alter them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


RAW_MARK = "\x7fraw:"


class FsPath(TypeDecorator[str]):
    """A file path, stored losslessly whatever its bytes.

    A name that is not valid UTF-8 reaches Python as a str with surrogate escapes, which SQLite text cannot hold; such
    a path is stored as its raw bytes (a BLOB value in the same column) and read back with ``os.fsdecode``. A typed
    column (PostgreSQL) holds text only: there it is ``RAW_MARK`` and the bytes in hex (no absolute path starts with
    that character). Every other path is plain text, as before.
    """

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | bytes | None:
        if value is None:
            return None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raw = os.fsencode(value)
            return raw if dialect.name == "sqlite" else RAW_MARK + raw.hex()
        return value

    def process_result_value(self, value: str | bytes | None, dialect: Dialect) -> str | None:
        if isinstance(value, str) and value.startswith(RAW_MARK):
            return os.fsdecode(bytes.fromhex(value[len(RAW_MARK):]))
        return os.fsdecode(value) if isinstance(value, bytes) else value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class VideoRow(Base):
    __tablename__ = "videos"
    __table_args__ = (
        CheckConstraint("status IN ('indexed', 'failed')", name="status"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    path: Mapped[str] = mapped_column(FsPath, nullable=False, unique=True)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    mtime: Mapped[float] = mapped_column(Float, nullable=False)
    fingerprint: Mapped[str] = mapped_column(String, nullable=False, index=True)
    duration_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    fps: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    width: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    height: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    n_vectors: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    indexed_at: Mapped[float] = mapped_column(Float, nullable=False)


class VectorRow(Base):
    __tablename__ = "vectors"
    # By video and time: a read of a few seconds of a long video is a seek, not a scan of all its seconds.
    __table_args__ = (
        Index("ix_vectors_video_id_timestamp_s", "video_id", "timestamp_s"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    video_id: Mapped[int] = mapped_column(Integer, ForeignKey("videos.id", ondelete="CASCADE"), nullable=False)
    timestamp_s: Mapped[float] = mapped_column(Float, nullable=False)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    regions: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class IndexMetaRow(Base):
    __tablename__ = "index_meta"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    encoder_name: Mapped[str] = mapped_column(String, nullable=False)
    encoder_version: Mapped[str] = mapped_column(String, nullable=False)
    raw_dim: Mapped[int] = mapped_column(Integer, nullable=False)
    input_size: Mapped[int] = mapped_column(Integer, nullable=False)
    sampling_fps: Mapped[float] = mapped_column(Float, nullable=False)
    projection: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    projection_name: Mapped[str] = mapped_column(String, nullable=False)
    dim: Mapped[int] = mapped_column(Integer, nullable=False)
    index_trained_n: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    generation: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    index_uid: Mapped[str | None] = mapped_column(String(32), nullable=True)


class RunRow(Base):
    __tablename__ = "runs"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    started_at: Mapped[float] = mapped_column(Float, nullable=False)
    finished_at: Mapped[float] = mapped_column(Float, nullable=False)
    added: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    updated: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    removed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    failed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
