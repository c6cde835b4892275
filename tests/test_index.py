"""FAISS index: checked against exact NumPy search; ids, persistence, corruption, sizing."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

from sora_search.errors import IndexNotFound, StoreError
from sora_search.index import (FP16_MIN_VECTORS, GPU_MAX_K, PQ_MIN_VECTORS, VectorIndex, choose_encoding,
                                choose_nlist, choose_nprobe, faiss_gpu_count, faiss_gpu_for)
from sora_search.index import sizing
from sora_search.index.gpu import faiss
from tests.conftest import FakeGpuFaiss

DIM = 32


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _corpus(n: int, seed: int = 0, centers: int = 20) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centers, DIM))
    x = c[rng.integers(0, centers, n)] + 0.3 * rng.standard_normal((n, DIM))
    return _unit(x)


def _exact(corpus: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = queries @ corpus.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), ids[order]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    corpus = _corpus(2000, seed=1)
    ids = np.arange(1000, 3000, dtype=np.int64)  # store ids, not positions
    queries = _unit(_corpus(50, seed=2) + 0.05)
    return corpus, ids, queries


def _built(corpus: np.ndarray, ids: np.ndarray, nlist: int | None = 16) -> VectorIndex:
    index = VectorIndex.build(DIM, corpus, nlist=nlist)
    index.add(ids, corpus)
    return index


def test_full_probe_equals_exact_search(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    corpus, ids, queries = data
    index = _built(corpus, ids)
    index.nprobe = index.nlist
    scores, got = index.search(queries, 10)
    want_scores, want = _exact(corpus, ids, queries, 10)
    assert got.dtype == np.int64 and scores.dtype == np.float32 and got.shape == (50, 10)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    # Ties aside, the id sets match exactly.
    for row_got, row_want, s in zip(got, want, want_scores):
        if len(np.unique(np.round(s, 5))) == len(s):
            assert list(row_got) == list(row_want)


def test_a_small_index_visits_every_list(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """Up to SCAN_MIN_VECTORS a query scans every list: the neighbours of exact search, whatever k-means did."""
    corpus, ids, queries = data
    assert len(corpus) <= sizing.SCAN_MIN_VECTORS
    index = _built(corpus, ids, nlist=None)
    assert index.nlist == choose_nlist(len(corpus)) > 1 and index.nprobe == index.nlist
    scores, _ = index.search(queries, 10)
    np.testing.assert_allclose(scores, _exact(corpus, ids, queries, 10)[0], atol=1e-5)


def test_past_scan_min_nprobe_follows_the_corpus_size(data: tuple[np.ndarray, np.ndarray, np.ndarray],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A corpus over SCAN_MIN_VECTORS visits the lists that hold about that many of its vectors and keeps high
    recall; removing vectors down to the limit makes it exact again, and adding them back approximate."""
    corpus, ids, queries = data
    monkeypatch.setattr(sizing, "SCAN_MIN_VECTORS", len(corpus) * 3 // 8)
    index = _built(corpus, ids, nlist=None)
    assert index.nlist == 32 and index.nprobe == choose_nprobe(32, len(corpus)) == 12  # 3/8 of 32 lists
    _, got = index.search(queries, 10)
    _, want = _exact(corpus, ids, queries, 10)
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want)])
    assert recall >= 0.9
    most = ids[len(ids) // 4:]
    index.remove(most)
    assert index.nprobe == index.nlist
    index.add(most, corpus[len(ids) // 4:])
    assert index.nprobe == 12


def test_nprobe_scans_about_scan_min_vectors() -> None:
    """Past SCAN_MIN_VECTORS the lists visited hold about that many vectors, until the few lists of the largest
    corpora hold more; never fewer than 8 lists, never more than there are."""
    for n in [sizing.SCAN_MIN_VECTORS + 1, 20_000, 50_000, 10**5, 10**6, 10**7]:
        nlist = choose_nlist(n)
        nprobe = choose_nprobe(nlist, n)
        assert 8 <= nprobe <= nlist and nprobe >= choose_nprobe(nlist)
        assert nprobe * n / nlist >= sizing.SCAN_MIN_VECTORS
        assert nprobe == choose_nprobe(nlist) or (nprobe - 1) * n / nlist < sizing.SCAN_MIN_VECTORS
    assert choose_nprobe(2048, 10**6) == 21 and choose_nprobe(8192, 10**7) == choose_nprobe(8192) == 32


def test_remove_by_id_never_returns_removed(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    corpus, ids, queries = data
    index = _built(corpus, ids)
    index.nprobe = index.nlist
    _, before = index.search(queries, 5)
    gone = np.unique(before[:, :3])
    assert index.remove(gone) == len(gone)
    assert index.ntotal == len(ids) - len(gone)
    assert index.remove(gone) == 0
    scores, after = index.search(queries, 20)
    assert not np.isin(after, gone).any()
    keep = ~np.isin(ids, gone)
    want_scores, want = _exact(corpus[keep], ids[keep], queries, 20)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)


def test_add_more_and_padding() -> None:
    corpus = _corpus(100, seed=3)
    index = VectorIndex.build(DIM, corpus, nlist=2)
    index.nprobe = 2
    index.add(np.array([7, 9], dtype=np.int64), corpus[:2])
    scores, got = index.search(corpus[:1], 5)
    assert got[0, 0] == 7
    assert list(got[0, 2:]) == [-1, -1, -1]
    assert np.isneginf(scores[0, 2:]).all()
    index.add(np.array([11], dtype=np.int64), corpus[2:3])
    assert index.ntotal == 3
    with pytest.raises(ValueError):
        index.add(np.array([1, 2], dtype=np.int64), corpus[:1])
    with pytest.raises(ValueError):
        index.add(np.array([1], dtype=np.int64), corpus[:1, :10])
    with pytest.raises(ValueError):
        index.search(corpus[:1], 0)


def test_save_load_round_trip(tmp_path: Path, data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    corpus, ids, queries = data
    index = _built(corpus, ids)
    index.nprobe = 4  # by hand: lasts until the index changes or is read again
    path = tmp_path / "sub" / "vectors.faiss"
    index.save(path, generation=17)
    loaded, generation = VectorIndex.load(path)
    assert generation == 17
    assert (loaded.ntotal, loaded.dim, loaded.nlist, loaded.nprobe) == (index.ntotal, DIM, 16, 16)
    assert loaded.describe() == "IVF16,Flat (inner product), nprobe 16"
    index.nprobe = 16
    s1, i1 = index.search(queries, 10)
    s2, i2 = loaded.search(queries, 10)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(s1, s2)
    # Overwrite in place; only the final file remains.
    loaded.remove(ids[:10])
    loaded.save(path, generation=18)
    again, generation = VectorIndex.load(path)
    assert generation == 18 and again.ntotal == len(ids) - 10
    assert sorted(p.name for p in path.parent.iterdir()) == ["vectors.faiss"]
    assert loaded.nbytes() > len(ids) * DIM * 4 - 10 * DIM * 4


def test_save_and_load_stream_the_file(tmp_path: Path) -> None:
    """A large index is written and read in chunks: no whole copy of it is made in memory on either side."""
    corpus = _unit(np.random.default_rng(3).standard_normal((40_000, 128)))
    index = VectorIndex.build(128, corpus[:4000], nlist=32)
    index.add(np.arange(len(corpus), dtype=np.int64), corpus)
    path = tmp_path / "big.faiss"
    tracemalloc.start()
    try:
        index.save(path, generation=1)
        _, saving = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        loaded, _ = VectorIndex.load(path)
        _, loading = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = path.stat().st_size
    assert size > corpus.nbytes
    assert saving < size / 4 and loading < size / 4, (saving, loading, size)
    np.testing.assert_array_equal(loaded.search(corpus[:20], 5)[1], index.search(corpus[:20], 5)[1])


def test_files_in_the_unpadded_layout_still_load(tmp_path: Path,
                                                data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """Files saved before the header's room was reserved (header JSON exactly as long as its text) read the same."""
    corpus, ids, queries = data
    index = _built(corpus, ids)
    payload = faiss().serialize_index(index._index).tobytes()
    header = json.dumps({"generation": 5, "format": 1, "payload_bytes": len(payload),
                         "crc32": zlib.crc32(payload)}).encode()
    path = tmp_path / "old.faiss"
    path.write_bytes(b"SORAIDX1" + struct.pack("<Q", len(header)) + header + payload)
    loaded, generation = VectorIndex.load(path)
    assert generation == 5
    np.testing.assert_array_equal(loaded.search(queries, 5)[1], index.search(queries, 5)[1])


def test_failed_save_leaves_no_temp_file(tmp_path: Path, data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    corpus, ids, _ = data
    index = _built(corpus[:200], ids[:200], nlist=2)
    target = tmp_path / "x.faiss"
    target.mkdir()  # os.replace onto a directory fails after the temp file was written
    with pytest.raises(OSError):
        index.save(target, generation=1)
    assert [p.name for p in tmp_path.iterdir()] == ["x.faiss"]
    assert list(target.iterdir()) == []


def test_missing_and_corrupt_files(tmp_path: Path, data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    corpus, ids, _ = data
    with pytest.raises(IndexNotFound):
        VectorIndex.load(tmp_path / "nope.faiss")
    path = tmp_path / "v.faiss"
    _built(corpus[:300], ids[:300], nlist=4).save(path, generation=3)
    blob = path.read_bytes()

    cases = {
        "truncated": blob[: len(blob) // 2],
        "header-only": blob[:12],
        "empty": b"",
        "garbage": bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
        "flipped": blob[:-100] + bytes([blob[-100] ^ 0xFF]) + blob[-99:],
    }
    for name, content in cases.items():
        bad = tmp_path / f"{name}.faiss"
        bad.write_bytes(content)
        with pytest.raises(StoreError, match="sora-search check --repair"):
            VectorIndex.load(bad)


def test_build_validates() -> None:
    with pytest.raises(ValueError):
        VectorIndex.build(DIM, np.zeros((0, DIM), np.float32))
    with pytest.raises(ValueError):
        VectorIndex.build(DIM, _corpus(10), nlist=11)
    with pytest.raises(ValueError):
        VectorIndex.build(DIM, _corpus(10)[:, :5])
    tiny = VectorIndex.build(DIM, _corpus(10))
    assert tiny.nlist == 1 and tiny.nprobe == 1
    with pytest.raises(ValueError):
        tiny.nprobe = 2


def test_choose_nlist_monotone_and_sane() -> None:
    ns = list(range(0, 5000)) + [10**4, 10**5, 10**6, 10**7, 10**8, 10**9]
    values = [choose_nlist(n) for n in ns]
    assert all(a <= b for a, b in zip(values, values[1:]))
    assert choose_nlist(0) == choose_nlist(50) == 1
    for n, v in zip(ns, values):
        assert v & (v - 1) == 0  # power of two
        assert v == 1 or n // v >= 39
    assert 2048 <= choose_nlist(10**6) <= 8192
    for nlist in [1, 2, 8, 64, 1024, 65536]:
        p = choose_nprobe(nlist)
        assert 1 <= p <= nlist
        assert p == nlist or p >= 8


def test_import_is_cheap() -> None:
    code = "import sys, sora_search.index; assert 'faiss' not in sys.modules and 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_measured_defaults() -> None:
    # Pinned by benchmarks/speed/faiss_scale.py (recall@10 >= 0.95 at >= 20x exact search at 1M); change together.
    assert (choose_nlist(10**5), choose_nprobe(choose_nlist(10**5))) == (1024, 8)
    assert (choose_nlist(10**6), choose_nprobe(choose_nlist(10**6))) == (2048, 8)
    assert choose_nprobe(4096) == 16 and choose_nprobe(8192) == 32
    assert choose_encoding(None) == choose_encoding(FP16_MIN_VECTORS - 1) == "flat"
    assert choose_encoding(FP16_MIN_VECTORS) == choose_encoding(PQ_MIN_VECTORS - 1) == "fp16"
    assert choose_encoding(PQ_MIN_VECTORS) == "pq"


def test_fp16_index_matches_exact_search(tmp_path: Path, data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    corpus, ids, queries = data
    index = VectorIndex.build(DIM, corpus, nlist=16, expected_n=FP16_MIN_VECTORS)
    assert index.encoding == "fp16"
    assert VectorIndex.build(DIM, corpus, nlist=16, expected_n=FP16_MIN_VECTORS - 1).encoding == "flat"
    index.add(ids, corpus)
    index.nprobe = index.nlist
    scores, got = index.search(queries, 10)
    want_scores, want = _exact(corpus, ids, queries, 10)
    np.testing.assert_allclose(scores, want_scores, atol=2e-3)  # float16 keeps ~3 digits
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, want)]) >= 0.95
    assert index.describe() == "IVF16,SQfp16 (inner product), nprobe 16"
    assert index.nbytes() < len(ids) * DIM * 4

    path = tmp_path / "vectors.faiss"
    index.save(path, generation=5)
    loaded, generation = VectorIndex.load(path)
    assert generation == 5 and loaded.encoding == "fp16" and loaded.describe() == index.describe()
    np.testing.assert_array_equal(loaded.search(queries, 10)[1], got)
    assert loaded.remove(ids[:10]) == 10 and loaded.ntotal == len(ids) - 10
    assert not set(ids[:10]) & set(loaded.search(corpus[:10], 5)[1].ravel())
    with pytest.raises(ValueError):
        VectorIndex.build(DIM, corpus, nlist=16, encoding="sq8")


# --- GPU ---------------------------------------------------------------------------------------------------------


def test_without_a_gpu_faiss_can_use_everything_stays_on_the_cpu(
        data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    # faiss-cpu, as installed here and in CI; or a GPU build of faiss on a machine without a CUDA device.
    import faiss

    assert faiss_gpu_count() == 0
    why = "install faiss-gpu-cu12" if not hasattr(faiss, "StandardGpuResources") else "no CUDA device is visible"
    assert faiss_gpu_for(None) is None and faiss_gpu_for("cuda") is None and faiss_gpu_for("cuda:1") is None
    assert faiss_gpu_for("cpu") is None
    with pytest.raises(ValueError, match="got 'tpu'"):
        faiss_gpu_for("tpu")
    corpus, ids, _ = data
    index = _built(corpus, ids)
    assert index.search_device == "cpu"
    with pytest.raises(ValueError, match=f"faiss cannot use GPU 0: .*{why}"):
        index.use_gpu(0)
    with pytest.raises(ValueError, match=f"faiss cannot use GPU 0: .*{why}"):
        VectorIndex.build(DIM, corpus, nlist=16, gpu=0)


def test_gpu_device_choice(fake_gpu_faiss: FakeGpuFaiss) -> None:
    assert faiss_gpu_count() == 1
    assert faiss_gpu_for(None) == 0 and faiss_gpu_for("cuda") == 0 and faiss_gpu_for("cuda:0") == 0
    assert faiss_gpu_for("cpu") is None
    assert faiss_gpu_for("cuda:1") is None  # a GPU faiss cannot see: searched on the CPU, not an error


@pytest.mark.parametrize("encoding", ["flat", "fp16"])
def test_gpu_searches_a_copy_kept_in_step_with_the_cpu_index(
        tmp_path: Path, data: tuple[np.ndarray, np.ndarray, np.ndarray], fake_gpu_faiss: FakeGpuFaiss,
        encoding: str) -> None:
    corpus, ids, queries = data
    cpu = VectorIndex.build(DIM, corpus, nlist=16, encoding=encoding)
    gpu = VectorIndex.build(DIM, corpus, nlist=16, encoding=encoding, gpu=0)
    # k-means ran through the "GPU" flat index, and only the centroids stayed: same quantizer as on the CPU.
    assert len(fake_gpu_faiss.copies) == 1 and fake_gpu_faiss.ivf_copies() == []
    assert gpu.search_device == "cuda:0"
    cpu.add(ids, corpus)
    gpu.add(ids, corpus)
    assert fake_gpu_faiss.ivf_copies() == []  # copies are made for searching, not on every add

    def same(k: int = 10) -> None:
        for a, b in zip(cpu.search(queries, k), gpu.search(queries, k)):
            np.testing.assert_array_equal(a, b)

    same()
    same()
    assert len(fake_gpu_faiss.ivf_copies()) == 1 and fake_gpu_faiss.searches == 2
    extra = _unit(_corpus(5, seed=9))
    for index in (cpu, gpu):
        index.add(np.arange(5000, 5005, dtype=np.int64), extra)
    assert set(gpu.search(extra, 1)[1].ravel()) == set(range(5000, 5005))  # a new copy holds the new vectors
    for index in (cpu, gpu):
        assert index.remove(ids[:100]) == 100
    assert not set(ids[:100]) & set(gpu.search(corpus[:100], 5)[1].ravel())
    for index in (cpu, gpu):
        index.nprobe = 16
    same()
    assert len(fake_gpu_faiss.ivf_copies()) == 4 and fake_gpu_faiss.searches == 5
    assert gpu.remove(np.array([10**9], dtype=np.int64)) == 0  # nothing removed: the copy is kept
    same(k=GPU_MAX_K + 1)  # beyond faiss's GPU k-selection: searched on the CPU
    assert len(fake_gpu_faiss.ivf_copies()) == 4 and fake_gpu_faiss.searches == 5

    # The CPU index is what is saved; a loaded index searches on the CPU until told otherwise.
    gpu.save(tmp_path / "vectors.faiss", generation=3)
    loaded, _ = VectorIndex.load(tmp_path / "vectors.faiss")
    assert loaded.search_device == "cpu" and loaded.encoding == encoding
    np.testing.assert_array_equal(loaded.search(queries, 10)[1], cpu.search(queries, 10)[1])
    gpu.use_gpu(None)
    assert gpu.search_device == "cpu"
    same()
    assert fake_gpu_faiss.searches == 5 and fake_gpu_faiss.resources == 1


@pytest.mark.gpu
def test_faiss_gpu_search_matches_cpu(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    # Fails, not skips: a `-m gpu` run must prove the GPU path.
    assert faiss_gpu_count() > 0, "faiss sees no GPU: install faiss-gpu-cu12 in place of faiss-cpu on a CUDA machine"
    corpus = _corpus(50_000, seed=3)
    ids = np.arange(50_000, dtype=np.int64) * 3
    queries = _unit(_corpus(500, seed=4) + 0.05)
    for encoding in ("flat", "fp16"):
        cpu = VectorIndex.build(DIM, corpus, nlist=64, encoding=encoding)
        gpu = VectorIndex.build(DIM, corpus, nlist=64, encoding=encoding, gpu=0)
        for index in (cpu, gpu):
            index.add(ids, corpus)
            index.nprobe = 64  # every list: both must equal exact search
        want_scores, want = _exact(corpus, ids, queries, 10)
        scores, got = gpu.search(queries, 10)
        assert gpu.search_device == "cuda:0"
        np.testing.assert_allclose(scores, want_scores, atol=2e-3)
        assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, want)]) >= 0.99
        gpu.remove(ids[:1000])
        assert not set(ids[:1000]) & set(gpu.search(corpus[:1000], 5)[1].ravel())
        cpu.nprobe = gpu.nprobe = 8
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(cpu.search(queries, 10)[1],
                                                                      gpu.search(queries, 10)[1])])
        assert overlap >= 0.9  # different k-means (GPU float sums), same quality
