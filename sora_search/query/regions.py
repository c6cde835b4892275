"""Region check: do the parts of the probe's frames match the same parts of the matched stretch?

The searched descriptor sums every region of a frame, so a caption, a sticker or a blended layer over one part of a
copy moves the whole vector, and an unrelated video of the same kind of scene can come first. The encoder also keeps
each frame's 2x2 quadrants apart (:meth:`~sora_search.encoder.Encoder.embed_regions`; stored with every library
second). Along a match, each probe second's quadrants are compared with those of the reference seconds the span
covers, position by position, each centred on the library's mean at that position: the mean of the best two of the
four similarities, so two quadrants spoiled by an overlay do not count; each probe second keeps its best reference
second; the span's region score is their mean. A match whose parts agree less than the best-agreeing match's loses
score in proportion (:func:`shifts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from sora_search.types import Span

if TYPE_CHECKING:
    from sora_search.store import Store

# A probe view's seconds and its centred regions (:func:`centred`), or None where the view has none.
Probe = tuple[np.ndarray, np.ndarray] | None

# Quadrants that count per second: the best 2 of 4 (an overlay or a blend rarely covers more than half a frame).
TOP_REGIONS = 2
_EPS = 1e-6


def centred(regions: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """(n, r, d) region vectors less the library's (r, d) mean per position, each L2-normalised."""
    x = np.asarray(regions, dtype=np.float32) - mean
    return x / np.maximum(np.linalg.norm(x, axis=2, keepdims=True), _EPS)


def region_score(probe_s: np.ndarray, probe: np.ndarray, span: Span, ref_s: np.ndarray, ref: np.ndarray, *,
                 top: int = TOP_REGIONS) -> float | None:
    """The span's region score (see the module), or None when either side has no second in it.

    Args:
        probe_s, probe: (n,) seconds and (n, r, d) centred regions (:func:`centred`) of the probe view matched.
        span: the match; probe seconds within half a second of it count.
        ref_s, ref: (m,) seconds and (m, r, d) centred regions of the reference around the span.
    """
    rows = (probe_s >= span.query_start_s - 0.5) & (probe_s <= span.query_end_s + 0.5)
    if not rows.any() or not len(ref_s):
        return None
    sims = np.einsum("qkd,lkd->qlk", probe[rows], ref)
    return float(np.sort(sims, axis=2)[:, :, -top:].mean(axis=2).max(axis=1).mean())


def shifts(scores: dict[int, float | None], weight: float) -> dict[int, float]:
    """Each video's move: ``weight`` times its region score less the best of the checked videos'. The check ranks the
    best matches among themselves and only takes away: the best-matching video keeps its score, so another stretch of
    the same room, whose parts match as well as the rest, is not lifted over the threshold. Nothing moves unless every
    checked video has a score (one indexed before regions were stored has none, and would never lose) and there are
    at least two."""
    if not weight or len(scores) < 2 or any(s is None for s in scores.values()):
        return {}
    known = {v: s for v, s in scores.items() if s is not None}
    best = max(known.values())
    return {v: weight * (s - best) for v, s in known.items()}


def region_moves(checked: Sequence[tuple[int, Span, Probe]], store: Store, mean: np.ndarray,
                 weight: float) -> dict[int, float]:
    """Each checked video's move (:func:`shifts`): the region score of its span, given as (video id, span, the probe
    view it was found in), against the video's stored regions around the span's reference seconds."""
    if not weight or len(checked) < 2 or any(probe is None for _, _, probe in checked):
        return {}  # as shifts() would answer, without reading the store
    scores: dict[int, float | None] = {}
    for video_id, span, probe in checked:
        ref_s, ref = store.regions_between(video_id, span.ref_start_s - 1, span.ref_end_s + 1)
        scores[video_id] = None if probe is None or ref.shape[1:] != mean.shape else \
            region_score(*probe, span, ref_s, centred(ref, mean))
    return shifts(scores, weight)
