"""Baseline copy-detection systems for the accuracy benchmark: what people use today instead of sora-search.

Installation (once per machine; idempotent; Debian, root or sudo)::

    bash benchmarks/accuracy/install_baselines.sh            # MAIN_VENV=.venv BENCH_VENV=benchmarks/results/bench-venv

It apt-installs ffmpeg and the libav*-dev headers vpdq builds against, pip-installs ``vpdq`` and ``perception``
into the engine's venv under constraints that pin numpy, torch, faiss-cpu, av, SQLAlchemy and Pillow at their
installed versions (the install fails rather than move them), and puts ``videohash`` in a venv of its own
(``BENCH_VENV``, ``SORA_BENCH_VENV`` here; by default ``benchmarks/results/bench-venv`` in the repository) with
Pillow 9.5: videohash 3.0.1 calls ``PIL.Image.ANTIALIAS``, removed in Pillow 10, so it runs there as a subprocess
(``videohash_worker.py``) that prints JSON. A baseline whose install failed is left out of
:func:`available_baselines`, and :func:`unavailable_baselines` says why.

The systems and their scores (hashes are kept in memory only; a file a baseline cannot hash is logged and skipped
as a reference, or answered with ``[]`` as a query):

``videohash`` (PyPI videohash 3.0.1)
    One 64-bit hash per video: a wavelet hash of a collage of 1 frame/s, XORed with dominant-colour bits of its
    tiles. ``score = 1 - hamming / 64``. ``threshold`` is its own ``is_similar`` rule, hamming <= ceil(15% of 64)
    = 10 bits, so 54/64. No spans.

``vpdq`` (PyPI vpdq 0.2.5, Meta's vPDQ)
    A PDQ hash (256 bits), quality (0-100) and timestamp per frame at 1 frame/s. Matching follows Meta's brute-force
    matcher (vpdq README, python-threatexchange ``match_VPDQ_hash_brute``): frames of quality < 50 are dropped,
    identical hashes counted once, and a frame matches when some frame of the other video is within PDQ hamming
    distance 31. That gives two shares: of the query's frames found in the reference (``q``), and of the
    reference's frames found in the query (``c``). ``score = q``: a copy in this benchmark is a part of a
    reference, so the reference share (Meta's own decision, ``c >= 80%``, for whole known videos) would rank a
    10 s excerpt of a 5 min reference as a non-match; ``c`` only orders ties within a query. ``threshold`` is
    None: Meta's rule is set on ``c``, not on this score. Spans: first to last matched query frame, and first to
    last reference frame matched by any query frame, the end extended by the 1 s the last hash stands for.
    PDQ is not crop-invariant: on testsrc2, a 5% crop or a 0.5 s shift of the 1 frame/s grid already leaves no
    frame within 31 bits.

``tmk-l1`` (PyPI perception 0.9.3, ``perception.hashers.TMKL1``)
    TMK level 1: the L2-normalised mean of per-frame PHashF vectors (255-d, 15 frames/s); ``score`` = cosine.
``tmk-l2`` (same package, ``TMKL2``)
    TMK level 2: temporal-match-kernel Fourier features (4 periods x 32 coefficients x 255); ``score`` = the
    kernel's normalised score at the best time offset, searched in 1 s steps over +-max(query, reference duration)
    (perception's own ``compute_distance`` looks at offset 0 only). perception feeds timestamps in seconds where
    Meta's TMK uses frame numbers at 15 frames/s, so its periods (2731-14653) are 15x longer in time than
    Meta's and level 2 stays close to level 1 on clips of a few minutes.
    Both TMK ``threshold``s are Meta's 0.7, validated for TMK+PDQF frame features rather than PHashF. No spans.

Hashing cost on 2 CPU cores under other load, seconds per video-second: videohash 0.08-0.34 (a fixed ~2.5 s of 13
ffmpeg runs a video, then 1 frame/s), vpdq 0.02-0.03, tmk-l1 0.03-0.06, tmk-l2 0.04-0.07.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from systems import Prediction, System, reference_name  # noqa: E402

logger = logging.getLogger(__name__)

REPO_ROOT = HERE.parents[1]
BENCH_VENV = Path(os.environ.get("SORA_BENCH_VENV") or REPO_ROOT / "benchmarks" / "results" / "bench-venv")
"""The venv ``install_baselines.sh`` makes for baselines that cannot share the engine's (videohash):
``$SORA_BENCH_VENV``, else ``benchmarks/results/bench-venv`` under the repository root (which git ignores)."""
VIDEOHASH_WORKER = HERE / "videohash_worker.py"
TOP_K = 20
"""Predictions per query: the best ``TOP_K`` references, as the runner asks of every system."""


def _ranked(scored: list[tuple[Prediction, float]], top_k: int) -> list[Prediction]:
    """Best first by score, then by the tie-break key, then by name, so equal scores order deterministically."""
    scored.sort(key=lambda ps: (-ps[0].score, -ps[1], ps[0].reference))
    return [p for p, _ in scored[:top_k]]


H = TypeVar("H")


class _HashBaseline(ABC, Generic[H]):
    """A baseline that hashes each reference once and compares a query's hash with every reference's.

    Subclasses implement :meth:`hash` (None, logged, for a file it cannot hash) and :meth:`compare`; this class keeps
    the reference hashes in memory and ranks the predictions.
    """

    name: str
    threshold: float | None

    def __init__(self, top_k: int) -> None:
        self._top_k = top_k
        self._refs: dict[str, H] = {}

    @abstractmethod
    def hash(self, path: Path) -> H | None: ...

    @abstractmethod
    def compare(self, reference: str, query: H, ref: H) -> tuple[Prediction, float]:
        """The prediction for one reference and a tie-break key (higher ranks first among equal scores)."""

    def _hash_all(self, refs: list[Path]) -> Iterator[H | None]:
        return map(self.hash, refs)

    def index(self, refs: list[Path]) -> None:
        for ref, h in zip(refs, self._hash_all(refs)):
            if h is not None:
                self._refs[reference_name(ref)] = h

    def query(self, path: Path) -> list[Prediction]:
        q = self.hash(path)
        if q is None:
            return []
        return _ranked([self.compare(name, q, r) for name, r in self._refs.items()], self._top_k)

    def close(self) -> None:
        self._refs.clear()


def _install_note(name: str) -> str:
    """The failure ``install_baselines.sh`` recorded for ``name``, if any, to append to a missing-baseline reason."""
    log = BENCH_VENV / "install-failures" / f"{name}.log"
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return " (run benchmarks/accuracy/install_baselines.sh)"
    return f" (install_baselines.sh: {' | '.join(lines[-3:])})" if lines else ""


# ---------------------------------------------------------------------------------------------------- videohash

VIDEOHASH_BITS = 64


class VideoHashSystem(_HashBaseline[np.ndarray]):
    """``videohash``: one 64-bit hash per video, computed by the worker in :data:`BENCH_VENV`."""

    name = "videohash"
    threshold: float | None = 1 - math.ceil(0.15 * VIDEOHASH_BITS) / VIDEOHASH_BITS

    def __init__(self, python: Path | None = None, *, top_k: int = TOP_K, timeout_s: float = 600.0,
                 workers: int = 1) -> None:
        super().__init__(top_k)
        self._python = python or BENCH_VENV / "bin" / "python"
        self._timeout_s = timeout_s
        self._workers = workers

    def hash(self, path: Path) -> np.ndarray | None:
        """The video's hash as (64,) bool, or None (logged) when videohash cannot hash it."""
        # One worker per file: a file that hangs or crashes the worker costs only itself.
        try:
            proc = subprocess.run([str(self._python), str(VIDEOHASH_WORKER), str(path)], capture_output=True,
                                  text=True, timeout=self._timeout_s, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            logger.warning("videohash: %s not hashed: no answer in %.0f s", path, self._timeout_s)
            return None
        lines = proc.stdout.strip().splitlines()
        try:
            out: dict[str, Any] = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            logger.warning("videohash: %s not hashed: worker exit %d: %s", path, proc.returncode,
                           proc.stderr.strip()[-500:])
            return None
        if "error" in out:
            logger.warning("videohash: %s not hashed: %s", path, out["error"])
            return None
        bits = str(out["hash"]).removeprefix("0b")
        if len(bits) != VIDEOHASH_BITS or set(bits) - {"0", "1"}:
            logger.warning("videohash: %s not hashed: unexpected hash %r", path, out["hash"])
            return None
        return np.frombuffer(bits.encode(), dtype=np.uint8) == ord("1")

    def _hash_all(self, refs: list[Path]) -> Iterator[np.ndarray | None]:
        """Hash the references, ``workers`` worker processes at a time (1 by default, for timings comparable with
        the single-process baselines; videohash spends most of its wall time waiting on 13 ffmpeg runs a video)."""
        with ThreadPoolExecutor(max_workers=max(1, self._workers)) as pool:
            yield from pool.map(self.hash, refs)

    def compare(self, reference: str, query: np.ndarray, ref: np.ndarray) -> tuple[Prediction, float]:
        return Prediction(reference, 1.0 - int(np.count_nonzero(query != ref)) / VIDEOHASH_BITS, None, None), 0.0


# --------------------------------------------------------------------------------------------------------- vPDQ

VPDQ_DISTANCE = 31
"""PDQ hamming distance at or under which two frames match (Meta's VPDQ_CONFIDENT_DISTANCE_THRESHOLD)."""
VPDQ_QUALITY = 50
"""Frames of lower PDQ quality are not compared (Meta's VPDQ_CONFIDENT_QUALITY_THRESHOLD)."""
VPDQ_SECONDS_PER_HASH = 1.0


@dataclass(frozen=True)
class VpdqFrames:
    """A video's vPDQ frames that pass the quality filter.

    Attributes:
        hashes: (n, 4) uint64, the 256-bit PDQ hashes.
        timestamps_s: (n,) float64, the frames' times.
        unique: (n,) int64, the index of each frame's hash among the video's distinct hashes (Meta counts each
            distinct hash once).
    """

    hashes: np.ndarray
    timestamps_s: np.ndarray
    unique: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.hashes)
        if self.hashes.shape != (n, 4) or self.hashes.dtype != np.uint64:
            raise ValueError(f"hashes must be (n, 4) uint64, got {self.hashes.shape} {self.hashes.dtype}")
        if self.timestamps_s.shape != (n,) or self.unique.shape != (n,):
            raise ValueError(f"timestamps_s and unique must be ({n},), got {self.timestamps_s.shape} and "
                             f"{self.unique.shape}")

    @classmethod
    def from_features(cls, features: list[Any], quality: int = VPDQ_QUALITY) -> VpdqFrames:
        """From ``vpdq.computeHash`` output (objects with ``hex``, ``quality``, ``timestamp``)."""
        kept = [f for f in features if f.quality >= quality]
        raw = b"".join(bytes.fromhex(f.hex) for f in kept)
        hashes = np.frombuffer(raw, dtype=np.uint64).reshape(len(kept), 4).copy()
        ts = np.array([f.timestamp for f in kept], dtype=np.float64)
        if kept:
            _, unique = np.unique(hashes, axis=0, return_inverse=True)
        else:
            unique = np.zeros(0, dtype=np.int64)
        return cls(hashes, ts, np.asarray(unique, dtype=np.int64).reshape(-1))


