"""ProbeSearch.peaks: the best second of each view, the test that decides which views of auto's last step are
looked at in full."""

from __future__ import annotations

import faiss
import numpy as np

from sora_search.encoder import Projection
from sora_search.params import QueryParams
from sora_search.query.passes import ProbeSearch
from sora_search.types import VideoInfo
from tests.test_motion import DIM, _noisy, _Store, _walk


class _Views:
    def __init__(self, views: dict[str, np.ndarray], blank: dict[str, np.ndarray]) -> None:
        n = len(next(iter(views.values())))
        self.vectors = {v: x.astype(np.float32) for v, x in views.items()}
        self.blank = blank
        self.timestamps_s = np.arange(n, dtype=np.float64)
        self.info = VideoInfo(duration_s=float(n), fps=25.0, width=64, height=64)


def _search(exclude: int | None = None) -> ProbeSearch:
    videos = {v: _walk(40, seed=v) for v in range(1, 9)}
    index = faiss.IndexIDMap(faiss.IndexFlatIP(DIM))
    for v, x in videos.items():
        index.add_with_ids(x.astype(np.float32), 100 * (v - 1) + np.arange(40, dtype=np.int64))
    return ProbeSearch(index, Projection.identity(DIM), _Store(videos), len(videos), QueryParams(), exclude=exclude)


def test_a_view_that_shows_a_library_video_peaks_and_the_others_do_not():
    copy = _noisy(_walk(40, seed=1)[5:15], seed=20, sigma=0.02)  # seconds 5-14 of video 1
    other = _walk(10, seed=99)                                    # footage the library does not hold
    blank = np.zeros(10, dtype=bool)
    probe = _Views({"rot90": copy, "left": other, "top": other},
                   {"rot90": blank, "left": blank, "top": np.ones(10, dtype=bool)})
    gate = QueryParams().last_step_gate
    peaks = _search().peaks(probe)
    assert set(peaks) == {"rot90", "left"}  # a view with only blank seconds has no peak
    assert peaks["rot90"] > gate > peaks["left"]
    assert _search(exclude=1).peaks(probe)["rot90"] < gate  # the probe's own video is not a match
