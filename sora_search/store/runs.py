"""Index runs: recording each run's counters, and reading them back (half of :class:`sora_search.store.Store`)."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from sora_search.store.models import RunRow
from sora_search.store.records import RunRecord

if TYPE_CHECKING:
    from sora_search.types import IndexSummary


class RunWrites:
    """The runs half of :class:`sora_search.store.Store` (which provides ``_read`` and ``_write``)."""

    def _read(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def record_run(
        self,
        summary: IndexSummary | None = None,
        *,
        started_at: float | None = None,
        finished_at: float | None = None,
        added: int = 0,
        updated: int = 0,
        unchanged: int = 0,
        removed: int = 0,
        failed: int = 0,
    ) -> int:
        """Record the counters of one index run; returns the run id.

        Pass either an :class:`sora_search.types.IndexSummary` (its tuples are counted; moved files count as
        unchanged; ``finished_at`` defaults to now and ``started_at`` to ``finished_at - summary.seconds``)
        or the counters as keywords.
        """
        end = time.time() if finished_at is None else float(finished_at)
        if summary is not None:
            added = len(summary.added)
            updated = len(summary.updated)
            unchanged = len(summary.unchanged) + len(summary.moved)
            removed = len(summary.removed)
            failed = len(summary.failed)
            start = end - float(summary.seconds) if started_at is None else float(started_at)
        else:
            start = end if started_at is None else float(started_at)
        with self._write() as s:
            row = RunRow(
                started_at=start,
                finished_at=end,
                added=int(added),
                updated=int(updated),
                unchanged=int(unchanged),
                removed=int(removed),
                failed=int(failed),
            )
            s.add(row)
            s.flush()
            return row.id

    def runs(self, limit: int | None = None) -> list[RunRecord]:
        """Recorded runs, newest first."""
        stmt = select(RunRow).order_by(RunRow.id.desc())
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._read() as s:
            return [
                RunRecord(r.id, r.started_at, r.finished_at, r.added, r.updated, r.unchanged, r.removed, r.failed)
                for r in s.scalars(stmt)
            ]
