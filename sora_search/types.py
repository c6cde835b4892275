"""Value objects passed between the stages. Frozen, self-validating; time is always float seconds (``*_s``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class VideoInfo:
    """What a decoder learned about a video stream when it opened it."""

    duration_s: float
    fps: float
    width: int
    height: int
    frame_count: int | None = None
    backend: str = ""

    def __post_init__(self) -> None:
        if not (self.duration_s >= 0 and self.fps >= 0 and self.width >= 0 and self.height >= 0):
            raise ValueError(
                f"VideoInfo needs non-negative values, got duration_s={self.duration_s} fps={self.fps} "
                f"size={self.width}x{self.height}"
            )


@dataclass(frozen=True, eq=False)
class FrameBatch:
    """A chunk of sampled frames.

    Attributes:
        frames: (n, size, size, 3) uint8 RGB, already resized for the encoder.
        timestamps_s: (n,) float64, seconds from the start of the video, strictly increasing.
    """

    frames: np.ndarray
    timestamps_s: np.ndarray

    def __post_init__(self) -> None:
        f, t = self.frames, self.timestamps_s
        if f.ndim != 4 or f.shape[3] != 3 or f.dtype != np.uint8:
            raise ValueError(f"FrameBatch.frames must be (n, h, w, 3) uint8, got {f.shape} {f.dtype}")
        if t.ndim != 1 or t.shape[0] != f.shape[0]:
            raise ValueError(f"FrameBatch.timestamps_s must be ({f.shape[0]},), got {t.shape}")
        if t.dtype != np.float64:
            object.__setattr__(self, "timestamps_s", t.astype(np.float64))

    def __len__(self) -> int:
        return int(self.frames.shape[0])


@dataclass(frozen=True)
class Span:
    """A matching stretch: ``query_start_s..query_end_s`` of the probe shows ``ref_start_s..ref_end_s``."""

    query_start_s: float
    query_end_s: float
    ref_start_s: float
    ref_end_s: float
    score: float

    def __post_init__(self) -> None:
        if self.query_end_s < self.query_start_s or self.ref_end_s < self.ref_start_s:
            raise ValueError(f"Span ends before it starts: {self}")


# The views of sora_search.embed.views, named for people.
_VIEW_NAMES = {"hflip": "mirror image", "rot90": "frame turned a quarter", "rot180": "frame turned upside down",
               "rot270": "frame turned three quarters", "left": "left half", "right": "right half", "top": "top half",
               "bottom": "bottom half", "inset": "inset"}


@dataclass(frozen=True)
class Match:
    """One library video that matches the probe, with its score, the matching spans (best first), the view of the
    probe they were found in (``full``, ``hflip``, ``rot90``, ``left``, ``inset``...: :mod:`sora_search.embed.views`)
    and, for a view of part of the frame (a half, the inset), that part: ``(x, y, w, h)`` in fractions of the probe's
    frame, from its top-left corner; None for the whole frame."""

    path: str
    score: float
    segments: tuple[Span, ...] = ()
    view: str = "full"
    region: tuple[float, float, float, float] | None = None

    @property
    def found_in(self) -> str:
        """Where in the probe the match was found, in words: '' for the whole frame, else for instance "the clip's
        inset, 53% across and 13% down, 34% x 34% of the frame" (the page's app.js says it the same way)."""
        if self.view == "full":
            return ""
        text = f"the clip's {_VIEW_NAMES.get(self.view, 'window')}"  # a window is "winIJ"
        if self.region is not None:
            x, y, w, h = (int(100 * v + 0.5) for v in self.region)  # halves up, as the page's Math.round
            text += f", {x}% across and {y}% down, {w}% x {h}% of the frame"
        return text


@dataclass(frozen=True)
class QueryResult:
    """Ranked matches for one probe clip. ``to_dict()`` is the CLI's ``--json`` shape.

    ``blank``: every second of the clip is blank in every view (black, a fade, one colour at the encoder's side),
    so nothing was searched and nothing can match; an empty ``matches`` then says nothing about the library.
    ``indexed``: the clip is itself an indexed library video (the same path), left out of its own answer.
    """

    query: str
    matches: tuple[Match, ...] = ()
    blank: bool = False
    indexed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "matches": [asdict(m) | {"segments": [asdict(s) for s in m.segments]}
                                                 for m in self.matches], "blank": self.blank,
                "indexed": self.indexed}


@dataclass(frozen=True)
class FailedFile:
    path: str
    reason: str


