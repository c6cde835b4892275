"""Temporal alignment: from k-NN hits per probe second to matching spans in one video.

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
as the chain's hit before it weighs ``AlignParams.repeat_weight`` (0): the probe changed, the reference did not.
The similarities are background-normalised before they get here (:mod:`sora_search.query.background`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sora_search.params import AlignParams, QueryParams
from sora_search.types import Span

_DEFAULTS = QueryParams()


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


def novelty_weights(vectors: np.ndarray, floor: float = _DEFAULTS.novelty_floor,
                    full: float | None = _DEFAULTS.novelty_full) -> np.ndarray:
    """(m,) weight of each probe second: how far its vector moved from the second before, from 0 (a held frame) to 1.

    ``vectors`` are the probe's L2-normalised vectors in time order; the first second always weighs 1, so a probe
    that never changes still counts as one second of evidence.
    """
    w = np.ones(len(vectors))
    if full is None or len(vectors) < 2:
        return w
    dist = 1.0 - np.einsum("ij,ij->i", vectors[1:], vectors[:-1])
    w[1:] = np.clip((dist - floor) / (full - floor), 0.0, 1.0)
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
        if params.repeat_weight is not None:
            cw[1:][cr[1:] == cr[:-1]] *= params.repeat_weight
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
    wandering on through chance hits. Each step also pays ``speed_penalty`` per second of drift from real-time
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
    # Only a hit whose best chain weighs more than 0 can extend one (a step never adds weight), so each hit looks
    # back over those alone: in order, a prefix of them dropping out as the window moves on. Where few hits are
    # strong (a probe that matches nothing) most hits have none to look at.
    ahead = np.empty(n, dtype=np.int64)  # ahead[:n_ahead]: the hits so far whose best chain weighs > 0
    n_ahead = start = lo = 0
    # Hits of one probe second cannot precede one another (a step moves forward in the probe), so each second's hits
    # look back over the same candidates at once.
    for a, b in zip(*_runs(qa)):
        while qa[lo] < qa[a] - p.max_gap_s:
            lo += 1
        while start < n_ahead and ahead[start] < lo:
            start += 1
        if start < n_ahead:
            js = ahead[start:n_ahead]
            at = np.arange(a, b)
            dq = qa[at, None] - qa[js]
            dr = ra[at, None] - ra[js]
            f = first[js]
            gq, gr = qa[at, None] - qa[f], ra[at, None] - ra[f]
            ok = ((dq > 0) & (dr >= 0) & (dr >= p.min_speed * dq - tol) & (dr <= p.max_speed * dq + tol)
                  & (gr >= p.min_speed * gq - tol) & (gr <= p.max_speed * gq + tol))
            cand = np.where(ok, best[js] - p.speed_penalty * np.abs(dr - dq), -np.inf)
            j = np.argmax(cand, axis=1)
            top = cand[np.arange(len(at)), j]
            grow = top > 0
            best[at[grow]] = sa[at[grow]] + top[grow]
            prev[at[grow]] = js[j[grow]]
            first[at[grow]] = first[js[j[grow]]]
        kept = np.flatnonzero(best[a:b] > 0) + a
        ahead[n_ahead:n_ahead + len(kept)] = kept
        n_ahead += len(kept)
    i = int(np.argmax(best))
    if best[i] <= 0:
        return idx[:0]
    chain = []
    while i >= 0:
        chain.append(i)
        i = int(prev[i])
    return idx[np.array(chain[::-1], dtype=np.int64)]


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the runs of equal values in ``values`` ((n,), sorted), ends exclusive."""
    cut = np.flatnonzero(values[1:] != values[:-1]) + 1
    return np.r_[0, cut], np.r_[cut, len(values)]
