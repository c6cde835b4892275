"""An index never answers wrong: the FAISS file is tied to its store, retraining survives a crash at any point,
odd file names and odd inputs get a decision each (README, "What is guaranteed").

Crashes are real ``sora-search`` processes killed with SIGKILL, at named points (``SORA_SEARCH_FAULT``) or after a
seeded random delay. Tests that take the ``backend`` fixture run with the catalogue in SQLite and in PostgreSQL (then
the test's $SORA_SEARCH_DB, which the processes it starts inherit).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sora_search import Library
from sora_search.params import IndexParams, QueryParams

def _run_env() -> dict[str, str]:
    """This process's environment (read when a process starts: a test may have set $SORA_SEARCH_DB), no fault."""
    return {k: v for k, v in os.environ.items() if k != "SORA_SEARCH_FAULT"}

# A retrain that also switches from centring to PCA: the projected dimension changes (64 -> 16 with the tiny encoder).
PCA_SOON = IndexParams(pca_min_vectors=20, projection_dim=16)
WHOLE = QueryParams(views="fast", min_score=-1.0)
_SCRIPT = ("import sys; from sora_search import Library; from sora_search.params import IndexParams\n"
           f"with Library.open(sys.argv[2], encoder='tiny', params=IndexParams(pca_min_vectors={PCA_SOON.pca_min_vectors}, "
           f"projection_dim={PCA_SOON.projection_dim})) as lib:\n    lib.index([sys.argv[1]])\n")


def _cli(*args: str, fault: str | None = None, **kw) -> subprocess.CompletedProcess:
    env = dict(_run_env(), **({"SORA_SEARCH_FAULT": fault} if fault else {}))
    return subprocess.run([sys.executable, "-m", "sora_search", *args], capture_output=True, text=True, env=env,
                          timeout=300, **kw)