@dataclass(frozen=True)
class IndexSummary:
    """What one ``Library.index`` run did. Paths are absolute."""

    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    moved: tuple[tuple[str, str], ...] = ()
    removed: tuple[str, ...] = ()
    failed: tuple[FailedFile, ...] = ()
    vectors_added: int = 0
    seconds: float = 0.0
    # Seconds per stage: decode (waiting for frames), encode, store (SQLite writes), index (FAISS updates/saves);
    # with several files embedded at once (decode_workers) decode and encode add up over their threads.
    timings: dict[str, float] = field(default_factory=dict, compare=False, hash=False)

    @property
    def encoded(self) -> int:
        """How many files were decoded and encoded in this run."""
        return len(self.added) + len(self.updated)


@dataclass(frozen=True)
class LibraryInfo:
    """What ``sora-search info`` shows."""

    location: str
    videos: int
    failed: int
    vectors: int
    duration_s: float
    encoder: str
    encoder_version: str
    raw_dim: int
    dim: int
    sampling_fps: float
    projection: str
    index_type: str
    index_nlist: int
    index_nprobe: int
    index_bytes: int
    store_bytes: int
    schema_revision: str
    extra: dict[str, Any] = field(default_factory=dict)
    # Where FAISS searches run for this process: "cpu" or "cuda:N" (a GPU build of faiss and a GPU).
    index_device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Progress:
    """A progress event from ``Library.index``: ``done`` of ``total`` files to decode, ``bytes_done`` of
    ``bytes_total`` (the ETA basis: known before decoding, unlike durations), what happened to ``path``
    (``decoding``, ``added``, ``updated`` or ``failed``) and, for a failure, why."""

    done: int
    total: int
    bytes_done: int
    bytes_total: int
    path: str
    status: str
    reason: str = ""


@dataclass(frozen=True)
class CheckReport:
    """What ``Library.check`` found: ``problems`` as sentences (empty when consistent), ``notes`` on states that are
    not problems (a FAISS file behind its store), what ``--repair`` fixed."""

    ok: bool
    problems: tuple[str, ...] = ()
    repaired: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    videos: int = 0
    vectors: int = 0
    faiss_vectors: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DuplicateSegment:
    """Footage two library videos share: ``a_start_s..a_end_s`` of video ``a`` shows ``b_start_s..b_end_s`` of
    ``b``."""

    a_start_s: float
    a_end_s: float
    b_start_s: float
    b_end_s: float
    score: float

    def __post_init__(self) -> None:
        if self.a_end_s < self.a_start_s or self.b_end_s < self.b_start_s:
            raise ValueError(f"DuplicateSegment ends before it starts: {self}")


# How much of each video a pair's shared footage covers says what the pair is (DupesParams.same_video).
RELATIONS = ("same", "a_contains_b", "b_contains_a", "partial")


@dataclass(frozen=True)
class DuplicatePair:
    """Two library videos that share footage (``a`` sorts before ``b``): the score, how much of each the shared
    footage covers (0..1), what that makes them (one of :data:`RELATIONS`) and the segments, best first."""

    a: str
    b: str
    score: float
    a_covered: float
    b_covered: float
    relation: str
    segments: tuple[DuplicateSegment, ...] = ()

    def __post_init__(self) -> None:
        if not self.a < self.b or self.relation not in RELATIONS:
            raise ValueError(f"DuplicatePair needs a < b and a relation of {RELATIONS}, got {self.a!r}, "
                             f"{self.b!r}, {self.relation!r}")


@dataclass(frozen=True)
class DuplicateGroup:
    """Copies of one video: ``keep`` is the one the keep rule chose; ``members`` all of them, ``keep`` first."""

    keep: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class DuplicatesReport:
    """What ``Library.duplicates`` found: pairs best first, and groups of same-video copies. ``to_dict()`` is the
    CLI's ``dupes --json`` shape. Nothing was deleted or moved: it is a plan to act on."""

    pairs: tuple[DuplicatePair, ...] = ()
    groups: tuple[DuplicateGroup, ...] = ()
    videos: int = 0
    vectors: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"pairs": [asdict(p) | {"segments": [asdict(s) for s in p.segments]} for p in self.pairs],
                "groups": [{"keep": g.keep, "members": list(g.members)} for g in self.groups]}


@dataclass(frozen=True)
class DuplicatesProgress:
    """A progress event from ``Library.duplicates``: ``done`` of ``total`` stored vectors searched, and the pairs
    found so far."""

    done: int
    total: int
    pairs: int
