"""A query: the probe seen through passes of views, each view searched, normalised and aligned per video; then ranked.

``views="auto"`` looks at the whole frame first; only while no video scores ``escalate_below`` does it look at the
mirrored frame, and after that at the turned frame, its halves and a found inset (:func:`run`), each of those steps on
a sample of seconds first, so a probe that matches nothing pays little for them. Each video keeps its best view; a
region view scores ``region_penalty`` less, the inset ``inset_penalty`` less. Every match but the best then loses
``runner_up_gap`` of its gap to the best: a video far behind the probe's best match more likely shows the same kind of
scene than the clip.
Before that, the best ``motion_candidates`` matches move by how well the probe's changes agree with the matched
stretch's (:mod:`sora_search.query.motion`): a copy changes as its original does, another stretch of the same recording
does not. Last, after the gap, the best ``region_candidates`` move by how well the parts of the probe's frames match
the same parts of the matched stretch (:mod:`sora_search.query.regions`): a caption or a sticker over part of a copy
spoils only the parts it covers. Where even the best match then scores under ``sequence_below``, a candidate whose
seconds follow the probe's along one diagonal clearly better than every other's comes first
(:mod:`sora_search.query.sequence`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sora_search.embed.inset import Box, InsetFinder
from sora_search.embed.views import FULL, HALVES, HFLIP, INSET, REGION_VIEWS, ROTATIONS, VIEW_SETS, region_of
from sora_search.params import QueryParams
from sora_search.query.align import align, group_hits, novelty_weights
from sora_search.query.background import Copies, background
from sora_search.query.motion import stored_stretch, with_motion
from sora_search.query.regions import Probe, centred, region_moves
from sora_search.query.sequence import ProbeView, winner
from sora_search.types import Span

if TYPE_CHECKING:
    from sora_search.embed import Embedded, Embedder
    from sora_search.encoder import Projection
    from sora_search.index import VectorIndex
    from sora_search.store import Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ranked:
    """A video that matched: its store id, its score, its spans, best first (span scores are final too), the
    probe's view they were found in and the part of the probe frame that view looks at (None: the whole frame)."""

    video_id: int
    score: float
    spans: tuple[Span, ...]
    view: str = FULL
    region: Box | None = None


def view_passes(views: str | Sequence[str]) -> list[tuple[str, ...]]:
    """The passes a probe is looked at in, in order, for ``QueryParams.views`` (``auto``: see :func:`run`).

    Raises:
        ValueError: an unknown view set name.
    """
    if not isinstance(views, str):
        return [tuple(views)]
    if views == "auto":
        return [(FULL,), (HFLIP,), ROTATIONS + HALVES + (INSET,)]
    if views not in VIEW_SETS:
        raise ValueError(f"unknown view set {views!r}; choose auto or one of {sorted(VIEW_SETS)}")
    return [VIEW_SETS[views]]


