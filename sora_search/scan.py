"""Find video files under the given paths and decide what changed since the last run.

Videos are recognised by content (container magic bytes) as well as by extension: a camera dump of ``.bin`` files
is indexed, and a ``.mp4`` that holds something else is still attempted so that it is reported, not silently skipped.
Change detection is cheap first: a file whose path, size and mtime match the store is unchanged without reading it.
Only new or touched files get a content fingerprint, which also recognises moved and renamed files.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .containers import GIF_MAGIC, HEAD_BYTES, animated_gif, content_kind, sniff_video
from .types import FailedFile

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({
    ".3g2", ".3gp", ".asf", ".avi", ".divx", ".dv", ".f4v", ".flv", ".h264", ".hevc", ".m1v", ".m2t", ".m2ts",
    ".m2v", ".m4v", ".mj2", ".mjpeg", ".mkv", ".mov", ".mp4", ".mpe", ".mpeg", ".mpg", ".mts", ".mxf", ".nut",
    ".ogv", ".qt", ".rm", ".rmvb", ".ts", ".vob", ".webm", ".wmv", ".y4m",
})
_SPECIAL_FILES = {stat.S_IFIFO: "named pipe", stat.S_IFSOCK: "socket", stat.S_IFCHR: "character device",
                  stat.S_IFBLK: "block device"}
_FINGERPRINT_BLOCK = 256 * 1024
# The kernel's virtual file systems: files there are not media, and some never end when read.
VIRTUAL_FILE_SYSTEMS = ("/proc", "/sys", "/dev")


@dataclass(frozen=True)
class FileEntry:
    """A candidate file: absolute path (symlinks kept as named), size in bytes, mtime in seconds."""

    path: str
    size: int
    mtime: float


@dataclass(frozen=True)
class WalkResult:
    files: tuple[FileEntry, ...]
    problems: tuple[FailedFile, ...]  # files that look like videos but cannot be read (broken links, permissions)


def _looks_like_video(path: str) -> bool:
    if _named_like_video(path):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
            if head.startswith(GIF_MAGIC):
                f.seek(0)
                return animated_gif(f)
            return sniff_video(head)
    except OSError:
        return False


def _entry(path: str, named: bool = False) -> FileEntry | FailedFile | None:
    """Classify one path: a candidate video, a problem to report, or None (not a video). A file ``named`` by the
    caller (not found in a folder) is never passed over in silence: what cannot be indexed is a problem."""
    report = named or _named_like_video(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return FailedFile(path, "broken symbolic link") if report else None
        return None
    except OSError as exc:  # symlink loop, permission denied on a parent, name too long...
        reason = "symbolic link loop" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
        return FailedFile(path, reason) if report else None
    if not stat.S_ISREG(st.st_mode):
        # A pipe or device named like a video is reported, never opened: reading a pipe can block forever.
        kind = _SPECIAL_FILES.get(stat.S_IFMT(st.st_mode))
        return FailedFile(path, f"not a regular file ({kind})") if kind and report else None
    if not os.access(path, os.R_OK):
        return FailedFile(path, "permission denied (file is not readable)") if report else None
    if not _looks_like_video(path):
        return FailedFile(path, _not_video(path)) if named else None
    return FileEntry(path, st.st_size, st.st_mtime)


def _not_video(path: str) -> str:
    """Why a named file is not indexed: "not a video", with what it is where its first bytes tell."""
    try:
        with open(path, "rb") as f:
            kind = content_kind(f.read(HEAD_BYTES))
    except OSError:
        kind = None
    return f"not a video ({kind})" if kind else "not a video"


def _named_like_video(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def walk(paths: Sequence[str | Path], *, exclude: Iterable[str | Path] = (), follow_links: bool = True) -> WalkResult:
    """Recursively list candidate video files under ``paths`` (files or directories), in sorted order.

    Directory symlinks are not followed (no loops). File symlinks are followed and keep their own name; with
    ``follow_links=False`` a link whose target lies outside every one of ``paths`` is left out. Hidden directories
    and the kernel's virtual file systems (``/proc``, ``/sys``, ``/dev``) are skipped. ``exclude`` names directories
    never to descend into (the index itself). A file named in ``paths`` itself is never passed over: one that is not
    a video is among the problems ("not a video (text file)").

    Raises:
        FileNotFoundError: a given path does not exist.
    """
    excluded = {os.path.abspath(p) for p in exclude} | set(VIRTUAL_FILE_SYSTEMS)
    roots = [os.path.realpath(p) for p in paths]
    files: dict[str, FileEntry] = {}
    problems: dict[str, FailedFile] = {}

    def consider(path: str, named: bool = False) -> None:
        if not follow_links and os.path.islink(path) and not _inside(os.path.realpath(path), roots):
            logger.info("not following %s: its target is outside the folders indexed", path)
            return
        found = _entry(path, named)
        if isinstance(found, FileEntry):
            files[path] = found
        elif isinstance(found, FailedFile):
            problems[path] = found

    for root in paths:
        root_abs = os.path.abspath(root)
        if not os.path.lexists(root_abs):
            raise FileNotFoundError(root_abs)
        if not os.path.isdir(root_abs):
            consider(root_abs, named=True)
            continue
        for dirpath, dirnames, filenames in os.walk(root_abs, followlinks=False, onerror=_log_walk_error):
            dirnames[:] = sorted(d for d in dirnames
                                 if not d.startswith(".") and os.path.join(dirpath, d) not in excluded)
            for name in filenames:
                consider(os.path.join(dirpath, name))
            for name in dirnames:
                full = os.path.join(dirpath, name)
                if os.path.islink(full):  # os.walk lists directory links in dirnames but won't enter them
                    consider(full)
    return WalkResult(tuple(files[p] for p in sorted(files)), tuple(problems[p] for p in sorted(problems)))


def _inside(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _log_walk_error(exc: OSError) -> None:
    logger.warning("cannot list %s: %s", exc.filename, exc.strerror)


def fingerprint(path: str | Path, size: int | None = None) -> str:
    """A content fingerprint: BLAKE2b over the size and three 256 KiB blocks (start, middle, end).

    Cheap on multi-GB files, and any re-encode, truncation or append changes it. Raises OSError if unreadable.
    """
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        if size is None:
            size = os.fstat(f.fileno()).st_size
        h.update(size.to_bytes(8, "little"))
        for offset in sorted({0, max(0, size // 2 - _FINGERPRINT_BLOCK // 2), max(0, size - _FINGERPRINT_BLOCK)}):
            f.seek(offset)
            h.update(f.read(_FINGERPRINT_BLOCK))
    return "b2:" + h.hexdigest()


class KnownVideo(Protocol):
    """What the planner needs to know about a stored video (the store's frozen VideoRecord satisfies it)."""

    @property
    def id(self) -> int: ...
    @property
    def path(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def mtime(self) -> float: ...
    @property
    def fingerprint(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def error(self) -> str | None: ...


@dataclass
class Plan:
    """What an index run has to do. Lists hold (entry, stored record) pairs where a record exists."""

    new: list[tuple[FileEntry, str]] = field(default_factory=list)                  # (entry, fingerprint)
    changed: list[tuple[FileEntry, str, KnownVideo]] = field(default_factory=list)  # content differs: re-encode
    touched: list[tuple[FileEntry, KnownVideo]] = field(default_factory=list)       # same content, new stat
    moved: list[tuple[FileEntry, KnownVideo]] = field(default_factory=list)         # same content, new path
    unchanged: list[KnownVideo] = field(default_factory=list)
    failed_before: list[KnownVideo] = field(default_factory=list)                    # unchanged and failed last time
    removed: list[KnownVideo] = field(default_factory=list)
    problems: list[FailedFile] = field(default_factory=list)

    @property
    def to_encode(self) -> list[tuple[FileEntry, str]]:
        return self.new + [(entry, fp) for entry, fp, _ in self.changed]


def plan(found: WalkResult, known: Sequence[KnownVideo], roots: Sequence[str], *,
         retry_failed: bool = False, reencode: Collection[int] = ()) -> Plan:
    """Compare the files found with what the store knows.

    Args:
        found: the result of :func:`walk` over ``roots``.
        known: every stored video. Those at or under a root are candidates for removal; any of them can be the
            origin of a moved file.
        roots: the absolute paths that were walked.
        retry_failed: re-attempt files that failed before even if they have not changed.
        reencode: ids of indexed videos to encode again even if their file has not changed (listed as changed).
    """
    by_id = sorted({v.id: v for v in known}.values(), key=lambda v: v.id)
    known_under_roots = under_roots(by_id, roots)
    known_by_fingerprint: dict[str, list[KnownVideo]] = {}
    for v in by_id:
        known_by_fingerprint.setdefault(v.fingerprint, []).append(v)
    result = Plan(problems=list(found.problems))
    by_path = {v.path: v for v in known_under_roots}
    seen: set[str] = set()
    claimed: set[int] = set()
    for entry in found.files:
        seen.add(entry.path)
        stored = by_path.get(entry.path)
        if stored is not None and stored.size == entry.size and stored.mtime == entry.mtime:
            if stored.status == "failed" and not retry_failed:
                result.failed_before.append(stored)
            elif stored.status == "failed":
                result.changed.append((entry, _safe_fingerprint(entry, result), stored))
            elif stored.id in reencode:
                result.changed.append((entry, stored.fingerprint, stored))
            else:
                result.unchanged.append(stored)
            continue
        fp = _safe_fingerprint(entry, result)
        if not fp:
            continue
        if stored is not None:
            if stored.fingerprint == fp and stored.status == "indexed":
                result.touched.append((entry, stored))
            else:
                result.changed.append((entry, fp, stored))
            continue
        origin = next((v for v in known_by_fingerprint.get(fp, ())
                       if v.status == "indexed" and v.id not in claimed and not os.path.exists(v.path)), None)
        if origin is not None:
            claimed.add(origin.id)
            result.moved.append((entry, origin))
        else:
            result.new.append((entry, fp))
    result.changed = [(e, fp, k) for e, fp, k in result.changed if fp]
    result.removed = [v for v in known_under_roots
                      if v.path not in seen and v.id not in claimed and not os.path.exists(v.path)]
    return result


def under_roots(known: Iterable[KnownVideo], roots: Sequence[str]) -> list[KnownVideo]:
    """The videos whose path is one of ``roots`` (absolute paths) or lies inside one, once each, in id order.

    The prefix is exact and case-sensitive and ends in a separator, so ``/a/b`` holds ``/a/b/x.mp4`` but not
    ``/a/bc/x.mp4``.
    """
    exact = set(roots)
    prefixes = tuple(r if r.endswith(("/", os.sep)) else r + os.sep for r in roots)
    inside = {v.id: v for v in known if v.path in exact or v.path.startswith(prefixes)}
    return [inside[i] for i in sorted(inside)]


def _safe_fingerprint(entry: FileEntry, result: Plan) -> str:
    try:
        return fingerprint(entry.path, entry.size)
    except OSError as exc:
        result.problems.append(FailedFile(entry.path, f"cannot read: {exc.strerror or exc}"))
        return ""


