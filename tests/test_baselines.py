"""The accuracy benchmark's baseline systems (benchmarks/accuracy/baselines.py).

Each installed baseline must rank a re-encoded copy's source first among two references. Baselines are installed
by benchmarks/accuracy/install_baselines.sh, which CI does not run: a baseline whose package is absent is skipped,
one that is present but broken fails. The vPDQ matching rules and the registry are tested without any of them.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.media import cut, make_testsrc

ACCURACY = Path(__file__).resolve().parent.parent / "benchmarks" / "accuracy"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ACCURACY / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    return module


b = _load("baselines")  # puts benchmarks/accuracy on sys.path, as run.py does
from systems import Prediction  # noqa: E402


def _videohash_installed() -> bool:
    """Whether the videohash package is in the baselines venv (working or not: a broken install must fail)."""
    python = b.BENCH_VENV / "bin" / "python"
    if not python.exists():
        return False
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('videohash') is None)"
    return subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0


def _require(package: str) -> None:
    if package == "videohash":
        if not _videohash_installed():
            pytest.skip(f"videohash is not installed in {b.BENCH_VENV} (benchmarks/accuracy/install_baselines.sh)")
    else:
        pytest.importorskip(package, reason=f"{package} is not installed (benchmarks/accuracy/install_baselines.sh)")


SYSTEMS = {  # system name -> (package to skip on, factory)
    "videohash": ("videohash", lambda: b.VideoHashSystem(workers=2)),
    "vpdq": ("vpdq", lambda: b.VpdqSystem()),
    "tmk-l1": ("perception", lambda: b.TmkSystem(1)),
    "tmk-l2": ("perception", lambda: b.TmkSystem(2)),
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Two 6 s references, a downscaled re-encode of the first, a 3 s excerpt of it, an unrelated clip, junk."""
    root = tmp_path_factory.mktemp("baselines")
    refs = root / "refs"  # the benchmark's folder of references: predictions name them by file name alone
    refs.mkdir()
    out = {  # mpeg4: these patterns are slow to encode with x264, and the copies are x264 re-encodes anyway
        "bars": make_testsrc(refs / "bars.mp4", 6, pattern="testsrc2", codec="mpeg4"),
        "mandel": make_testsrc(refs / "mandel.mp4", 6, pattern="mandelbrot", codec="mpeg4"),
        "other": make_testsrc(root / "other.mp4", 4, pattern="life", codec="mpeg4"),
    }
    out["copy"] = cut(out["bars"], root / "copy.mp4", 0, 6, scale=0.75, crf=30)
    # Starts on a whole second: testsrc2 moves so fast that frames 0.5 s apart are > 31 bits apart in PDQ, so a
    # 1 frame/s vPDQ only matches this synthetic pattern on the same sampling grid (real footage is kinder).
    out["excerpt"] = cut(out["bars"], root / "excerpt.mp4", 2, 3, scale=0.75, crf=30)
    out["junk"] = root / "junk.mp4"
    out["junk"].write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    return out


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_reencoded_copy_ranks_its_source_first(name, clips):
    package, factory = SYSTEMS[name]
    _require(package)
    system = factory()
    assert system.name == name
    try:
        system.index([clips["bars"], clips["mandel"]])
        preds = system.query(clips["copy"])
        assert [p.reference for p in preds] == ["bars.mp4", "mandel.mp4"], preds
        assert preds[0].score > preds[1].score
        if name != "videohash":  # 4 s a video there; the ranking above is its test
            unrelated = system.query(clips["other"])
            assert preds[0].score > max(p.score for p in unrelated), (preds, unrelated)
    finally:
        system.close()


@pytest.mark.parametrize("name", ["vpdq", "tmk-l1", "tmk-l2"])  # videohash hashes whole videos: no excerpts
def test_excerpt_is_found_and_vpdq_localises_it(name, clips):
    package, factory = SYSTEMS[name]
    _require(package)
    system = factory()
    try:
        system.index([clips["mandel"], clips["bars"]])
        preds = system.query(clips["excerpt"])
        assert preds[0].reference == "bars.mp4" and preds[0].score > preds[1].score, preds
        if name == "vpdq":  # bars 2-5 s, hashed once a second
            assert preds[0].query_span == (0.0, 3.0) and preds[0].ref_span == (2.0, 5.0)
        else:
            assert preds[0].query_span is None and preds[0].ref_span is None
    finally:
        system.close()


