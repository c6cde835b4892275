"""Where an index run decodes and encodes: in this process, or on a Ray cluster.

:func:`embeddings` gives the files to index, each with a call that returns its
:class:`~sora_search.embed.Embedded` or raises its :class:`~sora_search.errors.VideoError`; the Library commits
them one video per transaction either way. In this process, files are embedded one at a time while the encoder runs
on the CPU (decoding and encoding already share its cores); with the encoder on a GPU one decoding child cannot keep
it busy, so several files are decoded at once, each by a thread with its own decode child, and results still come
in ``work`` order (:func:`decode_workers`). On Ray (``ray`` set) the work is split like Ray's offline batch
inference, with Ray core tasks and actors::

    driver (Library.index)   scans and plans (only new or changed files are sent), then commits each result as it
      |                      comes back (completion order): it alone writes the store and the FAISS file
      v
    decode task (CPU)        one per file, on any node: the local run's DecodeWorker child, so a decoder silent for
      |                      the timeout is killed and the file recorded failed; frames (n, S, S, 3) uint8 go to
      |                      the object store, never through the driver
      v
    encoder actor            holds the encoder once (one GPU each, fp16 and batches of 128, where the cluster has
                             GPUs; CPU actors otherwise); encodes a decoded file and pools it over time as
                             :class:`~sora_search.embed.Embedder` does, so the vectors are the same

A worker process that dies (SIGKILL, out of memory) is replaced and its task or call run again up to
``RayParams.retries`` times; past that the file is recorded failed. Inputs are opened by path on the workers: on a
cluster of several nodes every node must see the files at the same absolute paths (a shared file system).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from itertools import islice
from typing import TYPE_CHECKING, Any

import numpy as np

from sora_search._faults import fault_point
from sora_search.encoder import keep_large_blocks_mapped
from sora_search.errors import ClusterError, DecodeTimeout, NoFramesError, VideoDecodeError, VideoError
from sora_search.params import RayParams
from sora_search.threads import available_cpus, signals_held
from sora_search.types import VideoInfo

if TYPE_CHECKING:
    from sora_search.decode import DecodeWorker
    from sora_search.embed import Embedded, Embedder
    from sora_search.scan import FileEntry

logger = logging.getLogger(__name__)

# Settings of this process that the workers must share: fault injection (tests) and debug output.
_FORWARDED_ENV = ("SORA_SEARCH_FAULT", "SORA_SEARCH_FAULT_ONCE", "SORA_SEARCH_DEBUG")
_INSTALL_HINT = "pip install 'sora-search[ray]' (on this machine and every node of the cluster)"
# Files decoded at once by default when the encoder runs on a GPU: half the CPUs, at most this many (each decoding
# child holds a decoder and a file's frames in flight).
MAX_AUTO_DECODE_WORKERS = 8


def embeddings(work: Sequence[tuple[FileEntry, str]], embedder: Embedder, *, timeout_s: float,
               ray: str | None = None, params: RayParams | None = None, decode_workers: int = 0
               ) -> Iterator[tuple[FileEntry, str, Callable[[], Embedded]]]:
    """Each (entry, fingerprint) of ``work`` with a call that returns the file's embedding or raises its VideoError.

    Args:
        timeout_s: the longest a decoder may stay silent on one file.
        decode_workers: files embedded at once in this process (0: :func:`decode_workers` decides).
        ray: None embeds here, in ``work`` order; otherwise the Ray cluster to use:
            ``auto`` (``$RAY_ADDRESS``, else a cluster started on this machine, else a new local one), ``local`` (a
            new one on this machine) or a head's address; files come back in the order they finish. A Ray already
            initialised in this process is used as it is.

    Raises:
        ClusterError: Ray is not installed, the cluster is unreachable or too small, or runs another version.
    """
    if ray is None or not work:  # an incremental run with nothing to encode starts no cluster
        yield from _local(work, embedder, timeout_s, decode_workers)
        return
    ray_mod = _import_ray()
    started = _connect(ray_mod, ray)
    try:
        yield from _RayRun(ray_mod, embedder, timeout_s, params or RayParams()).results(work)
    finally:
        if started:
            ray_mod.shutdown()


def decode_workers(setting: int, encoder_device: str | None) -> int:
    """Files to embed at once in this process: ``setting`` when it is not 0; else one while the encoder is not loaded
    yet (it loads during the first file), two on a CPU of two cores or more (one file decodes while another is
    encoded), half the CPUs up to ``MAX_AUTO_DECODE_WORKERS`` on a GPU."""
    if setting:
        return setting
    if encoder_device is None:
        return 1
    if encoder_device == "cpu":
        return min(2, available_cpus())
    return max(1, min(MAX_AUTO_DECODE_WORKERS, available_cpus() // 2))


def _local(work: Sequence[tuple[FileEntry, str]], embedder: Embedder, timeout_s: float,
           setting: int) -> Iterator[tuple[FileEntry, str, Callable[[], Embedded]]]:
    """Embeds here, in ``work`` order: in the caller's thread, when each call is made, while one file at a time is
    wanted; beyond that in a thread pool that keeps that many files decoding ahead of the one being committed."""
    keep_large_blocks_mapped()
    todo = iter(work)
    pending: deque[tuple[FileEntry, str, Future[Embedded]]] = deque()
    pool: ThreadPoolExecutor | None = None
    try:
        while True:
            want = decode_workers(setting, embedder.encoder_device)
            if pool is None and want > 1:
                pool = ThreadPoolExecutor(want, thread_name_prefix="sora-decode", initializer=embedder.pooled_thread,
                                          initargs=(want,))
            if pool is None:
                for entry, fp in islice(todo, 1):
                    yield entry, fp, partial(embedder.file, entry.path, timeout_s=timeout_s)
                    break
                else:
                    return
                continue
            with signals_held():  # SIGTERM's exit raised inside submit could leave the pool's locks held
                for entry, fp in islice(todo, max(0, want - len(pending))):
                    pending.append((entry, fp, pool.submit(embedder.file, entry.path, timeout_s=timeout_s)))
            if not pending:
                return
            entry, fp, future = pending.popleft()
            yield entry, fp, future.result
    finally:
        if pool is not None:
            # Done or stopped early (an error, Ctrl-C): files not started are dropped, the decode children killed
            # so that waiting threads return, and once the threads are gone any worker they made is stopped.
            pool.shutdown(wait=False, cancel_futures=True)
            embedder.close_pool()
            pool.shutdown(wait=True)
            embedder.close_pool()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ClusterError(f"Ray is not installed: {_INSTALL_HINT}") from None
    return ray


def _connect(ray: Any, address: str) -> bool:
    """Join (or start) the cluster; True when this call initialised Ray and must shut it down."""
    if ray.is_initialized():
        return False
    _reachable(address)
    options: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
    if address == "local":
        options["include_dashboard"] = False
    # ray.init replaces the SIGTERM handler with a bare sys.exit; the caller's own (the CLI's) is put back.
    sigterm = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    try:
        ray.init(address=None if address == "auto" else address, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(f"cannot use the Ray cluster at {address!r}: {_first_line(exc)}; start one with "
                           "`ray start --head`, or use --ray local for one on this machine") from None
    finally:
        if sigterm is not None:
            signal.signal(signal.SIGTERM, sigterm)
    return True


def _reachable(address: str) -> None:
    """Fail fast on a HOST:PORT nobody listens on: ray.init itself waits for such a head for minutes."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise ClusterError(f"no Ray head answers at {address}: {exc.strerror or exc}; start one there with "
                           "`ray start --head`, or use --ray local for one on this machine") from None


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


