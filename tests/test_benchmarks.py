"""The FAISS-at-scale benchmarks: the generator and one tiny run each (full runs: benchmarks/speed/faiss_scale.py and
faiss_compressed.py)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.conftest import FakeGpuFaiss


def _script(name: str) -> ModuleType:
    """benchmarks/speed/NAME.py loaded as a module (the scripts are not a package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "speed" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def faiss_scale() -> ModuleType:
    return _script("faiss_scale")


def _seeds(m: int = 300) -> np.ndarray:
    rng = np.random.default_rng(0)
    walk = np.cumsum(rng.standard_normal((m, 256)) * 0.2, axis=0) + rng.standard_normal(256)
    return (walk / np.linalg.norm(walk, axis=1, keepdims=True)).astype(np.float32)


def test_generator_makes_perturbed_unit_vectors_and_held_out_queries(faiss_scale: ModuleType) -> None:
    gen = faiss_scale.Generator(_seeds(), clip_len=60, seed=0)
    base, cos, clips = gen.base(6000, chunk=2500)
    again, _, _ = gen.base(6000, chunk=2500)
    np.testing.assert_array_equal(base, again)  # seeded
    assert base.shape == (6000, 256) and base.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(base, axis=1), 1.0, atol=1e-5)
    assert 0.75 <= np.percentile(cos, 5) and np.percentile(cos, 95) <= 0.97  # 0.84-0.95 on real seeds
    queries, kind = gen.queries(100, 6000, clips)
    assert queries.shape == (100, 256) and (kind == "copy").sum() == 50
    best = (queries @ base.T).max(axis=1)
    assert best.max() < 0.999  # held out: no query is a base vector
    assert np.median(best[kind == "copy"]) > np.median(best[kind == "novel"])


def test_tiny_run_reports_recall_and_ratios(faiss_scale: ModuleType) -> None:
    gen = faiss_scale.Generator(_seeds(), clip_len=60, seed=0)
    args = argparse.Namespace(queries=50, single=5, single_flat=3, seed=0, sweep=True, compressed=["IVF,SQfp16"],
                              compressed_min_n=4000, compressed_nprobe=[8], k_factor=[1], nprobe=[8, 16],
                              nlist_factors_for=lambda n: [16], gpu=False)
    out = faiss_scale.run_size(gen, 4000, args)
    d = out["default"]
    assert d["nlist"] == 64 and d["nprobe"] == 64 and d["describe"].startswith("IVF64,Flat")
    assert 0.5 <= d["recall_at_10"] <= 1.0 and d["speedup_vs_flat"] > 0 and d["index_bytes"] > 0
    assert {(r["nlist"], r["nprobe"]) for r in out["sweep"]} == {(16, 8), (64, 8)}  # nprobe > nlist / 8 skipped
    assert out["compressed"][0]["factory"] == "IVF64,SQfp16"
    assert "gpu" not in out


def test_tiny_gpu_run_through_a_fake_gpu_faiss(faiss_scale: ModuleType, fake_gpu_faiss: FakeGpuFaiss) -> None:
    gen = faiss_scale.Generator(_seeds(), clip_len=60, seed=0)
    args = argparse.Namespace(queries=50, single=5, single_flat=3, seed=0, sweep=False, compressed=[],
                              nlist_factors_for=lambda n: [], gpu=True)
    g = faiss_scale.run_size(gen, 4000, args)["gpu"]
    assert g["search_device"] == "cuda:0" and g["describe"] == "IVF64,Flat (inner product), nprobe 64"
    assert g["gpu_flat"]["recall_vs_cpu_exact"] == 1.0 and 0.5 <= g["recall_at_10"] <= 1.0
    # Every IVF search went to the GPU copy: 1 (the copy) + 2 batches + 5 single + 2 x 3 calls of 20 rows.
    assert fake_gpu_faiss.searches == 14 and g["speedup_vs_cpu_ivf"] > 0


def test_encoder_throughput_runs_and_reports_a_ratio(tmp_path: Path) -> None:
    module = _script("encoder_throughput")
    out = tmp_path / "enc.json"
    result = module.main(["--device", "cpu", "--batch", "2", "3", "--cpu-batch", "3", "--seconds", "0",
                          "--cpu-seconds", "0", "--out", str(out)])
    assert result["device"] == "cpu" and result["precision"] == "float32"
    assert [r["batch"] for r in result["batches"]] == [2, 3] and all(r["frames"] >= 4 for r in result["batches"])
    assert result["cpu_baseline"] is result["batches"][1]  # the CPU run is its own baseline
    assert result["speedup_vs_cpu"] > 0 and "fp16_vs_cpu_cosine" not in result
    assert out.exists()


