"""The accuracy benchmark end to end at its small size: generator, engine through the runner, evaluator.

Keeps ``benchmarks/accuracy/generate.py`` and ``run.py`` working (the full benchmark needs the media of
``benchmarks/fetch_media.sh`` and ~15 minutes). Synthetic footage, the real encoder, a few videos. The split
benchmark (``--splits``) is checked for its split rule (no source in both splits, every query's references in its
own split) and its runner with a system that answers from the truth, so no engine run is added.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

ACCURACY = Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy"
sys.path.insert(0, str(ACCURACY))

import generate  # noqa: E402
import run  # noqa: E402
import splits  # noqa: E402
from systems import Prediction  # noqa: E402


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


# --- the split benchmark (generate.py --splits, truth version 3) ------------------------------------------------------

# generate.py's default output must not move: this is the sha256 of --synthetic --small --seed 0's truth.json.
V1_SMALL_TRUTH_SHA256 = "c665456edea8bea7787750a84736f64284af2ae74d67fb1cf2a20399032d284d"


def test_the_first_version_is_unchanged(bench: tuple[Path, dict]) -> None:
    out, _ = bench
    assert hashlib.sha256((out / "truth.json").read_bytes()).hexdigest() == V1_SMALL_TRUTH_SHA256


@pytest.fixture(scope="module")
def split_bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("accsplits")
    truth_path = generate.generate(out, media=None, seed=0, small=True, splits=True)
    return out, json.loads(Path(truth_path).read_text())


def test_no_source_is_in_both_splits(split_bench: tuple[Path, dict]) -> None:
    out, truth = split_bench
    assert truth["version"] == 3 and truth["splits"] == ["tune", "heldout"]
    split_of = {s["source"]: s["split"] for s in truth["sources"]}
    assert len(split_of) == len(truth["sources"])
    assert set(split_of.values()) == {"tune", "heldout"}
    for key, folder in (("references", "refs"), ("queries", "queries"), ("filler", "filler")):
        assert truth[key]
        for entry in truth[key]:
            assert (out / folder / entry["name"]).is_file(), entry["name"]
            assert entry["sources"], entry["name"]
            # Everything a file shows (its footage, the footage it is embedded in) comes from its own split.
            assert {split_of[a] for a in entry["sources"]} == {entry["split"]}, entry


def test_every_query_and_its_references_are_in_one_split(split_bench: tuple[Path, dict]) -> None:
    _, truth = split_bench
    split_of = {r["name"]: r["split"] for r in truth["references"]}
    for q in truth["queries"]:
        if q["positive"]:
            assert split_of[q["reference"]] == q["split"], q
        else:
            assert q["reference"] is None
        for name in q["scene_references"] or []:
            assert split_of[name] == q["split"], q
    for split in truth["splits"]:
        queries = [q for q in truth["queries"] if q["split"] == split]
        families = {q["family"] for q in queries if q["positive"]}
        assert families == set(splits.SMALL.families)
        kinds = {q["negative_kind"] for q in queries if not q["positive"]}
        assert kinds == {splits.NEAR_MISS, splits.SAME_SOURCE, splits.UNRELATED}
        # Low-motion copies, and a hard negative from another stretch of a low-motion recording whose reference
        # is indexed.
        assert any(q["positive"] and q["content"] == "low-motion" for q in queries)
        near = [q for q in queries if q["negative_kind"] == splits.NEAR_MISS]
        assert near and all(q["content"] == "low-motion" and q["scene_references"] for q in near)


def test_the_held_out_digest_follows_the_held_out_split_only(split_bench: tuple[Path, dict]) -> None:
    _, truth = split_bench
    assert splits.heldout_digest(truth) == truth["heldout_sha256"]
    tune_changed = copy.deepcopy(truth)
    next(q for q in tune_changed["queries"] if q["split"] == "tune")["duration_s"] += 1
    assert splits.heldout_digest(tune_changed) == truth["heldout_sha256"]
    heldout_changed = copy.deepcopy(truth)
    next(q for q in heldout_changed["queries"] if q["split"] == "heldout")["duration_s"] += 1
    assert splits.heldout_digest(heldout_changed) != truth["heldout_sha256"]


def test_another_draw_of_one_split_keeps_the_other(tmp_path: Path) -> None:
    """``--tune-draw`` draws new tuning queries and leaves the held-out split as it was; ``--heldout-draw`` does the
    same the other way round (the synthetic benchmark draws its photos anew too; media sources stay in their split)."""
    def planned(name: str, **draws: int) -> dict:
        planner = splits.SplitPlanner(tmp_path / name, seed=0, small=True, media=None, **draws)
        planner.plan()
        return planner.truth()

    def split_of(truth: dict, split: str) -> tuple[list, list]:
        return ([s for s in truth["sources"] if s["split"] == split],
                [(q["family"], q["edits"], q["duration_s"]) for q in truth["queries"] if q["split"] == split])

    first, tune_b, heldout_b = planned("first"), planned("tune_b", tune_draw=1), planned("heldout_b", heldout_draw=1)
    assert tune_b["heldout_sha256"] == first["heldout_sha256"] and tune_b["tune_draw"] == 1
    assert split_of(tune_b, "heldout") == split_of(first, "heldout")
    assert split_of(tune_b, "tune")[1] != split_of(first, "tune")[1]
    assert heldout_b["heldout_sha256"] != first["heldout_sha256"] and heldout_b["heldout_draw"] == 1
    assert split_of(heldout_b, "tune") == split_of(first, "tune")
    assert split_of(heldout_b, "heldout")[1] != split_of(first, "heldout")[1]


def test_library_sizes_add_filler_in_order(split_bench: tuple[Path, dict]) -> None:
    _, truth = split_bench
    refs = [r["name"] for r in truth["references"] if r["split"] == "tune"]
    filler = [f for f in truth["filler"] if f["split"] == "tune"]
    base = sum(r["duration_s"] for r in truth["references"] if r["split"] == "tune")
    full = base + sum(f["duration_s"] for f in filler)
    sizes = run.library_sizes(truth, "tune", [0, base / 60, (base + 1) / 60, full / 60])
    assert [s.refs for s in sizes] == [tuple(refs)] * 3
    assert [len(s.filler) for s in sizes] == [0, 1, len(filler)]
    assert sizes[-1].filler == tuple(f["name"] for f in filler)
    with pytest.raises(ValueError, match="filler-minutes"):
        run.library_sizes(truth, "tune", [full / 60 + 1])


class Oracle:
    """Answers from the truth: the copied reference first, then a wrong one; remembers what was indexed."""

    name = "oracle"
    threshold = 0.5

    def __init__(self, truth: dict) -> None:
        self._truth = {q["name"]: q for q in truth["queries"]}
        self.indexed: list[list[str]] = []

    def index(self, refs: list[Path]) -> None:
        self.indexed.append(sorted(p.name for p in refs))

    def query(self, path: Path) -> list[Prediction]:
        q = self._truth[path.name]
        wrong = Prediction(reference="nothing.mp4", score=0.2)
        return [Prediction(reference=q["reference"], score=0.9), wrong] if q["positive"] else [wrong]

    def close(self) -> None:
        pass


def test_the_runner_reports_each_split_and_library_size(split_bench: tuple[Path, dict]) -> None:
    out, truth = split_bench
    oracle = Oracle(truth)
    filler_s = sum(f["duration_s"] for f in truth["filler"] if f["split"] == "tune")
    seen: list[dict] = []
    # Just over the larger split's references: both splits add filler at the second size.
    bigger = max(sum(r["duration_s"] for r in truth["references"] if r["split"] == s) for s in truth["splits"])
    results = run.run_splits("oracle", lambda split: oracle, truth, out, ["tune", "heldout"], [0, bigger / 60 + 0.01],
                             on_result=seen.append)
    assert seen == results
    # Smallest size first, both splits at it, then the next size.
    assert [(r["split"], r["library"]["filler"] > 0) for r in results] == [
        ("tune", False), ("heldout", False), ("tune", True), ("heldout", True)]
    assert filler_s > 0
    # Each split's library holds its own references and filler only; a system without extend() indexes again.
    refs_of = {r["name"]: r["split"] for r in truth["references"]}
    fill_of = {f["name"]: f["split"] for f in truth["filler"]}
    for names, split in zip(oracle.indexed, ["tune", "heldout", "tune", "heldout"]):
        assert {refs_of.get(n) or fill_of[n] for n in names} == {split}
    for r in results:
        queries = [q for q in truth["queries"] if q["split"] == r["split"]]
        assert r["n_queries"] == len(queries)
        assert r["micro_ap"] == 1.0 and r["recall_at_1"] == 1.0
        assert r["low_motion"]["recall_at_1"] == 1.0 and r["low_motion"]["n_negative"] >= 1
        assert r["query_s_mean_match"] is not None and r["query_s_mean_no_match"] is not None
        assert set(r["recall_at_1_by_family"]) == set(splits.SMALL.families)
    text = run.split_tables(results)
    assert "oracle tune" in text and "oracle heldout" in text and "low-motion recall@1" in text


def test_results_of_one_run_per_split_are_reported_together(split_bench: tuple[Path, dict], tmp_path: Path) -> None:
    out, truth = split_bench
    files = []
    for split in truth["splits"]:
        oracle = Oracle(truth)
        results = run.run_splits("oracle", lambda s: oracle, truth, out, [split], [0])
        files.append(tmp_path / f"{split}.json")
        files[-1].write_text(json.dumps({"heldout_sha256": truth["heldout_sha256"], "results": results}))
    text = run.report(files)
    assert "oracle tune | oracle heldout" in text and truth["heldout_sha256"] in text
    files[0].write_text(json.dumps({"heldout_sha256": "another", "results": []}))
    with pytest.raises(SystemExit, match="not all from one split benchmark"):
        run.report(files)


def test_region_match_splits_the_engine_descriptor_into_regions_and_ranks_each_copy(
        split_bench: tuple[Path, dict], tmp_path: Path) -> None:
    """benchmarks/accuracy/region_match.py: its regions add up to the engine's own descriptor, and it ranks the true
    reference of every positive query of a split under each comparison."""
    import numpy as np
    import region_match

    from sora_search import Library
    from sora_search.decode import open_video
    from sora_search.encoder import load_encoder

    out, truth = split_bench
    encoder = load_encoder("sora-lite0", device="cpu")
    ref = out / "refs" / truth["references"][0]["name"]
    regions, times = region_match.region_vectors(encoder, ref)
    with open_video(ref) as reader:
        frames = np.concatenate([b.frames for b in reader.sample(1.0, 224)])
    assert regions.shape == (len(frames), 14, 704) and len(times) == len(frames)
    cos = (region_match.whole_frame(regions.astype(np.float32)) * encoder.embed(frames)).sum(axis=1)
    assert cos.min() > 0.999, cos

    split = "tune"
    idx = tmp_path / "idx"
    with Library.open(idx, encoder="sora-lite0") as lib:
        lib.index([out / "refs" / r["name"] for r in truth["references"] if r["split"] == split])
    report = tmp_path / "regions.json"
    assert region_match.main([str(out), "--index", str(idx), "--split", split, "--pca", "16",
                              "--engine-weight", "0", "0.5", "--out", str(report)]) == 0
    result = json.loads(report.read_text())
    positives = [q for q in truth["queries"] if q["split"] == split and q["positive"]]
    assert [r["query"] for r in result["queries"]] == [q["name"] for q in positives]
    assert set(result["summary"]) == {"map", "centred", "regions", "regions-pca16", "quadrants", "quadrants-int8",
                                      "map+regions", "map+quadrants"}
    for row in result["queries"]:
        assert all(len(row[m]) == 2 for m in result["summary"])  # the true reference's score and the best rival's
    # Synthetic copies on a few references: the plain comparisons find most of them first.
    assert result["summary"]["centred"]["recall_at_1"] >= 0.6, result["summary"]
    assert result["summary"]["regions"]["recall_at_1"] >= 0.6, result["summary"]
    # The engine's own answers, as run.py scores them at weight 0, then re-ranked.
    as_is, reranked = result["engine"]
    assert (as_is["weight"], reranked["weight"]) == (0.0, 0.5)
    refs = [out / "refs" / r["name"] for r in truth["references"] if r["split"] == split]
    queries = [out / "queries" / q["name"] for q in truth["queries"] if q["split"] == split]
    alone = run.SoraSystem("sora", "sora-lite0", tmp_path / "again", params=region_match.engine_alone())
    engine = run.evaluate(run.run_system(alone, refs, queries), run.split_truth(truth, split))
    assert as_is["micro_ap"] == round(engine["micro_ap"], 3) and as_is["recall_at_1"] == round(engine["recall_at_1"], 3)
    assert 0.0 <= reranked["micro_ap"] <= 1.0 and 0.0 <= reranked["recall_at_1"] <= 1.0


def test_a_filler_video_named_like_a_reference_is_never_taken_for_it(split_bench: tuple[Path, dict],
                                                                      tmp_path: Path) -> None:
    """The split benchmark names filler like references (``t000.mp4`` in refs/ and in filler/): predictions name a
    library video that is not a reference by its folder too, so neither the engine nor a baseline takes one for the
    reference it shares a name with."""
    import baselines
    from systems import reference_name

    out, truth = split_bench
    refs = [out / "refs" / r["name"] for r in truth["references"] if r["split"] == "tune"]
    filler = [out / "filler" / f["name"] for f in truth["filler"] if f["split"] == "tune"]
    assert {p.name for p in refs} & {p.name for p in filler}  # the benchmark has the case
    assert reference_name(refs[0]) == refs[0].name and reference_name(filler[0]) == f"filler/{filler[0].name}"

    class SizeHash(baselines._HashBaseline[int]):  # a baseline without its tools: the file size as the hash
        name, threshold = "size", None

        def hash(self, path: Path) -> int:
            return path.stat().st_size

        def compare(self, reference: str, query: int, ref: int) -> tuple[Prediction, float]:
            return Prediction(reference, -abs(query - ref)), 0.0

    hashed = SizeHash(top_k=100)
    hashed.index(refs + filler)
    names = {p.reference for p in hashed.query(refs[0])}
    assert names == {reference_name(p) for p in refs + filler}

    system = run.SoraSystem("sora", "tiny", tmp_path)
    system.index(refs + filler)
    try:
        seen: set[str] = set()
        for q in [q for q in truth["queries"] if q["split"] == "tune"]:
            names_q = [p.reference for p in system.query(out / "queries" / q["name"])]
            assert len(names_q) == len(set(names_q)), names_q
            seen |= set(names_q)
    finally:
        system.close()
    assert seen <= {reference_name(p) for p in refs + filler}
    assert any(n.startswith("filler/") for n in seen) and any("/" not in n for n in seen)


def test_dupes_eval_reads_a_split_benchmark_one_split_at_a_time(split_bench: tuple[Path, dict],
                                                                 tmp_path: Path) -> None:
    """A split benchmark names a reference and a query alike (``t000.mp4``), so pairs go by folder and name, and
    one split is read at a time: --split is required there and refused elsewhere."""
    import dupes_eval

    out, _ = split_bench
    with pytest.raises(SystemExit, match="name one of its splits"):
        dupes_eval.main([str(out), "--work", str(tmp_path / "idx"), "--out", str(tmp_path / "d.json")])
    single = tmp_path / "single"
    single.mkdir()
    (single / "truth.json").write_text(json.dumps({"version": 1, "references": [], "queries": []}))
    with pytest.raises(SystemExit, match="leave --split out"):
        dupes_eval.main([str(single), "--split", "tune", "--work", str(tmp_path / "idx")])
    assert not (tmp_path / "idx").exists()
    assert dupes_eval._key("/x/bench/refs/t000.mp4") == "refs/t000.mp4"


def test_dupes_eval_judges_split_pairs_by_folder_sources_and_scene() -> None:
    """Right: a copy with its reference. Wrong: a same-scene negative with its recording's reference (counted apart
    too), and files that show nothing in common. Not judged: files the truth says show a source in common."""
    import dupes_eval

    def ref(name: str, *sources: str) -> dict:
        return {"name": name, "split": "tune", "sources": list(sources)}

    def query(name: str, *sources: str, **kw: object) -> dict:
        return {"name": name, "split": "tune", "positive": False, "reference": None, "family": "negative",
                "source": sources[0], "duration_s": 10.0, "sources": list(sources), "scene_references": None} | kw

    truth = {"splits": ["tune", "heldout"],
             "references": [ref("t000.mp4", "lecture:a", "photo:p"), ref("t001.mp4", "film:b"),
                            ref("t002.mp4", "photo:q")],
             "queries": [query("t000.mp4", "film:b", "photo:q", positive=True, reference="t001.mp4", family="blur",
                               content="camera", query_start_s=0.0, query_end_s=10.0, ref_start_s=0.0,
                               ref_end_s=10.0),
                         query("t001.mp4", "lecture:a@40", scene_references=["t000.mp4"]),
                         query("t002.mp4", "lavfi:life")]}

    def pair(a: str, b: str, score: float) -> dict:
        return {"a": a, "b": b, "score": score, "a_covered": 1.0, "b_covered": 1.0,
                "segments": [{"a_start_s": 0.0, "a_end_s": 5.0, "b_start_s": 0.0, "b_end_s": 5.0}]}

    pairs = [pair("queries/t000.mp4", "refs/t001.mp4", 0.6),  # the copy: right
             pair("queries/t001.mp4", "refs/t000.mp4", 0.4),  # another stretch of the lecture: wrong, same-scene
             pair("queries/t000.mp4", "refs/t002.mp4", 0.3),  # both show photo q: not judged
             pair("queries/t002.mp4", "refs/t001.mp4", 0.2),  # nothing in common: wrong
             pair("refs/t000.mp4", "refs/t001.mp4", 0.05)]
    d = dupes_eval.judge(pairs, truth, 0.1)
    assert (d["right"], d["wrong"], d["same_scene"], d["unexplained"]) == (1, 2, 1, 1)
    assert d["recall"] == 1.0 and d["recall_per_content"] == {"camera": 1.0}
    assert [w[:2] for w in d["wrong_pairs"]] == [("queries/t001.mp4", "refs/t000.mp4"),
                                                  ("queries/t002.mp4", "refs/t001.mp4")]
    high = dupes_eval.judge(pairs, truth, 0.5)
    assert (high["right"], high["wrong"], high["same_scene"]) == (1, 0, 0)
    assert dupes_eval.judge(pairs, truth, 0.7)["recall"] == 0.0


def test_region_fallback_reorders_only_weak_answers_and_keeps_their_scores(split_bench: tuple[Path, dict],
                                                                         tmp_path: Path) -> None:
    """benchmarks/accuracy/region_fallback.py: under B 0 nothing moves; under B 2 every answer is ordered by the
    quadrant evidence, which puts most synthetic copies' references first."""
    import region_fallback

    from sora_search import Library

    out, truth = split_bench
    split = "tune"
    idx = tmp_path / "idx"
    with Library.open(idx, encoder="sora-lite0") as lib:
        lib.index([out / "refs" / r["name"] for r in truth["references"] if r["split"] == split])
    report = tmp_path / "fallback.json"
    assert region_fallback.main([str(out), "--index", str(idx), "--split", split, "--below", "0", "2",
                                 "--weight", "0.5", "--out", str(report)]) == 0
    rows = {(r["mode"], r["below"], r["weight"]): r for r in json.loads(report.read_text())["rows"]}
    assert set(rows) == {(m, b, w) for m in ("mean", "half") for b in (0.0, 2.0) for w in ("order", 0.5)}
    for mode in ("mean", "half"):
        as_is = rows[mode, 0.0, "order"]
        assert as_is["changed"] == [] and as_is == {**rows["mean", 0.0, "order"], "mode": mode}
        assert rows[mode, 2.0, "order"]["recall_at_1"] >= 0.6, rows


