"""The ``sora-search`` command: a thin adapter over :class:`sora_search.library.Library`.

Each command parses its arguments, makes one library call and renders the result. Defaults and the figures in
help texts come from :mod:`sora_search.params`. Results go to stdout, progress and logs to stderr (a bar on a
terminal, one line per finished file elsewhere). Library errors become one-line messages (exit 1); bad arguments
exit 2; an index run that finished but could not read some files exits 3. ``SORA_SEARCH_DEBUG=1`` shows tracebacks.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from . import __version__
from .errors import EncoderError, SoraSearchError, debug_wanted
from .params import KEEP_RULES, VIEW_CHOICES, DupesParams, IndexParams, QueryParams, TextParams
from .render import (DupesProgress, echo, hms, mmss, print_dupes, print_pairs_csv, print_summary, progress_display,
                     shown)
from .threads import raise_from_handler

EXIT_PARTIAL = 3
EXIT_TERMINATED = 128 + signal.SIGTERM
_FULL_HINT = "; free some space and run the command again (what was committed before is kept)"
# The documented defaults, read for option defaults and the figures in help texts.
_INDEX = IndexParams()
_QUERY = QueryParams()
_DUPES = DupesParams()


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


def _keep_db(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    ctx.meta["sora_search.db"] = value


# Not a parameter of the commands: _open and the commands that need it read it back with _db().
db_option = click.option(
    "--db", metavar="URL", default=None, envvar="SORA_SEARCH_DB", expose_value=False, callback=_keep_db,
    help="Catalogue database: postgresql+psycopg://USER:PASSWORD@HOST/DB or sqlite:///FILE. Default: "
         "$SORA_SEARCH_DB, else sora.db in the index folder (which holds the FAISS file either way).")


def _db() -> str | None:
    value = click.get_current_context().meta.get("sora_search.db")
    return str(value) if value else None


device_option = click.option(
    "--device", metavar="cpu|cuda|cuda:N", default=None, envvar="SORA_SEARCH_DEVICE", callback=_check_device,
    help="Where the encoder runs, and FAISS with a GPU build of faiss. Default: $SORA_SEARCH_DEVICE, else CUDA "
         "when available, else CPU.")


def _open(index_dir: Path | None, *, create: bool, **options: Any) -> Any:
    from .library import Library

    return Library.open(index_dir, create=create, db=_db(), **options)


class _Group(click.Group):
    """Turns library errors into one-line ``click.ClickException`` messages (exit 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SoraSearchError as exc:
            if debug_wanted():
                raise
            raise click.ClickException(shown(str(exc))) from exc
        except BrokenPipeError:
            # The reader of our output went away (`| head`): click's main quiets the streams and exits 1, silently.
            raise
        except OSError as exc:  # disk full, read-only folder, permissions: say which file and why
            if debug_wanted():
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            hint = _FULL_HINT if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) else ""
            raise click.ClickException(shown(f"{where}{exc.strerror or exc}{hint}")) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sora-search")
