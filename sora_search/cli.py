"""The ``sora-search`` command: a thin adapter over :class:`sora_search.library.Library`.

Each command parses its arguments, makes one library call and renders the result. Defaults and the figures in
help texts come from :mod:`sora_search.params`. Results go to stdout, progress and logs to stderr (a bar on a
terminal, one line per finished file elsewhere). Library errors become one-line messages (exit 1); bad arguments
exit 2; an index run that finished but could not read some files exits 3. ``SORA_SEARCH_DEBUG=1`` shows tracebacks.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, TextIO

import click
from click.core import ParameterSource

from . import __version__
from .errors import EncoderError, SoraSearchError, debug_wanted
from .params import VIEW_CHOICES, IndexParams, QueryParams

EXIT_PARTIAL = 3
# The documented defaults, read for option defaults and the figures in help texts.
_INDEX = IndexParams()
_QUERY = QueryParams()


class _FiniteFloat(click.FloatRange):
    """A FloatRange that also refuses NaN and infinity (NaN passes every range comparison)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def _check_device(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--device or $SORA_SEARCH_DEVICE, checked by the library's own parser (which imports no torch)."""
    if value is None:
        return None
    from .encoder import device_setting

    from_env = ctx.get_parameter_source(param.name or "") is ParameterSource.ENVIRONMENT
    try:
        # Given None, the parser reads the variable itself and names it in its message.
        return device_setting(None if from_env else value)[0]
    except EncoderError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


index_option = click.option(
    "--index", "index_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Index folder. Default: $SORA_SEARCH_INDEX, else ./.sora-search")
device_option = click.option(
    "--device", metavar="cpu|cuda|cuda:N", default=None, envvar="SORA_SEARCH_DEVICE", callback=_check_device,
    help="Where the encoder runs, and FAISS with a GPU build of faiss. Default: $SORA_SEARCH_DEVICE, else CUDA "
         "when available, else CPU.")


def _open(index_dir: Path | None, *, create: bool, **options: Any) -> Any:
    from .library import Library

    return Library.open(index_dir, create=create, **options)


class _Group(click.Group):
    """Turns library errors into one-line ``click.ClickException`` messages (exit 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SoraSearchError as exc:
            if debug_wanted():
                raise
            raise click.ClickException(str(exc)) from exc
        except BrokenPipeError:
            # The reader of our output went away (`| head`): click's main quiets the streams and exits 1, silently.
            raise
        except OSError as exc:  # disk full, read-only folder, permissions: say which file and why
            if debug_wanted():
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sora-search")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary on stderr.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Find which videos in a library contain a clip, or something visually near it.

    \b
      sora-search index ./library      index (or update) every video under ./library
      sora-search query clip.mp4       ranked library videos with matching time spans
    """
    level = logging.WARNING - 10 * verbose if not quiet else logging.ERROR
    logging.basicConfig(level=max(logging.DEBUG, level), format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    ctx.obj = {"quiet": quiet, "verbose": verbose}


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@index_option
@device_option
@click.option("--retry-failed", is_flag=True, help="Try again files that failed before and have not changed.")
@click.option("--timeout", "timeout_s", type=_FiniteFloat(min=1), default=_INDEX.decode_timeout_s,
              show_default=True,
              help="Seconds a decoder may stall on one file before it is stopped and the file skipped.")
@click.pass_context
def index(ctx: click.Context, paths: tuple[Path, ...], index_dir: Path | None, device: str | None,
          retry_failed: bool, timeout_s: float) -> None:
    """Index the videos under PATHS (files or folders, recursive).

    Incremental: unchanged files are skipped, changed files re-indexed, moved or renamed files recognised without
    decoding, deleted files removed. Files that cannot be read are reported and the run goes on (exit code 3).
    """
    missing = [str(p) for p in paths if not os.path.lexists(p)]
    if missing:
        raise click.BadParameter(f"no such file or folder: {', '.join(missing)}", param_hint="PATHS")
    quiet = ctx.obj["quiet"]
    with _open(index_dir, create=True, device=device, params=IndexParams(decode_timeout_s=timeout_s)) as lib:
        display = None if quiet else _progress_display(sys.stderr)
        progress = None if display is None else display.update
        try:
            summary = lib.index(paths, progress=progress, retry_failed=retry_failed)
        finally:
            if display is not None:
                display.close()
    if not quiet:
        _print_summary(summary, timings=ctx.obj["verbose"] > 0)
    if summary.failed:
        ctx.exit(EXIT_PARTIAL)


def _progress_display(stream: TextIO) -> _ProgressBar | _ProgressLines:
    """How indexing progress is shown on ``stream``: a live bar on a terminal; elsewhere (a log file, CI) a bar's
    redraws would be noise, so one plain line per finished file."""
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        terminal = False
    return _ProgressBar(stream) if terminal else _ProgressLines(stream)


class _ProgressBar:
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
        self._bar.set_postfix_str(f"{p.done}/{p.total} files, {os.path.basename(p.path)}", refresh=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class _ProgressLines:
    """One line per finished file (``added   3/61  path``, ``failed  4/61  path: reason``); nothing while one
    decodes."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def update(self, p: Any) -> None:
        if p.status == "decoding":
            return
        line = f"{p.status:<7} {p.done:>{len(str(p.total))}}/{p.total}  {p.path}"
        click.echo(f"{line}: {p.reason}" if p.reason else line, file=self.stream)

    def close(self) -> None:
        pass


def _print_summary(summary: Any, *, timings: bool = False) -> None:
    parts = [f"{len(summary.added)} added", f"{len(summary.updated)} updated",
             f"{len(summary.unchanged)} unchanged", f"{len(summary.moved)} moved", f"{len(summary.removed)} removed",
             f"{len(summary.failed)} failed"]
    click.echo(f"{', '.join(parts)} ({summary.vectors_added} vectors added, {summary.seconds:.1f} s)", err=True)
    if timings and summary.timings:
        click.echo("  time: " + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(summary.timings.items())), err=True)
    for old, new in summary.moved:
        click.echo(f"  moved   {old} -> {new}", err=True)
    for path in summary.removed:
        click.echo(f"  removed {path}", err=True)
    for f in summary.failed:
        click.echo(f"  failed  {f.path}: {f.reason}", err=True)


@cli.command()
@click.argument("clip", type=click.Path(path_type=Path))
@index_option
@device_option
@click.option("-k", "k", type=click.IntRange(min=1), default=_QUERY.k, show_default=True,
              help="Most library videos to list.")
@click.option("--min-score", type=_FiniteFloat(min=-1, max=1), default=_QUERY.min_score,
              help=f"Hide matches scoring below this. Default {_QUERY.min_score:g} (scores are similarity above the "
                   "library's background): edited copies mostly score above it, footage that only looks alike "
                   "below.")
@click.option("--views", type=click.Choice(VIEW_CHOICES), default=_QUERY.views, show_default=True,
              help="How hard to look: fast = whole frames; standard = also mirrored; thorough = also turned by "
                   "90, 180 and 270 degrees, halves, half-size windows and any picture-in-picture inset found, cut "
                   "out (rotated, stacked and inset copies); "
                   "auto = whole frames, then mirrored, then thorough, each step only when nothing scores "
                   f"{_QUERY.escalate_below:g}.")
@click.option("--timeout", "timeout_s", type=_FiniteFloat(min=1), default=_QUERY.decode_timeout_s,
              show_default=True, help="Seconds the decoder may stall on CLIP before it is stopped.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def query(clip: Path, index_dir: Path | None, device: str | None, k: int, min_score: float, views: str,
          timeout_s: float, as_json: bool) -> None:
    """Find library videos that contain CLIP, with scores and matching time spans."""
    if not clip.exists():
        raise click.BadParameter(f"no such file: {clip}", param_hint="CLIP")
    params = QueryParams(k=k, min_score=min_score, views=views, decode_timeout_s=timeout_s)
    with _open(index_dir, create=False, device=device) as lib:
        result = lib.query(clip, params=params)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    if not result.matches:
        click.echo(f"no match for {clip}")
        return
    click.echo(f"{'score':>6}  {'clip span':<13}  {'library span':<13}  video")
    for m in result.matches:
        for i, s in enumerate(m.segments):
            score = f"{m.score:6.3f}" if i == 0 else " " * 6
            path = m.path if i == 0 else ""
            click.echo(f"{score}  {_mmss(s.query_start_s)}-{_mmss(s.query_end_s):<7}  "
                       f"{_mmss(s.ref_start_s)}-{_mmss(s.ref_end_s):<7}  {path}".rstrip())


def _mmss(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60:02d}:{rem % 60:02d}"


@cli.command()
@index_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info(index_dir: Path | None, as_json: bool) -> None:
    """Show what is indexed: videos, vectors, encoder, index type and size."""
    with _open(index_dir, create=False) as lib:
        data = lib.info()
    if as_json:
        click.echo(json.dumps(data.to_dict(), indent=2))
        return
    rows = [
        ("index", data.location),
        ("videos", f"{data.videos} indexed ({_hms(data.duration_s)}), {data.failed} failed"),
        ("vectors", f"{data.vectors} ({data.sampling_fps:g} per second)"),
        ("encoder", f"{data.encoder} v{data.encoder_version}, {data.raw_dim}-d raw"),
        ("projection", f"{data.projection or 'not fitted yet'} -> {data.dim}-d"),
        ("faiss", f"{data.index_type}, {data.index_bytes / 2**20:.1f} MiB, searched on {data.index_device}"),
        ("store", f"SQLite, {data.store_bytes / 2**20:.1f} MiB, schema {data.schema_revision}"),
    ]
    for key, value in rows:
        click.echo(f"{key:<11} {value}")


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@index_option
def remove(paths: tuple[Path, ...], index_dir: Path | None) -> None:
    """Remove videos (files, or every video under a folder) from the index. The files are not touched."""
    with _open(index_dir, create=False) as lib:
        removed = lib.remove(paths)
    for p in removed:
        click.echo(f"removed {p}")
    if not removed:
        raise click.ClickException(f"nothing indexed under {', '.join(map(str, paths))}")


@cli.command()
@index_option
@click.option("--repair", is_flag=True, help="Rebuild the FAISS file from the stored vectors (no decoding).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def check(index_dir: Path | None, repair: bool, as_json: bool) -> None:
    """Verify the index: the store is sound and the FAISS file holds exactly the stored vectors.

    Exit code 0 when consistent (after --repair, if given), 1 when problems remain.
    """
    with _open(index_dir, create=False) as lib:
        report = lib.check(repair=repair)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for line in report.repaired:
            click.echo(f"repaired: {line}")
        for line in report.problems:
            click.echo(f"problem: {line}")
        state = "consistent" if report.ok else "NOT consistent"
        click.echo(f"{state}: {report.videos} videos, {report.vectors} stored vectors, "
                   f"{report.faiss_vectors} in FAISS")
        if not report.ok and not repair:
            click.echo("run `sora-search check --repair` to rebuild the FAISS file from the stored vectors")
    if not report.ok:
        sys.exit(1)


@cli.command()
@index_option
def upgrade(index_dir: Path | None) -> None:
    """Upgrade an index made by an older sora-search to this version's schema."""
    from .library import Library

    before, after = Library.upgrade(index_dir)
    click.echo(f"schema {before} -> {after}" if before != after else f"schema already at {after}")


def run() -> None:
    """The ``sora-search`` command (and ``python -m sora_search``): :func:`main`, then a fast exit.

    When a command returns, its library is closed and its output written; what is left of the process is the
    interpreter's teardown, which only frees memory and, once torch is imported, takes about a second. So the
    command flushes its
    streams and leaves with ``os._exit`` and the exit status :func:`main` chose. An exception that escapes main
    (only with SORA_SEARCH_DEBUG=1) takes the normal way out, traceback and all.
    """
    try:
        main()
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (`| head`): nothing more can reach it
        code = code or 1
    try:
        sys.stderr.flush()
    except BrokenPipeError:
        code = code or 1
    os._exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point for callers in this process (tests, scripts): exits by SystemExit like any click command.
    Anything unexpected still ends in one line, unless SORA_SEARCH_DEBUG=1."""
    try:
        cli.main(args=argv, prog_name="sora-search")
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 — the last resort: a line, not a traceback
        if debug_wanted():
            raise
        click.echo(f"Error: {type(exc).__name__}: {exc} (SORA_SEARCH_DEBUG=1 shows the traceback)", err=True)
        sys.exit(1)
