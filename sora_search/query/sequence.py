"""Sequence check: when no video matches well, which candidate follows the probe second by second?

A copy under heavy edits (boxes and stickers, a blend with other footage, a strong downscale) can sit at or below the
background at every second, so the search lists its reference weakly or not at all, behind videos of the same kind of
scene. What still sets it apart is order: second after second its similarity stays a little above what the probe's other
candidates reach, along one diagonal (the same offset between the two clocks), where a look-alike scores high here and
there. Each candidate (a video among the neighbours of the probe's whole-frame seconds) is compared with every probe
second in two spaces, through the projection and on the descriptor centred on the library's mean, each as standard
scores against all the candidates' seconds read; a pair's score is their sum over sqrt(2). A candidate's evidence is its
best run along a diagonal of (pair score - ``sequence_cost``). :func:`winner` names the candidate whose evidence beats
every other's ``sequence_margin`` times, with the span of that run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sora_search.encoder.base import l2_normalize
from sora_search.types import Span

if TYPE_CHECKING:
    from sora_search.encoder import Projection
    from sora_search.params import QueryParams
    from sora_search.store import Store

_EPS = 1e-6


@dataclass(frozen=True, eq=False)
class ProbeView:
    """One whole-frame view of the probe: its searched ``seconds`` (n,), their ``raw`` descriptors (n, raw_dim), and
    each second's neighbours as the search found them, ``hit_videos`` and ``hit_seconds`` (n, k)."""

    seconds: np.ndarray
    raw: np.ndarray
    hit_videos: np.ndarray
    hit_seconds: np.ndarray


@dataclass(frozen=True)
class Run:
    """A candidate's best diagonal run: its evidence and where it lies in both videos (a span scored 0: whoever
    reports it gives it a score)."""

    evidence: float
    span: Span


def candidates(views: Sequence[ProbeView], limit: int, span_s: float,
               exclude: int | None = None) -> dict[int, float]:
    """The ``limit`` videos with the most neighbour hits over ``views`` (ties by id), each with the start of the
    ``span_s`` seconds of it that hold most of its hits (the earliest such stretch)."""
    videos = np.concatenate([v.hit_videos.ravel() for v in views]) if views else np.zeros(0, dtype=np.int64)
    seconds = np.concatenate([v.hit_seconds.ravel() for v in views]) if views else np.zeros(0)
    ok = videos >= 0
    if exclude is not None:
        ok &= videos != exclude
    videos, seconds = videos[ok], seconds[ok]
    ids, counts = np.unique(videos, return_counts=True)
    chosen = ids[np.lexsort((ids, -counts))][:limit]
    starts = {}
    for v in chosen:
        hits = np.sort(seconds[videos == v])
        inside = np.searchsorted(hits, hits + span_s, side="right") - np.arange(len(hits))
        starts[int(v)] = float(hits[int(np.argmax(inside))])
    return starts


def best_run(pairs: np.ndarray, probe_s: np.ndarray, ref_s: np.ndarray, interval_s: float) -> Run:
    """The highest-sum run of ``pairs`` ((n, m) pair scores less the step cost) along one diagonal: probe second
    ``probe_s[i]`` against reference second ``ref_s[j]`` with ``ref_s[j] - probe_s[i]`` the same offset, probe
    seconds in order (missing ones, such as blank seconds, neither add nor break a run)."""
    p = np.rint(np.asarray(probe_s) / interval_s).astype(np.int64)
    r = np.rint(np.asarray(ref_s) / interval_s).astype(np.int64)
    rows, cols = p - p.min(), r - r.min()
    n = int(rows.max()) + 1
    # One column per offset: diagonal[i, d] pairs probe step i with reference step i + d - (n - 1).
    diagonal = np.zeros((n, n + int(cols.max())))
    diagonal[rows[:, None], cols[None, :] - rows[:, None] + n - 1] = pairs
    sums = np.vstack([np.zeros((1, diagonal.shape[1])), np.cumsum(diagonal, axis=0)])
    gains = sums - np.minimum.accumulate(sums, axis=0)
    end, d = np.unravel_index(int(np.argmax(gains)), gains.shape)
    if gains[end, d] <= 0:
        return Run(0.0, Span(0.0, 0.0, 0.0, 0.0, 0.0))
    # The run is steps start .. end - 1, from the latest lowest prefix: no leading step without a pair in it.
    start = end - int(np.argmin(sums[end::-1, d]))
    first_s = float(p.min() + start) * interval_s
    last_s = float(p.min() + end) * interval_s
    offset_s = float(r.min() - p.min() + d - (n - 1)) * interval_s
    return Run(float(gains[end, d]), Span(first_s, last_s, first_s + offset_s, last_s + offset_s, 0.0))


def _standard(sims: np.ndarray) -> np.ndarray:
    """Each row's similarities as standard scores against the whole row."""
    return (sims - sims.mean(axis=1, keepdims=True)) / (sims.std(axis=1, keepdims=True) + _EPS)


def evidence(views: Sequence[ProbeView], store: Store, projection: Projection, params: QueryParams,
             exclude: int | None = None) -> dict[int, Run]:
    """Each candidate's best run (see the module) over ``views``. Of each candidate, the stored seconds read are the
    probe's length that holds most of its hits and as much again on either side, so a long video costs no more than
    a short one. Empty when there is no candidate or no centring mean."""
    views = [v for v in views if len(v.seconds)]
    if not views or projection.mean is None:
        return {}
    interval = params.align.interval_s
    reach = max(float(v.seconds.max() - v.seconds.min()) for v in views) + interval
    stretches = []
    for video_id, start in candidates(views, params.sequence_candidates, reach, exclude).items():
        ref_s, raw = store.vectors_between(video_id, start - reach, start + 2 * reach)
        if len(ref_s):
            stretches.append((video_id, ref_s, raw))
    if not stretches:
        return {}
    raw_all = np.concatenate([raw for _, _, raw in stretches])
    spaces = [(projection.apply, projection.apply(raw_all)),
              (lambda x: l2_normalize(x - projection.mean), l2_normalize(raw_all - projection.mean))]
    ends = np.cumsum([len(ref_s) for _, ref_s, _ in stretches])
    runs: dict[int, Run] = {}
    for view in views:
        pairs = sum(_standard(into(view.raw) @ lib.T) for into, lib in spaces) / np.sqrt(len(spaces))
        pairs = pairs - params.sequence_cost
        for (video_id, ref_s, _), end in zip(stretches, ends):
            run = best_run(pairs[:, end - len(ref_s):end], view.seconds, ref_s, interval)
            if video_id not in runs or run.evidence > runs[video_id].evidence:
                runs[video_id] = run
    return runs


def winner(views: Sequence[ProbeView], store: Store, projection: Projection, params: QueryParams,
           exclude: int | None = None) -> tuple[int, Span] | None:
    """The candidate whose evidence is positive and at least ``sequence_margin`` times every other's, with the span
    of its run; None when no candidate stands out."""
    runs = evidence(views, store, projection, params, exclude)
    if not runs:
        return None
    order = sorted(runs, key=lambda v: (-runs[v].evidence, v))
    best = runs[order[0]]
    runner_up = runs[order[1]].evidence if len(order) > 1 else 0.0
    if best.evidence <= 0 or best.evidence < params.sequence_margin * runner_up:
        return None
    return order[0], best.span
