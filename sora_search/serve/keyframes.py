"""Keyframes of an indexed video from its stored vectors: the seconds where its footage changes most.

Nothing is decoded. Walking the seconds in order, a second is kept when it differs enough from the last kept one
(cosine distance of the stored vectors); the threshold is the smallest that keeps at most ``n``, found by bisection.
Measuring against the last *kept* second, not the one before, lets slow drift (a pan) add up to a new frame while a
held shot stays one frame, so a two-hour film reads as a dozen pictures of its different parts.
"""

from __future__ import annotations

import numpy as np

DEFAULT_COUNT = 10
MAX_COUNT = 48


def _walk(vectors: np.ndarray, threshold: float) -> list[int]:
    kept = [0]
    last = vectors[0]
    for i in range(1, len(vectors)):
        if 1.0 - float(vectors[i] @ last) >= threshold:
            kept.append(i)
            last = vectors[i]
    return kept


def keyframes(times_s: np.ndarray, vectors: np.ndarray, n: int = DEFAULT_COUNT) -> list[float]:
    """At most ``n`` seconds of a video, ascending, the first always among them.

    Args:
        times_s: (m,) float64 timestamps of the stored vectors.
        vectors: (m, d) float32, one per timestamp (normalised here).
        n: the most seconds to return (>= 1).
    """
    if len(times_s) == 0:
        return []
    order = np.argsort(times_s, kind="stable")
    times_s = np.asarray(times_s, dtype=np.float64)[order]
    unit = np.asarray(vectors, dtype=np.float32)[order]
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    if len(unit) <= n:
        return [float(t) for t in times_s]
    low, high = 0.0, 2.0 + 1e-6  # distances lie in [0, 2]: above 2 only the first second is kept
    best = [0]
    for _ in range(24):
        mid = (low + high) / 2
        kept = _walk(unit, mid)
        if len(kept) <= n:
            best, high = kept, mid
        else:
            low = mid
    return [float(times_s[i]) for i in best]
