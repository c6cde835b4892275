"""The web service: routes, the worker that owns the library, the one error handler.

    GET  /healthz                           liveness
    GET  /api/info                          ``sora-search info --json``
    POST /api/query                         multipart ``file`` (+ ``k``, ``min_score``, ``views``, ``read_text``):
                                            ``query --json`` with each match's ``video_id``
    GET  /api/videos?q=&offset=&limit=      indexed videos, path text filter, paginated
    GET  /api/videos/{id}                   one video
    GET  /api/videos/{id}/thumbnail?t=S     a JPEG of second S (cached in the index folder)
    GET  /api/videos/{id}/stream            the indexed file itself (HTTP range requests)
    GET  /api/videos/{id}/keyframes?n=      the seconds where its footage changes most (from stored vectors)
    GET  /api/duplicates?min_score=&keep=   ``sora-search dupes --json`` plus each side's video id
    POST /api/index                         JSON ``{"paths": [...]}`` on the server, inside ``--allow-root``
                                            folders: 202 and the job (one at a time; 409 while one runs)
    GET  /api/jobs/{id}                     an index job: status, progress, the summary or the error
    GET  /                                  the page (static HTML/JS/CSS shipped in the package)
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException

from sora_search.containers import HEAD_BYTES, sniff_video
from sora_search.errors import (EmptyIndex, IndexLocked, IndexNotFound, SoraSearchError, StoreError,
                                TextReaderMissing, VideoError)
from sora_search.library import Library
from sora_search.params import KEEP_RULES, VIEW_CHOICES, QueryParams, TextParams
from sora_search.serve.jobs import JobError, Jobs
from sora_search.serve.keyframes import DEFAULT_COUNT, MAX_COUNT, keyframes
from sora_search.thumbs import DEFAULT_MAX_BYTES, ThumbnailCache

logger = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
MAX_K = 100
T = TypeVar("T")


class ApiError(Exception):
    """An answer other than 200 that the service chose: status, one-line message, extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers or {}


# Library errors by the HTTP status they become (first match wins; subclasses before their bases).
STATUS_OF: tuple[tuple[type[SoraSearchError], int], ...] = (
    (VideoError, 422), (EmptyIndex, 409), (IndexNotFound, 404), (IndexLocked, 503), (StoreError, 500),
    (SoraSearchError, 400),
)