@pytest.fixture(scope="module")
def tune_index(split_bench: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The small split benchmark's tuning split through ``run.py``'s engine: the index it leaves (``.../sora``) and
    its evaluation."""
    out, truth = split_bench
    work = tmp_path_factory.mktemp("tune-run")
    refs = [out / "refs" / r["name"] for r in truth["references"] if r["split"] == "tune"]
    queries = [out / "queries" / q["name"] for q in truth["queries"] if q["split"] == "tune"]
    engine = run.evaluate(run.run_system(run.SoraSystem("sora", "sora-lite0", work), refs, queries),
                          run.split_truth(truth, "tune"))
    return work / "sora", engine


def test_requery_changes_only_the_settings_named_and_scores_as_run_does(split_bench: tuple[Path, dict],
                                                                      tune_index: tuple[Path, dict],
                                                                      tmp_path: Path) -> None:
    """benchmarks/accuracy/requery.py: FIELD=VALUE settings become QueryParams, and the index run.py left is
    searched again as it is and scored as run.py scores the engine."""
    import requery

    from sora_search.params import QueryParams

    params = requery.query_params(["region_weight=0", "novelty_full=none", "views=fast", "align.min_hits=3", "k=5"])
    assert params == replace(QueryParams(region_weight=0.0, novelty_full=None, views="fast", k=5),
                             align=replace(QueryParams().align, min_hits=3))
    for bad in ("k", "nope=1", "align.nope=1", "k=1.5"):
        with pytest.raises(ValueError):
            requery.query_params([bad])

    out, _ = split_bench
    index, engine = tune_index
    split = "tune"
    report = tmp_path / "requery.json"
    assert requery.main([str(out), "--index", str(index), "--split", split, "--out", str(report)]) == 0
    again = json.loads(report.read_text())
    assert (again["micro_ap"], again["recall_at_1"]) == (engine["micro_ap"], engine["recall_at_1"])
    assert requery.main([str(out), "--index", str(index), "--split", split, "views=fast",
                         "--out", str(report)]) == 0
    assert json.loads(report.read_text())["settings"] == ["views=fast"]
    with pytest.raises(SystemExit, match="no index at"):
        requery.main([str(out), "--index", str(tmp_path / "nothing"), "--split", split])


def test_library_copies_stores_each_reference_six_times_and_asks_three_ways(split_bench: tuple[Path, dict],
                                                                          tune_index: tuple[Path, dict],
                                                                          tmp_path: Path) -> None:
    """benchmarks/accuracy/library_copies.py: copies of a reference go into a copy of the index in two steps, the run's
    own index stays as it was, and every positive of that reference is asked with the merge, with near-identical
    copies merged only, and without it."""
    import library_copies

    out, truth = split_bench
    index, _ = tune_index
    before = sorted(p.name for p in index.iterdir())
    assert library_copies.main([str(out), "--index", str(index), "--split", "tune", "--refs", "1",
                                "--work", str(tmp_path / "copies")]) == 0
    assert sorted(p.name for p in index.iterdir()) == before
    result = json.loads((tmp_path / "copies" / "library_copies.json").read_text())
    (ref,) = result["references"]
    assert [s["stored"] for s in result["steps"]] == [1, 3, 6]
    assert sorted(p.name for p in (tmp_path / "copies" / "copies5").iterdir()) == sorted(
        f"{Path(ref).stem}__{tag}.mp4" for tag in ("s075", "s050", "fps15"))
    positives = [q["name"] for q in truth["queries"] if q["split"] == "tune" and q["reference"] == ref]
    for step in result["steps"]:
        assert sorted(step["merged_answers"]) == sorted(step["apart_answers"]) == sorted(
            step["near_identical_answers"]) and set(positives) <= set(step["merged_answers"])
        assert step["merged"]["positives"] == len(positives)
    first, last = result["steps"][0], result["steps"][-1]
    assert first["merged"] == first["apart"]  # one copy stored: nothing to merge
    assert last["merged"]["true_score_mean"] > last["apart"]["true_score_mean"]
    with pytest.raises(SystemExit, match="no index at"):
        library_copies.main([str(out), "--index", str(tmp_path / "nothing"), "--split", "tune"])


def test_library_copies_edited_copies_are_videos_of_the_edit(tmp_path: Path) -> None:
    """``--copies edited``: each edit makes a decodable video; the crop and the border change its picture's size."""
    import av
    import library_copies

    from tests.media import make_testsrc

    src = make_testsrc(tmp_path / "src.mp4", 2, size=(320, 240))
    sizes = {}
    for tag, options in library_copies.COPIES["edited"]:
        library_copies.make_copy(src, tmp_path / f"{tag}.mp4", options)
        with av.open(str(tmp_path / f"{tag}.mp4")) as container:
            frame = next(container.decode(video=0))
            sizes[tag] = (frame.width, frame.height)
    assert sizes == {"box": (320, 240), "crop": (256, 192), "colour": (320, 240), "blur": (320, 240),
                     "border": (320, 240)}


def test_scene_overlap_tells_a_frame_copy_from_other_footage(tmp_path: Path) -> None:
    """benchmarks/accuracy/scene_overlap.py: a same-scene negative that re-encodes its reference correlates with it
    at every second, one of other footage at none; the engine's score for the reference is read from a result."""
    import subprocess

    import scene_overlap

    def make(name: str, source: str, *vf: str) -> None:
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source, "-t", "4", *vf,
                        "-pix_fmt", "yuv420p", str(tmp_path / name)], check=True)

    (tmp_path / "refs").mkdir()
    (tmp_path / "queries").mkdir()
    make("refs/r.mp4", "testsrc2=size=160x90:rate=10")
    make("queries/same.mp4", "testsrc2=size=160x90:rate=10", "-vf", "scale=96:54")
    make("queries/other.mp4", "mandelbrot=size=160x90:rate=10")
    negative = {"positive": False, "negative_kind": "near_miss_same_scene", "split": "tune", "source": "lavfi",
                "edits": [], "scene_references": ["r.mp4"]}
    truth = {"queries": [{**negative, "name": "same.mp4"}, {**negative, "name": "other.mp4"},
                         {**negative, "name": "held.mp4", "split": "heldout"}]}
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    result = tmp_path / "result.json"
    result.write_text(json.dumps({"system": "sora", "predictions": {"same.mp4": [["r.mp4", 0.31, [0, 4], [0, 4]]]}}))
    assert scene_overlap.main([str(tmp_path), "--split", "tune", "--result", str(result),
                               "--out", str(tmp_path / "rows.json")]) == 0
    rows = {r["query"]: r for r in json.loads((tmp_path / "rows.json").read_text())}
    assert sorted(rows) == ["other.mp4", "same.mp4"]
    assert rows["same.mp4"]["seconds"] == 4 and rows["same.mp4"]["close"] == 4
    assert rows["same.mp4"]["weakest"] >= 0.9 and rows["same.mp4"]["engine"] == 0.31
    assert rows["other.mp4"]["close"] == 0 and rows["other.mp4"]["engine"] is None
    with pytest.raises(SystemExit, match="no same-scene negative"):
        scene_overlap.main([str(tmp_path), "--split", "nope"])