# perception reads frames in a thread whose exception reaches threading.excepthook before compute() reports it.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("name", [n for n in SYSTEMS if n != "videohash"])  # videohash: same path, 4 s a file
def test_unreadable_files_are_skipped_not_fatal(name, clips, caplog):
    package, factory = SYSTEMS[name]
    _require(package)
    system = factory()
    try:
        system.index([clips["junk"], clips["mandel"]])
        assert system.query(clips["junk"]) == []
        assert [p.reference for p in system.query(clips["mandel"])] == ["mandel.mp4"]
    finally:
        system.close()
    assert "junk.mp4 not hashed" in caplog.text


# ------------------------------------------------------------------------------ vPDQ matching, no vpdq needed


def _frames(hashes: list[int], quality: list[int] | None = None) -> object:
    """Fake vpdq features at 1 frame/s; each hash is one 64-bit word repeated (so distances are 4x its popcount)."""
    quality = quality or [100] * len(hashes)
    return [SimpleNamespace(hex=f"{h:016x}" * 4, quality=q, timestamp=float(i))
            for i, (h, q) in enumerate(zip(hashes, quality))]


def test_vpdq_match_follows_meta_rules():
    # Distance 28 (7 bits x 4 words) matches, 32 (8 bits x 4) does not: Meta's "<= 31".
    ref = b.VpdqFrames.from_features(_frames([0x0, 0xFF00, 0xFF00, 0xF0F0F0F0]))
    query = b.VpdqFrames.from_features(_frames([0x7F, 0xFF, 0xFF00, 0x1234], quality=[100, 100, 100, 40]))
    assert len(query.hashes) == 3  # quality 40 < 50 is dropped
    m = b.vpdq_match(query, ref)
    assert m.query_share == pytest.approx(2 / 3)  # 0x7F (28 from 0x0) and 0xFF00 match; 0xFF is 32 from all
    # Reference: 0x0 and the two identical 0xFF00 (one distinct hash) match, 0xF0F0F0F0 does not: 2 of 3 distinct.
    assert m.ref_share == pytest.approx(2 / 3)
    assert m.query_span == (0.0, 3.0)  # query frames 0 and 2, plus the second each stands for
    assert m.ref_span == (0.0, 3.0)  # reference frames 0, 1, 2


def test_vpdq_match_with_no_comparable_frames_scores_zero():
    ref = b.VpdqFrames.from_features(_frames([0x0, 0x1]))
    dark = b.VpdqFrames.from_features(_frames([0x0], quality=[10]))
    assert b.vpdq_match(dark, ref) == b.VpdqMatch(0.0, 0.0, None, None)


def test_pdq_distances_match_popcount():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 2**63, (5, 4), dtype=np.uint64)
    c = rng.integers(0, 2**63, (7, 4), dtype=np.uint64)
    expected = [[sum(bin(int(x) ^ int(y)).count("1") for x, y in zip(ra, rc)) for rc in c] for ra in a]
    assert b.pdq_distances(a, c).tolist() == expected


def test_vpdq_ranks_by_query_share_then_reference_share():
    preds = b._ranked([(Prediction("b.mp4", 0.5, None, None), 0.1), (Prediction("a.mp4", 0.5, None, None), 0.9),
                       (Prediction("c.mp4", 0.9, None, None), 0.0)], top_k=2)
    assert [p.reference for p in preds] == ["c.mp4", "a.mp4"]


# ------------------------------------------------------------------------------------------------- registry


def test_missing_baselines_are_reported_not_offered(monkeypatch, tmp_path):
    monkeypatch.setattr(b, "BENCH_VENV", tmp_path / "no-venv")
    b._probe.cache_clear()
    try:
        why = b.unavailable_baselines()
        assert "videohash" not in b.available_baselines()
        assert str(tmp_path / "no-venv" / "bin" / "python") in why["videohash"]
        assert "install_baselines.sh" in why["videohash"]
        assert set(why) | set(b.available_baselines()) == set(SYSTEMS)
    finally:
        b._probe.cache_clear()


def test_prediction_rejects_reversed_span():
    with pytest.raises(ValueError, match="ref_span"):
        Prediction("r.mp4", 1.0, None, (5.0, 2.0))