def pdq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances between (n, 4) and (m, 4) uint64 PDQ hashes: (n, m) int."""
    out = np.empty((len(a), len(b)), dtype=np.int32)
    for start in range(0, len(a), 256):  # bounds the (rows, m, 4) temporary on long videos
        block = a[start:start + 256, None, :] ^ b[None, :, :]
        out[start:start + 256] = _popcount(block).sum(axis=2)
    return out


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per uint64 element (``np.bitwise_count`` from NumPy 2.0; the engine allows NumPy 1.24)."""
    if hasattr(np, "bitwise_count"):
        return np.asarray(np.bitwise_count(x))
    return np.unpackbits(np.ascontiguousarray(x).view(np.uint8), axis=-1).reshape(*x.shape, 64).sum(axis=-1)


@dataclass(frozen=True)
class VpdqMatch:
    """How two videos' vPDQ frames match: the shares of each found in the other, and the matched spans."""

    query_share: float
    ref_share: float
    query_span: tuple[float, float] | None
    ref_span: tuple[float, float] | None


def vpdq_match(query: VpdqFrames, ref: VpdqFrames, distance: int = VPDQ_DISTANCE,
               seconds_per_hash: float = VPDQ_SECONDS_PER_HASH) -> VpdqMatch:
    """Meta's brute-force vPDQ comparison of two quality-filtered hash lists, with matched spans added."""
    if len(query.hashes) == 0 or len(ref.hashes) == 0:
        return VpdqMatch(0.0, 0.0, None, None)
    close = pdq_distances(query.hashes, ref.hashes) <= distance
    q_hit, r_hit = np.asarray(close.any(axis=1)), np.asarray(close.any(axis=0))

    def share(frames: VpdqFrames, hit: np.ndarray) -> float:
        distinct = np.zeros(int(frames.unique.max()) + 1, dtype=bool)
        distinct[frames.unique[hit]] = True  # a distinct hash matches iff any of its frames does
        return float(distinct.mean())

    def span(frames: VpdqFrames, hit: np.ndarray) -> tuple[float, float] | None:
        if not hit.any():
            return None
        ts = frames.timestamps_s[hit]
        return float(ts.min()), float(ts.max()) + seconds_per_hash

    return VpdqMatch(share(query, q_hit), share(ref, r_hit), span(query, q_hit), span(ref, r_hit))