@click.option("-v", "--verbose", count=True,
              help="More log output on stderr (-vv for debug, -vvv for the libraries underneath too).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary on stderr.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Find which videos in a library contain a clip, or something visually near it.

    \b
      sora-search index ./library      index (or update) every video under ./library
      sora-search query clip.mp4       ranked library videos with matching time spans
      sora-search dupes                library videos that share footage, and which copy to keep
      sora-search serve                a web page and JSON API on http://127.0.0.1:8765
    """
    level = max(logging.DEBUG, logging.WARNING - 10 * verbose) if not quiet else logging.ERROR
    # -v and -vv speak for sora-search; other libraries (alembic's migrations, faiss's loader) only from -vvv.
    logging.basicConfig(level=level if verbose >= 3 else max(level, logging.WARNING),
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("sora_search").setLevel(level)
    ctx.obj = {"quiet": quiet, "verbose": verbose}


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@index_option
@db_option
@device_option
@click.option("--retry-failed", is_flag=True, help="Try again files that failed before and have not changed.")
@click.option("--add-regions", is_flag=True,
              help="Also re-encode unchanged videos that keep no region vectors (indexed before the index stored "
                   "them; see `info`), so that queries run the region check on them.")
@click.option("--follow-links/--no-follow-links", default=True, show_default=True,
              help="Index the targets of file symlinks that point outside PATHS (folder links are never followed).")
@click.option("--timeout", "timeout_s", type=_FiniteFloat(min=1), default=_INDEX.decode_timeout_s,
              show_default=True,
              help="Seconds a decoder may stall on one file before it is stopped and the file skipped.")
@click.option("--decode-workers", type=click.IntRange(min=0), default=_INDEX.decode_workers,
              help="Files decoded at once, each in its own process. Default (0): two while the encoder runs on the "
                   "CPU (one on a single core), half the CPUs (up to 8) when it runs on a GPU; 1 uses less memory.")
@click.option("--ray", "ray_address", metavar="[auto|local|ADDRESS]", is_flag=False, flag_value="auto", default=None,
              help="Decode and encode on a Ray cluster (needs sora-search[ray]): auto = $RAY_ADDRESS, else a cluster "
                   "started on this machine, else a new local one; local = a new one on this machine; or the "
                   "head's ADDRESS. This process still scans and writes the index; every node must see PATHS at "
                   "the same absolute paths.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "int8"]), default=None,
              help="Encoder precision of a new index: fp32; bf16 (1.7x the encoder's speed on CPUs with bf16 "
                   "instructions, vectors within cosine 0.999 of fp32); or int8 on the CPU (1.6-2.5x, within 0.99). "
                   "Scores move a little from fp32's. Default: $SORA_SEARCH_PRECISION, else fp32. An existing "
                   "index keeps its own.")
@click.pass_context
def index(ctx: click.Context, paths: tuple[Path, ...], index_dir: Path | None, device: str | None,
          retry_failed: bool, add_regions: bool, follow_links: bool, timeout_s: float, decode_workers: int,
          ray_address: str | None, precision: str | None) -> None:
    """Index the videos under PATHS (files or folders, recursive).

    Incremental: unchanged files are skipped, changed files re-indexed, moved or renamed files recognised without
    decoding, deleted files removed. Files that cannot be read are reported and the run goes on (exit code 3).
    """
    missing = [str(p) for p in paths if not os.path.lexists(p)]
    if missing:
        raise click.BadParameter(f"no such file or folder: {', '.join(missing)}", param_hint="PATHS")
    quiet = ctx.obj["quiet"]
    params = IndexParams(decode_timeout_s=timeout_s, decode_workers=decode_workers)
    with _open(index_dir, create=True, device=device, params=params, precision=precision) as lib:
        display = None if quiet else progress_display(sys.stderr)
        progress = None if display is None else display.update
        try:
            summary = lib.index(paths, progress=progress, retry_failed=retry_failed, follow_links=follow_links,
                                ray=ray_address, add_regions=add_regions)
        finally:
            if display is not None:
                display.close()
    if not quiet:
        print_summary(summary, timings=ctx.obj["verbose"] > 0)
    if summary.failed:
        ctx.exit(EXIT_PARTIAL)


@cli.command()
@click.argument("clip", type=click.Path(path_type=Path))
@index_option
@db_option
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
                   "auto = whole frames, then mirrored, then turned, halves and a found inset (thorough without "
                   f"the windows, on a sample of seconds first), each step only when nothing scores "
                   f"{_QUERY.escalate_below:g}.")
@click.option("--timeout", "timeout_s", type=_FiniteFloat(min=1), default=_QUERY.decode_timeout_s,
              show_default=True, help="Seconds the decoder may stall on CLIP before it is stopped.")
@click.option("--read-text", is_flag=True,
              help="Read the words on screen with the tesseract command and drop a match whose frames both show "
                   "text that differs: another slide of the same deck, form or title card rather than a copy. "
                   "Reads a few frames of each match, about 0.2 s each; `sora-search -v query ...` names each "
                   "match it drops.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a self-contained HTML report to this file: frames side by side, timelines.")
def query(clip: Path, index_dir: Path | None, device: str | None, k: int, min_score: float, views: str,
          timeout_s: float, read_text: bool, as_json: bool, html_file: Path | None) -> None:
    """Find library videos that contain CLIP, with scores and matching time spans.

    CLIP may be an indexed video: it is left out of its own answer ("what else shares footage with this one?"), and
    with --views auto or fast it is searched from its stored whole-frame vectors, nothing decoded.
    """
    if not clip.exists():
        raise click.BadParameter(f"no such file: {clip}", param_hint="CLIP")
    params = QueryParams(k=k, min_score=min_score, views=views, decode_timeout_s=timeout_s,
                         text=TextParams() if read_text else None)
    with _open(index_dir, create=False, device=device) as lib:
        result = lib.query(clip, params=params)
        if html_file is not None:
            from .report import render

            html_file.write_text(render(result, clip, lib.location, db=lib.catalogue), encoding="utf-8")
    if as_json:
        echo(json.dumps(result.to_dict(), indent=2))
        return
    if not result.matches:
        why = (": every second of it is blank (black, a fade or one colour once scaled for the encoder), so there "
               "was nothing to compare" if result.blank else
               " other than itself: it is indexed, and left out of its own answer" if result.indexed else "")
        echo(f"no match for {clip}{why}")
        return
    echo(f"{'score':>6}  {'clip span':<13}  {'library span':<13}  video")
    for m in result.matches:
        for i, s in enumerate(m.segments):
            score = f"{m.score:6.3f}" if i == 0 else " " * 6
            path = (m.path + (f"  (found in {m.found_in})" if m.found_in else "")) if i == 0 else ""
            echo(f"{score}  {mmss(s.query_start_s)}-{mmss(s.query_end_s):<7}  "
                       f"{mmss(s.ref_start_s)}-{mmss(s.ref_end_s):<7}  {path}".rstrip())


@cli.command(help=f"""Find library videos that share footage: copies, videos that contain others, shared parts.

    Reads the stored vectors: nothing is decoded. Each pair gets a score, the matching spans in both videos and how
    much of each the shared footage covers (0 to 1). Videos that are copies of one another (both covered at least
    {_DUPES.same_video:g}) form a group, the copy to keep first. Intros, endings and black openings that two videos
    merely share do not pair them. Nothing is deleted, moved or changed: the output is a plan for a person or a
    script.
    """)
@index_option
@db_option
@device_option
@click.option("--min-score", type=_FiniteFloat(min=-1, max=1), default=_DUPES.min_score, show_default=True,
              help="Hide pairs scoring below this. Scores are measured as in `query`, but with both copies "
                   "and their look-alikes in the library they run lower, hence the lower default (in a library "
                   "of tens of videos, 0.25).")
@click.option("--keep", type=click.Choice(KEEP_RULES), default=_DUPES.keep, show_default=True,
              help="Which copy of a group to keep: the highest resolution (then the longest), the longest, the "
                   "largest file, the newest or the oldest file.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV, one row per pair, instead of a table.")
@click.pass_context
def dupes(ctx: click.Context, index_dir: Path | None, device: str | None, min_score: float, keep: str,
          as_json: bool, as_csv: bool) -> None:
    """The ``dupes`` command; its help text is given above, with the figures of DupesParams."""
    if as_json and as_csv:
        raise click.BadParameter("give --json or --csv, not both", param_hint="--csv")
    quiet = ctx.obj["quiet"]
    with _open(index_dir, create=False, device=device) as lib:
        display = None if quiet else DupesProgress(sys.stderr)
        try:
            report = lib.duplicates(min_score=min_score, keep=keep,
                                    progress=None if display is None else display.update)
        finally:
            if display is not None:
                display.close()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    elif as_csv:
        print_pairs_csv(report)
    else:
        print_dupes(report, keep)


@cli.command()
@index_option
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info(index_dir: Path | None, as_json: bool) -> None:
    """Show what is indexed: videos, vectors, encoder, index type and size."""
    from .encoder import REGION_ENCODERS

    with _open(index_dir, create=False) as lib:
        data = lib.info()
    if as_json:
        echo(json.dumps(data.to_dict(), indent=2))
        return
    rows = [
        ("index", data.location),
        ("videos", f"{data.videos} indexed ({hms(data.duration_s)}), {data.failed} failed"),
        ("vectors", f"{data.vectors} ({data.sampling_fps:g} per second)"),
        ("encoder", f"{data.encoder} v{data.encoder_version}, {data.raw_dim}-d raw"),
        ("projection", f"{data.projection or 'not fitted yet'} -> {data.dim}-d"),
        ("faiss", f"{data.index_type}, {data.index_bytes / 2**20:.1f} MiB, searched on {data.index_device}"),
        ("store", f"{data.extra.get('catalogue', 'SQLite')}, {data.store_bytes / 2**20:.1f} MiB, schema "
                  f"{data.schema_revision}"),
        ("regions", f"{data.extra['region_vectors']} of {data.vectors} seconds; region check "
                    f"{'on' if data.extra['region_check'] else 'off'}"
                    + (" (`index --add-regions PATH` adds the rest)"
                       if data.encoder in REGION_ENCODERS and data.extra["region_vectors"] < data.vectors else "")),
    ]
    for key, value in rows:
        echo(f"{key:<11} {value}")


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@index_option
@db_option
def remove(paths: tuple[Path, ...], index_dir: Path | None) -> None:
    """Remove videos (files, or every video under a folder) from the index. The files are not touched."""
    with _open(index_dir, create=False) as lib:
        removed = lib.remove(paths)
    for p in removed:
        echo(f"removed {p}")
    if not removed:
        raise click.ClickException(f"nothing indexed under {', '.join(map(str, paths))}")


@cli.command()
@index_option
@db_option
@click.option("--repair", is_flag=True, help="Rebuild the FAISS file from the stored vectors (no decoding).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def check(index_dir: Path | None, repair: bool, as_json: bool) -> None:
    """Verify the index: the store is sound and the FAISS file holds exactly the stored vectors.

    Exit code 0 when consistent (after --repair, if given), 1 when problems remain.
    """
    with _open(index_dir, create=False) as lib:
        report = lib.check(repair=repair)
    if as_json:
        echo(json.dumps(report.to_dict(), indent=2))
    else:
        for line in report.repaired:
            echo(f"repaired: {line}")
        for line in report.problems:
            echo(f"problem: {line}")
        for line in report.notes:
            echo(f"note: {line}")
        state = "consistent" if report.ok else "NOT consistent"
        echo(f"{state}: {report.videos} videos, {report.vectors} stored vectors, "
                   f"{report.faiss_vectors} in FAISS")
        if not report.ok and not repair:
            echo("run `sora-search check --repair` to rebuild the FAISS file from the stored vectors")
    if not report.ok:
        sys.exit(1)


@cli.command()
@index_option
@db_option
def upgrade(index_dir: Path | None) -> None:
    """Upgrade an index made by an older sora-search to this version's schema."""
    from .library import Library

    before, after, note = Library.upgrade(index_dir, db=_db())
    echo(f"schema {before} -> {after}" if before != after else f"schema already at {after}")
    if note:
        echo(note)


_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@cli.command()
@index_option
@db_option
@device_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Any other than this machine's loopback needs --token or --no-auth.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port to listen on.")
@click.option("--token", envvar="SORA_SEARCH_TOKEN", default=None,
              help="Require 'Authorization: Bearer TOKEN' on /api (default: $SORA_SEARCH_TOKEN).")
@click.option("--no-auth", is_flag=True, help="Serve a non-loopback --host without a token.")
@click.option("--max-upload-mb", type=_FiniteFloat(min=0.001), default=512, show_default=True,
              help="Largest probe clip accepted, in MiB.")
@click.option("--max-queued", type=click.IntRange(min=1), default=4, show_default=True,
              help="Queries waiting or running at once; more get 503 with Retry-After.")
@click.option("--allow-root", "allow_roots", multiple=True, metavar="DIR",
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Let POST /api/index index files under DIR (repeatable). Without it, indexing over HTTP is off.")
@click.pass_context
def serve(ctx: click.Context, index_dir: Path | None, device: str | None, host: str, port: int, token: str | None,
          no_auth: bool, max_upload_mb: float, max_queued: int, allow_roots: tuple[Path, ...]) -> None:
    """Serve the index over HTTP: a web page at /, a JSON API under /api, OpenAPI docs at /docs.

    Needs the serve extra: pip install 'sora-search[serve]'.
    """
    from .serve import INSTALL_HINT, missing

    if missing():
        raise click.ClickException(f"serve needs {', '.join(missing())}: {INSTALL_HINT}")
    if host not in _LOCAL_HOSTS and not token and not no_auth:
        raise click.BadParameter(f"{host} is reachable from other machines: pass --token TOKEN (or set "
                                 "SORA_SEARCH_TOKEN), or --no-auth to serve without one", param_hint="--host")
    from .serve.app import Settings
    from .serve.app import serve as serve_app

    if not ctx.obj["quiet"]:
        logging.getLogger("sora_search.serve").setLevel(logging.INFO)
    # uvicorn stops gracefully on SIGTERM and then re-raises it: the default action, not the index runs' message.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    serve_app(Settings(index=index_dir, db=_db(), device=device, token=token, max_upload_mb=max_upload_mb,
                       max_queued=max_queued, allow_roots=allow_roots), host=host, port=port,
              log_level="warning" if ctx.obj["quiet"] else "info")


def _terminated(signum: int, frame: Any) -> None:
    """SIGTERM ends the command as Ctrl-C does: open transactions roll back, locks and workers are released."""
    sys.stderr.write("Aborted: terminated (SIGTERM); what was committed is kept and the next run carries on\n")
    raise_from_handler(SystemExit(EXIT_TERMINATED))  # at once, or where a thread pool's locks are let go


def run() -> None:
    """The ``sora-search`` command (and ``python -m sora_search``): :func:`main`, then a fast exit.

    When a command returns, its library is closed and its output written; what is left of the process is the
    interpreter's teardown, which only frees memory and, once torch is imported, takes about a second. So the
    command flushes its
    streams and leaves with ``os._exit`` and the exit status :func:`main` chose. An exception that escapes main
    (only with SORA_SEARCH_DEBUG=1) takes the normal way out, traceback and all.
    """
    signal.signal(signal.SIGTERM, _terminated)
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
        echo(f"Error: {type(exc).__name__}: {exc} (SORA_SEARCH_DEBUG=1 shows the traceback)", err=True)
        sys.exit(1)
