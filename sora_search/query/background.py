"""Background normalisation: how similar the rest of the library is to each probe second.

As in the VSC2022 baseline, which normalises against a separate background set of unrelated videos, each probe
vector's similarity to a video has subtracted from it how similar the *next best other videos* are to that vector.
A dark, blurry or generic frame resembles many videos and earns little; a frame that resembles one video far more
than any other earns a lot. This is what makes one threshold work across queries: without it an easy-looking probe
lifts every candidate at once. Copies of one video stored several times are one video of that background
(:class:`Copies`, :func:`merge_copies`), or each would lower the others' scores.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from sora_search.encoder.base import l2_normalize
from sora_search.params import QueryParams

_DEFAULTS = QueryParams()
_STRETCH_SAMPLES = 16  # seconds compared along two videos' shared stretch (each with the one after it, for changes)
# An edited copy is looked for only among neighbours whose hit is this close to the best video's (raw cosine; other
# stretches of one recording reach it too, so it only narrows the search) ...
_EDITED_SIMILARITY = 0.9
_EDITED_ROWS = 3  # ... at one offset in at least this many probe seconds
_MIN_STEP = 0.05  # a change of a stored second's raw descriptor shorter than this (vector distance) is no change
_MIN_STEPS = 6    # fewer changes than this on both sides along the stretch: no verdict on an edited copy


class StoredVectors(Protocol):
    """What :class:`Copies` reads from the store (:class:`sora_search.store.Store` provides it)."""

    def vectors_by_id(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def vectors_near(self, video_id: int, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def video(self, video_id: int) -> Any: ...


class Copies:
    """Which library videos are copies of one another, judged from their stored raw descriptors (704-d; the
    projection stretches small differences between frames near the library's mean, so it cannot tell a re-encode
    from a look-alike).

    Two videos are copies where their hits on a probe second are near-identical stored seconds (a cosine of at least
    ``min_similarity``) *and* so are their seconds along the whole stretch both hold at that offset (the median of
    16 spread over it): a re-encode, a resized or a trimmed copy, not two videos that share an intro or a stock
    shot. They are edited copies (a caption, a crop, a colour shift, a border) where their hits are merely close and
    their seconds *change* alike along that stretch, at the same moments: each of those 16 seconds' change to the next
    agrees with the other video's change there more than with its changes elsewhere, by ``min_agreement`` at the
    median (cosines of the change vectors). Another stretch of the same recording looks as close but changes its own
    way, footage that drifts one way all along (a zoom) agrees with every change alike, two videos that share only an
    intro agree on its few changes alone, and footage that barely changes gets no verdict. Each pair's verdict is kept
    for the query.
    """

    def __init__(self, store: StoredVectors, min_similarity: float, min_agreement: float | None = None) -> None:
        self._store = store
        self.min_similarity = min_similarity
        self.min_agreement = min_agreement
        self._stretches: dict[tuple[int, int, int], tuple[float, float | None]] = {}
        self._durations: dict[int, float] = {}

    def read(self, ids: np.ndarray) -> dict[int, np.ndarray]:
        """{vector id: its L2-normalised raw descriptor} for the ids still stored."""
        found, vectors = self._store.vectors_by_id(ids)
        return dict(zip(found.tolist(), l2_normalize(vectors))) if len(found) else {}

    def whole(self, a: int, b: int, offset_s: float) -> bool:
        """Whether videos ``a`` and ``b`` hold the same footage along the stretch both have, ``b`` running
        ``offset_s`` seconds ahead of ``a``."""
        return self._stretch(a, b, offset_s)[0] >= self.min_similarity

    def edited(self, a: int, b: int, offset_s: float) -> bool:
        """Whether ``b``'s seconds change as ``a``'s do along the stretch both have at that offset (see the class)."""
        agreement = self._stretch(a, b, offset_s)[1]
        return self.min_agreement is not None and agreement is not None and agreement >= self.min_agreement

    def _stretch(self, a: int, b: int, offset_s: float) -> tuple[float, float | None]:
        key = (min(a, b), max(a, b), round(offset_s if a < b else -offset_s))
        if key not in self._stretches:
            self._stretches[key] = self._compare(*key)
        return self._stretches[key]

    def _compare(self, a: int, b: int, offset_s: float) -> tuple[float, float | None]:
        """(the median cosine of the two videos' seconds along their shared stretch, the agreement of their changes
        or None where too few change); (-1, None) where they share too little to tell."""
        start, end = max(0.0, -offset_s), min(self._duration(a), self._duration(b) - offset_s)
        if end - start < 1.0:
            return -1.0, None
        times = np.linspace(start, end - 1.0, _STRETCH_SAMPLES)
        both = np.concatenate([times, times + 1.0])  # each sample, then the second after it
        at_a, va = self._store.vectors_near(a, both)
        at_b, vb = self._store.vectors_near(b, both + offset_s)
        if not len(at_a) or not len(at_b):
            return -1.0, None
        n = _STRETCH_SAMPLES
        kept = (np.abs(at_a - both) <= 1.0) & (np.abs(at_b - both - offset_s) <= 1.0)  # nan: removed meanwhile
        sampled = kept[:n]
        if sampled.sum() * 2 < n:
            return -1.0, None
        va, vb = l2_normalize(va), l2_normalize(vb)
        cos = float(np.median((va[:n][sampled] * vb[:n][sampled]).sum(axis=1)))
        # A step is a sample to the next stored second on both sides (not the same one again at a video's end).
        step = sampled & kept[n:] & (at_a[n:] > at_a[:n]) & (at_b[n:] > at_b[:n])
        da, db = va[n:][step] - va[:n][step], vb[n:][step] - vb[:n][step]
        moving = (np.linalg.norm(da, axis=1) > _MIN_STEP) & (np.linalg.norm(db, axis=1) > _MIN_STEP)
        if moving.sum() < _MIN_STEPS:
            return cos, None
        # Each step's cosine with its counterpart, less its mean cosine with the other video's other steps (footage
        # that drifts one way all along, a zoom or a simulation settling, agrees with every step alike); the median
        # over the steps, so that a shared intro's few steps do not carry the rest.
        pairs = l2_normalize(da[moving]) @ l2_normalize(db[moving]).T
        own = np.diag(pairs)
        return cos, float(np.median(own - (pairs.sum(axis=1) - own) / (len(pairs) - 1)))

    def _duration(self, video_id: int) -> float:
        if video_id not in self._durations:
            record = self._store.video(video_id)
            self._durations[video_id] = float(record.duration_s) if record is not None else 0.0
        return self._durations[video_id]


def background_similarity(video_ids: np.ndarray, sims: np.ndarray, n_videos: int, *,
                          skip: int = _DEFAULTS.background_skip, take: int = _DEFAULTS.background_take,
                          floor: float = _DEFAULTS.background_floor, exclude: np.ndarray | None = None,
                          copies: np.ndarray | None = None) -> np.ndarray:
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
        skip, take: the ranks averaged are ``skip`` to ``skip + take - 1``.
        floor: the least background a row gets (a prior for libraries too small to be their own background).
        exclude: (m,) int64, a video each row leaves out as if it were not in the library (-1: none); its
            neighbours still filled their slots, so ``n_videos`` counts the library without it.
        copies: (p, 2) int64 (video, copy) pairs, with ``exclude`` naming each row's video: a row's known copies are
            never averaged, and each one among its neighbours takes one of the ``skip`` ranks, which are there for
            a copy. ``n_videos`` counts them.

    Returns:
        (m,) float32.
    """
    m, k = video_ids.shape
    # Whether every slot was filled is judged before exclusion: an excluded video's hits took slots others lack.
    full_row = (video_ids >= 0).all(axis=1)
    own = None if exclude is None else np.asarray(exclude, dtype=np.int64)
    if own is not None:
        video_ids = np.where(video_ids == own[:, None], -1, video_ids)
    rows, cols = np.nonzero(video_ids >= 0)
    vid, sim = video_ids[rows, cols], sims[rows, cols].astype(np.float32)
    out = np.full(m, floor, dtype=np.float32)
    if len(sim) == 0:
        return out
    # Best similarity per (row, video): sort by (row, video) and take each pair's maximum.
    base = int(vid.max()) + 1
    key = rows.astype(np.int64) * base + vid
    order = np.argsort(key, kind="stable")
    key, sim = key[order], sim[order]
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    sim = np.maximum.reduceat(sim, first)
    rows, vid = key[first] // base, key[first] % base
    skip_row = np.full(m, skip, dtype=np.int64)
    available = np.full(m, n_videos, dtype=np.int64)
    if copies is not None and own is not None and len(copies):
        pairs = np.unique(np.asarray(copies, dtype=np.int64), axis=0)
        is_copy = _is_copy(own[rows], vid, pairs)
        skip_row = np.maximum(0, skip - np.bincount(rows[is_copy], minlength=m))
        owners, counts = np.unique(pairs[:, 0], return_counts=True)
        at = np.clip(np.searchsorted(owners, own), 0, len(owners) - 1)
        available -= np.where(owners[at] == own, counts[at], 0)
        rows, sim = rows[~is_copy], sim[~is_copy]
    ranks = np.minimum(take, np.maximum(0, available - skip_row))
    if not ranks.any():
        return out
    # Rank the videos within each row.
    order = np.lexsort((-sim, rows))
    rows, sim = rows[order], sim[order]
    row_start = np.searchsorted(rows, np.arange(m))
    rank = np.arange(len(rows)) - row_start[rows]
    keep = (rank >= skip_row[rows]) & (rank < skip_row[rows] + ranks[rows])
    total = np.bincount(rows[keep], weights=sim[keep], minlength=m)
    found = np.bincount(rows[keep], minlength=m)
    # Unseen videos exist only when every neighbour slot was filled (a short row has seen the whole library).
    fill = np.where(full_row, ranks - found, 0)
    count = found + fill
    row_min = sims.min(axis=1).astype(np.float64)
    total = total + fill * np.where(full_row, row_min, 0.0)
    out[count > 0] = np.maximum(total[count > 0] / count[count > 0], floor).astype(np.float32)
    return out