def _index_script(lib: Path, idx: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    """An index run through the library with PCA_SOON, in its own process (so a fault point can kill it)."""
    env = dict(_run_env(), **({"SORA_SEARCH_FAULT": fault} if fault else {}))
    return subprocess.run([sys.executable, "-c", _SCRIPT, str(lib), str(idx)], capture_output=True, text=True, env=env,
                          timeout=300)


def _tiny(idx: Path) -> Path:
    """A new index that will use the tiny encoder: its identity is written by an index run over an empty folder."""
    empty = idx.parent / f"{idx.name}-empty"
    empty.mkdir()
    with Library.open(idx, encoder="tiny") as lib:
        lib.index([empty])
    return idx


def _answers(idx: Path, probes: list[Path]) -> list[list[tuple[str, float]]]:
    with Library.open(idx, create=False) as lib:
        return [[(Path(m.path).name, m.score) for m in lib.query(p, params=WHOLE).matches] for p in probes]


def _check(idx: Path) -> dict:
    return json.loads(_cli("check", "--index", str(idx), "--json").stdout)


@pytest.fixture
def small_first(library_copy: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """An index of bars.mp4 alone (8 vectors); the rest of the library waits in later/ (40 more: past a retrain)."""
    later = tmp_path / "later"
    later.mkdir()
    for name in ("mandel.mp4", "pan_a.mp4", "pan_b.mp4"):
        (library_copy / name).rename(later / name)
    idx = tmp_path / "idx"
    assert _index_script(library_copy, idx).returncode == 0
    return library_copy, later, idx


# ---------------------------------------------------------------- the FAISS file belongs to its store


def test_a_faiss_file_from_another_index_is_never_searched(library_copy, media_dir, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    with Library.open(a, encoder="tiny") as lib:
        lib.index([library_copy])
    reversed_lib = tmp_path / "rev"
    reversed_lib.mkdir()
    for n, name in enumerate(sorted(os.listdir(library_copy), reverse=True)):  # other ids for other videos
        shutil.copy(library_copy / name, reversed_lib / f"{n}_{name}")
    with Library.open(b, encoder="tiny") as lib:
        lib.index([reversed_lib])
    shutil.copy(b / "vectors.faiss", a / "vectors.faiss")
    with Library.open(b) as lib:  # the same generation too: only the index id tells the files apart
        generation = lib._store.meta().generation
    with sqlite3.connect(a / "sora.db") as db:
        db.execute("UPDATE index_meta SET generation = ?", (generation,))

    report = _check(a)
    assert not report["ok"] and any("belongs to another index" in p for p in report["problems"]), report
    query = _cli("query", str(media_dir / "probe_a.mp4"), "--index", str(a), "--json")
    assert query.returncode == 0, query.stderr
    assert Path(json.loads(query.stdout)["matches"][0]["path"]) == library_copy / "pan_a.mp4"
    assert query.stderr.count("is not used (it belongs to another index)") == 1, query.stderr
    assert _cli("-q", "index", str(library_copy), "--index", str(a)).returncode == 0  # a writer rebuilds it
    assert _check(a)["ok"]


def _unstamp(idx: Path, generation_offset: int = 0) -> None:
    """Rewrite the FAISS file as sora-search wrote it before files carried their index's id."""
    from sora_search.index.vectors import VectorIndex

    index, header = VectorIndex.read(idx / "vectors.faiss")
    index.save(idx / "vectors.faiss", generation=int(header["generation"]) + generation_offset)


def test_upgrade_keeps_an_unstamped_file_that_is_exactly_the_stores(library_copy, media_dir, tmp_path):
    from sora_search.index.vectors import VectorIndex

    idx = tmp_path / "idx"
    with Library.open(idx, encoder="tiny") as lib:
        lib.index([library_copy])
    probes = [media_dir / "probe_a.mp4", media_dir / "probe_pip.mp4"]
    before = _answers(idx, probes)
    _unstamp(idx)
    kept = _cli("upgrade", "--index", str(idx))
    assert kept.returncode == 0 and "vectors.faiss kept, stamped with its index id" in kept.stdout, kept
    _, header = VectorIndex.read(idx / "vectors.faiss")
    with Library.open(idx, create=False) as lib:
        assert header["index_uid"] == lib._store.meta().index_uid
    mtime = (idx / "vectors.faiss").stat().st_mtime_ns
    assert _answers(idx, probes) == before and _check(idx)["ok"]
    assert (idx / "vectors.faiss").stat().st_mtime_ns == mtime  # searched as it is, not rebuilt

    _unstamp(idx, generation_offset=-1)  # a file that missed the last commit is not adopted
    behind = _cli("upgrade", "--index", str(idx))
    assert behind.returncode == 0 and "will be rebuilt by the next index run" in behind.stdout, behind
    assert not _check(idx)["ok"]
    assert _cli("-q", "index", str(library_copy), "--index", str(idx)).returncode == 0
    assert _check(idx)["ok"] and _answers(idx, probes) == before


@pytest.mark.parametrize("backend, fault", [("sqlite", "retrain:1"), ("sqlite", "faiss:1"), ("postgres", "retrain:1")],
                         indirect=["backend"])
def test_a_crash_while_retraining_never_pairs_a_projection_with_another_file(backend, small_first, fault, tmp_path):
    lib_dir, later, idx = small_first
    for f in later.iterdir():
        shutil.copy(f, lib_dir / f.name)
    copy = tmp_path / "copy_of_pan_a.mp4"
    shutil.copy(lib_dir / "pan_a.mp4", copy)  # an exact copy of a video the crashed run committed
    crashed = _index_script(lib_dir, idx, fault=fault)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr

    with Library.open(idx, create=False) as lib:
        assert lib._store.meta().index_trained_n == 8, "the store must not have switched to the new projection yet"
        top = lib.query(copy, params=QueryParams(views="fast")).matches
    assert top and Path(top[0].path).name == "pan_a.mp4", top  # reported at the default threshold
    assert _index_script(lib_dir, idx).returncode == 0
    report = _check(idx)
    assert report["ok"] and report["vectors"] == report["faiss_vectors"] == 48, report
    with Library.open(idx, create=False) as lib:
        assert lib._store.meta().dim == 16 and lib._store.meta().projection_name.startswith("pca")


def test_a_query_during_the_first_run_answers_from_what_is_committed(backend, library_copy, media_dir, tmp_path):
    idx = _tiny(tmp_path / "idx")
    crashed = _cli("-q", "index", str(library_copy), "--index", str(idx), fault="store:4")  # bars, mandel, pan_a
    assert crashed.returncode == -signal.SIGKILL and not (idx / "vectors.faiss").exists()
    query = _cli("query", str(media_dir / "probe_a.mp4"), "--index", str(idx), "--json")
    assert query.returncode == 0, query.stderr
    assert Path(json.loads(query.stdout)["matches"][0]["path"]).name == "pan_a.mp4"
    assert "not built yet" in query.stderr
    assert (idx / "sora.db").exists() == (backend is None)


# ---------------------------------------------------------------- random kill points


def _step(lib_dir: Path, stash: Path, n: int) -> None:
    """The n-th change of the scripted library: add, change, move, delete, then grow past a retrain."""
    if n == 0:
        for name in ("mandel.mp4", "pan_b.mp4"):
            shutil.copy(stash / name, lib_dir / name)
    elif n == 1:
        with open(lib_dir / "bars.mp4", "ab") as f:  # new content under the same name: re-encoded
            f.write(b"\0" * 64)
    elif n == 2:
        (lib_dir / "sub").mkdir()
        (lib_dir / "pan_b.mp4").rename(lib_dir / "sub" / "pan_b.mp4")
    elif n == 3:
        (lib_dir / "mandel.mp4").unlink()
    else:
        for k in range(4):
            shutil.copy(stash / "pan_a.mp4", lib_dir / f"pan_a_{k}.mp4")
            with open(lib_dir / f"pan_a_{k}.mp4", "ab") as f:
                f.write(bytes([k]))


def _crash_and_recover(small: tuple[Path, Path, Path], seed: int, tmp_path: Path, media_dir: Path) -> None:
    lib_dir, stash, idx = small
    clean_lib, clean_idx = tmp_path / "clean_lib", tmp_path / "clean_idx"
    shutil.copytree(lib_dir, clean_lib)
    assert _index_script(clean_lib, clean_idx).returncode == 0  # the same start, runs never killed
    rng = random.Random(seed)
    probes = [media_dir / "probe_a.mp4", media_dir / "probe_other.mp4", stash / "pan_b.mp4"]
    for n in range(5):
        _step(lib_dir, stash, n)
        _step(clean_lib, stash, n)
        start = time.monotonic()
        assert _index_script(clean_lib, clean_idx).returncode == 0
        took = time.monotonic() - start
        run = subprocess.Popen([sys.executable, "-c", _SCRIPT, str(lib_dir), str(idx)], env=_run_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, took))
        run.send_signal(signal.SIGKILL)
        run.wait(60)
        assert _index_script(lib_dir, idx).returncode == 0  # the next run completes whatever the kill left
        report = _check(idx)
        assert report["ok"], (seed, n, report)
        got, want = _answers(idx, probes), _answers(clean_idx, probes)
        assert [[name for name, _ in rows] for rows in got] == [[name for name, _ in rows] for rows in want], (seed, n)
        for rows_got, rows_want in zip(got, want):
            assert [s for _, s in rows_got] == pytest.approx([s for _, s in rows_want], abs=1e-3), (seed, n)


@pytest.mark.parametrize("seed", [1])
def test_a_kill_at_a_random_point_of_any_run_changes_no_answer(small_first, seed, tmp_path, media_dir):
    _crash_and_recover(small_first, seed, tmp_path, media_dir)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2, 12))
