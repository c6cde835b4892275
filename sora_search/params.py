"""Every tuning knob of the engine, with its default: frozen dataclasses passed in, never module globals.

:class:`IndexParams` shapes index runs (``Library.open(..., params=)``), :class:`RayParams` the ones on a Ray cluster;
:class:`QueryParams` shapes queries
(``Library.query(..., params=)``); :class:`AlignParams` is the temporal alignment inside a query;
:class:`DupesParams` shapes ``Library.duplicates``. The CLI reads its defaults and help figures from these objects.
What each default rests on is in ``docs/tuning.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

DEFAULT_ENCODER = "sora-lite0"
DEFAULT_FPS = 1.0
# Names accepted by QueryParams.views besides an explicit sequence of view names (sora_search.embed.views).
VIEW_CHOICES = ("auto", "fast", "standard", "thorough")
# What IndexParams.projection may be: the shipped contrastive map, or PCA fitted on the library.
PROJECTIONS = ("contrastive", "pca")
# How `dupes` picks the copy to keep in a group of same-video copies (DupesParams.keep).
KEEP_RULES = ("resolution", "duration", "size", "newest", "oldest")


def _problems(obj: object, rules: dict[str, bool]) -> None:
    """Raise ValueError naming every field whose rule failed, with its value."""
    bad = [f"{name}={getattr(obj, name)!r}" for name, ok in rules.items() if not ok]
    if bad:
        raise ValueError(f"{type(obj).__name__}: out of range: {', '.join(bad)}")


@dataclass(frozen=True)
class RayParams:
    """How an index run uses a Ray cluster (``Library.index(..., ray=)``, :mod:`sora_search.cluster`)."""

    encoders: int = 0                  # encoder actors; 0: one per GPU of the cluster, else one per 2 of its CPUs
    encoder_cpus: float = 1.0          # CPUs each encoder actor reserves (a CPU actor runs that many torch threads)
    decode_cpus: float = 1.0           # CPUs each decode task reserves
    in_flight: int = 0                 # files decoding or decoded at once (frames held in the object store);
                                       # 0: the CPUs left for decoding plus one per encoder actor
    retries: int = 2                   # a decode task or encoder call whose worker process died is run again this
                                       # many times before its file is recorded failed
    startup_timeout_s: float = 300.0   # encoder actors must have loaded their model by then

    def __post_init__(self) -> None:
        _problems(self, {
            "encoders": self.encoders >= 0, "encoder_cpus": self.encoder_cpus > 0, "decode_cpus": self.decode_cpus > 0,
            "in_flight": self.in_flight >= 0, "retries": self.retries >= 0,
            "startup_timeout_s": self.startup_timeout_s > 0})


@dataclass(frozen=True)
class IndexParams:
    """How an index run decodes, pools, projects and saves. Times in seconds."""

    decode_timeout_s: float = 120.0    # a decoder silent this long on one file is killed; the file is recorded failed
    decode_workers: int = 0            # files decoded at once, each in its own child; 0: two while the encoder runs
                                       # on the CPU (one on one core), half the CPUs (up to 8) when it runs on a GPU
    temporal_radius: int = 1           # "pooled again over time": each vector averages its +-radius seconds
    projection: str = "contrastive"    # the shipped contrastive map (PCA for encoders without one), or "pca"
    projection_dim: int = 256          # dimension FAISS holds (PCA: once the library is large enough)
    pca_min_vectors: int = 1000        # below this the projection only centres (too few vectors for principal axes)
    projection_sample: int = 100_000   # vectors the projection is fitted on
    retrain_growth: float = 4.0        # refit projection and IVF once the corpus has grown this many times
    save_every_s: float = 60.0         # during long runs, persist the FAISS file at least this often
    ray: RayParams = field(default_factory=RayParams)

    def __post_init__(self) -> None:
        _problems(self, {
            "decode_timeout_s": self.decode_timeout_s > 0, "decode_workers": self.decode_workers >= 0,
            "temporal_radius": self.temporal_radius >= 0,
            "projection": self.projection in PROJECTIONS, "projection_dim": self.projection_dim > 0,
            "pca_min_vectors": self.pca_min_vectors >= 1,
            "projection_sample": self.projection_sample >= 1, "retrain_growth": self.retrain_growth > 1,
            "save_every_s": self.save_every_s > 0})


@dataclass(frozen=True)
class AlignParams:
    """Temporal alignment of one probe against one video (:func:`sora_search.query.align.align`)."""

    interval_s: float = 1.0            # sampling interval, 1 / fps (the Library sets it from the index)
    min_speed: float = 0.5             # slowest and fastest copy speed a chain may follow
    max_speed: float = 2.0
    max_gap_s: float = 5.0             # longest stretch of the probe with no supporting hit inside one segment
    max_segments: int = 5
    min_hits: int = 2                  # fewer hits than this only count when the probe itself is that short
    segment_keep_ratio: float = 0.5    # extra segments must score at least this share of the best one
    hit_threshold: float = 0.05        # a hit adds (sim - hit_threshold) to a chain: weak hits cost, strong ones pay
    speed_penalty: float = 0.005       # chain weight lost per second of drift from real-time speed (a tie-breaker)
    repeat_weight: float | None = 0.0  # weight of a hit on the reference second of the hit before it (None: 1)

    def __post_init__(self) -> None:
        _problems(self, {
            "interval_s": self.interval_s > 0, "min_speed": 0 < self.min_speed <= self.max_speed,
            "max_gap_s": self.max_gap_s > 0, "max_segments": self.max_segments >= 1, "min_hits": self.min_hits >= 1,
            "segment_keep_ratio": 0 <= self.segment_keep_ratio <= 1,
            "repeat_weight": self.repeat_weight is None or 0 <= self.repeat_weight <= 1})


@dataclass(frozen=True)
class TextParams:
    """The text check: words read on screen drop a match between frames that read differently
    (:mod:`sora_search.query.text`)."""

    min_score: float = 0.1             # matches scoring under this are not read (they are weak already)
    pairs: int = 3                     # probe times read along a match's best span, each with its reference frame
    min_words: int = 8                 # a frame is legible when its reader finds this many words
    differ_below: float = 0.3          # two legible frames read differently under this Jaccard index of their words
    search_s: float = 30.0             # a match the pairs would drop is read again along its reference, this far
    search_step_s: float = 2.0         # either side of its span, at this step: a copy placed wrongly stands
    read_lines: int = 720              # frames are scaled to this height before reading (small text reads badly)
    min_confidence: float = 80.0       # words the reader is less sure of are not counted
    timeout_s: float = 30.0            # a read that takes longer counts as no words

    def __post_init__(self) -> None:
        _problems(self, {
            "min_score": math.isfinite(self.min_score) and -1 <= self.min_score <= 1, "pairs": self.pairs >= 1,
            "min_words": self.min_words >= 1, "differ_below": 0 < self.differ_below <= 1,
            "search_s": self.search_s >= 0, "search_step_s": self.search_step_s > 0,
            "read_lines": self.read_lines >= 32,
            "min_confidence": 0 <= self.min_confidence <= 100, "timeout_s": self.timeout_s > 0})


@dataclass(frozen=True)
class QueryParams:
    """How a probe is looked at, searched, normalised, aligned and ranked.

    ``views``: ``auto`` (whole frames; then, only while nothing scores ``escalate_below``, mirrored; then the turns,
    halves and the inset; the mirror and the last step on a sample of seconds first: ``last_step_sample``,
    ``mirror_gate``, ``last_step_gate``, ``inset_gate``),
    a set name from ``VIEW_CHOICES``, or a tuple of view names
    (:mod:`sora_search.embed.views`).
    """

    k: int = 10                        # at most this many videos, best first
    min_score: float = 0.25            # matches scoring below this are not reported
    views: str | tuple[str, ...] = "auto"
    decode_timeout_s: float = 120.0    # a decoder silent this long on the probe is killed
    escalate_below: float = 0.25       # views="auto" looks harder only while no video scores this much
    last_step_sample: int = 4          # auto's mirror and last step first encode every Nth second (1: all) ...
    mirror_gate: float | None = 0.2    # ... then the mirror whole if its best sampled second's score reaches this
                                       # (None: the mirror whole, unsampled) ...
    last_step_gate: float = 0.3        # ... and the last step's views whose best sampled second reaches this
    inset_gate: float = 0.2            # ... and the found inset, if its best sampled second reaches this
    region_penalty: float = 0.1        # a half or window view scores this much less than the same match seen whole
    inset_penalty: float = 0.05        # a found inset is a region the probe points at: it pays half
    runner_up_gap: float = 0.5         # every match but the best loses this share of its gap to the best
    neighbours: int = 64               # k-NN per probe vector, before grouping by video
    background_max_k: int = 4096       # the most neighbours a probe vector's background is looked for in
    background_skip: int = 1           # background: mean similarity of the videos ranked skip+1 .. skip+take
    background_take: int = 5
    background_floor: float = 0.2      # the least background a probe vector gets (a prior for small libraries)
    copy_similarity: float = 0.995     # a neighbour video this close to the best one (raw cosine, at the hit and
                                       # along their shared stretch) is its copy: one video in the background ...
    copy_agreement: float | None = 0.55  # ... or, edited (merely close), whose changes along it agree this much
                                       # more with each other at the same moments than at others
                                       # (None: edited copies are videos of their own)
    copies_merged: int = 8             # ... unless more than this many are (footage many videos hold)
    novelty_floor: float = 0.02        # a probe second that moved less than this (cosine distance) weighs 0 ...
    novelty_full: float | None = 0.04  # ... and from this on 1 (None: every second weighs 1)
    blank_std: float = 3.0             # a probe frame with every channel's std below this is blank, not searched
    inset_min_strength: float = 15.0   # the weakest side's contrast an inset must reach to be cut out
    motion_weight: float = 0.3         # a match gains this times (motion agreement - motion_baseline); 0: off
    motion_baseline: float = 0.05      # the agreement of unrelated changes, a little above chance (0)
    motion_min_step: float = 0.1       # a second that moves less than this (vector distance) says nothing
    motion_candidates: int = 5         # the best matches checked for motion agreement
    region_weight: float = 0.25        # a match loses this times (the best checked region score - its own); 0: off
    region_candidates: int = 10        # the best matches checked region by region
    sequence_below: float = 0.15       # only while the best match scores under this, the sequence check may ...
    sequence_margin: float = 1.2       # ... put first the candidate whose evidence is this many times any other's
    sequence_cost: float = 1.5         # a pair adds its standard score less this to a diagonal run
    sequence_candidates: int = 32      # the videos with the most neighbour hits that are checked
    align: AlignParams = field(default_factory=AlignParams)
    text: TextParams | None = None     # read the words on screen (needs the tesseract command); None: off

    def __post_init__(self) -> None:
        if not isinstance(self.views, str):
            object.__setattr__(self, "views", tuple(self.views))
        _problems(self, {
            **{f.name: math.isfinite(getattr(self, f.name)) for f in fields(self)
               if isinstance(getattr(self, f.name), float)},
            "k": self.k >= 1, "min_score": math.isfinite(self.min_score) and -1 <= self.min_score <= 1,
            "views": (self.views in VIEW_CHOICES) if isinstance(self.views, str) else len(self.views) > 0,
            "decode_timeout_s": self.decode_timeout_s > 0, "neighbours": self.neighbours >= 1,
            "last_step_sample": self.last_step_sample >= 1,
            "background_max_k": self.background_max_k >= self.neighbours,
            "background_skip": self.background_skip >= 0, "background_take": self.background_take >= 1,
            "copy_similarity": -1 <= self.copy_similarity <= 1, "copies_merged": self.copies_merged >= 0,
            "copy_agreement": self.copy_agreement is None or (math.isfinite(self.copy_agreement)
                                                              and -1 <= self.copy_agreement <= 1),
            "novelty_full": self.novelty_full is None or self.novelty_full > self.novelty_floor,
            "motion_weight": self.motion_weight >= 0, "motion_baseline": -1 <= self.motion_baseline <= 1,
            "motion_min_step": self.motion_min_step >= 0, "motion_candidates": self.motion_candidates >= 0,
            "region_weight": self.region_weight >= 0, "region_candidates": self.region_candidates >= 0,
            "sequence_below": -1 <= self.sequence_below <= 1, "sequence_margin": self.sequence_margin >= 1,
            "sequence_cost": self.sequence_cost >= 0, "sequence_candidates": self.sequence_candidates >= 2})


@dataclass(frozen=True)
class DupesParams:
    """How ``dupes`` finds library videos that share footage (:mod:`sora_search.query.dupes`).

    Searching, background, novelty weighting and alignment are ``query``'s own knobs, so a pair scores what a query
    of one video against the rest of the library gives the other. ``query.min_score``, ``query.k`` and
    ``query.views`` are not used: ``min_score`` here is the threshold, and only stored whole-frame vectors are
    searched.
    """

    min_score: float = 0.15            # pairs scoring below this are not reported (lower than a query's: see
                                       # docs/tuning.md, the library holds both copies and their look-alikes)
    copy_bound: float = 0.25           # a video whose hits could score this much with a probe video's is one of its
                                       # copies, and stands out of that video's background
    keep: str = "resolution"           # the copy a group keeps: one of KEEP_RULES
    same_video: float = 0.8            # both videos covered at least this much: the same video (one group)
    cover_ratio: float = 0.5           # a second of a segment is covered when its hit reaches this share of the
                                       # segment's strong level (its 90th-percentile second)
    min_novel_s: float = 2.0           # a shared segment needs this many seconds of new evidence in both videos
    edge_s: float = 2.0                # a segment this close to the start (or end) of both videos ...
    opening_max_s: float = 30.0        # ... at most this long ...
    opening_max_share: float = 0.5     # ... and covering less than this of each is an intro or ending, not a copy
    runner_up_gap: float = 0.0         # the query's runner-up rule, per probe video (0: off; see docs/tuning.md)
    batch_vectors: int = 16384         # vectors searched per k-NN call: bounds the memory a run holds
    query: QueryParams = field(default_factory=QueryParams)

    def __post_init__(self) -> None:
        _problems(self, {
            "min_score": math.isfinite(self.min_score) and -1 <= self.min_score <= 1,
            "copy_bound": math.isfinite(self.copy_bound),
            "keep": self.keep in KEEP_RULES, "same_video": 0 < self.same_video <= 1,
            "cover_ratio": 0 <= self.cover_ratio <= 1,
            "min_novel_s": self.min_novel_s >= 0, "edge_s": self.edge_s >= 0, "opening_max_s": self.opening_max_s >= 0,
            "opening_max_share": 0 <= self.opening_max_share <= 1, "runner_up_gap": 0 <= self.runner_up_gap <= 1,
            "batch_vectors": self.batch_vectors >= 1})
