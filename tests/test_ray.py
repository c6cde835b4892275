"""Index runs on a Ray cluster (``index --ray``): the same videos, vectors and answers as one process, and a worker
or driver killed mid-run costs a retry, never a committed video.

The cluster is a local one (2 CPUs, no dashboard) started once per session. Skipped when ray is not installed,
except under ``SORA_SEARCH_REQUIRE_RAY=1`` (CI), where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sora_search import Library
from sora_search.cli import cli
from sora_search.errors import ClusterError
from sora_search.params import IndexParams, RayParams

REQUIRED = os.environ.get("SORA_SEARCH_REQUIRE_RAY", "") not in ("", "0")
HANG = "tests.decode_helpers_hang:HangingReader"


def _ray():
    try:
        import ray
    except ImportError:
        if REQUIRED:
            pytest.fail("SORA_SEARCH_REQUIRE_RAY=1 but ray is not installed: pip install -e '.[test]'")
        pytest.skip("ray is not installed (pip install 'sora-search[ray]')")
    return ray


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster for the session: 2 CPUs, so one CPU encoder actor and one decode task at a time."""
    ray = _ray()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _vectors(lib: Library) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{file name: (timestamps_s, raw vectors)} of every indexed video, and where it has regions {file name +
    "#regions": (timestamps_s, its seconds' four region vectors side by side)}."""
    out = {}
    for v in lib._store.videos(status="indexed"):
        _, ts, raw = lib._store.vectors_of_video(v.id)
        out[os.path.basename(v.path)] = (ts, raw)
        region_s, regions = lib._store.regions_between(v.id, -1.0, 1e9)
        if len(region_s):  # an encoder with regions (sora-lite0) stores them for every second
            assert regions.shape == (len(ts), 4, raw.shape[1])
            out[os.path.basename(v.path) + "#regions"] = (region_s, regions.reshape(len(ts), -1))
    return out


def _assert_same_vectors(a: dict[str, tuple[np.ndarray, np.ndarray]], b: dict[str, tuple[np.ndarray, np.ndarray]]):
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_allclose(a[name][0], b[name][0], atol=1e-6)
        va, vb = a[name][1], b[name][1]
        assert va.shape == vb.shape
        cos = np.sum(va * vb, axis=1) / (np.linalg.norm(va, axis=1) * np.linalg.norm(vb, axis=1))
        assert cos.min() >= 0.999, f"{name}: least cosine {cos.min():.5f}"


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, media_dir):
    """The library indexed in this process with the real encoder, and its answer to probe_a."""
    idx = tmp_path_factory.mktemp("ray_local") / "idx"
    with Library.open(idx, encoder="sora-lite0", device="cpu") as lib:
        summary = lib.index([media_dir / "library"])
        return summary, _vectors(lib), lib.query(media_dir / "probe_a.mp4", views="fast")


def test_ray_gives_the_same_videos_vectors_and_answers(ray_cluster, one_process, media_dir, tmp_path):
    local, local_vectors, local_answer = one_process
    assert sum(name.endswith("#regions") for name in local_vectors) == 4
    with Library.open(tmp_path / "idx", encoder="sora-lite0", device="cpu") as lib:
        progress = []
        summary = lib.index([media_dir / "library"], ray="auto", progress=progress.append)
        assert sorted(summary.added) == sorted(local.added) and summary.failed == ()
        assert summary.vectors_added == local.vectors_added
        assert summary.timings["encode"] > 0 and summary.timings["decode"] > 0  # seconds spent on the workers
        assert [p.status for p in progress].count("added") == 4 and progress[-1].done == 4
        _assert_same_vectors(_vectors(lib), local_vectors)
        answer = lib.query(media_dir / "probe_a.mp4", views="fast")
        assert [m.path for m in answer.matches] == [m.path for m in local_answer.matches]
        for ours, theirs in zip(answer.matches, local_answer.matches):
            assert ours.score == pytest.approx(theirs.score, abs=2e-3)
            assert [round(s.ref_start_s) for s in ours.segments] == [round(s.ref_start_s) for s in theirs.segments]
        assert lib.check().ok
        # Incremental as a local run: nothing changed, nothing sent to the cluster.
        again = lib.index([media_dir / "library"], ray="auto")
        assert again.encoded == 0 and len(again.unchanged) == 4


def test_ray_encodes_at_the_precision_of_the_index(ray_cluster, media_dir, tmp_path):
    """The encoder actors load the index's own build (here int8, whose vectors do not depend on the thread count),
    never float32 vectors stored in an int8 index."""
    with Library.open(tmp_path / "local", encoder="sora-lite0", device="cpu", precision="int8") as lib:
        lib.index([media_dir / "library"])
        local = _vectors(lib)
    with Library.open(tmp_path / "idx", encoder="sora-lite0", device="cpu", precision="int8") as lib:
        summary = lib.index([media_dir / "library"], ray="auto")
        assert summary.failed == () and lib.info().encoder_version.startswith("1+int8")
        remote = _vectors(lib)
    assert sorted(remote) == sorted(local)
    for name in local:
        np.testing.assert_allclose(remote[name][1], local[name][1], atol=1e-5, err_msg=name)


@pytest.mark.parametrize("point", ["decode", pytest.param("encode", marks=pytest.mark.slow)])
def test_a_worker_killed_mid_run_costs_a_retry(ray_cluster, library_copy, tmp_path, monkeypatch, point):
    """A decode task or an encoder actor SIGKILLs itself once (the fault hook, forwarded to the workers): Ray runs
    it again and every file is indexed, with the same vectors as an undisturbed run."""
    with Library.open(tmp_path / "calm", encoder="tiny") as lib:
        lib.index([library_copy])
        calm = _vectors(lib)
    monkeypatch.setenv("SORA_SEARCH_FAULT", f"{point}:1")
    monkeypatch.setenv("SORA_SEARCH_FAULT_ONCE", str(tmp_path / "fired"))
    with Library.open(tmp_path / "idx", encoder="tiny") as lib:
        summary = lib.index([library_copy], ray="auto")
        assert (tmp_path / "fired").exists(), "the fault never fired: the test would prove nothing"
        assert summary.failed == () and len(summary.added) == 4
        _assert_same_vectors(_vectors(lib), calm)
        assert lib.check().ok


def test_an_encoder_actor_dead_past_its_restarts_costs_one_file(ray_cluster, library_copy, tmp_path, monkeypatch):
    """With no restarts allowed, the actor that dies fails the file it held; a new actor takes the rest."""
    monkeypatch.setenv("SORA_SEARCH_FAULT", "encode:1")
    monkeypatch.setenv("SORA_SEARCH_FAULT_ONCE", str(tmp_path / "fired"))
    params = IndexParams(ray=RayParams(retries=0))
    with Library.open(tmp_path / "idx", encoder="tiny", params=params) as lib:
        summary = lib.index([library_copy], ray="auto")
        assert len(summary.failed) == 1 and "Ray worker failed" in summary.failed[0].reason
        assert len(summary.added) == 3 and lib.check().ok


@pytest.mark.slow
def test_a_file_that_keeps_killing_its_worker_is_recorded_failed(ray_cluster, library_copy, tmp_path, monkeypatch):
    """Past RayParams.retries (0 here: no second attempt) the file is failed with the reason, and the run goes on."""
    keep = library_copy / "bars.mp4"
    for other in library_copy.glob("*.mp4"):
        if other != keep:
            other.unlink()
    monkeypatch.setenv("SORA_SEARCH_FAULT", "decode:1")
    params = IndexParams(ray=RayParams(retries=0))
    with Library.open(tmp_path / "idx", encoder="tiny", params=params) as lib:
        summary = lib.index([library_copy], ray="auto")
        assert [f.path for f in summary.failed] == [str(keep)] and "Ray worker failed" in summary.failed[0].reason
        assert lib.info().failed == 1 and lib.check().ok


def test_a_hanging_file_is_stopped_after_the_timeout_and_the_rest_indexed(ray_cluster, library_copy, tmp_path):
    shutil.copy(library_copy / "bars.mp4", library_copy / "hang.mp4")
    # Long enough that a healthy file's first batch arrives in time on a loaded 2-core machine.
    params = IndexParams(decode_timeout_s=8)
    with Library.open(tmp_path / "idx", encoder="tiny", decode_backend=HANG, params=params) as lib:
        summary = lib.index([library_copy], ray="auto")
    assert [os.path.basename(f.path) for f in summary.failed] == ["hang.mp4"], [(f.path, f.reason) for f in summary.failed]
    assert "no progress for 8 s" in summary.failed[0].reason and len(summary.added) == 4


@pytest.mark.slow
def test_a_driver_killed_mid_run_loses_nothing_committed(ray_cluster, library_copy, tmp_path):
    """A ``sora-search index --ray ADDRESS`` driver SIGKILLed before its third commit keeps its first two videos;
    ``check`` is clean and the next run indexes the rest."""
    idx = tmp_path / "idx"
    env = dict(os.environ, SORA_SEARCH_FAULT="store:3")
    env.pop("SORA_SEARCH_FAULT_ONCE", None)
    address = ray_cluster.get_runtime_context().gcs_address
    cmd = [sys.executable, "-m", "sora_search", "-q", "index", str(library_copy), "--index", str(idx), "--device",
           "cpu", "--ray", address]
    killed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr
    with Library.open(idx) as lib:
        assert lib.info().videos == 2 and lib.check().ok
    env.pop("SORA_SEARCH_FAULT")
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    with Library.open(idx) as lib:
        assert lib.info().videos == 4 and lib.check().ok


def test_no_ray_installed_says_how_to_install(lib_dir_and_index, monkeypatch):
    library, idx = lib_dir_and_index
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with Library.open(idx, encoder="tiny") as lib, pytest.raises(ClusterError, match=r"sora-search\[ray\]"):
        lib.index([library], ray="local")


def test_an_address_nobody_answers_at_fails_at_once(lib_dir_and_index, monkeypatch):
    """ray.init would wait minutes for such a head; the run says so at once (Ray taken as not yet initialised)."""
    import socket

    monkeypatch.setattr(_ray(), "is_initialized", lambda: False)

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    library, idx = lib_dir_and_index
    with Library.open(idx, encoder="tiny") as lib, pytest.raises(ClusterError, match="no Ray head answers"):
        lib.index([library], ray=f"127.0.0.1:{port}")


def test_cli_ray_option_takes_an_optional_address(lib_dir_and_index, monkeypatch):
    library, idx = lib_dir_and_index
    seen = []

    def fake_index(self, paths, **kwargs):
        seen.append(kwargs["ray"])
        raise ClusterError("stop here")

    monkeypatch.setattr(Library, "index", fake_index)
    for args, expected in [([], None), (["--ray"], "auto"), (["--ray", "local"], "local"),
                           (["--ray", "10.0.0.1:6379"], "10.0.0.1:6379")]:
        result = CliRunner().invoke(cli, ["index", str(library), *args, "--index", str(idx)] if args == ["--ray"]
                                    else ["index", str(library), "--index", str(idx), *args])
        assert result.exit_code == 1 and "stop here" in result.output
    assert seen == [None, "auto", "local", "10.0.0.1:6379"]


@pytest.fixture
def lib_dir_and_index(library_copy: Path, tmp_path: Path) -> tuple[Path, Path]:
    return library_copy, tmp_path / "idx"
