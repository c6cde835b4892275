"""The query stage: a probe's embedded views -> k-NN per probe second -> background -> temporal alignment -> ranking.

    passes      which views are looked at, in which order, and when to stop; ranking
    background  normalising similarities against the rest of the library
    align       chains of hits that move forward in both videos, and their scores
    dupes       library videos as probes: their stored vectors against the rest of the library (``dupes``, and
                ``query`` of an indexed video)

How the probe is cut into views, and the inset finder, belong to the embed stage (:mod:`sora_search.embed`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sora_search.params import QueryParams
from sora_search.query.dupes import indexed_video, stored_query
from sora_search.query.passes import ProbeSearch, Ranked, rank, run, view_passes

if TYPE_CHECKING:
    from sora_search.embed import Embedder
    from sora_search.encoder import Projection
    from sora_search.index import VectorIndex
    from sora_search.store import Store


def query_clip(clip: str | Path, embedder: Embedder, store: Store, index: VectorIndex, projection: Projection,
               params: QueryParams) -> tuple[list[Ranked], bool, bool]:
    """The library videos that match ``clip``, best first; whether any second of it was searched (False: it is
    blank throughout, see :attr:`~sora_search.types.QueryResult.blank`); and whether it is an indexed video itself.

    A clip that is an indexed video is left out of its own answer. When its file is unchanged since it was indexed
    and ``params.views`` is ``auto`` or ``fast``, it is answered from its stored whole-frame vectors, nothing
    decoded (:func:`sora_search.query.dupes.stored_query`); otherwise the clip is decoded and looked at pass by pass
    (:func:`~sora_search.query.passes.run`).

    Raises:
        VideoError: the clip cannot be decoded. ValueError: an unknown view or view set.
    """
    own, unchanged = indexed_video(store, clip)
    if own is not None and unchanged and params.views in ("auto", "fast"):
        return stored_query(store, index, projection, own, params, params.align.interval_s), True, True
    search = ProbeSearch(index, projection, store, store.indexed_video_count(), params,
                         exclude=None if own is None else own.id)
    ranked = run(clip, embedder, search, params)
    return ranked, search.searched, own is not None


__all__ = ["ProbeSearch", "Ranked", "query_clip", "rank", "run", "view_passes"]
