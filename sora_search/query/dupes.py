"""Copies inside the library: every indexed video searched against the rest of it, from the stored vectors.

A library video is a probe whose vectors are already stored, temporally pooled, whole frame only: nothing is
decoded. Its vectors are searched as a query's are (k-NN, background normalisation, novelty weights, temporal
alignment), with the video itself left out of the answer and out of the background, so a pair scores what a query
of one video gives the other in a library without the first. The whole library is searched in batches of
``DupesParams.batch_vectors`` vectors, one k-NN call each; only the video pairs whose hits could reach the
threshold are aligned, so the work grows with the library, not with the number of video pairs, and the memory
with a batch (plus a map of where each vector lies: 24 bytes a vector).

A segment is kept only when it carries ``min_novel_s`` seconds of new evidence (a black stretch or a held logo is
one second however long it lasts) and is not an *opening or ending*: footage at the very start (or end) of both
videos, short, and a small part of each (a shared intro, a black opening, a channel's logo sting). Footage shared
by many videos is also weak evidence through the background, as in a query. Each pair is searched both ways
(each video as the probe) and keeps the way that scores higher.

A pair's *coverage* on each side is the union of its segments over the video's duration: both near 1 is the same
video, one near 1 a video that contains the other, neither a shared part. Videos linked by same-video pairs form a
group, in which one copy is kept by a rule (:data:`sora_search.params.KEEP_RULES`). Nothing is deleted or moved.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sora_search.params import AlignParams, DupesParams, QueryParams
from sora_search.query.align import Hits, align, novelty_weights
from sora_search.query.background import Copies, background
from sora_search.query.dupes_report import Shared, build_report
from sora_search.query.motion import Stretch, stored_stretch, with_motion
from sora_search.query.passes import Ranked, rank, region_checked, sequence_checked, shown
from sora_search.query.regions import Probe, centred
from sora_search.query.sequence import ProbeView
from sora_search.types import DuplicatesProgress, DuplicatesReport, Span

if TYPE_CHECKING:
    from sora_search.encoder import Projection
    from sora_search.index import VectorIndex
    from sora_search.store import Store, VideoRecord

logger = logging.getLogger(__name__)

Locate = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True, eq=False)
class VectorMap:
    """Where every stored vector lies, in memory: ``ids`` (n,) int64 ascending, their ``videos`` (n,) int64 and
    ``times`` (n,) float64. Replaces one SQLite look-up per k-NN call when the whole library is searched."""

    ids: np.ndarray
    videos: np.ndarray
    times: np.ndarray

    @classmethod
    def of(cls, store: Store) -> VectorMap:
        ids = store.all_vector_ids()
        videos, times = store.locate(ids)
        return cls(ids, videos, times)

    def locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`sora_search.store.Store.locate`: (m,) ids -> (videos (m,) int64, -1 where unknown; times
        (m,) float64, nan where unknown)."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(self.ids):
            return np.full(ids.shape, -1, dtype=np.int64), np.full(ids.shape, np.nan)
        pos = np.clip(self._position(ids), 0, len(self.ids) - 1)
        hit = (self.ids[pos] == ids) & (ids >= 0)
        return np.where(hit, self.videos[pos], -1), np.where(hit, self.times[pos], np.nan)

    def _position(self, ids: np.ndarray) -> np.ndarray:
        """Where each id is (or would be) in ``self.ids``: a table lookup while ids are dense (store ids count up
        from 1, with gaps where videos were removed), a binary search otherwise."""
        table = self._table
        if table is None:
            return np.searchsorted(self.ids, ids)
        return table[np.clip(ids, 0, len(table) - 1)]

    @cached_property
    def _table(self) -> np.ndarray | None:
        top = int(self.ids[-1])
        if top > 4 * len(self.ids) + 1024:
            return None
        table = np.zeros(top + 2, dtype=np.int64)
        table[self.ids] = np.arange(len(self.ids))
        return table

    def ends(self, interval_s: float) -> dict[int, float]:
        """{video: its last vector's time plus one sampling interval}."""
        order = np.lexsort((self.times, self.videos))
        last = np.r_[self.videos[order][1:] != self.videos[order][:-1], True]
        return {int(v): float(t) + interval_s for v, t in zip(self.videos[order][last], self.times[order][last])
                if v >= 0}


def search_rows(index: VectorIndex, locate: Locate, vectors: np.ndarray, own: np.ndarray, n_videos: int,
                params: QueryParams, copies_from: float | None,
                copies_of: Copies | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k-NN of library vectors, normalised against the library without each row's own video and its copies.

    Args:
        vectors: (m, dim) float32 projected, L2-normalised.
        own: (m,) int64 the video each row belongs to.
        n_videos: videos in the library, the rows' own included.
        copies_from: the videos a row's video could pair with at this score (:func:`candidate_pairs`) are its
            copies, and stand out of its background; None: none are.
        copies_of: the judge of copies: those of each row's best other video count as it in the background, as
            in a clip's query (:func:`~sora_search.query.background.merge_copies`); None: not looked for (a
            whole-library run would read every neighbour's stored descriptor).

    Returns:
        (videos (m, k) int64 with -1 for none and for the row's own video, reference times (m, k) float64,
        similarity above background (m, k) float32).
    """
    k = min(params.neighbours, max(1, index.ntotal))
    sims, ids = index.search(vectors, k)
    videos, times = locate(ids.ravel())
    videos, times = videos.reshape(ids.shape), times.reshape(ids.shape)

    def above(rows: np.ndarray, copies: np.ndarray | None) -> np.ndarray:
        rest = background(index.search, locate, index.ntotal, vectors[rows], videos[rows], sims[rows], n_videos - 1,
                          params, own[rows], copies, ids=ids[rows], times=times[rows], copies_of=copies_of)
        return (sims[rows] - rest[:, None]).astype(np.float32)

    others = np.where(videos == own[:, None], -1, videos)
    every = np.arange(len(vectors))
    out = above(every, None)
    if copies_from is None:
        return others, times, out
    # A video copied several times in the library would have its other copies for background: each would lower
    # the others' scores. The videos each row's video could pair with are its copies; they stand out of its
    # background, as the one copy a query expects does. Only rows that meet a copy change.
    copies = candidate_pairs(own, others, out, copies_from, params.align.min_hits)
    if len(copies):
        rows = every[is_pair(np.broadcast_to(own[:, None], others.shape), others, copies).any(axis=1)]
        if len(rows):
            out[rows] = above(rows, copies)
    return others, times, out


def is_pair(a: np.ndarray, b: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Whether each (a, b) is one of ``pairs`` ((p, 2) int64); ``a`` and ``b`` int64 arrays of one shape."""
    base = int(max(pairs.max(), b.max(initial=0), a.max(initial=0))) + 1
    return np.isin(a * base + b, pairs[:, 0] * base + pairs[:, 1])


def candidate_pairs(own: np.ndarray, videos: np.ndarray, sims: np.ndarray, min_score: float,
                    min_hits: int) -> np.ndarray:
    """(p, 2) int64 (row video, other video) pairs whose hits could align to a score of ``min_score``.

    A segment scores a shrunk mean ``sum(w * x) / (sum(w) + 1)`` with weights at most 1 and one hit per probe row,
    so it scores at most the best, over j, of the sum of the j rows' best similarities, largest first, over j + 1;
    and never more than its best row's similarity.

    Args:
        own: (m,) the video of each row; videos, sims: (m, k) its neighbours (-1: none) and their similarities.
    """
    rows, cols = np.nonzero(videos >= 0)
    if not len(rows):
        return np.zeros((0, 2), dtype=np.int64)
    v, s = videos[rows, cols], sims[rows, cols].astype(np.float64)
    base = int(max(v.max(), own.max())) + 1
    # Each row's best hit on each video.
    key = rows.astype(np.int64) * base + v
    order = np.argsort(key, kind="stable")
    key, s = key[order], s[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    s = np.maximum.reduceat(s, starts)
    key = own[key[starts] // base] * base + key[starts] % base
    # Per (row video, other video): how many rows, and the best; only pairs whose best row reaches the score can.
    order = np.argsort(key, kind="stable")
    key, s = key[order], s[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    count = np.diff(np.r_[starts, len(key)])
    hopeful = (np.maximum.reduceat(s, starts) >= min_score) & (count >= min_hits)
    member = np.repeat(hopeful, count)
    key, s = key[member], s[member]
    if not len(key):
        return np.zeros((0, 2), dtype=np.int64)
    order = np.lexsort((-s, key))
    key, s = key[order], s[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(key)]))
    csum = np.cumsum(s)
    before = (csum[starts] - s[starts])[group]
    bound = (csum - before) / (np.arange(len(key)) - starts[group] + 2)
    keep = np.maximum.reduceat(bound, starts) >= min_score
    pairs = key[starts][keep]
    return np.column_stack([pairs // base, pairs % base])


def pairs_of(video: int, ts: np.ndarray, vectors: np.ndarray, videos: np.ndarray, times: np.ndarray,
             sims: np.ndarray, others: np.ndarray, duration: Callable[[int], float],
             params: DupesParams) -> dict[int, Shared]:
    """The kept segments of one probe video against the other videos its hits could pair it with.

    Args:
        video: the probe video; ``ts`` (n,) float64 its vector times, ``vectors`` (n, dim) its projected vectors.
        videos, times, sims: (n, k) :func:`search_rows` of its vectors.
        others: the videos to align it with (:func:`candidate_pairs`).
        duration: seconds of a video by id.

    Returns:
        {other video: what they share}, only videos with a kept segment.
    """
    qp = params.query
    weights = novelty_weights(vectors, qp.novelty_floor, qp.novelty_full)
    own_s = duration(video)
    out: dict[int, Shared] = {}
    for other in others.tolist():
        rows, cols = np.nonzero(videos == other)
        hit_ref, hit_sim = times[rows, cols], sims[rows, cols]
        hits = Hits(ts[rows], hit_ref, hit_sim, weights[rows])
        spans: list[Span] = []
        probe_cover: list[tuple[float, float]] = []
        other_cover: list[tuple[float, float]] = []
        for span in align(hits, own_s, qp.align):
            part = _covered_part(span, ts, weights, rows, hit_ref, hit_sim, params.cover_ratio, qp.align)
            # New evidence is counted on both sides: a stretch of the probe that keeps finding one second of the
            # other video (a held frame, a still logo) is one second of evidence.
            if part is None or part.evidence_s < params.min_novel_s or part.other_s < params.min_novel_s \
                    or _opening_or_ending(part.span, own_s, duration(other), params):
                continue
            spans += part.pieces
            probe_cover += part.probe
            other_cover += part.other
        if spans:
            spans.sort(key=lambda sp: -sp.score)
            out[other] = Shared(tuple(spans), tuple(probe_cover), tuple(other_cover))
    return out


@dataclass(frozen=True)
class _Covered:
    """What an aligned chain really covers: the chain trimmed to its covered probe seconds (``span``), and cut into
    ``pieces`` where it jumps; the covered stretches of the probe and of the other video; the seconds of new
    evidence in the probe and the seconds of the other video its hits span."""

    span: Span
    pieces: list[Span]
    probe: list[tuple[float, float]]
    other: list[tuple[float, float]]
    evidence_s: float
    other_s: float


def _covered_part(span: Span, ts: np.ndarray, weights: np.ndarray, rows: np.ndarray, ref: np.ndarray,
                  sim: np.ndarray, ratio: float, p: AlignParams) -> _Covered | None:
    """The probe seconds of a chain that the other video really shows, and the chain cut to them.

    A chain may run on through hits that are only a little above background (a similar-looking scene next to the
    copy, most of all in a small library), and bridge the gaps between the pieces of a trailer. So a probe second
    counts as covered only when its best hit within ``max_gap_s`` of the chain's line (from its start to its end in
    both videos) reaches ``ratio`` of the chain's strong level, the 90th percentile of those bests. The covered
    seconds are cut into pieces where two in a row could not follow each other in one chain (a gap longer than
    ``max_gap_s``, or a speed outside ``min_speed``..``max_speed``, give or take two intervals); each piece is
    reported with the chain's score, on its own line (a robust fit of its hits). A covered second covers one
    interval of the probe, and of the other video one interval from its hit (more at a speed above 1x).

    Returns:
        None when no second is covered.
    """
    iv = p.interval_s
    q0, q1, r0, r1 = span.query_start_s, span.query_end_s, span.ref_start_s, span.ref_end_s
    slope = (r1 - r0) / (q1 - q0) if q1 > q0 else 1.0
    t = ts[rows]
    inside = (t >= q0) & (t < q1) & (np.abs(ref - (r0 + (t - q0) * slope)) <= p.max_gap_s)
    r, x, at = rows[inside], sim[inside], ref[inside]
    if not len(r):
        return None
    order = np.lexsort((-x, r))
    r, x, at = r[order], x[order], at[order]
    first = np.r_[True, r[1:] != r[:-1]]  # each probe second's best hit, in time order
    r, x, at = r[first], x[first], at[first]
    keep = (x >= ratio * float(np.quantile(x, 0.9))) & (x > 0)
    if not keep.any():
        return None
    covered, at, w = ts[r[keep]], at[keep], weights[r[keep]]
    dq, dr = np.diff(covered), np.diff(at)
    jump = (dq > p.max_gap_s) | (dr < p.min_speed * dq - 2 * iv) | (dr > p.max_speed * dq + 2 * iv)
    bounds = np.r_[0, np.flatnonzero(jump) + 1, len(covered)]
    pieces = [_piece(span, covered[i:j], at[i:j], p) for i, j in zip(bounds[:-1], bounds[1:])]
    step = max(1.0, slope) * iv
    whole = replace(span, query_start_s=pieces[0].query_start_s, query_end_s=pieces[-1].query_end_s,
                    ref_start_s=min(pc.ref_start_s for pc in pieces), ref_end_s=max(pc.ref_end_s for pc in pieces))
    return _Covered(whole, pieces, [(float(c), float(c) + iv) for c in covered],
                    [(float(a), float(a) + step) for a in at], float(w[1:].sum() + 1),
                    float(at.max() - at.min()) + iv)


def _piece(chain: Span, t: np.ndarray, at: np.ndarray, p: AlignParams) -> Span:
    """The span of covered probe seconds ``t`` whose hits are at ``at`` (both (n,), in time order), on a line
    fitted to them robustly: the median slope between hits half the piece apart, then the median offset. Real time
    (slope 1) is kept unless the fitted slope follows the hits better by more than an interval: in footage that
    barely changes, hits wander and cannot tell a speed, as in :func:`sora_search.query.align.align`."""
    def line(slope: float) -> tuple[float, float]:
        offset = float(np.median(at - slope * t))
        return offset, float(np.median(np.abs(at - offset - slope * t)))

    half = len(t) // 2
    slope = 1.0
    offset, spread = line(slope)
    if half:
        dt = t[half:] - t[:len(t) - half]
        fitted = float(np.clip(np.median((at[half:] - at[:len(t) - half]) / np.maximum(dt, 1e-9)),
                               p.min_speed, p.max_speed))
        fitted_offset, fitted_spread = line(fitted)
        if fitted_spread + p.interval_s < spread:
            slope, offset = fitted, fitted_offset
    lo, hi = float(t[0]), float(t[-1]) + p.interval_s
    return replace(chain, query_start_s=lo, query_end_s=hi, ref_start_s=max(0.0, offset + slope * lo),
                   ref_end_s=max(0.0, offset + slope * hi))


def _opening_or_ending(span: Span, a_s: float, b_s: float, params: DupesParams) -> bool:
    """Whether ``span`` is footage at the start, or the end, of both videos, short and a small part of each."""
    a_len, b_len = span.query_end_s - span.query_start_s, span.ref_end_s - span.ref_start_s
    if max(a_len, b_len) > params.opening_max_s:
        return False
    if a_len >= params.opening_max_share * a_s or b_len >= params.opening_max_share * b_s:
        return False
    start = span.query_start_s <= params.edge_s and span.ref_start_s <= params.edge_s
    end = a_s - span.query_end_s <= params.edge_s and b_s - span.ref_end_s <= params.edge_s
    return start or end


def stored_query(store: Store, index: VectorIndex, projection: Projection, video: VideoRecord,
                 params: QueryParams, interval_s: float) -> list[Ranked]:
    """Answer a query whose clip is an indexed, unchanged library video from its stored vectors (nothing decoded),
    leaving the video out of its answer; segments are kept as :func:`find_duplicates` keeps them, then moved and
    ranked as a query's matches are (motion agreement, runner-up gap, the region check from the stored regions, the
    sequence check, ``min_score``, ``k``)."""
    _, ts, raw = store.vectors_of_video(video.id)
    if not len(ts):
        return []
    vectors = projection.apply(raw)
    own = np.full(len(ts), video.id, dtype=np.int64)
    rules = DupesParams(min_score=params.min_score, query=params)
    copies = Copies(store, params.copy_similarity, params.copy_agreement)
    videos, times, sims = search_rows(index, store.locate, vectors, own, store.indexed_video_count(), params,
                                      rules.copy_bound, copies)
    durations: dict[int, float] = {video.id: max(video.duration_s, float(ts[-1]) + interval_s)}

    def duration(v: int) -> float:
        if v not in durations:
            other = store.video(v)
            durations[v] = other.duration_s if other is not None else 0.0
        return durations[v]

    others = candidate_pairs(own, videos, sims, rules.min_score, params.align.min_hits)[:, 1]
    shared = pairs_of(video.id, ts, vectors, videos, times, sims, others, duration, rules)
    moved = with_motion({v: sh.spans for v, sh in shared.items()}, lambda _: (ts, vectors),
                        stored_stretch(store, projection), params, params.motion_candidates)
    everyone = rank(moved, params.runner_up_gap)
    probe: Probe = None  # the clip's own stored regions, against whichever video it is checked
    mean = projection.region_mean
    if params.region_weight and mean is not None and everyone:
        probe_s, regions = store.regions_between(video.id, float(ts[0]), float(ts[-1]))
        probe = (probe_s, centred(regions, mean)) if regions.shape[1:] == mean.shape else None
    everyone = region_checked(everyone, lambda _: probe, store, projection, params)
    whole = ProbeView(ts, raw, videos, times)  # the video's own rows are -1 among the neighbours
    return shown(sequence_checked(everyone, [whole], store, projection, params, video.id), params)


def indexed_video(store: Store, clip: str | Path) -> tuple[VideoRecord | None, bool]:
    """The indexed video stored under ``clip``'s absolute path, if any, and whether the file is unchanged since it
    was indexed (same size and mtime), so that its stored vectors stand for it."""
    found = store.video_by_path(os.path.abspath(clip))
    if found is None or found.status != "indexed" or not found.n_vectors:
        return None, False
    try:
        st = os.stat(clip)
    except OSError:
        return found, False
    return found, st.st_size == found.size and st.st_mtime == found.mtime


# ---------------------------------------------------------------------------------------------- the whole library
def find_duplicates(store: Store, index: VectorIndex, projection: Projection, params: DupesParams,
                    interval_s: float, progress: Callable[[DuplicatesProgress], None] | None = None
                    ) -> DuplicatesReport:
    """Every pair of indexed videos that share footage, and the groups of same-video copies.

    Args:
        interval_s: the index's sampling interval (1 / fps).
        progress: called after each batch with the vectors searched so far.
    """
    qp = replace(params.query, align=replace(params.query.align, interval_s=interval_s))
    params = replace(params, query=qp)
    records = {v.id: v for v in store.videos(status="indexed") if v.n_vectors > 0}
    where = VectorMap.of(store)
    ends = where.ends(interval_s)
    durations = {v: max(r.duration_s, ends.get(v, 0.0)) for v, r in records.items()}
    total, done = len(where.ids), 0
    stretch = stored_stretch(store, projection)
    found: dict[tuple[int, int], Shared] = {}
    for ids, raw in _batches(store, where, params.batch_vectors):
        own, ts = where.locate(ids)
        order = np.lexsort((ts, own))  # each video's rows together, in time order
        own, ts, vectors = own[order], ts[order], projection.apply(raw[order])
        videos, times, sims = search_rows(index, where.locate, vectors, own, len(records), qp, params.copy_bound)
        candidates = candidate_pairs(own, videos, sims, params.min_score, qp.align.min_hits)
        starts = np.flatnonzero(np.r_[True, own[1:] != own[:-1]])
        for lo, hi in zip(starts, np.r_[starts[1:], len(own)]):
            v = int(own[lo])
            rows = slice(lo, hi)
            pairs = pairs_of(v, ts[rows], vectors[rows], videos[rows], times[rows], sims[rows],
                             candidates[candidates[:, 0] == v, 1], lambda o: durations.get(o, 0.0), params)
            pairs = _moved(pairs, ts[rows], vectors[rows], stretch, qp)
            found.update(((v, o), sh) for o, sh in _runner_up(pairs, params.runner_up_gap).items())
        done += len(ids)
        if progress is not None:
            progress(DuplicatesProgress(done, total, len({tuple(sorted(p)) for p, sh in found.items()
                                                           if sh.score >= params.min_score})))
    return build_report(found, records, durations, params)


def _batches(store: Store, where: VectorMap, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The stored vectors of :class:`VectorMap` ``where``, read in id order, as batches of whole videos of about
    ``size`` vectors: (ids (b,) int64, raw vectors (b, raw_dim) float32). Vectors stored after ``where`` was read
    are left out."""
    videos, counts = np.unique(where.videos[where.videos >= 0], return_counts=True)
    left = dict(zip(videos.tolist(), counts.tolist()))
    held_ids: list[np.ndarray] = []
    held_raw: list[np.ndarray] = []
    for ids, raw in store.iter_vectors(batch_size=size):
        known = np.isin(ids, where.ids)
        held_ids.append(ids[known])
        held_raw.append(raw[known])
        for v, n in zip(*np.unique(where.locate(ids[known])[0], return_counts=True)):
            left[int(v)] -= int(n)
        all_ids = np.concatenate(held_ids)
        # A video whose last vectors are still to come waits for the next batch.
        owner = where.locate(all_ids)[0]
        waiting = np.isin(owner, [v for v, n in left.items() if n > 0])
        if (~waiting).any():
            all_raw = np.concatenate(held_raw)
            yield all_ids[~waiting], all_raw[~waiting]
            held_ids, held_raw = [all_ids[waiting]], [all_raw[waiting]]
    if held_ids and sum(len(i) for i in held_ids):
        yield np.concatenate(held_ids), np.concatenate(held_raw)


def _moved(pairs: dict[int, Shared], ts: np.ndarray, vectors: np.ndarray, stretch: Stretch,
           params: QueryParams) -> dict[int, Shared]:
    """One probe video's pairs moved by their motion agreement (:func:`~sora_search.query.motion.with_motion`), every
    pair: a copy changes as its original does, another stretch of the same camera's recording does not."""
    moved = with_motion({v: sh.spans for v, sh in pairs.items()}, lambda _: (ts, vectors), stretch, params)
    return {v: replace(sh, spans=tuple(moved[v])) for v, sh in pairs.items()}


def _runner_up(pairs: dict[int, Shared], gap: float) -> dict[int, Shared]:
    """The query's runner-up rule among one probe video's pairs: each loses ``gap`` of its gap to the best."""
    if not gap or not pairs:
        return pairs
    top = max(sh.score for sh in pairs.values())
    return {v: replace(sh, spans=tuple(replace(sp, score=sp.score - gap * (top - sh.score)) for sp in sh.spans))
            for v, sh in pairs.items()}
