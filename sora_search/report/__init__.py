"""The HTML report of one query (``sora-search query CLIP --html FILE``): a single self-contained file.

Per match: the score, where in the probe it was found when that is not the whole frame (the mirror image, a half, the
inset; a part of the frame is outlined on the probe's frames), both timelines with the matching spans marked (inline
SVG), and the probe's frames beside the library video's frames every few seconds along each span. Thumbnails are
embedded as ``data:`` URIs, so the file needs no network and no index folder to be read. Library thumbnails come from
the index's :class:`~sora_search.thumbs.ThumbnailCache`; the probe's are decoded directly.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sora_search.errors import VideoDecodeError
from sora_search.thumbs import ThumbnailCache, catalogue, duration_s, grab
from sora_search.types import QueryResult

# At most this many frame pairs per span; a pair every few seconds (at least one second apart).
PAIRS_PER_SPAN = 6


@dataclass(frozen=True)
class _Pair:
    query_s: float
    ref_s: float
    query_img: str
    ref_img: str


def _data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def sample_times(start_s: float, end_s: float, most: int = PAIRS_PER_SPAN) -> list[float]:
    """Offsets from a span's start, a frame pair every few seconds (whole seconds apart, at most ``most``)."""
    length = max(0.0, end_s - start_s)
    step = max(1.0, float(-(-length // max(most - 1, 1))))
    out: list[float] = []
    t = 0.0
    while t <= length + 1e-6 and len(out) < most:
        out.append(t)
        t += step
    return out


def render(result: QueryResult, probe: str | Path, location: str | Path, *, cache: ThumbnailCache | None = None,
           pairs_per_span: int = PAIRS_PER_SPAN, db: Any = None) -> str:
    """The report of ``result`` (a query of ``probe`` against the index at ``location``, its catalogue ``db``) as one
    HTML page.

    Raises:
        VideoDecodeError: the probe cannot be decoded for its thumbnails.
    """
    import jinja2

    cache = cache or ThumbnailCache(location)
    videos = catalogue(location, db)
    probe_len = duration_s(probe)
    probe_thumbs: dict[float, str] = {}

    def probe_img(t: float) -> str:
        if t not in probe_thumbs:
            probe_thumbs[t] = _data_uri(grab(probe, t, width=cache.width))
        return probe_thumbs[t]

    matches: list[dict[str, Any]] = []
    for rank, m in enumerate(result.matches, 1):
        rec = videos.get(m.path)
        ref_len = rec.duration_s if rec else max((s.ref_end_s for s in m.segments), default=0.0)

        def ref_img(t: float, rec: Any = rec, path: str = m.path) -> str:
            try:
                jpeg = cache.get(rec.id, path, rec.fingerprint, t) if rec else grab(path, t, width=cache.width)
            except VideoDecodeError:
                return ""
            return _data_uri(jpeg)

        spans = []
        for s in m.segments:
            pairs = [_Pair(s.query_start_s + dt, s.ref_start_s + dt, probe_img(s.query_start_s + dt),
                           ref_img(s.ref_start_s + dt))
                     for dt in sample_times(s.query_start_s, min(s.query_end_s, s.query_start_s
                                                                 + (s.ref_end_s - s.ref_start_s)), pairs_per_span)]
            spans.append({"span": s, "pairs": pairs})
        matches.append({"rank": rank, "path": m.path, "name": Path(m.path).name, "score": m.score,
                        "ref_len": max(ref_len, 1e-6), "spans": spans, "found_in": m.found_in,
                        "region": m.region})
    cache.prune({v.id: v.fingerprint for v in videos.values()})
    env = jinja2.Environment(loader=jinja2.PackageLoader("sora_search.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["mmss"] = _mmss
    return env.get_template("report.html.j2").render(
        probe=str(probe), probe_name=Path(probe).name, probe_len=max(probe_len, 1e-6), matches=matches,
        location=str(location))


def _mmss(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"
