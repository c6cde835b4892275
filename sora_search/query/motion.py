"""Motion agreement: does the probe change, second by second, the way the matched stretch of the video does?

A copy of footage shows the same small changes as its original at the same moments: a head turns, a page
scrolls, a hand moves. Another stretch of the same recording (the same presenter, room and light) looks as
similar frame by frame but changes differently. Along a matched span, each probe second's step from the second
before (the difference of their vectors) is compared with the reference's step over the aligned seconds; the
agreement is the cosine between the two sequences of steps, from -1 to 1, near 0 when the changes are unrelated.
Steps where either side barely moves (a held frame, a still camera on a still room) are left out: there is nothing
to agree on, and a span with too few moving steps gets no verdict at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from sora_search.params import QueryParams
from sora_search.store.vectors import nearest
from sora_search.types import Span

if TYPE_CHECKING:
    from sora_search.encoder import Projection
    from sora_search.store import Store

# A video's projected vectors between two times, both included: (seconds (n,), vectors (n, d)), in time order.
Stretch = Callable[[int, float, float], tuple[np.ndarray, np.ndarray]]


def motion_agreement(probe_s: np.ndarray, probe: np.ndarray, span: Span, ref_s: np.ndarray, ref: np.ndarray, *,
                     min_step: float, min_steps: int = 2) -> float | None:
    """The agreement of probe and reference changes along ``span``, or None when too little moves to tell.

    Args:
        probe_s, probe: (n,) seconds and (n, d) L2-normalised vectors of one probe view, in time order.
        span: the match; probe seconds in it are mapped to the reference at the span's own speed.
        ref_s, ref: (m,) seconds and (m, d) vectors of the reference video around the span, in time order.
        min_step: a step shorter than this (the norm of a vector difference) on either side is left out.
        min_steps: fewer moving steps than this give no verdict.
    """
    inside = (probe_s >= span.query_start_s - 1e-6) & (probe_s < span.query_end_s - 1e-6)
    if inside.sum() < min_steps + 1 or len(ref_s) == 0:
        return None
    q_s, q = probe_s[inside], probe[inside]
    speed = (span.ref_end_s - span.ref_start_s) / max(span.query_end_s - span.query_start_s, 1e-6)
    aligned = span.ref_start_s + (q_s - span.query_start_s) * speed
    # A probe second half way between two reference seconds takes the later (at 0.5x, every other one does).
    dq, dr = np.diff(q, axis=0), np.diff(ref[nearest(ref_s, aligned, later_on_tie=True)], axis=0)
    moving = (np.linalg.norm(dq, axis=1) > min_step) & (np.linalg.norm(dr, axis=1) > min_step)
    if moving.sum() < min_steps:
        return None
    dq, dr = dq[moving], dr[moving]
    return float((dq * dr).sum() / np.sqrt((dq * dq).sum() * (dr * dr).sum()))


def stored_stretch(store: Store, projection: Projection) -> Stretch:
    """A :data:`Stretch` of the library's stored vectors, through ``projection``."""
    def stretch(video_id: int, start_s: float, end_s: float) -> tuple[np.ndarray, np.ndarray]:
        ref_s, raw = store.vectors_between(video_id, start_s, end_s)
        return ref_s, projection.apply(raw) if len(ref_s) else raw
    return stretch


def with_motion(best: Mapping[int, Sequence[Span]], probe_of: Callable[[int], tuple[np.ndarray, np.ndarray]],
                stretch: Stretch, params: QueryParams, limit: int | None = None) -> dict[int, list[Span]]:
    """``best`` (each video's spans, best first), the spans of its ``limit`` best videos (None: all of them) moved by
    ``motion_weight`` times their best span's motion agreement less ``motion_baseline`` (at most to 1); unchanged
    where too little moves to tell.

    Args:
        probe_of: a video's probe seconds and vectors (of the view its spans were found in).
        stretch: a video's stored vectors around a span, through the probe's projection.
    """
    out = {video_id: list(spans) for video_id, spans in best.items()}
    if not params.motion_weight:
        return out
    pad = 2 * params.align.interval_s
    for video_id in sorted(out, key=lambda v: -out[v][0].score)[:limit]:
        span = out[video_id][0]
        probe_s, probe = probe_of(video_id)
        ref_s, ref = stretch(video_id, span.ref_start_s - pad, span.ref_end_s + pad)
        agreement = motion_agreement(probe_s, probe, span, ref_s, ref, min_step=params.motion_min_step) \
            if len(ref_s) else None
        if agreement is not None:
            shift = params.motion_weight * (agreement - params.motion_baseline)
            out[video_id] = [replace(sp, score=min(1.0, sp.score + shift)) for sp in out[video_id]]
    return out
