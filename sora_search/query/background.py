"""Background normalisation: how similar the rest of the library is to each probe second.

As in the VSC2022 baseline, which normalises against a separate background set of unrelated videos, each probe
vector's similarity to a video has subtracted from it how similar the *next best other videos* are to that vector.
A dark, blurry or generic frame resembles many videos and earns little; a frame that resembles one video far more
than any other earns a lot. This is what makes one threshold work across queries: without it an easy-looking probe
lifts every candidate at once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sora_search.params import QueryParams

_DEFAULTS = QueryParams()

def background_similarity(video_ids: np.ndarray, sims: np.ndarray, n_videos: int, *,
                          skip: int = _DEFAULTS.background_skip, take: int = _DEFAULTS.background_take,
                          floor: float = _DEFAULTS.background_floor) -> np.ndarray:
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


def background(search: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]],
               locate: Callable[[np.ndarray], np.ndarray], ntotal: int, probe: np.ndarray, video_ids: np.ndarray,
               scores: np.ndarray, n_videos: int, params: QueryParams) -> np.ndarray:
    """:func:`background_similarity` of each probe row, from enough neighbours to see it.

    A row whose neighbours all come from fewer videos than the background ranks (a fixed camera's video fills
    every slot with its own seconds) would take its unseen ranks at the row's smallest similarity, a loose upper
    bound; such rows are searched again with 4x the neighbours, up to ``params.background_max_k``.

    Args:
        search: k-NN over the index: (queries (m, dim) float32, k) -> (scores (m, k), ids (m, k) int64).
        locate: vector ids (m,) int64 -> their videos (m,) int64, -1 where unknown.
        ntotal: vectors in the index.
        probe: (m, dim) float32 projected probe vectors.
        video_ids, scores: (m, k) the first search's neighbours.
        n_videos: videos in the library.

    Returns:
        (m,) float32.
    """
    def similarity(vids: np.ndarray, sims: np.ndarray) -> np.ndarray:
        return background_similarity(vids, sims, n_videos, skip=params.background_skip,
                                     take=params.background_take, floor=params.background_floor)

    result = similarity(video_ids, scores)
    wanted = min(params.background_skip + params.background_take, n_videos)
    k = video_ids.shape[1]

    def saturated(vids: np.ndarray) -> np.ndarray:
        full = (vids >= 0).all(axis=1)
        distinct = np.array([len(np.unique(row)) for row in vids])
        return full & (distinct < wanted)

    rows = np.flatnonzero(saturated(video_ids))
    while len(rows) and k < min(ntotal, params.background_max_k):
        k = min(4 * k, ntotal, params.background_max_k)
        more_scores, ids = search(probe[rows], k)
        more_videos = locate(ids.ravel()).reshape(ids.shape)
        result[rows] = similarity(more_videos, more_scores)
        rows = rows[saturated(more_videos)]
    return result