# -- what travels between the processes ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Decoded:
    """A decoded file: frames (n, S, S, 3) uint8, timestamps_s (n,) float64, seconds the decode took."""

    info: VideoInfo
    frames: np.ndarray
    timestamps_s: np.ndarray
    seconds: float


@dataclass(frozen=True)
class _Failure:
    """A VideoError as data: the exception classes take (path, reason) and do not survive pickling."""

    kind: str
    path: str
    reason: str
    timeout_s: float | None = None

    @classmethod
    def of(cls, exc: VideoError) -> _Failure:
        timeout = exc.timeout_s if isinstance(exc, DecodeTimeout) else None
        return cls(type(exc).__name__, exc.path, exc.reason, timeout)

    def error(self) -> VideoError:
        if self.kind == "DecodeTimeout" and self.timeout_s is not None:
            return DecodeTimeout(self.path, self.timeout_s)
        if self.kind == "NoFramesError":
            return NoFramesError(self.path, self.reason)
        return VideoDecodeError(self.path, self.reason)


# -- worker side -------------------------------------------------------------------------------------------------

_decoder: DecodeWorker | None = None  # one per Ray worker process, reused by its tasks as a local run reuses its own


def _decode_file(path: str, backend: str, fps: float, size: int, timeout_s: float) -> _Decoded | _Failure:
    """A Ray task: decode ``path`` whole in a DecodeWorker child, as :meth:`Embedder.file` does."""
    global _decoder
    from sora_search.decode import DecodeWorker

    start = time.perf_counter()
    if _decoder is None or _decoder.backend != backend:
        _decoder = DecodeWorker(backend=backend, timeout_s=timeout_s)
    _decoder.timeout_s = float(timeout_s)
    frames: list[np.ndarray] = []
    stamps: list[np.ndarray] = []
    try:
        with _decoder.open(path, fps=fps, size=size) as video:
            info = video.info
            for batch in video:
                fault_point("decode")
                frames.append(batch.frames)
                stamps.append(batch.timestamps_s)
    except VideoError as exc:
        return _Failure.of(exc)
    if not frames:
        return _Failure("NoFramesError", path, "no decodable frame")
    return _Decoded(info, np.concatenate(frames), np.concatenate(stamps), time.perf_counter() - start)


