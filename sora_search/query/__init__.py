"""The query stage: a probe's embedded views -> k-NN per probe second -> background -> temporal alignment -> ranking.

    passes      which views are looked at, in which order, and when to stop; ranking
    background  normalising similarities against the rest of the library
    align       chains of hits that move forward in both videos, and their scores

How the probe is cut into views, and the inset finder, belong to the embed stage (:mod:`sora_search.embed`).
"""

from __future__ import annotations

from sora_search.query.passes import ProbeSearch, Ranked, run, view_passes

__all__ = ["ProbeSearch", "Ranked", "run", "view_passes"]
