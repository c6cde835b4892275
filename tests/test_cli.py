"""The CLI as a user meets it: help, exit codes, one-line errors, where the index lives, JSON output."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from contextlib import closing

import pytest
from click.testing import CliRunner

from sora_search import Library
from sora_search.cli import cli
from sora_search.render import ProgressBar, ProgressLines, progress_display
from sora_search.errors import IndexNotFound, SoraSearchError
from sora_search.params import VIEW_CHOICES, IndexParams, QueryParams
from sora_search.types import FailedFile, IndexSummary, Progress, QueryResult


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def tiny_index(tmp_path, library_copy):
    """An index built with the fast test encoder; the CLI uses whatever encoder an index was made with."""
    idx = tmp_path / "idx"
    with Library.open(idx, encoder="tiny") as lib:
        lib.index([library_copy])
    return idx


@pytest.mark.parametrize("command", [None, "index", "query", "info", "remove", "check", "upgrade", "serve"])
def test_every_command_has_help(runner, command):
    args = [command, "--help"] if command else ["--help"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0 and "Usage:" in result.output and "Options:" in result.output


def test_help_is_fast_and_imports_nothing_heavy():
    # -X importtime lists every module the command imports, on stderr.
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "sora_search", "--help"], capture_output=True,
                          text=True, check=True)
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time")}
    assert "Usage: sora-search" in done.stdout and "click" in imported
    assert not imported & {"torch", "faiss", "numpy", "decord", "av", "sqlalchemy"}


def test_missing_path_is_a_usage_error(runner, tmp_path):
    result = runner.invoke(cli, ["index", str(tmp_path / "nope"), "--index", str(tmp_path / "idx")])
    assert result.exit_code == 2 and "no such file or folder" in result.output
    assert not (tmp_path / "idx").exists()


def test_query_before_indexing_says_what_to_do(runner, tmp_path, media_dir):
    result = runner.invoke(cli, ["query", str(media_dir / "probe_a.mp4"), "--index", str(tmp_path / "idx")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: no index at {tmp_path / 'idx'}: run `sora-search index PATH` first "
        "(or pass --index / set SORA_SEARCH_INDEX to where it is)"]


def test_undecodable_probe_is_one_line(runner, tiny_index, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypisom" + random.Random(0).randbytes(2000))
    result = runner.invoke(cli, ["query", str(bad), "--index", str(tiny_index)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and str(bad) in result.output


def test_debug_env_shows_the_exception(runner, tmp_path, media_dir):
    result = runner.invoke(cli, ["info", "--index", str(tmp_path / "idx")], env={"SORA_SEARCH_DEBUG": "1"})
    assert isinstance(result.exception, SoraSearchError)


def test_partial_run_exits_3_and_lists_the_failure(runner, tmp_path, library_copy):
    (library_copy / "broken.mp4").write_bytes(b"not a video at all")
    idx = tmp_path / "idx"
    Library.open(idx, encoder="tiny").close()
    result = runner.invoke(cli, ["index", str(library_copy), "--index", str(idx)])
    assert result.exit_code == 3
    assert "4 added" in result.output and "1 failed" in result.output
    assert f"failed  {library_copy / 'broken.mp4'}:" in result.output


def test_index_location_precedence(runner, tmp_path, library_copy, monkeypatch):
    clip = str(library_copy / "bars.mp4")
    monkeypatch.chdir(tmp_path)
    Library.open(".sora-search", encoder="tiny").close()
    assert runner.invoke(cli, ["-q", "index", clip]).exit_code == 0          # default: ./.sora-search
    assert "1 indexed" in runner.invoke(cli, ["info"]).output
    env_idx = str(tmp_path / "from_env")
    Library.open(env_idx, encoder="tiny").close()
    assert runner.invoke(cli, ["-q", "index", clip], env={"SORA_SEARCH_INDEX": env_idx}).exit_code == 0
    assert f"index       {env_idx}" in runner.invoke(cli, ["info"], env={"SORA_SEARCH_INDEX": env_idx}).output
    flag = runner.invoke(cli, ["info", "--index", env_idx], env={"SORA_SEARCH_INDEX": "elsewhere"})
    assert f"index       {env_idx}" in flag.output


def test_the_table_says_where_in_the_clip_a_match_was_found(runner, lite_index, media_dir):
    """The picture-in-picture probe seen through every view: its match names the inset's place in the frame."""
    result = runner.invoke(cli, ["query", str(media_dir / "probe_pip.mp4"), "--index", str(lite_index), "--views",
                                 "thorough"])
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[1]
    assert "pan_a.mp4  (found in the clip's inset, " in first and first.endswith("of the frame)")


