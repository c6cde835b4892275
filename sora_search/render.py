"""How the command's results look on a terminal or in a log: tables, progress, and names shown safely.

Everything here writes through :func:`echo`, which shows a file name that is not valid UTF-8 with ``\\xNN``
escapes instead of failing the write.
"""

from __future__ import annotations

import os
from typing import Any, TextIO

import click

def shown(text: str) -> str:
    """``text`` as a terminal can show it: a file name that is not valid UTF-8 (held with surrogate escapes) gets its
    odd bytes as ``\\xNN`` instead of failing the write."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def echo(message: str = "", **kwargs: Any) -> None:
    click.echo(shown(message), **kwargs)


def progress_display(stream: TextIO) -> ProgressBar | ProgressLines:
    """How indexing progress is shown on ``stream``: a live bar on a terminal; elsewhere (a log file, CI) a bar's
    redraws would be noise, so one plain line per finished file."""
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        terminal = False
    return ProgressBar(stream) if terminal else ProgressLines(stream)


class ProgressBar:
    """A tqdm bar over the bytes to decode, created on the first progress event."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._bar: Any = None

    def update(self, p: Any) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=p.bytes_total, unit="B", unit_scale=True, unit_divisor=1024, file=self.stream,
                             desc="indexing", dynamic_ncols=True, leave=False)
        self._bar.update(p.bytes_done - self._bar.n)
        self._bar.set_postfix_str(shown(f"{p.done}/{p.total} files, {os.path.basename(p.path)}"), refresh=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class ProgressLines:
    """One line per finished file (``added   3/61  path``, ``failed  4/61  path: reason``); nothing while one
    decodes."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def update(self, p: Any) -> None:
        if p.status == "decoding":
            return
        line = f"{p.status:<7} {p.done:>{len(str(p.total))}}/{p.total}  {p.path}"
        echo(f"{line}: {p.reason}" if p.reason else line, file=self.stream)

    def close(self) -> None:
        pass


def print_summary(summary: Any, *, timings: bool = False) -> None:
    parts = [f"{len(summary.added)} added", f"{len(summary.updated)} updated",
             f"{len(summary.unchanged)} unchanged", f"{len(summary.moved)} moved", f"{len(summary.removed)} removed",
             f"{len(summary.failed)} failed"]
    echo(f"{', '.join(parts)} ({summary.vectors_added} vectors added, {summary.seconds:.1f} s)", err=True)
    if timings and summary.timings:
        echo("  time: " + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(summary.timings.items())), err=True)
    for old, new in summary.moved:
        echo(f"  moved   {old} -> {new}", err=True)
    for path in summary.removed:
        echo(f"  removed {path}", err=True)
    for f in summary.failed:
        echo(f"  failed  {f.path}: {f.reason}", err=True)


class DupesProgress:
    """A tqdm bar over the vectors searched on a terminal; elsewhere a line at every tenth of the way."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._bar: Any = None
        self._tenths = 0
        try:
            self._terminal = stream.isatty()
        except (AttributeError, ValueError):
            self._terminal = False

    def update(self, p: Any) -> None:
        if self._terminal:
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(total=p.total, unit="vec", unit_scale=True, file=self.stream, desc="searching",
                                 dynamic_ncols=True, leave=False)
            self._bar.update(p.done - self._bar.n)
            self._bar.set_postfix_str(f"{p.pairs} pairs", refresh=True)
        elif p.total and 10 * p.done // p.total > self._tenths:
            self._tenths = 10 * p.done // p.total
            click.echo(f"searched {p.done}/{p.total} vectors, {p.pairs} pairs so far", file=self.stream)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def print_dupes(report: Any, keep: str) -> None:
    """Groups of copies (the one to keep first), then videos that contain others, then shared parts."""
    if not report.pairs:
        click.echo(f"no videos share footage ({report.videos} videos, {report.vectors} vectors searched)")
        return
    pair_of = {(p.a, p.b): p for p in report.pairs}
    for n, group in enumerate(report.groups, 1):
        click.echo(f"same video, group {n} of {len(report.groups)} (the copy to keep by {keep} first)")
        click.echo(f"  keep    {group.keep}")
        for member in group.members[1:]:
            pair = pair_of.get(tuple(sorted((group.keep, member))))  # type: ignore[arg-type]
            if pair is None:  # linked to the group through another copy
                pair = max((p for p in report.pairs if p.relation == "same" and member in (p.a, p.b)
                            and {p.a, p.b} <= set(group.members)), key=lambda p: p.score)
            other = pair.b if pair.a == member else pair.a
            covered = pair.a_covered if pair.a == member else pair.b_covered
            click.echo(f"  {pair.score:6.3f}  {member}  (covered {covered:.2f})")
            for seg in pair.segments:
                mine, theirs = _spans(seg, pair.a == member)
                click.echo(f"            {mine} = {theirs} of {'the kept copy' if other == group.keep else other}")
        click.echo("")
    for title, relations in (("contains", ("a_contains_b", "b_contains_a")), ("shares a part", ("partial",))):
        chosen = [p for p in report.pairs if p.relation in relations]
        if not chosen:
            continue
        click.echo(f"{title}: {len(chosen)} pair{'s' if len(chosen) != 1 else ''}")
        for pair in chosen:
            first = pair.relation != "b_contains_a"  # the container is named first
            x, y = (pair.a, pair.b) if first else (pair.b, pair.a)
            cx, cy = (pair.a_covered, pair.b_covered) if first else (pair.b_covered, pair.a_covered)
            verb = "and" if pair.relation == "partial" else "contains"
            click.echo(f"  {pair.score:6.3f}  {x} {verb} {y} (covered {cx:.2f} / {cy:.2f})")
            for seg in pair.segments:
                mine, theirs = _spans(seg, first)
                click.echo(f"            {mine} = {theirs}")
        click.echo("")


def _spans(seg: Any, a_first: bool) -> tuple[str, str]:
    a = f"{mmss(seg.a_start_s)}-{mmss(seg.a_end_s)}"
    b = f"{mmss(seg.b_start_s)}-{mmss(seg.b_end_s)}"
    return (a, b) if a_first else (b, a)


def print_pairs_csv(report: Any) -> None:
    """One row per pair; ``segments`` as ``a_start-a_end=b_start-b_end`` in seconds, ``;`` between them."""
    import csv
    import io

    text = io.StringIO()
    out = csv.writer(text, lineterminator="\n")
    out.writerow(["a", "b", "score", "a_covered", "b_covered", "relation", "segments"])
    for p in report.pairs:
        segments = ";".join(f"{s.a_start_s:g}-{s.a_end_s:g}={s.b_start_s:g}-{s.b_end_s:g}" for s in p.segments)
        out.writerow([p.a, p.b, p.score, p.a_covered, p.b_covered, p.relation, segments])
    click.echo(text.getvalue(), nl=False)


def mmss(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60:02d}:{rem % 60:02d}"


def hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
