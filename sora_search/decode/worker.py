"""Decoding in a persistent child process, so a decoder that hangs or crashes costs one file, not the run.

decord and FFmpeg run native code that holds the GIL; a file that sends one into an endless loop cannot be
interrupted from Python, and a segfault takes the process with it. :class:`DecodeWorker` keeps one child
(a fresh interpreter running :mod:`sora_search.decode._child`, so it is safe to start after torch or other
threads are loaded, and, unlike multiprocessing's "spawn", it never re-imports the caller's main module: a script
without an ``if __name__ == "__main__":`` guard can use the library) and reuses
it for every file. The parent waits at most ``timeout_s`` for each message; on silence it SIGKILLs the child and
raises :class:`~sora_search.errors.DecodeTimeout`, and the next :meth:`DecodeWorker.open` starts a fresh child.

Protocol over one duplex pipe, every message tagged with the request id so stale ones are dropped:

    parent -> child   ("open", rid, path, backend, fps, size, chunk_size, hold_bytes, threads, every)
                      | ("cancel", rid)
                      | ("forget",) | ("stop",)
    child -> parent   ("info", rid, VideoInfo, held) once, before the first batch
                      ("batch", rid, frames, timestamps_s)      frames (n, size, size, 3) uint8
                      ("backend", rid, name)                    auto mode switched backend midway
                      ("end", rid) | ("error", rid, kind, path, reason, extra)

The child pushes batches as fast as the pipe takes them, which overlaps decoding with the caller's work; a
cancel is read between batches, and the parent drains until the matching "end".

In ``"auto"`` mode the child tries the backends in order: if one fails before its first frame it moves to the
next; if one fails midway the next one resumes after the last timestamp already sent.

An open with ``hold_bytes`` asks the child to keep the file's sampled pictures as decoded (up to that many bytes,
where the backend can: :meth:`~sora_search.decode.base.VideoReader.held`); the next open of the same, unchanged
file at the same rate, also with ``hold_bytes``, is then served from them at its own size without decoding
(``held`` True in its info). Any other open, or "forget", lets them go. An open served from held pictures with
``every`` > 1 gets only every ``every``-th of them, and only those are converted (a sample); a decode sends every
frame, which costs as much to make.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any, Generator, Iterator

import numpy as np

from sora_search.decode.base import DEFAULT_SIZE, Held, check_sample_args, file_stamp
from sora_search.errors import DecodeTimeout, NoFramesError, VideoDecodeError, VideoError, debug_wanted
from sora_search.types import FrameBatch, VideoInfo

logger = logging.getLogger(__name__)

# What the child runs: the import path without the working directory that ``-c`` puts first, then the entry point.
# Not ``python -m``: that puts the working directory first, so a folder there named ``sora_search`` (another
# checkout) would be imported in place of the parent's.
CHILD_BOOT = "import sys; sys.path[:] = [p for p in sys.path if p]; from sora_search.decode._child import main; main()"
# A stopping child gets this long to exit on its own before it is killed.
_STOP_GRACE_S = 2.0
# Starting the child imports Python and numpy; on a loaded machine that can take seconds, which must not count
# against a per-file decode timeout of a few seconds.
_STARTUP_TIMEOUT_S = 60.0


def _child_stderr_wanted() -> bool:
    """decord and FFmpeg print native log lines (seeks, damaged packets) that would land under the progress bar;
    every failure reaches the parent through the protocol anyway, so the child's stderr is only shown when
    debugging (SORA_SEARCH_DEBUG=1 or debug logging for this module)."""
    return debug_wanted() or logger.isEnabledFor(logging.DEBUG)


class DecodeWorker:
    """A reusable decoding child process.

    Args:
        backend: ``"auto"``, a registered backend name, or ``"module:Class"`` naming a
            :class:`~sora_search.decode.VideoReader` subclass importable in the child (how plugins and tests
            inject a reader).
        timeout_s: longest wait for any single message (the first batch, each next batch) before the child is
            killed and :class:`~sora_search.errors.DecodeTimeout` is raised.
        threads: decoder threads per file (:attr:`~sora_search.decode.VideoReader.threads`; 0: the backend picks),
            also settable between files as the ``threads`` attribute.

    Example::

        with DecodeWorker(timeout_s=60) as worker:
            for path in paths:
                with worker.open(path, fps=1.0) as video:
                    for batch in video:
                        ...
    """

    def __init__(self, backend: str = "auto", timeout_s: float = 60.0, threads: int = 0) -> None:
        from sora_search.decode import resolve_backend

        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if backend != "auto" and ":" not in backend:
            resolve_backend(backend)  # unknown names fail here, in the caller, not in the child
        self.backend = backend
        self.timeout_s = float(timeout_s)
        self.threads = int(threads)
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._rid = 0
        self._active: DecodedVideo | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def _ensure_child(self, path: str) -> Connection:
        if self._proc is not None and self._proc.poll() is None and self._conn is not None:
            return self._conn
        self._discard_child()
        parent_sock, child_sock = socket.socketpair()
        # The child sees the parent's import path (as multiprocessing's spawn would), so "module:Class" readers
        # importable here are importable there.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        with child_sock:  # our copy of the child's end must close, or a dead child would never read as EOF
            proc = subprocess.Popen([sys.executable, "-c", CHILD_BOOT, str(child_sock.fileno())],
                                    pass_fds=(child_sock.fileno(),), stdin=subprocess.DEVNULL, env=env,
                                    stderr=None if _child_stderr_wanted() else subprocess.DEVNULL)
        parent_conn = Connection(parent_sock.detach())
        self._proc, self._conn = proc, parent_conn
        try:
            ready = parent_conn.poll(max(self.timeout_s, _STARTUP_TIMEOUT_S)) and parent_conn.recv() == ("ready",)
        except (EOFError, OSError):
            raise self._died(path) from None
        if not ready:
            self._discard_child()
            raise VideoDecodeError(path, "decoder process did not start")
        logger.debug("started decode worker pid %s", proc.pid)
        return parent_conn

    def _discard_child(self) -> None:
        """Kill the child (if any) without waiting for it to cooperate."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            conn.close()
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                logger.warning("decode worker pid %s did not exit after SIGKILL", proc.pid)
            logger.debug("decode worker pid %s stopped (exit code %s)", proc.pid, proc.returncode)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def busy(self) -> bool:
        """A file opened from this worker is still being read."""
        return self._active is not None

    def close(self) -> None:
        """Stop the child process. Safe to call more than once; the worker cannot be reopened after."""
        if self._active is not None:
            self._active._abandon()
        self._closed = True
        proc, conn = self._proc, self._conn
        if proc is not None and conn is not None and proc.poll() is None:
            try:
                conn.send(("stop",))
                proc.wait(_STOP_GRACE_S)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        self._discard_child()

    def __enter__(self) -> DecodeWorker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._discard_child()
        except Exception:
            pass

    # -- requests ----------------------------------------------------------------------------------------------

    def open(self, path: str | Path, *, fps: float = 1.0, size: int = DEFAULT_SIZE, chunk_size: int = 32,
             hold_bytes: int = 0, every: int = 1) -> DecodedVideo:
        """Start decoding ``path`` in the child; returns once its first batch is ready.

        Args:
            path: video file.
            fps: sampling rate, frames per second of video time.
            size: output side, frames are (size, size, 3) uint8 RGB.
            chunk_size: most frames per batch.
            hold_bytes: keep up to this many bytes of the sampled pictures in the child, as decoded, so that the
                next open of the same file with ``hold_bytes`` (at any size) needs no decode; 0 keeps nothing
                and lets go of what an earlier open kept.
            every: where the frames come from held pictures (``held`` in the answer), send only the first and
                each ``every``-th after it, the others not converted (what is held stays whole); a decode sends
                every frame.

        Returns:
            A :class:`DecodedVideo` to iterate for :class:`~sora_search.types.FrameBatch` chunks. Opening another
            file abandons it.

        Raises:
            DecodeTimeout: the child sent nothing for ``timeout_s`` (it was killed).
            VideoDecodeError: no backend could decode the file, or the child died.
            NoFramesError: the file has no frame to sample.
            ValueError: bad arguments, or a ``"module:Class"`` backend that cannot be loaded.
        """
        if self._closed:
            raise RuntimeError("DecodeWorker is closed")
        check_sample_args(fps, size, chunk_size)
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        if self._active is not None:
            self._active.close()
        path = str(path)
        conn = self._ensure_child(path)
        self._rid += 1
        rid = self._rid
        try:
            conn.send(("open", rid, path, self.backend, float(fps), int(size), int(chunk_size), int(hold_bytes),
                       self.threads, int(every)))
        except (OSError, ValueError):
            # The child died between requests; its exit code explains more than the broken pipe.
            raise self._died(path) from None
        video = DecodedVideo(self, rid, path)
        msg = video._recv()
        if msg[0] != "info":
            raise VideoDecodeError(path, f"decoder protocol error: expected info, got {msg[0]!r}")
        video.info, video.held = msg[2], msg[3]
        video.backend = video.info.backend
        logger.debug("decoding %s with %s", path, video.backend)
        self._active = video
        return video

    def forget(self) -> None:
        """Let go of the pictures the child holds (see ``hold_bytes``); nothing to do without a child."""
        if self._active is not None:
            self._active._abandon()
        if self._conn is not None:
            try:
                self._conn.send(("forget",))
            except (OSError, ValueError):
                self._discard_child()  # a dead child holds nothing; the next open starts another

    def _died(self, path: str) -> VideoDecodeError:
        proc = self._proc
        code = None
        if proc is not None:
            try:
                code = proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._discard_child()
        return VideoDecodeError(path, f"decoder process died (exit code {code})")

    def _timed_out(self, path: str) -> DecodeTimeout:
        logger.debug("decoder silent for %g s on %s; killing it", self.timeout_s, path)
        self._discard_child()
        return DecodeTimeout(path, self.timeout_s)