def _is_copy(own: np.ndarray, vid: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Whether each (own, vid) is one of the (video, copy) ``pairs``; all arrays int64, ``own`` and ``vid`` alike."""
    base = int(max(pairs.max(), vid.max(initial=0), own.max(initial=0))) + 1
    return np.isin(own * base + vid, pairs[:, 0] * base + pairs[:, 1])


def merge_copies(video_ids: np.ndarray, ids: np.ndarray, times: np.ndarray, copies: Copies, *, most: int,
                 ranks: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """``video_ids`` with each row's copies of its best video relabelled as that video, so that they count once.

    A video stored several times (re-encoded, resized, downloaded twice) would otherwise fill the background ranks
    with its own copies: each copy's score would fall by the others' similarity, and with five or more nothing would
    be found at all. Per row, the first video among the neighbours (leaving out the row's ``exclude``) is the best;
    each of the next ``most + ranks`` videos (``ranks``: the background's, skipped and averaged) that ``copies``
    finds a copy of it, at its best neighbour and along the whole stretch both hold, counts as it: a near-identical
    one on any row, an edited one where at least ``_EDITED_ROWS`` rows put its hit at the same offset from the best
    video's. When more than ``most`` do, none does: footage that many videos hold (a channel's intro, a stock shot)
    stays weak evidence.

    Args:
        video_ids: (m, k) int64 video of each neighbour, -1 for none.
        ids, times: (m, k) int64 their vector ids and float64 their times in their videos.
        exclude: (m,) int64 a video each row leaves out (-1: none), or None.

    Returns:
        (m, k) int64: a copy's neighbours take the best video's id.
    """
    m, k = video_ids.shape
    if most <= 0 or m == 0 or k < 2:
        return video_ids
    own = np.full(m, -1, dtype=np.int64) if exclude is None else np.asarray(exclude, dtype=np.int64)
    look = 1 + most + ranks
    rows: list[list[tuple[int, int, float]]] = []  # per row: (video, its best neighbour's id and time), best first
    for r in range(m):
        first: dict[int, tuple[int, float]] = {}
        for v, i, t in zip(video_ids[r].tolist(), ids[r].tolist(), times[r].tolist()):
            if v >= 0 and v != own[r] and v not in first:
                first[v] = (i, t)
                if len(first) == look:
                    break
        rows.append([(v, i, t) for v, (i, t) in first.items()])
    wanted = np.unique(np.asarray([i for row in rows if len(row) > 1 for _, i, _ in row], dtype=np.int64))
    stored = copies.read(wanted) if len(wanted) else {}
    # Per row, each neighbour's hit against the best video's: its cosine and offset. An edited copy is looked for
    # only at an offset that several rows share, as a copy's hits do.
    near: list[list[tuple[int, float, float]]] = []
    shared: dict[tuple[int, int, int], int] = {}
    for row in rows:
        if len(row) < 2 or row[0][1] not in stored:
            near.append([])
            continue
        best, anchor_id, at = row[0]
        hits = [(v, float(stored[i] @ stored[anchor_id]), t - at) for v, i, t in row[1:] if i in stored]
        near.append(hits)
        for v, cos, offset in hits:
            if cos >= _EDITED_SIMILARITY:
                shared[best, v, round(offset)] = shared.get((best, v, round(offset)), 0) + 1
    out = video_ids
    for r, (row, hits) in enumerate(zip(rows, near)):
        if not hits:
            continue
        best = row[0][0]
        same = [v for v, cos, offset in hits
                if (cos >= copies.min_similarity and copies.whole(best, v, offset))
                or (cos >= _EDITED_SIMILARITY and shared[best, v, round(offset)] >= _EDITED_ROWS
                    and copies.edited(best, v, offset))]
        if same and len(same) <= most:
            if out is video_ids:
                out = video_ids.copy()
            out[r, np.isin(video_ids[r], same)] = best
    return out


def background(search: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]],
               locate: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], ntotal: int, probe: np.ndarray,
               video_ids: np.ndarray,
               scores: np.ndarray, n_videos: int, params: QueryParams,
               exclude: np.ndarray | None = None, copies: np.ndarray | None = None,
               ids: np.ndarray | None = None, times: np.ndarray | None = None,
               copies_of: Copies | None = None) -> np.ndarray:
    """:func:`background_similarity` of each probe row, from enough neighbours to see it.

    A row whose neighbours all come from fewer videos than the background ranks (a fixed camera's video fills
    every slot with its own seconds) would take its unseen ranks at the row's smallest similarity, a loose upper
    bound; such rows are searched again with 4x the neighbours, up to ``params.background_max_k``.

    Args:
        search: k-NN over the index: (queries (m, dim) float32, k) -> (scores (m, k), ids (m, k) int64).
        locate: vector ids (m,) int64 -> (their videos (m,) int64, -1 where unknown; their times (m,) float64).
        ntotal: vectors in the index.
        probe: (m, dim) float32 projected probe vectors.
        video_ids, scores: (m, k) the first search's neighbours.
        n_videos: videos in the library (without the excluded one, when rows exclude one).
        exclude, copies: see :func:`background_similarity`; None: none.
        ids, times, copies_of: (m, k) the first search's vector ids and their times, and the judge of copies: with
            all three, each row's copies of its best video count as that video (:func:`merge_copies`); None: not.

    Returns:
        (m,) float32.
    """
    def merged(vids: np.ndarray, found: np.ndarray | None, at: np.ndarray | None, rows: np.ndarray) -> np.ndarray:
        if copies_of is None or found is None or at is None:
            return vids
        return merge_copies(vids, found, at, copies_of, most=params.copies_merged,
                            ranks=params.background_skip + params.background_take,
                            exclude=None if exclude is None else exclude[rows])

    def similarity(vids: np.ndarray, sims: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return background_similarity(vids, sims, n_videos, skip=params.background_skip,
                                     take=params.background_take, floor=params.background_floor,
                                     exclude=None if exclude is None else exclude[rows], copies=copies)

    every = np.arange(len(probe))
    video_ids = merged(video_ids, ids, times, every)
    result = similarity(video_ids, scores, every)
    wanted = min(params.background_skip + params.background_take, n_videos)
    k = video_ids.shape[1]

    def saturated(vids: np.ndarray, rows: np.ndarray) -> np.ndarray:
        full = (vids >= 0).all(axis=1)
        if exclude is not None:
            own = np.broadcast_to(exclude[rows][:, None], vids.shape)
            vids = np.where(vids == own, -1, vids)
            if copies is not None and len(copies):
                vids = np.where(_is_copy(own, vids, np.asarray(copies, dtype=np.int64)), -1, vids)
        ordered = np.sort(vids, axis=1)
        new = np.ones(ordered.shape, dtype=bool)
        new[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
        distinct = (new & (ordered >= 0)).sum(axis=1)
        return full & (distinct < wanted)

    rows = every[saturated(video_ids, every)]
    while len(rows) and k < min(ntotal, params.background_max_k):
        k = min(4 * k, ntotal, params.background_max_k)
        more_scores, more_ids = search(probe[rows], k)
        more_videos, more_times = (x.reshape(more_ids.shape) for x in locate(more_ids.ravel()))
        more_videos = merged(more_videos, more_ids, more_times, rows)
        result[rows] = similarity(more_videos, more_scores, rows)
        rows = rows[saturated(more_videos, rows)]
    return result
