"""The accuracy benchmark end to end at its small size: generator, engine through the runner, evaluator.

Keeps ``benchmarks/accuracy/generate.py`` and ``run.py`` working (the full benchmark needs the media of
``benchmarks/fetch_media.sh`` and ~15 minutes). Synthetic footage, the real encoder, a few videos.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ACCURACY = Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy"
sys.path.insert(0, str(ACCURACY))

import generate  # noqa: E402
import run  # noqa: E402


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("accsmall")
    truth_path = generate.generate(out, media=None, seed=0, small=True)
    return out, json.loads(Path(truth_path).read_text())


def test_generator_writes_a_consistent_truth(bench: tuple[Path, dict]) -> None:
    out, truth = bench
    refs = {r["name"] for r in truth["references"]}
    assert len(refs) >= 4 and all((out / "refs" / r).is_file() for r in refs)
    positives = [q for q in truth["queries"] if q["positive"]]
    negatives = [q for q in truth["queries"] if not q["positive"]]
    assert positives and negatives
    for q in truth["queries"]:
        assert (out / "queries" / q["name"]).is_file(), q["name"]
    for q in positives:
        assert q["reference"] in refs
        assert 0 <= q["query_start_s"] < q["query_end_s"] <= q["duration_s"] + 0.1, q
        assert 0 <= q["ref_start_s"] < q["ref_end_s"], q
    assert all(q["reference"] is None for q in negatives)


def test_engine_through_the_runner(bench: tuple[Path, dict], tmp_path: Path) -> None:
    out, truth = bench
    refs = [out / "refs" / r["name"] for r in truth["references"]]
    queries = [out / "queries" / q["name"] for q in truth["queries"]]
    result = run.evaluate(run.run_system(run.SoraSystem("sora", "sora-lite0", tmp_path), refs, queries), truth)
    assert result["errors"] == {}
    assert 0.0 <= result["micro_ap"] <= 1.0
    # The small set is easy for the engine: most copies come first, and the metrics see every query.
    assert result["recall_at_1"] >= 0.6, result
    assert result["n_queries"] == len(truth["queries"])
    assert set(result["recall_at_1_by_family"]) == {q["family"] for q in truth["queries"] if q["positive"]}
    assert "sora" in run.table([result])


def test_a_photo_that_is_a_frame_of_a_packaged_video_is_found(tmp_path: Path) -> None:
    """Background clips must not show a reference's frames: a still cut from a package's video (JPEG, so not
    bit-exact) is found; an unrelated photo of the same package is not."""
    from tests.media import ffmpeg, make_testsrc

    media = tmp_path / "media"
    (media / "video_real" / "pkg").mkdir(parents=True)
    (media / "photos" / "pkg").mkdir(parents=True)
    video = make_testsrc(media / "video_real" / "pkg" / "clip.mp4", 4, pattern="testsrc2")
    ffmpeg("-ss", "2.1", "-i", str(video), "-frames:v", "1", "-q:v", "5", str(media / "photos" / "pkg" / "still.jpg"))
    other = make_testsrc(tmp_path / "m.mp4", 1, pattern="mandelbrot")
    ffmpeg("-i", str(other), "-frames:v", "1", str(media / "photos" / "pkg" / "unrelated.png"))
    found = generate.video_stills(media, sorted((media / "photos").rglob("*.*")))
    assert found == {media / "photos" / "pkg" / "still.jpg": "video_real/pkg/clip.mp4"}