class _EncoderActor:
    """A Ray actor: loads the encoder once, then encodes and pools decoded files."""

    def __init__(self, encoder_name: str, device: str, temporal_radius: int, precision: str) -> None:
        from sora_search.encoder import load_encoder

        self._encoder = load_encoder(encoder_name, device=device, precision=precision)
        self._radius = temporal_radius

    def identity(self) -> tuple[str, Any]:
        from sora_search import __version__

        return __version__, self._encoder.identity

    def encode(self, decoded: _Decoded | _Failure) -> tuple[Embedded, dict[str, float]] | _Failure:
        from sora_search.embed import Embedded, encode
        from sora_search.embed.views import FULL
        from sora_search.encoder import temporal_pool

        if isinstance(decoded, _Failure):
            return decoded
        start = time.perf_counter()
        vectors, regions = encode(self._encoder, decoded.frames)
        fault_point("encode")
        blank = np.zeros(len(decoded.timestamps_s), dtype=bool)
        pooled = temporal_pool(vectors, radius=self._radius, skip=blank)
        embedded = Embedded(decoded.info, decoded.timestamps_s, {FULL: pooled}, {FULL: blank},
                            {} if regions is None else {FULL: regions})
        return embedded, {"decode": decoded.seconds, "encode": time.perf_counter() - start}


# -- driver side -------------------------------------------------------------------------------------------------


