"""From the pairs that ``dupes`` found to its report: each pair once, how much of each video it covers, what the
two videos are to each other, and the groups of same-video copies with the one to keep."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sora_search.params import DupesParams
from sora_search.types import DuplicateGroup, DuplicatePair, DuplicateSegment, DuplicatesReport, Span

if TYPE_CHECKING:
    from sora_search.store import VideoRecord


@dataclass(frozen=True)
class Shared:
    """What a probe video shares with another: its segments, best first, with the probe's times as ``query_*``, and
    the seconds of each video they cover, as (start_s, end_s) stretches."""

    spans: tuple[Span, ...]
    probe_cover: tuple[tuple[float, float], ...]
    other_cover: tuple[tuple[float, float], ...]

    @property
    def score(self) -> float:
        return self.spans[0].score


def build_report(found: dict[tuple[int, int], Shared], records: dict[int, VideoRecord], durations: dict[int, float],
                 params: DupesParams) -> DuplicatesReport:
    """Each pair once, with the segments of the way round that scores higher, and its coverage; then the groups.

    How much of a video the other shows is best told from its own side, searching its seconds: that way's covered
    stretches are used when it found a segment, else the other way's hits.
    """
    pairs: list[DuplicatePair] = []
    for (v, o), shared in found.items():
        back = found.get((o, v))
        if back is not None and (back.score > shared.score or (back.score == shared.score and o < v)):
            continue  # the other way round scores higher (on a tie, the lower id is the probe)
        if shared.score < params.min_score:
            continue
        covered = {v: _covered(list(shared.probe_cover), durations[v]),
                   o: _covered(list(back.probe_cover if back else shared.other_cover), durations[o])}
        flip = records[v].path > records[o].path
        a, b = (o, v) if flip else (v, o)
        pairs.append(DuplicatePair(a=records[a].path, b=records[b].path, score=round(shared.score, 4),
                                   a_covered=covered[a], b_covered=covered[b],
                                   relation=_relation(covered[a], covered[b], params.same_video),
                                   segments=tuple(_segment(sp, flip) for sp in shared.spans)))
    pairs.sort(key=lambda p: (-p.score, p.a, p.b))
    return DuplicatesReport(pairs=tuple(pairs), groups=_groups(pairs, records, params.keep),
                            videos=len(records), vectors=sum(r.n_vectors for r in records.values()))


def _relation(a_covered: float, b_covered: float, same: float) -> str:
    if a_covered >= same and b_covered >= same:
        return "same"
    if b_covered >= same:
        return "a_contains_b"
    return "b_contains_a" if a_covered >= same else "partial"


def _segment(span: Span, flip: bool) -> DuplicateSegment:
    q, r = (span.query_start_s, span.query_end_s), (span.ref_start_s, span.ref_end_s)
    (a0, a1), (b0, b1) = (r, q) if flip else (q, r)
    return DuplicateSegment(a_start_s=round(a0, 3), a_end_s=round(a1, 3), b_start_s=round(b0, 3),
                            b_end_s=round(b1, 3), score=round(span.score, 4))


def _covered(spans: list[tuple[float, float]], duration_s: float) -> float:
    """The share of ``duration_s`` the union of ``spans`` covers, 0..1."""
    total, reach = 0.0, -math.inf
    for lo, hi in sorted(spans):
        lo = max(lo, reach)
        if hi > lo:
            total += hi - lo
        reach = max(reach, hi)
    return round(min(1.0, total / duration_s), 4) if duration_s > 0 else 0.0


def _groups(pairs: list[DuplicatePair], records: dict[int, VideoRecord], keep: str) -> tuple[DuplicateGroup, ...]:
    """Videos linked by same-video pairs, the copy to keep first, then the others by path; groups by kept path."""
    parent: dict[str, str] = {}

    def root(p: str) -> str:
        while parent.setdefault(p, p) != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    for pair in pairs:
        if pair.relation == "same":
            parent[root(pair.a)] = root(pair.b)
    members: dict[str, list[str]] = {}
    for p in parent:
        members.setdefault(root(p), []).append(p)
    by_path = {r.path: r for r in records.values()}
    groups = []
    for paths in members.values():
        kept = min(paths, key=lambda p: (tuple(-x for x in _keep_key(by_path[p], keep)), p))
        groups.append(DuplicateGroup(keep=kept, members=(kept, *sorted(p for p in paths if p != kept))))
    return tuple(sorted(groups, key=lambda g: g.keep))


def _keep_key(video: VideoRecord, rule: str) -> tuple[float, ...]:
    """Larger is kept: ``resolution`` (then duration), ``duration``, ``size``, ``newest``, ``oldest`` (by mtime),
    each then by resolution and duration."""
    pixels, length = float(video.width * video.height), video.duration_s
    first = {"resolution": pixels, "duration": length, "size": float(video.size), "newest": video.mtime,
             "oldest": -video.mtime}[rule]
    return first, pixels, length