class ProbeSearch:
    """Searches one probe's views in one index and keeps, per video, the spans of its best-scoring view.

    Args:
        index, projection: the FAISS index and the projection its vectors went through.
        store: maps the index's vector ids to videos and times.
        n_videos: videos in the library (the background's ranks).
        params: the query's knobs; ``params.align.interval_s`` must be the index's sampling interval.
        exclude: a library video left out of the answer and of the background (the probe itself, when it is one).
    """

    def __init__(self, index: VectorIndex, projection: Projection, store: Store, n_videos: int,
                 params: QueryParams, exclude: int | None = None) -> None:
        self._index = index
        self._projection = projection
        self._store = store
        self._n_videos = n_videos - (exclude is not None)
        self._params = params
        self._exclude = exclude
        self.best: dict[int, list[Span]] = {}
        self._best_view: dict[int, str] = {}  # the view each video's best spans were found in
        self._probe: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # view -> its seconds and projected vectors
        self._probe_regions: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # view -> its seconds, centred regions
        self._whole: dict[str, ProbeView] = {}  # the whole frame and its mirror, for the sequence check
        self._inset: Box | None = None  # the rectangle the inset view cut out, once it was searched
        # Which library videos are copies of one another (they count once in the background).
        self._copies = Copies(store, params.copy_similarity, params.copy_agreement)

    @property
    def searched(self) -> bool:
        """Whether any second of any view was searched (not blank): each searched view's seconds are kept."""
        return bool(self._probe)

    def top(self) -> float | None:
        """The best score so far, or None before any match."""
        return max((spans[0].score for spans in self.best.values()), default=None)

    def add(self, probe: Embedded) -> None:
        """Search every view of ``probe`` and keep each video's better spans. Blank seconds are not searched."""
        p = self._params
        ts = probe.timestamps_s
        views, vectors = self._projected(probe)
        if not views or not len(ts):
            return
        duration = max(probe.info.duration_s, float(ts[-1]) + p.align.interval_s)
        scores, video_ids, ref_s = self._search(vectors)
        self._inset = probe.inset or self._inset
        for name, kept, rows in views:
            penalty = _penalty(name, p)
            self._probe[name] = (ts[kept], vectors[rows])
            if name in (FULL, HFLIP):
                self._whole[name] = ProbeView(ts[kept], probe.vectors[name][kept], video_ids[rows], ref_s[rows])
            mean, regions = self._projection.region_mean, probe.regions.get(name)
            if mean is not None and regions is not None and regions.shape[1:] == mean.shape:
                self._probe_regions[name] = (ts[kept], centred(regions[kept], mean))
            weights = novelty_weights(vectors[rows], p.novelty_floor, p.novelty_full)
            for video_id, hits in group_hits(ts[kept], video_ids[rows], ref_s[rows], scores[rows], weights).items():
                if video_id == self._exclude:
                    continue
                spans = [replace(sp, score=sp.score - penalty) for sp in align(hits, duration, p.align)]
                if spans and (video_id not in self.best or spans[0].score > self.best[video_id][0].score):
                    self.best[video_id] = spans
                    self._best_view[video_id] = name

    def peaks(self, probe: Embedded) -> dict[str, float]:
        """Each view's best second: the highest similarity to any other video, less its background, over the
        view's seconds that are not blank (views with none are left out). Nothing is kept."""
        views, vectors = self._projected(probe)
        if not views:
            return {}
        scores, video_ids, _ = self._search(vectors)  # every view in one search, as add() does
        if self._exclude is not None:
            scores = np.where(video_ids == self._exclude, -np.inf, scores)
        best = scores.max(axis=1)
        return {name: float(best[rows].max()) for name, _, rows in views}

    def _projected(self, probe: Embedded) -> tuple[list[tuple[str, np.ndarray, slice]], np.ndarray]:
        """The views of ``probe`` with a second that is not blank, each with those seconds' rows in the probe and
        its slice of the projected vectors of them all, stacked (searched together)."""
        names = [v for v in probe.vectors if not probe.blank[v].all()]
        keep = [np.flatnonzero(~probe.blank[v]) for v in names]
        ends = np.cumsum([len(rows) for rows in keep], dtype=np.int64)
        views = [(v, rows, slice(int(end) - len(rows), int(end))) for v, rows, end in zip(names, keep, ends)]
        if not views:
            return [], np.zeros((0, self._projection.out_dim), dtype=np.float32)
        return views, self._projection.apply(np.concatenate([probe.vectors[v][rows] for v, rows, _ in views]))

    def _search(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Projected probe vectors' nearest stored vectors: (n, k) similarities less each row's background, their
        videos and their seconds."""
        p, index = self._params, self._index
        scores, ids = index.search(vectors, min(p.neighbours, max(1, index.ntotal)))
        video_ids, ref_s = self._store.locate(ids.ravel())
        video_ids, ref_s = video_ids.reshape(ids.shape), ref_s.reshape(ids.shape)
        exclude = None if self._exclude is None else np.full(len(vectors), self._exclude, dtype=np.int64)
        scores = scores - background(index.search, self._store.locate, index.ntotal, vectors, video_ids, scores,
                                     self._n_videos, p, exclude, ids=ids, times=ref_s,
                                     copies_of=self._copies)[:, None]
        return scores, video_ids, ref_s

    def ranked(self) -> list[Ranked]:
        """Matches at or above ``min_score`` after motion agreement, the runner-up gap, the region check and the
        sequence check, best first (ties by video id), at most k."""
        p = self._params
        everyone = region_checked(rank(self._with_motion(), p.runner_up_gap),
                                  lambda v: self._probe_regions.get(self._best_view[v]), self._store,
                                  self._projection, p)
        everyone = sequence_checked(everyone, list(self._whole.values()), self._store, self._projection, p,
                                    self._exclude)
        found = [(r, self._best_view.get(r.video_id, FULL)) for r in shown(everyone, p)]
        return [replace(r, view=view, region=region_of(view, self._inset)) for r, view in found]

    def _with_motion(self) -> dict[int, list[Span]]:
        """``best``, its ``motion_candidates`` best videos moved by their motion agreement (:func:`with_motion`)."""
        return with_motion(self.best, lambda v: self._probe[self._best_view[v]],
                           stored_stretch(self._store, self._projection), self._params, self._params.motion_candidates)


def rank(best: dict[int, list[Span]], gap: float) -> list[Ranked]:
    """Each video's spans (best first) ranked: every video but the best loses ``gap`` of its gap to the best; all of
    them, best first (ties by video id). :func:`region_checked` then keeps what a query shows."""
    top = max((spans[0].score for spans in best.values()), default=None)
    if top is None:
        return []
    adjusted = {v: [replace(sp, score=sp.score - gap * (top - spans[0].score)) for sp in spans]
                for v, spans in best.items()}
    found = sorted(((spans[0].score, v, spans) for v, spans in adjusted.items()), key=lambda x: (-x[0], x[1]))
    return [Ranked(v, s, tuple(spans)) for s, v, spans in found]


def region_checked(ranked: list[Ranked], probe_of: Callable[[int], Probe], store: Store, projection: Projection,
                   params: QueryParams) -> list[Ranked]:
    """``ranked`` (best first, every video) after the region check of its ``region_candidates`` best, each against
    ``probe_of(video id)`` (:func:`~sora_search.query.regions.region_moves`), best first again (ties by video id).
    Unchanged where the index keeps no region mean."""
    mean = projection.region_mean
    if params.region_weight and mean is not None and ranked:
        checked = [(r.video_id, r.spans[0], probe_of(r.video_id)) for r in ranked[:params.region_candidates]]
        moves = region_moves(checked, store, mean, params.region_weight)
        ranked = [r if r.video_id not in moves else
                  Ranked(r.video_id, r.score + moves[r.video_id],
                         tuple(replace(sp, score=sp.score + moves[r.video_id]) for sp in r.spans))
                  for r in ranked]
    return sorted(ranked, key=lambda r: (-r.score, r.video_id))


def sequence_checked(ranked: list[Ranked], views: Sequence[ProbeView], store: Store, projection: Projection,
                     params: QueryParams, exclude: int | None = None) -> list[Ranked]:
    """``ranked`` (best first, every video) after the sequence check: only where the best scores under
    ``sequence_below``, the video :func:`~sora_search.query.sequence.winner` names takes the first place and its
    score, and every video it passes moves one place down, taking the next score (a winner that was not ranked
    makes the list one longer, so the last video keeps its own score). The winner's first span is its run; its other
    spans follow where they lie outside the run in the probe."""
    if params.sequence_below <= 0 or not ranked or ranked[0].score >= params.sequence_below:
        return ranked
    found = winner(views, store, projection, params, exclude)
    if found is None or found[0] == ranked[0].video_id:
        return ranked
    video_id, span = found
    place = next((i for i, r in enumerate(ranked) if r.video_id == video_id), None)
    scores = [r.score for r in ranked] + ([] if place is not None else [ranked[-1].score])
    # The winner's span is its run, the evidence that put it first; spans it had elsewhere in the probe follow.
    own = ranked[place] if place is not None else Ranked(video_id, 0.0, ())
    others = tuple(sp for sp in own.spans
                   if sp.query_end_s <= span.query_start_s or sp.query_start_s >= span.query_end_s)
    moved = Ranked(video_id, own.score, (replace(span, score=own.score),) + others)
    order = [moved] + [r for r in ranked if r.video_id != video_id]
    return [Ranked(r.video_id, score, tuple(replace(sp, score=sp.score + score - r.score) for sp in r.spans))
            for r, score in zip(order, scores)]


def shown(ranked: list[Ranked], params: QueryParams) -> list[Ranked]:
    """What a query shows of ``ranked`` (best first): the videos at or above ``min_score``, at most ``k``."""
    return [r for r in ranked if r.score >= params.min_score][:params.k]


def _penalty(view: str, params: QueryParams) -> float:
    if view == INSET:
        return params.inset_penalty
    return params.region_penalty if view in REGION_VIEWS else 0.0


def run(clip: str | Path, embedder: Embedder, search: ProbeSearch, params: QueryParams) -> list[Ranked]:
    """Look at ``clip`` pass by pass (see :func:`view_passes`), stopping once a pass found a good enough match.

    ``auto`` looks at the whole frame; only while no video scores ``escalate_below``, at the mirror image, while an
    :class:`InsetFinder` watches; then at the frame turned by quarter turns, its halves and the inset the finder saw,
    if any. The mirror and the last step look at a sample of seconds first (:func:`_sampled`). The probe is decoded
    once, at S:
    the embedder keeps the frames for the mirror, and the decode worker the pictures, which the last step gets at 2S
    (see :meth:`Embedder.probe`). A view set is looked at in one pass.

    Raises:
        VideoError: the clip cannot be decoded. ValueError: an unknown view or view set.
    """
    passes = view_passes(params.views)
    timeout_s, blank_std = params.decode_timeout_s, params.blank_std
    try:
        if params.views != "auto":
            _look(clip, embedder, search, params, passes[0])
            return search.ranked()
        finder = InsetFinder()
        for n_pass, views in enumerate(passes):
            top = search.top()
            if n_pass and top is not None and top >= params.escalate_below:
                break
            box = finder.find(params.inset_min_strength) if INSET in views else None
            views = tuple(v for v in views if v != INSET or box is not None)
            watch = finder if views == (HFLIP,) else None  # the finder sees the probe once, with the mirror
            # The mirror's sample needs the frames kept from the first step: a probe too long to keep would be
            # decoded once more for it.
            sample_mirror = watch is not None and params.mirror_gate is not None and embedder.keeps(clip)
            if params.last_step_sample > 1 and (n_pass == len(passes) - 1 or sample_mirror):
                views = _sampled(clip, embedder, search, params, views, box, watch)
                watch = None  # the sample showed it every frame
            if views:
                search.add(embedder.probe(clip, views, timeout_s=timeout_s, blank_std=blank_std, finder=watch,
                                          box=box))
        return search.ranked()
    finally:
        embedder.forget_probe()


def _sampled(clip: str | Path, embedder: Embedder, search: ProbeSearch, params: QueryParams,
             views: tuple[str, ...], box: Box | None, finder: InsetFinder | None) -> tuple[str, ...]:
    """The views of an ``auto`` step worth encoding at every second: those whose best second in a sample of every
    ``last_step_sample``-th second reaches their gate (``mirror_gate``, ``inset_gate``, else ``last_step_gate``).
    ``finder`` sees every frame of the probe meanwhile."""
    if not views:
        return views
    sample = embedder.probe(clip, views, timeout_s=params.decode_timeout_s, blank_std=params.blank_std,
                            finder=finder, box=box, every=params.last_step_sample)
    peaks = search.peaks(sample)
    logger.debug("%s: best sampled second per view %s", clip, {v: round(peak, 3) for v, peak in peaks.items()})
    return tuple(v for v in views if peaks.get(v, -np.inf) >= _gate(v, params))


def _gate(view: str, params: QueryParams) -> float:
    if view == HFLIP and params.mirror_gate is not None:
        return params.mirror_gate
    return params.inset_gate if view == INSET else params.last_step_gate


def _look(clip: str | Path, embedder: Embedder, search: ProbeSearch, params: QueryParams,
          view_names: Sequence[str]) -> None:
    """One pass through ``view_names``. The inset view needs the whole probe seen first (InsetFinder), so it is
    encoded in a decode of its own, after the pass that found it, and only when there is an inset to cut out."""
    timeout_s, blank_std = params.decode_timeout_s, params.blank_std
    finder = InsetFinder() if INSET in view_names else None
    plain = [v for v in view_names if v != INSET]
    search.add(embedder.probe(clip, plain, timeout_s=timeout_s, blank_std=blank_std, finder=finder))
    box = finder.find(params.inset_min_strength) if finder is not None else None
    if box is not None:
        logger.debug("%s: inset at x=%.2f y=%.2f w=%.2f h=%.2f (strength %.1f)", clip, box.x, box.y, box.w,
                     box.h, box.strength)
        search.add(embedder.probe(clip, [INSET], timeout_s=timeout_s, blank_std=blank_std, box=box))