class DecodedVideo:
    """One file being decoded by a :class:`DecodeWorker`: iterate it for batches, close it when done.

    Attributes:
        info: what the decoder learned when it opened the file.
        backend: the backend producing frames (changes if ``"auto"`` fell back midway).
        held: the frames come from pictures the child held from the previous open (no decode).
    """

    info: VideoInfo
    backend: str
    held: bool

    def __init__(self, worker: DecodeWorker, rid: int, path: str) -> None:
        self._worker = worker
        self._rid = rid
        self.path = path
        self._finished = False

    def _recv(self) -> tuple[Any, ...]:
        """Next message for this request; raises the typed error the child reported or the parent detected."""
        w = self._worker
        while True:
            conn = w._conn
            if conn is None:
                self._finished = True
                raise VideoDecodeError(self.path, "decoder process is gone")
            try:
                ready = conn.poll(w.timeout_s)
            except (OSError, ValueError):
                ready = True  # let recv() report the broken pipe
            if not ready:
                self._finished = True
                raise w._timed_out(self.path)
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                self._finished = True
                raise w._died(self.path) from None
            if len(msg) < 2 or msg[1] != self._rid:
                continue  # left over from an earlier, abandoned request
            if msg[0] == "end":
                self._finished = True
            elif msg[0] == "error":
                self._finished = True
                raise _rebuild_error(*msg[2:])
            return msg

    def __iter__(self) -> Iterator[FrameBatch]:
        """Yields FrameBatch chunks: frames (n, size, size, 3) uint8 RGB, timestamps_s (n,) float64."""
        try:
            while not self._finished:
                msg = self._recv()
                kind = msg[0]
                if kind == "batch":
                    yield FrameBatch(frames=msg[2], timestamps_s=msg[3])
                elif kind == "backend":
                    logger.debug("decoding of %s continues with %s", self.path, msg[2])
                    self.backend = msg[2]
        finally:
            if self._worker._active is self and self._finished:
                self._worker._active = None

    def close(self) -> None:
        """Stop this stream early if it is not exhausted; the worker stays usable. Idempotent."""
        if self._finished:
            if self._worker._active is self:
                self._worker._active = None
            return
        self._abandon()

    def _abandon(self) -> None:
        w = self._worker
        if w._active is self:
            w._active = None
        if self._finished:
            return
        conn = w._conn
        try:
            if conn is None:
                raise OSError("no child")
            conn.send(("cancel", self._rid))
            while not self._finished:
                self._recv()
        except Exception:
            # A child that will not acknowledge the cancel (hung, dead) is replaced on the next open().
            self._finished = True
            w._discard_child()

    def __enter__(self) -> DecodedVideo:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _rebuild_error(kind: str, path: str, reason: str, extra: Any) -> Exception:
    if kind == "DecodeTimeout":
        return DecodeTimeout(path, float(extra))
    if kind == "NoFramesError":
        return NoFramesError(path, reason)
    if kind == "ValueError":
        return ValueError(reason)
    return VideoDecodeError(path, reason)