def _status(exc: BaseException) -> tuple[int, str, dict[str, str]]:
    if isinstance(exc, ApiError):
        return exc.status, str(exc), exc.headers
    if isinstance(exc, JobError):
        return exc.status, str(exc), {}
    if isinstance(exc, RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            return 422, f"the request body is not valid JSON ({first.get('ctx', {}).get('error', 'unreadable')})", {}
        loc = tuple(first.get("loc", ()))
        where = ".".join(str(p) for p in loc if p not in ("body", "query", "path"))
        where = where or ("request body" if loc[:1] == ("body",) else "request")
        return 422, f"{where}: {first.get('msg', 'invalid')}", {}
    if isinstance(exc, HTTPException):
        return exc.status_code, str(exc.detail), dict(exc.headers or {})
    for kind, status in STATUS_OF:
        if isinstance(exc, kind):
            return status, str(exc), {}
    return 500, f"internal error: {type(exc).__name__} (see the server log)", {}


async def handle_exception(request: Request, exc: Exception) -> JSONResponse:
    """The one place errors become HTTP answers: ``{"error": "one line"}`` with the status of :data:`STATUS_OF`."""
    status, message, headers = _status(exc)
    log = logger.error if status >= 500 else logger.info
    log("%s %s %s -> %d %s", _who(request), request.method, request.url.path, status, message,
        exc_info=exc if status == 500 else None)
    return JSONResponse({"error": " ".join(message.split())}, status_code=status, headers=headers)


def _who(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "?"


@dataclass
class Settings:
    """What ``sora-search serve`` was asked for."""

    index: Path | None = None
    db: str | None = None  # the catalogue's URL; None: $SORA_SEARCH_DB, else the index folder's sora.db
    device: str | None = None
    token: str | None = None
    max_upload_mb: float = 512.0
    max_queued: int = 4
    thumbs_max_bytes: int = DEFAULT_MAX_BYTES
    allow_roots: tuple[Path, ...] = ()  # folders POST /api/index may index under; none: indexing over HTTP is off


class Worker:
    """The one thread that opens and uses the Library and its store; the rest of the service awaits it."""

    def __init__(self, settings: Settings) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sora-library")
        try:
            self.library: Library = self._pool.submit(Library.open, settings.index, create=False,
                                                      device=settings.device, db=settings.db).result()
        except BaseException:
            self._pool.shutdown()
            raise
        self._store: Any = self._pool.submit(self._open_store).result()
        self.queued = 0
        self.max_queued = settings.max_queued
        # The last duplicates report by (store generation, min_score, keep): the whole library is searched for one.
        self._dupes: tuple[tuple[int, float | None, str | None], dict[str, Any]] | None = None

    def _open_store(self) -> Any:
        from sora_search.store import Store

        return Store.open(self.library.catalogue, create=False)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.wrap_future(self._pool.submit(fn, *args, **kwargs))

    def videos(self) -> list[Any]:
        """Indexed videos (worker thread only)."""
        return list(self._store.videos(status="indexed"))

    def fingerprints(self) -> dict[int, str]:
        """Indexed video id -> fingerprint (any thread: waits for the worker)."""
        return self._pool.submit(lambda: {v.id: v.fingerprint for v in self.videos()}).result()

    def video(self, video_id: int) -> Any:
        rec = self._store.video(video_id)
        if rec is None or rec.status != "indexed":
            raise ApiError(404, f"no indexed video with id {video_id}")
        return rec

    def keyframes(self, video_id: int, n: int) -> list[float]:
        """The seconds where a video's footage changes most (worker thread only)."""
        rec = self.video(video_id)
        _, times, vectors = self._store.vectors_of_video(rec.id)
        return keyframes(times, vectors, n)

    def duplicates(self, min_score: float | None, keep: str | None) -> dict[str, Any]:
        """``dupes --json`` with ``a_id``/``b_id`` on each pair and ``ids`` beside each group's members (worker)."""
        meta = self._store.meta()
        key = (meta.generation if meta else -1, min_score, keep)
        if self._dupes is not None and self._dupes[0] == key:
            return self._dupes[1]
        out = self.library.duplicates(min_score=min_score, keep=keep).to_dict()
        ids = {v.path: v.id for v in self.videos()}
        for pair in out["pairs"]:
            pair["a_id"], pair["b_id"] = ids.get(pair["a"]), ids.get(pair["b"])
        for group in out["groups"]:
            group["ids"] = [ids.get(m) for m in group["members"]]
        self._dupes = (key, out)
        return out

    def close(self) -> None:
        def _close() -> None:
            self._store.close()
            self.library.close()

        self._pool.submit(_close).result()
        self._pool.shutdown()


def get_worker(request: Request) -> Worker:
    return request.app.state.worker  # type: ignore[no-any-return]


def get_thumbs(request: Request) -> ThumbnailCache:
    return request.app.state.thumbs  # type: ignore[no-any-return]


def get_jobs(request: Request) -> Jobs:
    return request.app.state.jobs  # type: ignore[no-any-return]


class IndexRequest(BaseModel):
    """What POST /api/index takes: files or folders on the server, inside the ``--allow-root`` folders."""

    model_config = ConfigDict(extra="forbid")
    paths: list[str]


def check_token(request: Request) -> None:
    """Bearer token (or ``?token=`` for media elements, which cannot send headers) when the service has one."""
    token = request.app.state.settings.token
    if not token:
        return
    given = request.headers.get("authorization", "")
    if given != f"Bearer {token}" and request.query_params.get("token") != token:
        raise ApiError(401, "missing or wrong token: send Authorization: Bearer <token>",
                       {"WWW-Authenticate": "Bearer"})


def _video_json(rec: Any) -> dict[str, Any]:
    return {"id": rec.id, "path": rec.path, "name": Path(rec.path).name, "duration_s": rec.duration_s,
            "width": rec.width, "height": rec.height, "fps": rec.fps, "size": rec.size}


def create_app(settings: Settings) -> FastAPI:
    """The service over the index of ``settings``; the library is opened now (errors surface before serving).

    Raises:
        IndexNotFound: no index there. SoraSearchError: it cannot be opened.
    """
    worker = Worker(settings)
    uploads = Path(tempfile.mkdtemp(prefix="sora-serve-uploads-"))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            # An index job still running is stopped with the process; what it committed is kept.
            await asyncio.to_thread(app.state.jobs.wait, 5.0)
            await asyncio.to_thread(worker.close)
            shutil.rmtree(uploads, ignore_errors=True)

    app = FastAPI(title="sora-search", summary="Find which library videos contain a clip.", lifespan=lifespan)
    app.state.settings, app.state.worker, app.state.uploads = settings, worker, uploads
    app.state.jobs = Jobs(worker.library.location, settings.allow_roots, settings.device, db=settings.db)
    app.state.thumbs = ThumbnailCache(worker.library.location, max_bytes=settings.thumbs_max_bytes)
    # Thumbnails of videos removed or re-encoded since the last start go now (the cache itself only knows sizes).
    app.state.thumbs.prune(worker.fingerprints())
    for kind in (Exception, HTTPException, RequestValidationError, ApiError, JobError, SoraSearchError):
        app.add_exception_handler(kind, handle_exception)
    limit = int(settings.max_upload_mb * 2**20)

    @app.middleware("http")
    async def log_and_limit(request: Request, call_next: Callable[[Request], Any]) -> Response:
        started = time.monotonic()
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit + 64 * 1024:
            return await handle_exception(request, ApiError(
                413, f"upload of {int(length) / 2**20:.1f} MiB is over the limit of {settings.max_upload_mb:g} MiB "
                     "(sora-search serve --max-upload-mb)"))
        response: Response = await call_next(request)
        logger.info("%s %s %s -> %d in %.3f s", _who(request), request.method, request.url.path,
                    response.status_code, time.monotonic() - started)
        return response

    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    api = [Depends(check_token)]

    @app.get("/api/info", tags=["library"], dependencies=api)
    async def info(w: Worker = Depends(get_worker)) -> dict[str, Any]:
        """What ``sora-search info --json`` prints."""
        return (await w.run(w.library.info)).to_dict()

    @app.post("/api/query", tags=["library"], dependencies=api)
    async def query(request: Request, file: UploadFile = File(..., description="the probe clip"),
                    k: int = Form(QueryParams().k, ge=1, le=MAX_K),
                    min_score: float = Form(QueryParams().min_score, ge=-1, le=1),
                    views: str = Form(QueryParams().views),
                    read_text: bool = Form(False, description="the text check: `query --read-text`"),
                    w: Worker = Depends(get_worker)) -> dict[str, Any]:
        """Library videos that contain the uploaded clip: ``sora-search query --json`` plus each ``video_id``."""
        if views not in VIEW_CHOICES:
            raise ApiError(422, f"views: {views!r} is not one of {', '.join(VIEW_CHOICES)}")
        if w.queued >= w.max_queued:
            raise ApiError(503, f"{w.queued} queries are waiting already; try again in a few seconds",
                           {"Retry-After": "5"})
        name = Path(file.filename or "clip").name
        suffix = Path(name).suffix if Path(name).suffix[1:].isalnum() else ""
        fd, tmp = tempfile.mkstemp(dir=uploads, suffix=suffix[:8])
        w.queued += 1
        try:
            size = await _save(file, fd, limit, settings.max_upload_mb)
            with open(tmp, "rb") as f:
                head = f.read(HEAD_BYTES)
            if not sniff_video(head):
                raise ApiError(415, f"{name} ({size} bytes) is not a video container sora-search can read "
                                    "(MP4, MOV, MKV/WebM, AVI, MPEG-TS...)")
            logger.info("%s query %s (%d bytes) k=%d min_score=%g views=%s read_text=%s", _who(request), name,
                        size, k, min_score, views, read_text)
            params = QueryParams(k=k, min_score=min_score, views=views, text=TextParams() if read_text else None)

            def run() -> dict[str, Any]:
                try:
                    result = w.library.query(tmp, params=params)
                except VideoError as exc:  # its message names the temporary file; the reason does not
                    raise ApiError(422, f"{name}: {exc.reason}") from None
                except TextReaderMissing as exc:
                    raise ApiError(422, f"read_text: {exc}") from None
                ids = {v.path: v.id for v in w.videos()}
                out = result.to_dict()
                out["query"] = name
                for m in out["matches"]:
                    m["video_id"] = ids.get(m["path"])
                return out

            return await w.run(run)
        finally:
            w.queued -= 1
            await file.close()
            Path(tmp).unlink(missing_ok=True)

    @app.get("/api/videos", tags=["videos"], dependencies=api)
    async def videos(q: str = "", offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=500),
                     w: Worker = Depends(get_worker)) -> dict[str, Any]:
        """Indexed videos whose path contains ``q`` (case-insensitive), by path."""
        found = sorted((v for v in await w.run(w.videos) if q.lower() in v.path.lower()), key=lambda v: v.path)
        return {"total": len(found), "offset": offset, "limit": limit,
                "videos": [_video_json(v) for v in found[offset:offset + limit]]}

    @app.get("/api/videos/{video_id}", tags=["videos"], dependencies=api)
    async def video(video_id: int, w: Worker = Depends(get_worker)) -> dict[str, Any]:
        return _video_json(await w.run(w.video, video_id))

    @app.get("/api/videos/{video_id}/thumbnail", tags=["videos"], dependencies=api,
             response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
    async def thumbnail(video_id: int, t: float = Query(0.0, ge=0, le=1e7), w: Worker = Depends(get_worker),
                        cache: ThumbnailCache = Depends(get_thumbs)) -> Response:
        """A JPEG of second ``t`` (160 px wide), cached in the index folder."""
        rec = await w.run(w.video, video_id)
        data = await asyncio.to_thread(cache.get, rec.id, rec.path, rec.fingerprint, min(t, rec.duration_s))
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/videos/{video_id}/stream", tags=["videos"], dependencies=api, response_class=FileResponse)
    async def stream(video_id: int, w: Worker = Depends(get_worker)) -> FileResponse:
        """The indexed file itself; HTTP range requests let a player seek."""
        rec = await w.run(w.video, video_id)
        if not os.path.isfile(rec.path):
            raise ApiError(404, f"video {video_id} is indexed but its file {rec.path} is gone; run "
                                "`sora-search index` to bring the index up to date")
        return FileResponse(rec.path, filename=Path(rec.path).name, content_disposition_type="inline")

    @app.get("/api/videos/{video_id}/keyframes", tags=["videos"], dependencies=api)
    async def video_keyframes(video_id: int, n: int = Query(DEFAULT_COUNT, ge=1, le=MAX_COUNT),
                              w: Worker = Depends(get_worker)) -> dict[str, Any]:
        """At most ``n`` seconds where the video's footage changes most, from its stored vectors; the first second
        always among them. Show them with the thumbnail route."""
        return {"video_id": video_id, "seconds": await w.run(w.keyframes, video_id, n)}

    @app.get("/api/duplicates", tags=["library"], dependencies=api)
    async def duplicates(min_score: float | None = Query(None, ge=-1, le=1), keep: str | None = None,
                         w: Worker = Depends(get_worker)) -> dict[str, Any]:
        """What ``sora-search dupes --json`` prints, plus ``a_id``/``b_id`` per pair and ``ids`` per group.
        Searches the whole library on the worker (queries wait meanwhile); cached until the index changes."""
        if keep is not None and keep not in KEEP_RULES:
            raise ApiError(422, f"keep: {keep!r} is not one of {', '.join(KEEP_RULES)}")
        return await w.run(w.duplicates, min_score, keep)

    @app.post("/api/index", tags=["jobs"], dependencies=api, status_code=202)
    async def index(body: IndexRequest, request: Request, jobs: Jobs = Depends(get_jobs)) -> JSONResponse:
        """Index files or folders on the server (inside the ``serve --allow-root`` folders) on a thread of its own;
        202 and the job to poll at ``GET /api/jobs/{id}``. One job at a time: 409 while one runs."""
        job = await asyncio.to_thread(jobs.start, body.paths)
        logger.info("%s index job %s: %s", _who(request), job.id, ", ".join(job.paths))
        return JSONResponse(job.to_dict(), status_code=202, headers={"Location": f"/api/jobs/{job.id}"})

    @app.get("/api/jobs/{job_id}", tags=["jobs"], dependencies=api)
    async def job(job_id: str, jobs: Jobs = Depends(get_jobs)) -> dict[str, Any]:
        """An index job: ``status`` (queued, running, done, failed), ``progress`` (files and bytes done of total,
        the file being decoded), the run's summary when done, the one-line error when failed."""
        return jobs.get(job_id).to_dict()

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


async def _save(file: UploadFile, fd: int, limit: int, limit_mb: float) -> int:
    """Copy the upload into ``fd`` (closed after), refusing past ``limit`` bytes and empty uploads."""
    size = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := await file.read(1 << 20):
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"upload is over the limit of {limit_mb:g} MiB (sora-search serve "
                                    "--max-upload-mb)")
            out.write(chunk)
    if size == 0:
        raise ApiError(400, "the uploaded file is empty")
    return size


def serve(settings: Settings, *, host: str, port: int, log_level: str = "info") -> None:
    """Open the library and serve until interrupted (uvicorn, one process)."""
    import uvicorn

    app = create_app(settings)
    logger.info("serving %s on http://%s:%d (auth: %s)", app.state.worker.library.location, host, port,
                "bearer token" if settings.token else "none")
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, timeout_graceful_shutdown=5)