def test_many_random_kill_points_change_no_answer(small_first, seed, tmp_path, media_dir):
    _crash_and_recover(small_first, seed, tmp_path, media_dir)


# ---------------------------------------------------------------- odd names and odd inputs


def test_a_file_name_that_is_not_utf8_is_indexed_queried_shown_and_removed(backend, library_copy, tmp_path):
    odd = os.fsdecode(os.fsencode(str(library_copy)) + b"/caf\xe9.mp4")
    shutil.copy(library_copy / "bars.mp4", odd)
    (library_copy / "bars.mp4").unlink()
    idx = str(_tiny(tmp_path / "idx"))
    index = _cli("index", str(library_copy), "--index", idx)
    assert index.returncode == 0, index.stderr
    assert "4 added" in index.stderr and "caf\\xe9.mp4" in index.stderr
    shown = _cli("query", odd, "--index", idx, "--views", "fast")
    assert shown.returncode == 0 and "caf\\xe9.mp4" in shown.stdout, shown.stderr
    as_json = _cli("query", odd, "--index", idx, "--views", "fast", "--json")
    assert json.loads(as_json.stdout)["query"] == odd  # JSON keeps the name losslessly (as \udce9)
    assert _cli("info", "--index", idx).returncode == 0
    removed = _cli("remove", odd, "--index", idx)
    assert removed.returncode == 0 and "caf\\xe9.mp4" in removed.stdout, removed.stderr
    with Library.open(idx, create=False) as lib:
        assert odd not in {v.path for v in lib._store.videos()}
    assert (Path(idx) / "sora.db").exists() == (backend is None)  # the PostgreSQL variant really used the server