class VpdqSystem(_HashBaseline[VpdqFrames]):
    """``vpdq``: per-frame PDQ hashes at 1 frame/s, matched as a bag of frames; score = query share matched."""

    name = "vpdq"
    threshold: float | None = None

    def __init__(self, *, top_k: int = TOP_K, seconds_per_hash: float = VPDQ_SECONDS_PER_HASH) -> None:
        super().__init__(top_k)
        self._seconds_per_hash = seconds_per_hash

    def hash(self, path: Path) -> VpdqFrames | None:
        """The video's quality-filtered frames, or None (logged) when vpdq cannot hash it."""
        import vpdq

        try:
            features = vpdq.computeHash(str(path), seconds_per_hash=self._seconds_per_hash)
        except Exception as exc:  # vpdq raises a bare Exception when it cannot decode
            logger.warning("vpdq: %s not hashed: %s: %s", path, type(exc).__name__, exc)
            return None
        frames = VpdqFrames.from_features(features)
        if len(frames.hashes) == 0:
            logger.info("vpdq: %s has no frame of quality >= %d (of %d hashed)", path, VPDQ_QUALITY, len(features))
        return frames

    def compare(self, reference: str, query: VpdqFrames, ref: VpdqFrames) -> tuple[Prediction, float]:
        m = vpdq_match(query, ref, seconds_per_hash=self._seconds_per_hash)
        return Prediction(reference, m.query_share, m.query_span, m.ref_span), m.ref_share