# -- child side ------------------------------------------------------------------------------------------------


def _child_main(conn: Connection) -> None:
    """Serve open requests until told to stop or the parent goes away."""
    # Ctrl-C goes to the whole process group; the parent decides when this child stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import sora_search.decode  # noqa: F401  (pay the imports before the first timed request)

    conn.send(("ready",))
    held: list[_HeldFile] = []  # at most one: the pictures of the last file opened with hold_bytes
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] == "stop":
            return
        if msg[0] == "forget":
            held.clear()
        if msg[0] == "open":
            if not _serve(conn, held, *msg[1:]):
                return


@dataclass(frozen=True, eq=False)
class _HeldFile:
    key: tuple[object, ...]  # the file's stamp, fps and the backend asked for
    info: VideoInfo
    pictures: Held


def _serve(conn: Connection, held: list[_HeldFile], rid: int, path: str, backend: str, fps: float, size: int,
           chunk_size: int, hold_bytes: int, threads: int, every: int) -> bool:
    """Stream one file to the parent, from ``held`` pictures where they are the file's (``hold_bytes``; every
    ``every``-th), else decoded (and held when asked). Returns False if the parent asked the child to stop."""
    from sora_search.decode import resolve_backend

    if backend != "auto":
        try:
            resolve_backend(backend)
        except ValueError as exc:
            conn.send(("error", rid, "ValueError", path, str(exc), None))
            return True
    stamp = file_stamp(path) if hold_bytes else None
    key = None if stamp is None else (*stamp, fps, backend)
    found = held[0] if held and key is not None and held[0].key == key else None
    if found is not None and found.pictures.nbytes > hold_bytes:
        found = None  # more than this open may hold
    held.clear()
    kept: list[tuple[VideoInfo, Held]] = []
    if found is not None:
        events = _held_events(found, size, chunk_size, every)
        kept.append((found.info, found.pictures))  # still the file's, for a third open
    else:
        events = decode_events(path, backend, fps, size, chunk_size, hold_bytes=hold_bytes, held=kept,
                               threads=threads)
    try:
        for event in events:
            conn.send((event[0], rid, *event[1:]))
            while conn.poll():
                req = conn.recv()
                if req[0] == "stop":
                    return False
                if req[0] == "cancel" and req[1] == rid:
                    conn.send(("end", rid))
                    return True
        conn.send(("end", rid))
        if key is not None and kept:
            held.append(_HeldFile(key, *kept[0]))
    except VideoError as exc:
        extra = exc.timeout_s if isinstance(exc, DecodeTimeout) else None
        conn.send(("error", rid, type(exc).__name__ if isinstance(exc, (DecodeTimeout, NoFramesError))
                   else "VideoDecodeError", exc.path, exc.reason, extra))
    except Exception as exc:  # a bug in a reader must cost one file, not the worker
        conn.send(("error", rid, "VideoDecodeError", path, f"decoder failed: {type(exc).__name__}: {exc}", None))
    finally:
        events.close()
    return True