def test_sigterm_ends_a_run_like_ctrl_c(library_copy, tmp_path):
    for k in range(10):  # enough work that the run is still going when the signal comes
        shutil.copy(library_copy / "pan_a.mp4", library_copy / f"more_{k}.mp4")
        with open(library_copy / f"more_{k}.mp4", "ab") as f:
            f.write(bytes([k]))
    idx = _tiny(tmp_path / "idx")
    run = subprocess.Popen([sys.executable, "-m", "sora_search", "index", str(library_copy), "--index", str(idx)],
                           env=_run_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert run.stderr is not None
    first = run.stderr.readline()  # off a terminal: one line per finished file
    assert first.startswith("added"), first
    run.send_signal(signal.SIGTERM)
    rest = run.stderr.read()
    assert run.wait(60) == 128 + signal.SIGTERM
    assert "Aborted: terminated (SIGTERM)" in rest and "Traceback" not in rest, rest
    report = _check(idx)  # nothing is inconsistent: a file behind its store is only a note
    assert report["ok"], report
    assert _cli("-q", "index", str(library_copy), "--index", str(idx)).returncode == 0  # the lock was released


def test_what_a_signal_handler_raises_inside_a_thread_pools_locks_waits_for_them_to_be_let_go():
    """SIGTERM's exit raised inside ThreadPoolExecutor.submit could leave one of the pool's locks held, and the run
    then hung in its shutdown: inside signals_held() the handler's exception comes out when the block ends."""
    from sora_search import threads

    def handler(signum, frame):
        threads.raise_from_handler(SystemExit(7))

    previous = signal.signal(signal.SIGUSR1, handler)
    finished = []
    try:
        with pytest.raises(SystemExit) as held:
            with threads.signals_held():
                os.kill(os.getpid(), signal.SIGUSR1)
                time.sleep(0.05)  # the handler runs here, in this thread
                finished.append("the block")
        assert held.value.code == 7 and finished == ["the block"]
        with pytest.raises(SystemExit):  # outside the block: at once
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.05)
            finished.append("too far")
        assert finished == ["the block"]
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_a_damaged_store_is_refused_before_anything_is_written(library_copy, tmp_path):
    idx = tmp_path / "idx"
    with Library.open(idx, encoder="tiny") as lib:
        lib.index([library_copy])
    db = idx / "sora.db"
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db.read_bytes())
    page = 4096
    for at in range(2 * page, len(data) - page, page):  # every page's header but the schema's: b-trees break
        data[at:at + 8] = b"\xff" * 8
    db.write_bytes(bytes(data))
    index = _cli("-q", "index", str(library_copy), "--index", str(idx))
    lines = index.stderr.strip().splitlines()
    assert index.returncode == 1 and len(lines) == 1, index.stderr
    assert ("malformed" in lines[0] or "SQLite integrity" in lines[0]) and "restore a backup" in lines[0]
    assert _cli("check", "--index", str(idx)).returncode == 1


def test_an_emptied_store_never_answers_from_the_faiss_file_beside_it(library_copy, media_dir, tmp_path):
    idx = tmp_path / "idx"
    with Library.open(idx, encoder="tiny") as lib:
        lib.index([library_copy])
    (idx / "sora.db").write_bytes(b"")
    for extra in ("sora.db-wal", "sora.db-shm"):
        (idx / extra).unlink(missing_ok=True)
    query = _cli("query", str(media_dir / "probe_a.mp4"), "--index", str(idx))
    assert query.returncode == 1 and "nothing is indexed" in query.stderr, query.stderr
    with Library.open(idx, encoder="tiny") as lib:  # a new index: its own id, so the old file is rebuilt
        lib.index([library_copy])
    assert _check(idx)["ok"]


def test_animated_gifs_are_indexed_and_still_ones_are_not_videos(library_copy, tmp_path):
    from tests.media import ffmpeg

    ffmpeg("-i", str(library_copy / "pan_a.mp4"), "-t", "4", "-vf", "fps=5,scale=160:-1",
           str(library_copy / "anim.gif"))
    ffmpeg("-i", str(library_copy / "pan_a.mp4"), "-frames:v", "1", str(library_copy / "still.gif"))
    with Library.open(tmp_path / "idx", encoder="tiny") as lib:
        summary = lib.index([library_copy])
    assert "anim.gif" in {Path(p).name for p in summary.added}
    assert "still.gif" not in {Path(p).name for p in summary.added + tuple(f.path for f in summary.failed)}


def test_links_out_of_the_library_are_followed_unless_asked_not_to(library_copy, tmp_path, monkeypatch):
    from sora_search import scan

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (library_copy / "bars.mp4").rename(outside / "bars.mp4")
    (library_copy / "bars_link.mp4").symlink_to(outside / "bars.mp4")
    (library_copy / "pan_a_link.mp4").symlink_to(library_copy / "pan_a.mp4")  # inside: always followed
    names = {Path(f.path).name for f in scan.walk([library_copy]).files}
    assert {"bars_link.mp4", "pan_a_link.mp4"} <= names
    names = {Path(f.path).name for f in scan.walk([library_copy], follow_links=False).files}
    assert "bars_link.mp4" not in names and "pan_a_link.mp4" in names
    virtual = library_copy / "proc"
    virtual.mkdir()
    shutil.copy(library_copy / "pan_b.mp4", virtual / "x.mp4")
    monkeypatch.setattr(scan, "VIRTUAL_FILE_SYSTEMS", (str(virtual),))
    assert "x.mp4" not in {Path(f.path).name for f in scan.walk([library_copy]).files}
