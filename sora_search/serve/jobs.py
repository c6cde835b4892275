"""Index runs over HTTP: ``POST /api/index`` starts one, ``GET /api/jobs/{id}`` follows it.

A job indexes paths on the server, each inside one of the roots that ``serve --allow-root`` named (compared after
symlinks and ``..`` are resolved; none named: indexing over HTTP is off). It runs on its own thread with its own
:class:`~sora_search.library.Library` on the same folder, so queries on the worker thread go on meanwhile; the
library takes the folder's write lock itself, and the worker's index catches up from the store generation at its
next search. One job at a time in this process (409 otherwise); an index run by another process makes the job fail
with the lock's message. File symlinks are not followed, so a link under a root cannot bring in a file outside it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sora_search.errors import SoraSearchError
from sora_search.library import Library
from sora_search.types import IndexSummary, Progress

logger = logging.getLogger(__name__)
KEEP_FINISHED = 20  # finished jobs remembered for GET /api/jobs/{id}; older ones are forgotten


class JobError(Exception):
    """A job that cannot start: the HTTP status and a one-line message (the service maps it to ApiError)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class IndexJob:
    """One index run: ``status`` goes queued -> running -> done or failed; ``progress`` is the last event."""

    id: str
    paths: tuple[str, ...]
    status: str = "queued"
    progress: Progress | None = None
    summary: IndexSummary | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None

    def to_dict(self) -> dict[str, Any]:
        p = self.progress
        return {
            "id": self.id, "status": self.status, "paths": list(self.paths),
            "progress": {"files_done": p.done if p else 0, "files_total": p.total if p else 0,
                         "bytes_done": p.bytes_done if p else 0, "bytes_total": p.bytes_total if p else 0,
                         "current": p.path if p and p.status == "decoding" else None},
            "summary": _summary_json(self.summary) if self.summary else None,
            "error": self.error, "created": self.created, "finished": self.finished,
        }


def _summary_json(summary: IndexSummary) -> dict[str, Any]:
    out = asdict(summary)
    out["moved"] = [{"from": a, "to": b} for a, b in summary.moved]
    out["encoded"] = summary.encoded
    return out


def inside_roots(raw: str, roots: Sequence[Path]) -> Path:
    """The resolved path of ``raw`` when it lies inside one of ``roots`` (resolved already).

    Raises:
        JobError: 403 outside every root, 422 not absolute, 404 missing.
    """
    if not raw or "\0" in raw:
        raise JobError(422, f"paths: {raw!r} is not a path")
    if not os.path.isabs(raw):
        raise JobError(422, f"paths: {raw!r} is relative; give absolute paths on the server")
    resolved = Path(raw).resolve()
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        raise JobError(403, f"{raw} is outside the folders this server may index (serve --allow-root DIR)")
    if not resolved.exists():
        raise JobError(404, f"no such file or folder on the server: {raw}")
    return resolved


class Jobs:
    """Index jobs of one service: at most one running; a bounded memory of finished ones."""

    def __init__(self, location: Path, roots: Sequence[Path], device: str | None, db: str | None = None) -> None:
        self.location, self.device, self.db = location, device, db
        self.roots = tuple(Path(r).resolve() for r in roots)
        self._jobs: dict[str, IndexJob] = {}
        self._running: IndexJob | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self, paths: Sequence[str]) -> IndexJob:
        """Check ``paths`` against the roots and start indexing them on a thread of its own.

        Raises:
            JobError: 403 no roots or a path outside them, 404 a missing path, 422 bad paths, 409 a job is running.
        """
        if not self.roots:
            raise JobError(403, "indexing over HTTP is off: start the server with `sora-search serve --allow-root "
                                "DIR` to allow indexing under DIR")
        if not paths:
            raise JobError(422, "paths: give at least one file or folder")
        resolved = [inside_roots(p, self.roots) for p in paths]
        with self._lock:
            if self._running is not None:
                raise JobError(409, f"index job {self._running.id} is still {self._running.status}; wait for it "
                                    f"(GET /api/jobs/{self._running.id})")
            job = IndexJob(uuid.uuid4().hex[:12], tuple(str(p) for p in resolved))
            self._jobs[job.id] = job
            self._running = job
            self._forget_old()
            self._thread = threading.Thread(target=self._run, args=(job,), name=f"sora-index-{job.id}", daemon=True)
            self._thread.start()
        return job

    def get(self, job_id: str) -> IndexJob:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise JobError(404, f"no index job with id {job_id!r} (finished jobs are kept for the last "
                                f"{KEEP_FINISHED})")
        return job

    def _run(self, job: IndexJob) -> None:
        job.status = "running"

        def progress(event: Progress) -> None:
            job.progress = event

        try:
            with Library.open(self.location, create=False, device=self.device, db=self.db) as lib:
                job.summary = lib.index(list(job.paths), progress=progress, follow_links=False)
            job.status = "done"
        except SoraSearchError as exc:
            job.error, job.status = " ".join(str(exc).split()), "failed"
        except Exception as exc:  # the job reports it; the server goes on
            logger.exception("index job %s failed", job.id)
            job.error, job.status = f"internal error: {type(exc).__name__} (see the server log)", "failed"
        finally:
            job.finished = time.time()
            with self._lock:
                self._running = None
            logger.info("index job %s %s%s", job.id, job.status, f": {job.error}" if job.error else "")

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.finished is not None]
        for old in sorted(finished, key=lambda j: j.created)[:max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[old.id]

    def wait(self, timeout_s: float | None = None) -> None:
        """Wait for the running job's thread (shutdown, tests)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