def _held_events(found: _HeldFile, size: int, chunk_size: int,
                 every: int) -> Generator[tuple[Any, ...], None, None]:
    """A held file's pictures (every ``every``-th) as the protocol events :func:`decode_events` yields."""
    yield ("info", found.info, True)
    for batch in found.pictures.sample(size, chunk_size, every):
        yield ("batch", np.ascontiguousarray(batch.frames), batch.timestamps_s)


def decode_events(path: str, backend: str, fps: float, size: int, chunk_size: int, *, hold_bytes: int = 0,
                  held: list[tuple[VideoInfo, Held]] | None = None,
                  threads: int = 0) -> Generator[tuple[Any, ...], None, None]:
    """Decode ``path`` as a stream of protocol events, with the ``"auto"`` fallback rules.

    Yields ``("info", VideoInfo, False)`` just before the first batch, then ``("batch", frames, timestamps_s)``
    with frames (n, size, size, 3) uint8 and timestamps_s (n,) float64, and ``("backend", name)`` when a fallback
    backend takes over midway. Raises the first backend's error if every backend fails before a frame, or the
    last one's if decoding fails midway with no backend left. With ``hold_bytes``, a backend that sampled the
    whole file alone appends its info and :meth:`~sora_search.decode.base.VideoReader.held` pictures to ``held``.
    Each reader decodes with ``threads`` threads (:attr:`~sora_search.decode.base.VideoReader.threads`).
    """
    from sora_search.decode import available_backends, open_video

    names = available_backends() if backend == "auto" else [backend]
    if not names:
        raise ValueError("no video backend is installed; pip install decord2 or av")
    first_error: VideoError | None = None
    last_t: float | None = None
    current: str | None = None
    for name in names:
        try:
            alone = last_t is None  # this backend samples the file from its start
            with open_video(path, name) as reader:
                reader.hold_bytes, reader.threads = hold_bytes, threads
                for batch in reader.sample(fps=fps, size=size, chunk_size=chunk_size):
                    frames, ts = batch.frames, batch.timestamps_s
                    if last_t is not None:
                        # A fallback backend re-samples from the start; skip what the parent already has.
                        keep = ts > last_t + 1e-6
                        if not keep.any():
                            continue
                        frames, ts = frames[keep], ts[keep]
                    if current is None:
                        yield ("info", reader.info, False)
                    elif current != reader.backend:
                        yield ("backend", reader.backend)
                    current = reader.backend
                    yield ("batch", np.ascontiguousarray(frames), ts)
                    last_t = float(ts[-1])
            if current is None:
                raise NoFramesError(path, f"no decodable frame ({name} yielded none)")
            pictures = reader.held() if alone else None  # None too where the reader cannot hold
            if held is not None and pictures is not None:
                held.append((reader.info, pictures))
            return
        except VideoError as exc:
            if backend != "auto" or name == names[-1]:
                if last_t is None and first_error is not None:
                    raise first_error from exc
                raise
            first_error = first_error or exc
    if first_error is not None:
        raise first_error