class _RayRun:
    """One index run's tasks and actors on the cluster."""

    def __init__(self, ray: Any, embedder: Embedder, timeout_s: float, params: RayParams) -> None:
        from sora_search.encoder import device_setting, encoder_identity

        self._ray, self._embedder, self._timeout_s, self._params = ray, embedder, timeout_s, params
        self._identity = encoder_identity(embedder.encoder_name, embedder.precision)
        env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
        runtime = {"runtime_env": {"env_vars": env}} if env else {}
        resources = ray.cluster_resources()
        cpus, gpus = float(resources.get("CPU", 0)), int(resources.get("GPU", 0))
        wanted = device_setting(embedder.device)[0]
        if wanted is not None and wanted.startswith("cuda") and not gpus:
            raise ClusterError(f"device {wanted!r} was asked for but the Ray cluster has no GPU; use --device cpu")
        on_gpu = bool(gpus) and wanted != "cpu"
        n = params.encoders or (gpus if on_gpu else max(1, int(cpus // 2)))
        left = cpus - n * params.encoder_cpus
        if left < params.decode_cpus:
            raise ClusterError(f"{n} encoder actor(s) of {params.encoder_cpus:g} CPU and a decode task of "
                               f"{params.decode_cpus:g} CPU need more than the cluster's {cpus:g} CPUs; ask for "
                               "fewer encoders (RayParams.encoders) or add nodes")
        self._in_flight = params.in_flight or int(left // params.decode_cpus) + n
        self._decode = ray.remote(_decode_file).options(
            num_cpus=params.decode_cpus, max_retries=params.retries, retry_exceptions=False, **runtime)
        actor = ray.remote(_EncoderActor).options(
            num_cpus=params.encoder_cpus, num_gpus=1 if on_gpu else 0, max_restarts=params.retries,
            max_task_retries=params.retries, **runtime)
        self._new_actor = partial(actor.remote, embedder.encoder_name, "cuda" if on_gpu else "cpu",
                                  embedder.temporal_radius, embedder.precision)
        self._actors = [self._new_actor() for _ in range(n)]
        logger.info("Ray: %d %s encoder actor(s), up to %d files in flight", n, "GPU" if on_gpu else "CPU",
                    self._in_flight)

    def _check_actors(self) -> None:
        """Wait for every actor's model, and refuse workers that run another sora-search or encoder."""
        from sora_search import __version__

        ray = self._ray
        try:
            found = ray.get([a.identity.remote() for a in self._actors], timeout=self._params.startup_timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise ClusterError(f"the encoder actors did not start within {self._params.startup_timeout_s:g} s: the "
                               "cluster lacks the CPUs or GPUs they ask for (`ray status` shows what it has)"
                               ) from None
        except ray.exceptions.RayError as exc:
            raise ClusterError(f"an encoder actor failed to start: {_first_line(exc)}") from None
        for version, identity in found:
            if version != __version__ or identity != self._identity:
                raise ClusterError(f"a Ray worker runs sora-search {version} with {identity.describe()}, this "
                                   f"process {__version__} with {self._identity.describe()}; install the same "
                                   "version on every node")

    def results(self, work: Sequence[tuple[FileEntry, str]]
                ) -> Iterator[tuple[FileEntry, str, Callable[[], Embedded]]]:
        ray, e = self._ray, self._embedder
        size = self._identity.input_size
        pending = deque(work)
        decoding: dict[Any, tuple[FileEntry, str]] = {}
        decoded: deque[tuple[Any, tuple[FileEntry, str]]] = deque()
        encoding: dict[Any, tuple[tuple[FileEntry, str], Any]] = {}
        idle = list(self._actors)
        checked = False
        try:
            while pending or decoding or decoded or encoding:
                while pending and len(decoding) + len(decoded) < self._in_flight:
                    item = pending.popleft()
                    ref = self._decode.remote(item[0].path, e.decode_backend, e.fps, size, self._timeout_s)
                    decoding[ref] = item
                if not checked:  # the first files decode while the actors load their model
                    self._check_actors()
                    checked = True
                while decoded and idle:
                    ref, item = decoded.popleft()
                    actor = idle.pop()
                    encoding[actor.encode.remote(ref)] = (item, actor)
                ready, _ = ray.wait([*decoding, *encoding], num_returns=1)
                for ref in ready:
                    if ref in decoding:
                        decoded.append((ref, decoding.pop(ref)))
                        continue
                    (entry, fp), actor = encoding.pop(ref)
                    try:
                        got: Any = ray.get(ref)
                    except ray.exceptions.RayActorError as exc:  # dead past its restarts: the next file gets a new one
                        got = exc
                        self._actors.remove(actor)
                        actor = self._new_actor()
                        self._actors.append(actor)
                    except ray.exceptions.RayError as exc:  # a decode task's worker died past its retries
                        got = exc
                    idle.append(actor)
                    yield entry, fp, partial(self._outcome, got, entry.path)
        finally:
            with suppress(Exception):  # Ray may be shut down already (interpreter exit); it then cleans up itself
                for ref in decoding:  # an interrupted run leaves no work behind on the cluster
                    ray.cancel(ref, force=True)
                for actor in self._actors:
                    ray.kill(actor)

    def _outcome(self, got: Any, path: str) -> Embedded:
        if isinstance(got, self._ray.exceptions.RayError):
            raise VideoDecodeError(path, f"Ray worker failed: {_first_line(got)}")
        if isinstance(got, _Failure):
            raise got.error()
        embedded, timings = got
        for stage, seconds in timings.items():
            self._embedder.timings[stage] += seconds
        return embedded
