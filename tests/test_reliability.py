"""Crash safety and concurrency: kill -9 at each dangerous point loses nothing; queries during a run never fail.

The tests marked ``on_both`` run with the catalogue in SQLite (the index folder) and in PostgreSQL (a throwaway
server: tests/pg.py); a PostgreSQL index is copied as its folder plus ``CREATE DATABASE ... TEMPLATE``.

Index runs are real ``sora-search`` processes; ``SORA_SEARCH_FAULT=POINT:N`` (sora_search/_faults.py) makes one
SIGKILL itself at an exact point, so every crash is reproducible.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sora_search import Library
from sora_search.cli import cli
from sora_search.library import write_lock


def _run(*args: str, fault: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("SORA_SEARCH_FAULT", None)
    if fault:
        env["SORA_SEARCH_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "sora_search", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


_DBS: dict[Path, str] = {}  # index folder -> its PostgreSQL catalogue (absent: SQLite in the folder)
on_both = pytest.mark.parametrize("half_indexed", ["sqlite", "postgres"], indirect=True)


@pytest.fixture(scope="module")
def half_indexed(request, tmp_path_factory, media_dir):
    """A library whose first half (pan_a, pan_b) is indexed; the second half (later/) is not yet. The catalogue is
    SQLite unless the test is parametrized (``on_both``) with ``postgres``."""
    db = request.getfixturevalue("pg_server").new_database() if getattr(request, "param", "") == "postgres" else None
    root = tmp_path_factory.mktemp("rel")
    lib_dir = root / "library"
    shutil.copytree(media_dir / "library", lib_dir)
    (lib_dir / "later").mkdir()
    for name in ("bars.mp4", "mandel.mp4"):
        (lib_dir / name).rename(lib_dir / "later" / name)
    idx = root / "idx"
    with Library.open(idx, encoder="tiny", db=db) as lib:
        lib.index([lib_dir])
        ids, _ = next(lib._store.iter_vectors())
    shutil.move(str(lib_dir / "later"), str(root / "later"))
    if db is not None:
        _DBS[idx] = db
    return root, lib_dir, idx, ids


@pytest.fixture
def copy_index(request, monkeypatch):
    """copy_index(idx0, idx): a private copy of an index; for a PostgreSQL one, the database too, which becomes this
    test's $SORA_SEARCH_DB (so every Library.open and sora-search process of the test uses it)."""
    monkeypatch.delenv("SORA_SEARCH_DB", raising=False)

    def copy(idx0: Path, idx: Path) -> None:
        shutil.copytree(idx0, idx)
        if idx0 in _DBS:
            monkeypatch.setenv("SORA_SEARCH_DB", request.getfixturevalue("pg_server").clone(_DBS[idx0]))
    return copy


def _stored(idx: Path) -> tuple[set[str], np.ndarray]:
    with Library.open(idx) as lib:
        paths = {os.path.basename(v.path) for v in lib._store.videos(status="indexed")}
        return paths, lib._store.all_vector_ids()


def _working_copy(half_indexed, tmp_path: Path, copy_index) -> tuple[Path, Path]:
    """A private copy of the half-indexed library and its index, the copy's files indexed under their new paths."""
    _, lib_dir, idx0, _ = half_indexed
    work, idx = tmp_path / "library", tmp_path / "idx"
    shutil.copytree(lib_dir, work)
    copy_index(idx0, idx)
    with Library.open(idx) as lib:
        lib.index([work])
    return work, idx


# On PostgreSQL, the kills around its commits (decode and encode kills touch no catalogue).
@pytest.mark.parametrize("half_indexed, fault", [("sqlite", f) for f in ("decode:2", "encode:2", "store:2", "faiss:1")]
                         + [("postgres", "store:2"), ("postgres", "faiss:1")], indirect=["half_indexed"])
def test_kill_during_index_loses_nothing(half_indexed, tmp_path, fault, copy_index):
    root, _, _, ids_before = half_indexed
    lib_dir_copy, idx = _working_copy(half_indexed, tmp_path, copy_index)
    _, ids_kept = _stored(idx)
    assert len(ids_kept) >= len(ids_before)

    shutil.copytree(root / "later", lib_dir_copy / "later")
    (lib_dir_copy / "later" / "extra").mkdir()
    shutil.copy(root / "later" / "bars.mp4", lib_dir_copy / "later" / "extra" / "bars_copy.mp4")
    for name in ("bars.mp4", "mandel.mp4"):
        shutil.copy(root / "later" / name, lib_dir_copy / name)
    crashed = _run("-q", "index", str(lib_dir_copy), "--index", str(idx), fault=fault)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr

    _, ids_after_crash = _stored(idx)
    assert set(ids_kept.tolist()) <= set(ids_after_crash.tolist()), "a crash lost vectors committed before it"

    again = _run("-q", "index", str(lib_dir_copy), "--index", str(idx))
    assert again.returncode == 0, again.stderr
    report = json.loads(_run("check", "--index", str(idx), "--json").stdout)
    assert report["ok"], report
    assert report["vectors"] == report["faiss_vectors"]
    paths, ids_final = _stored(idx)
    assert {"pan_a.mp4", "pan_b.mp4", "bars.mp4", "mandel.mp4", "bars_copy.mp4"} <= paths
    assert set(ids_kept.tolist()) <= set(ids_final.tolist())
    assert len(np.unique(ids_final)) == len(ids_final)


