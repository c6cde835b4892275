"""Typed errors. Every message says what failed, the values involved, and what to do next.

    SoraSearchError
    ├── VideoError                 one input file could not be used (an index run records it and goes on)
    │   ├── VideoDecodeError       no decoder could read frames from it
    │   │   └── DecodeTimeout      the decoder made no progress within the time limit (it was killed)
    │   └── NoFramesError          it opened, but yielded no frame to embed
    ├── EncoderError               the encoder could not be built (weights missing, bad device)
    │   └── EncoderMismatch        the index was built by another encoder, version, dim or sampling rate
    ├── StoreError                 the SQLite store could not be used
    │   ├── SchemaOutdated         the database predates this version's schema (run `sora-search upgrade`)
    │   └── SchemaTooNew           the database was written by a newer sora-search
    ├── ClusterError               the Ray cluster could not be used (not installed, unreachable, too small)
    ├── IndexNotFound              no index at that location yet
    ├── EmptyIndex                 the index exists but holds no vectors
    ├── IndexLocked                another process is writing to this index
    └── TextReaderMissing          the text check was asked for, but its reader (tesseract) is not installed

:func:`debug_wanted` reads ``SORA_SEARCH_DEBUG``, the one switch from one-line errors to full tracebacks.
"""

from __future__ import annotations

import os
from pathlib import Path

DEBUG_ENV = "SORA_SEARCH_DEBUG"


def debug_wanted() -> bool:
    """Whether ``$SORA_SEARCH_DEBUG`` (set and not ``0``) asks for full detail: tracebacks instead of one-line
    errors, and the decoder processes' own stderr."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


class SoraSearchError(Exception):
    """Base of every error sora-search raises on purpose."""


class VideoError(SoraSearchError):
    """An input video could not be used. ``path`` names it; ``reason`` is a short cause for summaries."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class VideoDecodeError(VideoError):
    """No available decoder could read frames from the file."""


class DecodeTimeout(VideoDecodeError):
    """The decoder produced nothing within ``timeout_s`` and its worker process was killed."""

    def __init__(self, path: str | Path, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        super().__init__(path, f"decoder made no progress for {timeout_s:g} s and was stopped")


class NoFramesError(VideoError):
    """The container opened but no frame could be sampled from it."""


class EncoderError(SoraSearchError):
    """The encoder could not be built or run."""


class EncoderMismatch(EncoderError):
    """The index was built with a different encoder identity than the one in use."""


class StoreError(SoraSearchError):
    """The SQLite store could not be opened or written."""


class SchemaOutdated(StoreError):
    """The database schema is older than this version of sora-search."""


class SchemaTooNew(StoreError):
    """The database schema is newer than this version of sora-search understands."""


class ClusterError(SoraSearchError):
    """Ray is missing, the cluster cannot be reached or lacks the resources, or its workers run another version."""


class IndexNotFound(SoraSearchError):
    """There is no index at the given location."""


class EmptyIndex(SoraSearchError):
    """The index exists but has no vectors to search."""


class IndexLocked(SoraSearchError):
    """Another process holds the write lock on this index."""


class TextReaderMissing(SoraSearchError):
    """The text check was asked for, but the ``tesseract`` command it reads frames with is not on PATH."""