def test_slide_text_sets_copies_against_other_slides_of_the_deck(tmp_path: Path) -> None:
    """benchmarks/accuracy/slide_text.py: a lightly re-encoded slide is nearer its own slide than any other slide of
    its deck is, read at either side; a deck of one slide has no negative and is refused."""
    import slide_text

    out = tmp_path / "rows.json"
    assert slide_text.main(["--decks", "1", "--slides", "3", "--sides", "224", "160", "--work", str(tmp_path),
                            "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert {r["side"] for r in rows} == {224, 160}
    light = [r for r in rows if r["edit"] == "jpeg q30"]
    assert len(light) == 2 and all(r["auc"] == 1.0 and r["first"] == 1.0 for r in light)
    assert all(0.0 <= r["auc"] <= 1.0 for r in rows)
    with pytest.raises(SystemExit, match="another slide of the same deck"):
        slide_text.main(["--slides", "1", "--work", str(tmp_path)])


def test_slide_text_ocr_says_what_it_needs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--ocr reads words with the tesseract command, which the engine does not depend on: without it, a clear exit."""
    import slide_text

    monkeypatch.setattr(slide_text.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="tesseract"):
        slide_text.main(["--ocr", "--decks", "1", "--slides", "2", "--work", str(tmp_path)])


def test_text_veto_scores_the_answers_left() -> None:
    """benchmarks/accuracy/text_veto.py: metrics computed again without the answers the engine's text check drops
    (the check itself: tests/test_text.py)."""
    import text_veto

    truth = {"queries": [{"name": "a.mp4", "positive": True, "reference": "r1.mp4"},
                         {"name": "b.mp4", "positive": False, "reference": None}]}
    before = {"a.mp4": [["r2.mp4", 0.5], ["r1.mp4", 0.4]], "b.mp4": [["r1.mp4", 0.45]]}
    after = {"a.mp4": [["r1.mp4", 0.4]], "b.mp4": []}
    assert text_veto.scores(before, truth)["recall_at_1"] == 0.0
    assert text_veto.scores(after, truth) == {"micro_ap": 1.0, "recall_at_1": 1.0}


def test_draws_ranks_the_answers_of_several_draws_together(tmp_path: Path) -> None:
    """benchmarks/accuracy/draws.py: two draws with the same query names stay apart; a confident wrong answer in one
    draw lowers micro-AP over both; answers the text check dropped are left out."""
    import draws

    for n, wrong in ((0, 0.2), (1, 0.9)):
        bench = tmp_path / f"b{n}"
        bench.mkdir()
        truth = {"queries": [{"name": "a.mp4", "positive": True, "reference": "r.mp4", "family": "blur",
                              "split": "heldout"},
                             {"name": "n.mp4", "positive": False, "reference": None, "split": "heldout"},
                             {"name": "t.mp4", "positive": True, "reference": "r.mp4", "family": "blur",
                              "split": "tune"}]}
        (bench / "truth.json").write_text(json.dumps(truth))
        (tmp_path / f"r{n}.json").write_text(json.dumps(
            {"system": "sora", "predictions": {"a.mp4": [["r.mp4", 0.5]], "n.mp4": [["r.mp4", wrong]]}}))
    (tmp_path / "text.json").write_text(json.dumps({"rows": [{"query": "n.mp4", "reference": "r.mp4",
                                                              "vetoed": True}]}))
    out = tmp_path / "out.json"

    def run(*second: str) -> list[dict]:
        assert draws.main(["--split", "heldout", "--draw", str(tmp_path / "b0"), str(tmp_path / "r0.json"),
                           "--draw", str(tmp_path / "b1"), str(tmp_path / "r1.json"), *second,
                           "--out", str(out)]) == 0
        return json.loads(out.read_text())

    first, second, both = run()
    assert first["micro_ap"] == 1.0 and second["micro_ap"] == 0.5 and both["copies"] == 2
    assert both["micro_ap"] == pytest.approx((1 / 2 + 2 / 3) / 2) and both["recall_at_1"] == 1.0
    assert run(str(tmp_path / "text.json"))[2]["micro_ap"] == 1.0
    with pytest.raises(SystemExit):
        draws.main(["--split", "heldout", "--draw", str(tmp_path / "b0")])
