"""The text check: a match between frames that both show text is dropped when their words differ.

Slides of one deck, forms and title cards share one layout and differ only in their words, which the encoder's
224-px view does not resolve: another slide of the deck can score as high as an edited copy of the probe's own
(docs/tuning.md, "TextParams"). A text reader tells them apart. Along a match's best span, ``pairs`` probe
frames are read with the reference frames aligned to them, by the ``tesseract`` command. A pair is judged where both
frames give ``min_words`` words, and differs where the Jaccard index of their word sets is under ``differ_below``. A
match is dropped where most of its pairs were judged and most of those differ, unless, read again against the
reference every ``search_step_s`` within ``search_s`` of the span, most no longer do: then the copy was placed in the
wrong stretch of its reference, which is not a reason to drop it.

A match found in the probe's mirror image or turned frame (its ``view``) is read as that view shows the probe where
the frame as it is reads nothing: mirrored text reads nothing until it is mirrored back. A match found in a half or the
inset of the probe (its ``region``) is read there alone: the rest of the frame shows other footage, with words of its
own.

The check only ever drops a match. A blurred, small or textless frame reads nothing, and its match stands.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from sora_search.embed.images import Box
from sora_search.embed.views import FULL, HFLIP, WHOLE_FRAME_VIEWS
from sora_search.errors import TextReaderMissing, VideoDecodeError
from sora_search.params import TextParams
from sora_search.types import Match, Span

logger = logging.getLogger(__name__)


class Words(Protocol):
    """The words on screen in a file at a time in seconds, the frame seen through a whole-frame ``view`` of
    :mod:`sora_search.embed.views` (mirrored, turned) or cut to ``region`` first."""

    def __call__(self, path: str, t_s: float, view: str = FULL, region: Box | None = None) -> frozenset[str]: ...


class TextReader:
    """The words on screen in a video at a time, the frame seen through a whole-frame view or cut to a region:
    lower-case runs of three letters or more that ``tesseract`` reads with ``params.min_confidence``, each (file,
    tenth of a second, view, region) read once.

    ``threads``: tesseract's OpenMP threads for one read (None: its own choice). One is faster: threads make a frame's
    read slower, not faster, and read the same words (``benchmarks/speed/text_reader.py``).

    Raises:
        TextReaderMissing: the ``tesseract`` command is not on PATH.
    """

    def __init__(self, params: TextParams | None = None, command: str = "tesseract", threads: int | None = 1) -> None:
        exe = shutil.which(command)
        if exe is None:
            raise TextReaderMissing(f"the text check reads frames with the {command} command, which is not on PATH: "
                                    "install it (Debian and Ubuntu: apt-get install tesseract-ocr) or leave the "
                                    "check off")
        self.exe = exe
        self.params = params or TextParams()
        self.threads = threads
        self._read: dict[tuple[str, float, str, Box | None], frozenset[str]] = {}

    @property
    def frames_read(self) -> int:
        """How many (file, time, view, region) this reader has read so far."""
        return len(self._read)

    def __call__(self, path: str, t_s: float, view: str = FULL, region: Box | None = None) -> frozenset[str]:
        key = (str(path), round(t_s, 1), view, region)
        if key not in self._read:
            try:
                picture = grey_picture(path, t_s, self.params.read_lines, view, region)
            except VideoDecodeError as exc:  # the reference was moved or damaged since: nothing to read
                logger.info("text check: %s", exc)
                self._read[key] = frozenset()
            else:
                self._read[key] = self.read(picture)
        return self._read[key]

    def read(self, picture: np.ndarray) -> frozenset[str]:
        """The words in ``picture``, (h, w) uint8 grey; none when the reader fails or runs out of time."""
        h, w = picture.shape
        with tempfile.TemporaryDirectory(prefix="sora-text-") as tmp:
            pgm = Path(tmp) / "frame.pgm"
            pgm.write_bytes(b"P5\n%d %d\n255\n" % (w, h) + np.ascontiguousarray(picture).tobytes())
            env = {k: v for k, v in os.environ.items() if k != "OMP_THREAD_LIMIT"}
            if self.threads is not None:
                env["OMP_THREAD_LIMIT"] = str(self.threads)
            try:
                tsv = subprocess.run([self.exe, str(pgm), "-", "--psm", "3", "tsv"], capture_output=True, text=True,
                                     timeout=self.params.timeout_s, check=True, env=env).stdout
            except (subprocess.SubprocessError, OSError) as exc:
                logger.info("text check: %s could not read a frame: %s", self.exe, exc)
                return frozenset()
        return words_of_tsv(tsv, self.params.min_confidence)


def words_of_tsv(tsv: str, min_confidence: float) -> frozenset[str]:
    """The lower-case runs of three letters or more in ``tesseract ... tsv`` output, from words it read with
    ``min_confidence`` or more."""
    words: set[str] = set()
    for line in tsv.splitlines()[1:]:
        cells = line.split("\t")
        if len(cells) == 12 and cells[11].strip() and float(cells[10]) >= min_confidence:
            words.update(re.findall(r"[a-z]{3,}", cells[11].lower()))
    return frozenset(words)


def grey_picture(path: str, t_s: float, lines: int, view: str = FULL, region: Box | None = None) -> np.ndarray:
    """The frame on screen at ``t_s``, grey, cut to ``region`` (fractions of the frame), enlarged to ``lines`` rows
    when smaller, then mirrored or turned as the whole-frame ``view`` turns a probe frame
    (:func:`sora_search.embed.views.make_view`): (h, w) uint8.

    Raises:
        VideoDecodeError: the file cannot be opened or yields no frame. ValueError: ``view`` is not a whole-frame view.
    """
    if view not in WHOLE_FRAME_VIEWS:
        raise ValueError(f"a frame is read whole, mirrored or turned, not through the {view!r} view")
    from sora_search.thumbs import frame_at

    frame = frame_at(path, t_s, "a frame to read")
    if region is not None:
        import av

        x0, y0, x1, y1 = region.pixels(frame.width, frame.height)
        cut = frame.reformat(format="gray").to_ndarray()[y0:y1, x0:x1]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(cut), format="gray")
    scale = max(1.0, lines / max(frame.height, 1))
    grey = frame.reformat(width=round(frame.width * scale), height=round(frame.height * scale), format="gray",
                          interpolation="BICUBIC")
    picture = np.asarray(grey.to_ndarray(), dtype=np.uint8)
    if view == HFLIP:
        picture = picture[:, ::-1]
    elif view != FULL:
        picture = np.rot90(picture, int(view[3:]) // 90)
    return np.ascontiguousarray(picture)


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b)


def verdict(words: Words, probe: str, reference: str, span: Span, params: TextParams,
            reference_end_s: float | None = None, view: str = FULL,
            region: Box | None = None) -> tuple[bool, list[float]]:
    """Whether the text check drops a match, and the Jaccard index of each pair judged along ``span``. Pairs are read
    in order until the verdict is settled: a match that cannot be dropped any more is not read further.

    Args:
        words: a reader of (file, time[, view, region]): :class:`TextReader`, or any function of that shape
            (:class:`Words`).
        reference_end_s: the reference's duration, which the search along it stays within (None: unknown).
        view: the whole-frame view of the probe the match was found in; a probe frame that reads nothing as it is
            is read through it.
        region: the part of the probe frame the match was found in (a half, the inset): probe frames are read there
            alone.
    """
    q0, q1, r0, r1 = span.query_start_s, span.query_end_s, span.ref_start_s, span.ref_end_s
    probes, judged = [], []

    def drops(judged: Sequence[float]) -> bool:
        return 2 * sum(j < params.differ_below for j in judged) > len(judged)

    for n_read, f in enumerate((np.arange(params.pairs) + 0.5) / params.pairs, start=1):
        t = q0 + f * (q1 - q0)
        seen = words(probe, t) if region is None else words(probe, t, FULL, region)
        if len(seen) < params.min_words and view in WHOLE_FRAME_VIEWS - {FULL}:
            seen = words(probe, t, view)
        if len(seen) >= params.min_words:  # else the probe shows nothing legible here: the reference is not read
            ref = words(reference, r0 + f * (r1 - r0))
            if len(ref) >= params.min_words:
                probes.append(seen)
                judged.append(_jaccard(seen, ref))
        left = params.pairs - n_read  # stop reading once the pairs left cannot make a drop
        if 2 * (len(judged) + left) <= params.pairs or not drops(judged + [0.0] * left):
            return False, judged
    end = r1 + params.search_s if reference_end_s is None else min(r1 + params.search_s, reference_end_s)
    along = np.arange(max(0.0, r0 - params.search_s), end, params.search_step_s)
    for t in sorted(along, key=lambda t: abs(t - (r0 + r1) / 2)):  # nearest first: a misplaced copy is found sooner
        ref = words(reference, float(t))
        if len(ref) >= params.min_words:
            judged = [max(j, _jaccard(seen, ref)) for seen, j in zip(probes, judged)]
            if not drops(judged):
                return False, judged
    return True, judged


def text_checked(probe: str, matches: Sequence[Match], reader: TextReader) -> tuple[Match, ...]:
    """``matches`` less those the text check drops; each judged on its best span, the probe read in the view or the
    part of its frame the match was found in. The others keep their scores."""
    from sora_search.thumbs import duration_s

    kept = []
    for m in matches:
        region = None if m.region is None else Box(*m.region)
        if m.score >= reader.params.min_score and m.segments and (m.view in WHOLE_FRAME_VIEWS or region is not None):
            try:
                end_s: float | None = duration_s(m.path) or None
            except VideoDecodeError:
                end_s = None
            dropped, judged = verdict(reader, probe, m.path, m.segments[0], reader.params, end_s, m.view, region)
            if dropped:
                logger.info("text check: dropped %s (%.3f): words differ, Jaccard %s", m.path, m.score,
                            ", ".join(f"{j:.2f}" for j in judged))
                continue
        kept.append(m)
    return tuple(kept)