def test_exact_scan_times_few_lists_the_rule_and_every_list(tmp_path: Path) -> None:
    out = tmp_path / "scan.json"
    rows = _script("exact_scan").main(["--sizes", "100", "3000", "--rounds", "1", "--out", str(out)])
    assert [r["vectors"] for r in rows] == [100, 3000] and rows[0]["nlist"] == rows[0]["nprobe_few"] == 2
    assert rows[1]["nprobe_few"] == 8 < rows[1]["nprobe_rule"] == rows[1]["nprobe_every"] == rows[1]["nlist"]
    assert all(r[f"{name}_ms"] > 0 for r in rows for name in ("few", "rule", "every")) and out.exists()


def test_tiny_compressed_run_builds_in_shards_and_reports(tmp_path: Path) -> None:
    fc = _script("faiss_compressed")
    gen = fc.Generator(_seeds(), clip_len=60, seed=0)
    stream = fc.Stream(gen, 2500)
    queries, _ = gen.queries(50, 2500, stream.clips)
    sample, truth = fc.first_pass(stream, queries, 1000, seed=0)
    exact = np.argsort(-(queries @ np.concatenate([v for _, v in stream.chunks()]).T), axis=1)[:, :10]
    assert sample.shape == (1000, 256) and (truth[:, 0] == exact[:, 0]).mean() > 0.95
    args = argparse.Namespace(nlist=16, shards=2, single=5, single_k=10, cold=2, pq_m=8)  # PQ8: training in a second
    out = fc.measure_pq(stream, sample, queries, truth, tmp_path, args)
    assert out["describe"].startswith("OPQ8,IVF16,PQ8") and "lists on disk" in out["describe"]
    assert 0.5 <= out["recall_at_10"] <= 1.0 and out["warm"]["p50_ms"] > 0 and out["cold"]["n"] == 2
    assert 16 <= out["bytes_per_vector"]["lists_and_header"] and out["bytes_per_vector"]["rerank_f16"] >= 512


def test_resample_sensitivity_measures_every_second_of_each_query(tmp_path: Path, library_copy: Path,
                                                                  media_dir: Path) -> None:
    """Each query second is compared in both resamplings; an index that only centres (the tiny library is too small
    for PCA) changes them exactly as centring does."""
    import json

    from sora_search import Library

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy" / "resample_sensitivity.py"
    spec = importlib.util.spec_from_file_location("resample_sensitivity", path)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    idx = tmp_path / "idx"
    with Library.open(idx, encoder="tiny") as lib:
        lib.index([library_copy])
        assert lib._keeper.searchable()[1].name == "centre"
        d = script.distances(lib, media_dir / "probe_a.mp4")
    assert len(d["raw"]) == 6 and (d["raw"] >= -1e-6).all() and d["raw"].max() > 0
    np.testing.assert_allclose(d["projected"], d["centred"], atol=1e-6)
    out = tmp_path / "sens.json"
    assert script.main(["--index", str(idx), str(media_dir / "probe_a.mp4"), str(media_dir / "probe_other.mp4"),
                        "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["queries"] == 2 and summary["seconds"] > 6 and summary["index_projection"] == "centre"


def test_sequence_scale_times_the_check_on_a_generated_library(tmp_path: Path, lite_index: Path) -> None:
    """One tiny size: every probe is queried with the check forced on and off, and the check alone is timed."""
    import json

    script = _script("sequence_scale")
    assert script.main(["--index", str(lite_index), "--sizes", "1200", "--probes", "2", "--rounds", "1",
                        "--work", str(tmp_path / "lib"), "--out", str(tmp_path)]) == 0
    (result,) = tmp_path.glob("sequence_scale-*.json")
    row = json.loads(result.read_text())["sizes"][0]
    assert row["vectors"] >= 1200 and row["probes"] == 2
    assert row["query_on_s"] > 0 and row["query_off_s"] > 0 and row["check_s"] > 0
    assert not (tmp_path / "lib").exists()  # removed without --keep