# ---------------------------------------------------------------------------------------------------------- TMK

TMK_THRESHOLD = 0.7


def video_duration_s(path: Path) -> float | None:
    """The container's duration in seconds (PyAV), or None when it does not say."""
    import av

    try:
        with av.open(str(path)) as container:
            if container.duration is not None:
                return float(container.duration) / 1e6
            stream = container.streams.video[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
    except Exception as exc:  # the duration only widens the offset search; hashing reports real read errors
        logger.debug("no duration for %s: %s", path, exc)
    return None


@dataclass(frozen=True)
class TmkHash:
    """A perception TMK vector: (255,) float32 for level 1, (65280,) float32 for level 2, and the duration."""

    vector: np.ndarray
    duration_s: float


class TmkSystem(_HashBaseline[TmkHash]):
    """``tmk-l1`` / ``tmk-l2``: thorn's perception TMK video hashes, one fixed-size vector per video."""

    threshold: float | None = TMK_THRESHOLD

    def __init__(self, level: int, *, top_k: int = TOP_K, offset_step_s: float = 1.0) -> None:
        from perception.hashers import TMKL1, TMKL2

        if level not in (1, 2):
            raise ValueError(f"TMK level must be 1 or 2, got {level}")
        super().__init__(top_k)
        self.level = level
        self.name = f"tmk-l{level}"
        self._hasher: Any = TMKL1() if level == 1 else TMKL2()  # untyped package
        self._offset_step_s = offset_step_s

    def hash(self, path: Path) -> TmkHash | None:
        """The video's TMK vector, or None (logged) when perception cannot read it."""
        try:
            vector = self._hasher.compute(str(path), hash_format="vector")
        except Exception as exc:  # perception raises ValueError/OSError/cv2 errors for unreadable files
            logger.warning("%s: %s not hashed: %s: %s", self.name, path, type(exc).__name__, exc)
            return None
        if vector is None or not np.all(np.isfinite(vector)):
            logger.warning("%s: %s not hashed: no frames read", self.name, path)
            return None
        return TmkHash(np.asarray(vector, dtype=np.float32), video_duration_s(path) or 0.0)

    def score(self, a: TmkHash, b: TmkHash) -> float:
        """Level 1: cosine of the mean frame vectors. Level 2: the TMK score at the best offset (+-max duration)."""
        if self.level == 1:
            return 1.0 - float(self._hasher.compute_distance(a.vector, b.vector))
        h = self._hasher
        shape = (len(h.T), 2 * h.m, h.frame_hasher.hash_length)
        reach = math.ceil(max(a.duration_s, b.duration_s))
        offsets = np.arange(-reach, reach + self._offset_step_s / 2, self._offset_step_s, dtype=np.float32)
        scores = h._score_pair(a.vector.reshape(shape), b.vector.reshape(shape), offsets=offsets,
                               normalization=h.normalization)
        return float(np.max(scores))

    def compare(self, reference: str, query: TmkHash, ref: TmkHash) -> tuple[Prediction, float]:
        return Prediction(reference, self.score(query, ref), None, None), 0.0


# ------------------------------------------------------------------------------------------------------ registry


@functools.lru_cache(maxsize=None)
def _probe(name: str) -> str | None:
    """None when baseline ``name`` can run here, else why not."""
    if name == "videohash":
        python = BENCH_VENV / "bin" / "python"
        if not python.exists():
            return f"no {python}{_install_note(name)}"
        try:
            proc = subprocess.run([str(python), str(VIDEOHASH_WORKER), "--probe"], capture_output=True, text=True,
                                  timeout=120, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{python} {VIDEOHASH_WORKER.name} --probe failed: {exc}"
        if proc.returncode != 0:
            err = proc.stderr.strip().splitlines()
            return f"videohash does not import in {BENCH_VENV}: {err[-1] if err else proc.returncode}" \
                   f"{_install_note(name)}"
        logger.debug("videohash worker: %s", proc.stdout.strip())
        return None
    module = {"vpdq": "vpdq", "perception": "perception.hashers"}[name]
    try:
        __import__(module)
    except ImportError as exc:
        return f"import {module} failed: {exc}{_install_note(name)}"
    return None


_FACTORIES: dict[str, tuple[str, Callable[[], System]]] = {
    "videohash": ("videohash", VideoHashSystem),
    "vpdq": ("vpdq", VpdqSystem),
    "tmk-l1": ("perception", lambda: TmkSystem(1)),
    "tmk-l2": ("perception", lambda: TmkSystem(2)),
}


def available_baselines() -> dict[str, Callable[[], System]]:
    """Factories of the baselines that can run here, by system name; each missing one is logged with its reason."""
    out = {}
    for name, (package, factory) in _FACTORIES.items():
        why = _probe(package)
        if why is None:
            out[name] = factory
        else:
            logger.info("baseline %s unavailable: %s", name, why)
    return out


def unavailable_baselines() -> dict[str, str]:
    """Why each baseline that cannot run here is missing, by system name."""
    return {name: why for name, (package, _) in _FACTORIES.items() if (why := _probe(package)) is not None}
