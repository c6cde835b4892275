"""From k-NN hits per probe second to ranked videos with matching spans.

Each probe vector's neighbours vote for (video, reference time). Per video, temporal alignment finds chains of
hits that move forward in both clips at a plausible relative speed (a temporal network, as in Tan et al. 2009:
the maximum-weight chain by dynamic programming). A chain tolerates speed changes (0.5x-2x by default), dropped
or edited frames (gaps) and partial overlap, and several chains per video give several segments (a clip cut into
other footage, or one that repeats). The score of a segment is a shrunk weighted mean similarity,
``sum(w * sim) / (sum(w) + 1)``: it stays near the per-frame similarity for long, consistent segments and falls for
a chance match of a frame or two, so one threshold means the same thing for short and long probes. The weight ``w``
of a probe second is its novelty (:func:`novelty_weights`): how much it changed from the second before. A held
frame or a fixed camera on a still room adds little new evidence each second, and same-scene footage (another
recording from the same camera) otherwise scores like a copy. For the same reason a hit on the same reference second
as the chain's hit before it weighs ``REPEAT_WEIGHT`` (0): the probe changed, the reference did not.

Similarities are first normalised against the library as a background set (as in the VSC2022 baseline, which
normalises against a separate background set of unrelated videos): from each probe vector's similarity to a
video, :func:`background_similarity` subtracts how similar the *next best other videos* are to that vector. A dark,
blurry or generic frame resembles many videos and earns little; a frame that resembles one video far more than
any other earns a lot. This is what makes one threshold work across queries: without it an easy-looking probe
lifts every candidate at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .types import Span

# Background: per probe vector, the mean of its best similarity to each of the videos ranked BACKGROUND_SKIP + 1 to
# BACKGROUND_SKIP + BACKGROUND_TAKE (the best video is skipped: it may be the copy). Measured on the accuracy
# benchmark (benchmarks/accuracy, README): weight 1 over ranks 2-6 raised micro-AP most.
BACKGROUND_SKIP = 1
BACKGROUND_TAKE = 5
# The background is never taken below this (a prior for libraries too small or too varied to be their own background:
# six unrelated videos say little about what footage in general looks like). On the accuracy benchmark's 57-video
# library 10% of probe seconds have a background below 0.19; a floor of 0.2 cost 0.002 micro-AP there (0.25 cost
# 0.005) and took the demo's unrelated clip of the time (a flat, flickering frame, since replaced) from 0.36 to 0.22,
# below the default threshold.
BACKGROUND_FLOOR = 0.2
SPEED_PENALTY = 0.005  # chain weight lost per second of drift from real-time speed (a tie-breaker, see _best_chain)
# Novelty: a probe second counts in a segment's score by how much it changed from the second before (cosine distance
# of the projected vectors): not at all up to NOVELTY_FLOOR (what re-encoding noise moves a still frame), fully from
# NOVELTY_FULL on. A still held for ten seconds is one second of evidence, not ten. None: every second counts fully.
NOVELTY_FLOOR = 0.02
NOVELTY_FULL: float | None = 0.04
# A chain hit on the same reference second as the hit before it weighs this much (None: like any other): the probe
# moved on and the reference did not, so it is no new evidence of a copy. A copy slowed to 0.5x shows each reference
# second twice and counts it once; footage that holds on one reference frame (a photo, a still room) while the probe
# changes no longer builds a long chain on it. On the accuracy benchmark's cached probes: micro-AP 0.960 -> 0.965,
# recall@1 0.965 -> 0.974 (0.5: 0.963 and 0.965).
REPEAT_WEIGHT: float | None = 0.0


@dataclass(frozen=True)
class AlignParams:
    """Knobs of the temporal alignment. Times in seconds; ``interval_s`` is the sampling interval (1 / fps)."""

    interval_s: float = 1.0
    min_speed: float = 0.5
    max_speed: float = 2.0
    max_gap_s: float = 5.0          # longest stretch of the probe with no supporting hit inside one segment
    max_segments: int = 5
    min_hits: int = 2               # fewer hits than this only count when the probe itself is that short
    segment_keep_ratio: float = 0.5  # extra segments must score at least this share of the best one
    hit_threshold: float = 0.05     # a hit adds (sim - hit_threshold) to a chain: weak hits cost, strong ones pay


@dataclass(frozen=True)
class Hits:
    """All neighbour hits of one probe against one video.

    Attributes:
        query_s: (n,) float64 probe timestamps.
        ref_s: (n,) float64 reference timestamps.
        sim: (n,) float32 similarities (inner products of L2-normalised vectors).
        weight: (n,) float64 weight of each hit's probe second (:func:`novelty_weights`); None: all 1.
    """

    query_s: np.ndarray
    ref_s: np.ndarray
    sim: np.ndarray
    weight: np.ndarray | None = None


def background_similarity(video_ids: np.ndarray, sims: np.ndarray, n_videos: int, *,
                          skip: int = BACKGROUND_SKIP, take: int = BACKGROUND_TAKE,
                          floor: float = BACKGROUND_FLOOR) -> np.ndarray:
    """How similar the library's other videos are to each probe vector, from its k-NN results alone.

    Per row: the best similarity to each video among the neighbours, sorted; the mean of ranks ``skip`` to
    ``skip + take - 1`` (0-based). A video of the library that is not among the neighbours is at most as similar as
    the last neighbour, so a missing rank takes the row's smallest similarity. Ranks beyond the library's
    ``n_videos``, or beyond the videos of a row that holds the whole library (padded with -1), do not exist and are
    left out; a row with no rank at all has only the prior. No row's background is below ``floor``.

    Args:
        video_ids: (m, k) int64 video of each neighbour, -1 for none.
        sims: (m, k) float32 similarity of each neighbour.
        n_videos: videos in the library.
        floor: the least background a row gets (a prior, see ``BACKGROUND_FLOOR``).

    Returns:
        (m,) float32.
    """
    m, k = video_ids.shape
    rows = np.repeat(np.arange(m), k)
    vid, sim = video_ids.ravel(), sims.ravel().astype(np.float32)
    valid = vid >= 0
    rows, vid, sim = rows[valid], vid[valid], sim[valid]
    out = np.full(m, floor, dtype=np.float32)
    ranks = min(take, max(0, n_videos - skip))
    if ranks == 0 or len(sim) == 0:
        return out
    # Best similarity per (row, video): sort by row, video, similarity descending and keep each pair's first.
    order = np.lexsort((-sim, vid, rows))
    rows, vid, sim = rows[order], vid[order], sim[order]
    first = np.r_[True, (rows[1:] != rows[:-1]) | (vid[1:] != vid[:-1])]
    rows, sim = rows[first], sim[first]
    # Rank the videos within each row.
    order = np.lexsort((-sim, rows))
    rows, sim = rows[order], sim[order]
    row_start = np.searchsorted(rows, np.arange(m))
    rank = np.arange(len(rows)) - row_start[rows]
    keep = (rank >= skip) & (rank < skip + ranks)
    total = np.bincount(rows[keep], weights=sim[keep], minlength=m)
    found = np.bincount(rows[keep], minlength=m)
    # Unseen videos exist only when every neighbour slot was filled (a short row has seen the whole library).
    full_row = valid.reshape(m, k).all(axis=1)
    fill = np.where(full_row, ranks - found, 0)
    count = found + fill
    row_min = sims.min(axis=1).astype(np.float64)
    total = total + fill * np.where(full_row, row_min, 0.0)
    out[count > 0] = np.maximum(total[count > 0] / count[count > 0], floor).astype(np.float32)
    return out


def novelty_weights(vectors: np.ndarray) -> np.ndarray:
    """(m,) weight of each probe second: how far its vector moved from the second before, from 0 (a held frame) to 1.

    ``vectors`` are the probe's L2-normalised vectors in time order; the first second always weighs 1, so a probe
    that never changes still counts as one second of evidence.
    """
    w = np.ones(len(vectors))
    if NOVELTY_FULL is None or len(vectors) < 2:
        return w
    dist = 1.0 - np.einsum("ij,ij->i", vectors[1:], vectors[:-1])
    w[1:] = np.clip((dist - NOVELTY_FLOOR) / (NOVELTY_FULL - NOVELTY_FLOOR), 0.0, 1.0)
    return w


def group_hits(probe_s: np.ndarray, video_ids: np.ndarray, ref_s: np.ndarray, sims: np.ndarray,
               weights: np.ndarray | None = None) -> dict[int, Hits]:
    """Split k-NN results by video, keeping each (probe frame, reference frame) pair once.

    Args:
        probe_s: (m,) float64 timestamps of the probe vectors.
        video_ids: (m, k) int64 video of each neighbour, -1 for none.
        ref_s: (m, k) float64 timestamp of each neighbour in its video.
        sims: (m, k) float32 similarity of each neighbour.
        weights: (m,) weight of each probe vector (:func:`novelty_weights`); None: all 1.
    """
    m, k = video_ids.shape
    q = np.repeat(probe_s, k)
    w = np.repeat(np.ones(m) if weights is None else np.asarray(weights, np.float64), k)  # all 1: unweighted
    vid, r, s = video_ids.ravel(), ref_s.ravel(), sims.ravel()
    valid = vid >= 0
    q, vid, r, s, w = q[valid], vid[valid], r[valid], s[valid], w[valid]
    out: dict[int, Hits] = {}
    for v in np.unique(vid):
        sel = vid == v
        out[int(v)] = Hits(q[sel].astype(np.float64), r[sel].astype(np.float64), s[sel].astype(np.float32), w[sel])
    return out


def align(hits: Hits, probe_duration_s: float, params: AlignParams = AlignParams()) -> list[Span]:
    """Find the matching segments between a probe and one video, best first.

    Returns:
        Spans whose ``score`` is the shrunk mean similarity of the chain's hits; empty if nothing aligns.
    """
    order = np.lexsort((hits.ref_s, hits.query_s))
    q, r, s = hits.query_s[order], hits.ref_s[order], hits.sim[order].astype(np.float64)
    w = np.ones(len(q)) if hits.weight is None else hits.weight[order]
    alive = np.ones(len(q), dtype=bool)
    probe_frames = max(1, int(round(probe_duration_s / params.interval_s)))
    min_hits = min(params.min_hits, probe_frames)
    spans: list[Span] = []
    while alive.any() and len(spans) < params.max_segments:
        chain = _best_chain(q, r, s, alive, params)
        if len(chain) == 0:
            break
        cq, cr, cs, cw = q[chain], r[chain], s[chain], w[chain].copy()
        cw[0] = 1.0  # the segment's first second is new evidence whatever came before it
        if REPEAT_WEIGHT is not None:
            cw[1:][cr[1:] == cr[:-1]] *= REPEAT_WEIGHT
        n_frames = len(chain)  # a chain moves strictly forward in the probe: one hit per probe frame
        score = float((cw * cs).sum() / (cw.sum() + 1))
        # Whatever the chain covers in the probe is used up, so a later segment is a different part of the probe.
        lo, hi = cq.min(), cq.max()
        alive &= ~((q >= lo) & (q <= hi))
        alive[chain] = False
        if n_frames < min_hits:
            continue
        if spans and score < params.segment_keep_ratio * spans[0].score:
            continue
        end_q = min(hi + params.interval_s, max(probe_duration_s, hi))
        spans.append(Span(query_start_s=float(lo), query_end_s=float(end_q),
                          ref_start_s=float(cr.min()), ref_end_s=float(cr.max() + params.interval_s), score=score))
    spans.sort(key=lambda sp: sp.score, reverse=True)
    return spans


def _best_chain(q: np.ndarray, r: np.ndarray, s: np.ndarray, alive: np.ndarray, p: AlignParams) -> np.ndarray:
    """Indices of the maximum-weight chain among ``alive`` hits (sorted by probe time, then reference time).

    A hit j may precede hit i when i is later in the probe by at most ``max_gap_s`` and later in the reference by an
    amount that fits a speed in [min_speed, max_speed], give or take one sampling interval of jitter; the same bound
    holds between i and the chain's first hit, so jitter cannot add up to a chain that stands still (near-static
    footage would otherwise map a whole probe onto one reference second). A hit weighs ``sim - hit_threshold`` and a
    chain may start anywhere, so it spans the strong, consistent hits and stops where the copy stops instead of
    wandering on through chance hits. Each step also pays ``SPEED_PENALTY`` per second of drift from real-time
    speed: it decides nothing when the content does, and picks real time where the content cannot tell.
    """
    idx = np.flatnonzero(alive)
    n = len(idx)
    if n == 0:
        return idx
    qa, ra, sa = q[idx], r[idx], s[idx] - p.hit_threshold
    best = sa.copy()
    prev = np.full(n, -1, dtype=np.int64)
    first = np.arange(n)
    tol = p.interval_s
    lo = 0
    for i in range(n):
        while qa[lo] < qa[i] - p.max_gap_s:
            lo += 1
        if lo >= i:
            continue
        dq = qa[i] - qa[lo:i]
        dr = ra[i] - ra[lo:i]
        f = first[lo:i]
        gq, gr = qa[i] - qa[f], ra[i] - ra[f]
        ok = ((dq > 0) & (dr >= 0) & (dr >= p.min_speed * dq - tol) & (dr <= p.max_speed * dq + tol)
              & (gr >= p.min_speed * gq - tol) & (gr <= p.max_speed * gq + tol))
        if ok.any():
            cand = np.where(ok, best[lo:i] - SPEED_PENALTY * np.abs(dr - dq), -np.inf)
            j = int(np.argmax(cand))
            if cand[j] > 0:
                best[i] = sa[i] + cand[j]
                prev[i] = lo + j
                first[i] = first[lo + j]
    i = int(np.argmax(best))
    if best[i] <= 0:
        return idx[:0]
    chain = []
    while i >= 0:
        chain.append(i)
        i = int(prev[i])
    return idx[np.array(chain[::-1], dtype=np.int64)]