@on_both
def test_check_finds_and_repairs_a_stale_or_damaged_faiss_file(half_indexed, tmp_path, copy_index):
    _, _, idx0, _ = half_indexed
    idx = tmp_path / "idx"
    copy_index(idx0, idx)
    runner = CliRunner()
    assert runner.invoke(cli, ["check", "--index", str(idx)]).exit_code == 0
    (idx / "vectors.faiss").write_bytes(b"SORAIDX1 damaged")
    (idx / ".vectors.faiss.x1y2.tmp").write_bytes(b"half a file")
    broken = runner.invoke(cli, ["check", "--index", str(idx)])
    assert broken.exit_code == 1
    assert "problem: the FAISS index" in broken.output and "leftover temporary file" in broken.output
    assert "check --repair" in broken.output
    fixed = runner.invoke(cli, ["check", "--repair", "--index", str(idx)])
    assert fixed.exit_code == 0, fixed.output
    assert "repaired: rebuilt vectors.faiss" in fixed.output and "consistent:" in fixed.output
    assert not (idx / ".vectors.faiss.x1y2.tmp").exists()


@on_both
def test_queries_during_an_index_run_never_fail(half_indexed, tmp_path, media_dir, copy_index):
    root = half_indexed[0]
    work, idx = _working_copy(half_indexed, tmp_path, copy_index)
    for i in range(6):  # enough new files that the run takes a while
        shutil.copy(root / "later" / ("bars.mp4" if i % 2 else "mandel.mp4"), work / f"new_{i}.mp4")
        with open(work / f"new_{i}.mp4", "ab") as f:
            f.write(bytes([i]))  # distinct content, so no file counts as a move of another
    env = {k: v for k, v in os.environ.items() if k != "SORA_SEARCH_FAULT"}
    writer = subprocess.Popen([sys.executable, "-m", "sora_search", "-q", "index", str(work), "--index", str(idx)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    runner = CliRunner()
    outcomes = []
    deadline = time.monotonic() + 240
    while writer.poll() is None and time.monotonic() < deadline:
        result = runner.invoke(cli, ["query", str(work / "pan_a.mp4"), "--index", str(idx), "--json"])
        outcomes.append((result.exit_code, result.output))
    assert writer.wait(60) == 0, writer.stderr.read().decode() if writer.stderr else ""
    assert outcomes, "the index run finished before any query ran"
    for code, output in outcomes:
        assert code == 0, output
        # The index holds pan_a.mp4 twice, the original and this copy (identical pixels, so they tie): either is right.
        assert Path(json.loads(output)["matches"][0]["path"]).name == "pan_a.mp4", output


def test_a_second_writer_is_refused_with_a_clear_message(half_indexed, tmp_path, copy_index):
    _, lib_dir, idx0, _ = half_indexed
    idx = tmp_path / "idx"
    copy_index(idx0, idx)
    with write_lock(idx):
        second = _run("index", str(lib_dir), "--index", str(idx))
    assert second.returncode == 1
    assert second.stderr.strip().splitlines() == [
        f"Error: {idx} is being written by pid {os.getpid()}; wait for it to finish "
        "(only one index or remove run at a time)"]
    assert _run("check", "--index", str(idx)).returncode == 0


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_unwritable_index_folder_is_one_line(half_indexed):
    _, lib_dir, _, _ = half_indexed
    line = _one_line_error(_run("index", str(lib_dir), "--index", "/proc/sora-search-index"))
    assert "/proc/sora-search-index" in line


def test_full_disk_fails_cleanly_and_keeps_the_previous_state(half_indexed, tmp_path, copy_index):
    import resource

    root = half_indexed[0]
    work, idx = _working_copy(half_indexed, tmp_path, copy_index)
    shutil.copytree(root / "later", work / "later")
    before = _stored(idx)

    def no_room() -> None:  # writes past 4 KiB fail with EFBIG, as on a full disk (root ignores permissions)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    env = {k: v for k, v in os.environ.items() if k != "SORA_SEARCH_FAULT"}
    full = subprocess.run([sys.executable, "-m", "sora_search", "-q", "index", str(work), "--index", str(idx)],
                          capture_output=True, text=True, env=env, preexec_fn=no_room, timeout=300)
    assert full.returncode != 0
    assert "Traceback" not in full.stderr and len(full.stderr.strip().splitlines()) == 1, full.stderr
    after_paths, after_ids = _stored(idx)
    assert before[0] <= after_paths and set(before[1].tolist()) <= set(after_ids.tolist())
    assert _run("-q", "index", str(work), "--index", str(idx)).returncode == 0  # room again: it completes
    assert json.loads(_run("check", "--index", str(idx), "--json").stdout)["ok"]


def test_index_from_another_encoder_version_is_one_line(half_indexed, tmp_path):
    import sqlite3

    _, lib_dir, idx0, _ = half_indexed
    idx = tmp_path / "idx"
    shutil.copytree(idx0, idx)
    with sqlite3.connect(idx / "sora.db") as db:
        db.execute("UPDATE index_meta SET encoder_version = ?", ("0",))
    line = _one_line_error(_run("query", str(lib_dir / "pan_a.mp4"), "--index", str(idx)))
    assert "tiny v0" in line and "rebuild" in line