def test_query_json_shape_and_table(runner, tiny_index, library_copy, tmp_path):
    import shutil

    clip = tmp_path / "bars_copy.mp4"  # not indexed: an indexed file is left out of its own answer
    shutil.copy(library_copy / "bars.mp4", clip)
    result = runner.invoke(cli, ["query", str(clip), "--index", str(tiny_index), "--json", "--min-score", "0"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["query"] == str(clip) and data["blank"] is False and data["indexed"] is False
    assert data["matches"][0]["path"] == str(library_copy / "bars.mp4")
    for match in data["matches"]:
        assert set(match) == {"path", "score", "segments", "view", "region"}
        assert match["view"] == "full" and match["region"] is None
        for seg in match["segments"]:
            assert set(seg) == {"query_start_s", "query_end_s", "ref_start_s", "ref_end_s", "score"}
    table = runner.invoke(cli, ["query", str(clip), "--index", str(tiny_index)])
    assert table.output.splitlines()[0].split() == ["score", "clip", "span", "library", "span", "video"]
    assert "00:00-00:08" in table.output and str(library_copy / "bars.mp4") in table.output


def test_a_blank_clip_says_there_was_nothing_to_compare(runner, tiny_index, tmp_path):
    from tests.media import make_testsrc

    clip = make_testsrc(tmp_path / "black.mp4", 4, pattern="color")  # lavfi's color source is black
    table = runner.invoke(cli, ["query", str(clip), "--index", str(tiny_index), "--min-score=-1"])
    assert table.exit_code == 0 and "every second of it is blank" in table.output, table.output
    data = json.loads(runner.invoke(cli, ["query", str(clip), "--index", str(tiny_index), "--json"]).output)
    assert data["matches"] == [] and data["blank"] is True


def test_an_indexed_clip_is_left_out_of_its_own_answer_and_says_so(runner, tiny_index, library_copy):
    clip = library_copy / "bars.mp4"
    data = json.loads(runner.invoke(cli, ["query", str(clip), "--index", str(tiny_index), "--json"]).output)
    assert data["indexed"] is True and str(clip) not in [m["path"] for m in data["matches"]]
    table = runner.invoke(cli, ["query", str(clip), "--index", str(tiny_index), "--min-score", "1"])
    assert table.exit_code == 0, table.output
    said = "other than itself: it is indexed, and left out of its own answer"
    assert table.output.strip() == f"no match for {clip} {said}"


def test_info_and_remove(runner, tiny_index, library_copy):
    info = runner.invoke(cli, ["info", "--index", str(tiny_index), "--json"])
    assert json.loads(info.output)["videos"] == 4 and json.loads(info.output)["index_device"] == "cpu"
    text = runner.invoke(cli, ["info", "--index", str(tiny_index)]).output
    assert [line for line in text.splitlines() if line.startswith("faiss ")][0].endswith("MiB, searched on cpu")
    vectors = json.loads(info.output)["vectors"]
    assert f"regions     0 of {vectors} seconds; region check off" in text  # the tiny encoder has no regions
    removed = runner.invoke(cli, ["remove", str(library_copy / "bars.mp4"), "--index", str(tiny_index)])
    assert removed.exit_code == 0 and removed.output.strip() == f"removed {library_copy / 'bars.mp4'}"
    again = runner.invoke(cli, ["remove", str(library_copy / "bars.mp4"), "--index", str(tiny_index)])
    assert again.exit_code == 1 and "nothing indexed under" in again.output
    assert json.loads(runner.invoke(cli, ["info", "--index", str(tiny_index), "--json"]).output)["videos"] == 3


def test_upgrade_on_current_schema(runner, tiny_index):
    result = runner.invoke(cli, ["upgrade", "--index", str(tiny_index)])
    assert result.exit_code == 0 and "schema already at" in result.output


def test_older_schema_is_one_line_then_upgrade_fixes_it(runner, tmp_path):
    import shutil
    from pathlib import Path

    idx = tmp_path / "idx"
    idx.mkdir()
    shutil.copy(Path(__file__).parent / "data" / "rev0001.db", idx / "sora.db")
    old = runner.invoke(cli, ["info", "--index", str(idx)])
    assert old.exit_code == 1 and len(old.output.strip().splitlines()) == 1
    assert "0001" in old.output and "sora-search upgrade" in old.output
    up = runner.invoke(cli, ["upgrade", "--index", str(idx)])
    assert up.exit_code == 0 and up.output.strip() == "schema 0001 -> 0004"
    assert runner.invoke(cli, ["info", "--index", str(idx)]).exit_code == 0


def test_verbose_is_about_sora_search_until_vvv(tmp_path):
    import shutil
    from pathlib import Path

    def upgrade(flag: str) -> str:
        idx = tmp_path / flag
        idx.mkdir()
        shutil.copy(Path(__file__).parent / "data" / "rev0001.db", idx / "sora.db")
        done = subprocess.run([sys.executable, "-m", "sora_search", flag, "upgrade", "--index", str(idx)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stderr

    assert "alembic" not in upgrade("-v")  # the migration's own INFO lines are noise at -v
    assert "INFO alembic" in upgrade("-vvv")


def test_query_help_states_the_library_defaults():
    defaults = QueryParams()
    text = " ".join(CliRunner().invoke(cli, ["query", "--help"], terminal_width=200).output.split())
    assert f"Default {defaults.min_score:g} " in text
    assert f"when nothing scores {defaults.escalate_below:g}." in text
    assert f"[default: {defaults.k}; x>=1]" in text and f"[default: {defaults.decode_timeout_s}; x>=1]" in text
    assert "[auto|fast|standard|thorough]" in text and tuple(VIEW_CHOICES) == ("auto", "fast", "standard", "thorough")


def test_a_reader_that_goes_away_is_not_an_error_message(tiny_index, media_dir):
    # `sora-search query ... | head -1`: stdout is a pipe nobody reads any more.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "sora_search", "query", str(media_dir / "probe_a.mp4"),
                               "--index", str(tiny_index), "--min-score=-1"], stdout=write_end,
                              stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write_end)
    assert done.returncode == 1 and done.stderr == ""


class _FakeLibrary:
    """Stands in for Library behind the CLI: records how it was opened and called, and plays an index run."""

    def __init__(self, **opened):
        self.opened = opened
        self.calls = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def index(self, paths, *, progress=None, retry_failed=False, follow_links=True, ray=None, add_regions=False):
        self.calls.append(("index", paths, retry_failed))
        a, b = "/lib/a.mp4", "/lib/b.mp4"
        events = [Progress(0, 2, 0, 30, a, "decoding"), Progress(1, 2, 10, 30, a, "added"),
                  Progress(1, 2, 10, 30, b, "decoding"), Progress(2, 2, 30, 30, b, "failed", "not a video (PNG image)")]
        for event in events if progress is not None else ():
            progress(event)
        return IndexSummary(added=(a,), failed=(FailedFile(b, "not a video (PNG image)"),), seconds=1.0)

    def query(self, clip, *, params):
        self.calls.append(("query", str(clip), params))
        return QueryResult(str(clip))


@pytest.fixture
def fake_library(monkeypatch):
    """The CLI over a recording stand-in for Library: checks the adapter alone."""
    opened = []

    def fake_open(index_dir, *, create, **options):
        opened.append(_FakeLibrary(index_dir=index_dir, create=create, **options))
        return opened[-1]

    monkeypatch.setattr("sora_search.cli._open", fake_open)
    return opened


def test_index_passes_its_params_and_prints_a_line_per_file_off_a_terminal(fake_library, tmp_path):
    result = CliRunner().invoke(cli, ["index", str(tmp_path), "--timeout", "30", "--device", " CUDA:1 "])
    assert result.exit_code == 3
    lib = fake_library[0]
    assert lib.opened["params"] == IndexParams(decode_timeout_s=30.0) and lib.opened["device"] == "cuda:1"
    assert result.stderr.splitlines()[:2] == ["added   1/2  /lib/a.mp4",
                                              "failed  2/2  /lib/b.mp4: not a video (PNG image)"]
    assert "decoding" not in result.stderr and "indexing" not in result.stderr
    assert "1 added" in result.stderr and result.stdout == ""


def test_index_default_timeout_is_the_params_default(fake_library, tmp_path):
    CliRunner().invoke(cli, ["index", str(tmp_path)])
    assert fake_library[0].opened["params"] == IndexParams()


def test_quiet_index_prints_nothing(fake_library, tmp_path):
    result = CliRunner().invoke(cli, ["-q", "index", str(tmp_path)])
    assert result.exit_code == 3 and result.output == ""


def test_progress_is_a_bar_on_a_terminal_and_lines_elsewhere():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    class Closed(io.StringIO):
        def isatty(self):
            raise ValueError("I/O operation on closed file")

    terminal = Terminal()
    bar = progress_display(terminal)
    assert isinstance(bar, ProgressBar)
    bar.update(Progress(1, 2, 10, 30, "/lib/a.mp4", "added"))
    bar.close()
    assert "indexing" in terminal.getvalue() and "1/2 files, a.mp4" in terminal.getvalue()
    assert isinstance(progress_display(io.StringIO()), ProgressLines)
    assert isinstance(progress_display(Closed()), ProgressLines)


def test_query_passes_params_built_from_its_options(fake_library, tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    assert CliRunner().invoke(cli, ["query", str(clip)]).exit_code == 0
    assert fake_library[0].calls == [("query", str(clip), QueryParams())]
    args = ["query", str(clip), "-k", "3", "--min-score", "-0.5", "--views", "thorough", "--timeout", "9"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert fake_library[1].calls[0][2] == QueryParams(k=3, min_score=-0.5, views="thorough", decode_timeout_s=9.0)


@pytest.mark.parametrize("args", [
    ["query", "clip.mp4", "--min-score", "nan"],
    ["query", "clip.mp4", "--min-score", "inf"],
    ["query", "clip.mp4", "--timeout", "nan"],
    ["index", ".", "--timeout", "inf"],
    ["index", ".", "--timeout", "nan"],
])
def test_numbers_that_are_not_finite_are_usage_errors(fake_library, args):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "Invalid value for" in result.output and not fake_library


def test_device_is_checked_by_the_library_parser(fake_library):
    bad = CliRunner().invoke(cli, ["index", ".", "--device", "gpu"])
    assert bad.exit_code == 2 and "unknown device 'gpu'" in bad.output and "'cuda:N'" in bad.output
    from_env = CliRunner().invoke(cli, ["index", "."], env={"SORA_SEARCH_DEVICE": "cuda:x"})
    assert from_env.exit_code == 2 and "unknown device 'cuda:x' (from $SORA_SEARCH_DEVICE)" in from_env.output
    assert not fake_library
    assert CliRunner().invoke(cli, ["-q", "index", "."], env={"SORA_SEARCH_DEVICE": "cpu"}).exit_code == 3
    assert fake_library[0].opened["device"] == "cpu"


def test_upgrade_goes_through_the_library(monkeypatch, tmp_path):
    asked = []

    def upgrade(path, db=None):
        asked.append((path, db))
        if path is None:
            raise IndexNotFound("no index at ./.sora-search")
        return "0001", "0002", None

    monkeypatch.setattr(Library, "upgrade", staticmethod(upgrade), raising=False)
    done = CliRunner().invoke(cli, ["upgrade", "--index", str(tmp_path)])
    assert done.exit_code == 0 and done.output == "schema 0001 -> 0002\n"
    missing = CliRunner().invoke(cli, ["upgrade"])
    assert missing.exit_code == 1 and missing.output == "Error: no index at ./.sora-search\n"
    monkeypatch.setenv("SORA_SEARCH_DB", "postgresql://from-env/db")
    assert CliRunner().invoke(cli, ["upgrade", "--index", str(tmp_path)]).exit_code == 0
    assert CliRunner().invoke(cli, ["upgrade", "--index", str(tmp_path), "--db", "sqlite:///x.db"]).exit_code == 0
    assert asked == [(tmp_path, None), (None, None), (tmp_path, "postgresql://from-env/db"),
                     (tmp_path, "sqlite:///x.db")]  # --db, else $SORA_SEARCH_DB


def test_upgrade_from_before_regions_says_how_to_add_them(runner, tmp_path):
    import shutil
    import sqlite3
    from pathlib import Path

    idx = tmp_path / "idx"
    idx.mkdir()
    shutil.copy(Path(__file__).parent / "data" / "rev0002.db", idx / "sora.db")
    with closing(sqlite3.connect(idx / "sora.db")) as db, db:  # as if made by the encoder that keeps regions
        db.execute("UPDATE index_meta SET encoder_name = 'sora-lite0'")
        stored = db.execute("SELECT count(*) FROM vectors").fetchone()[0]
    up = runner.invoke(cli, ["upgrade", "--index", str(idx)])
    assert up.exit_code == 0, up.output
    assert up.output.splitlines()[0] == "schema 0002 -> 0004"
    assert f"{stored} stored seconds keep no region vectors" in up.output and "index --add-regions" in up.output
