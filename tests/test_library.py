"""Library bookkeeping with the fast ``tiny`` encoder: incremental runs, moves, deletions, failures, locking.

Tests marked ``on_both`` run with the catalogue in SQLite (the default) and in PostgreSQL (a throwaway server,
tests/pg.py), which is then also the test's $SORA_SEARCH_DB, so that every ``Library.open`` of the test uses it."""

from __future__ import annotations

import json

import os
import random
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sora_search import Library
from sora_search.errors import EmptyIndex, EncoderError, EncoderMismatch, IndexLocked, IndexNotFound
from sora_search.library import write_lock
from sora_search.params import QueryParams
from sora_search.embed.views import FULL, HALVES, HFLIP, ROTATIONS
from tests.media import cut, inset_box


on_both = pytest.mark.parametrize("lib", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def lib(request, tmp_path, monkeypatch):
    monkeypatch.delenv("SORA_SEARCH_DB", raising=False)
    if getattr(request, "param", "sqlite") == "postgres":
        monkeypatch.setenv("SORA_SEARCH_DB", request.getfixturevalue("pg_url"))
    with Library.open(tmp_path / "idx", encoder="tiny") as library:
        yield library


def _forbid_decoding(monkeypatch):
    from sora_search.decode import DecodeWorker

    def boom(*a, **k):
        raise AssertionError("decoded a file that should have been skipped")

    monkeypatch.setattr(DecodeWorker, "open", boom)


@on_both
def test_first_run_indexes_everything_and_second_decodes_nothing(lib, library_copy, monkeypatch):
    first = lib.index([library_copy])
    assert sorted(os.path.basename(p) for p in first.added) == ["bars.mp4", "mandel.mp4", "pan_a.mp4", "pan_b.mp4"]
    assert first.failed == () and first.vectors_added >= 40
    info = lib.info()
    assert info.videos == 4 and info.vectors == first.vectors_added and info.encoder == "tiny"

    _forbid_decoding(monkeypatch)
    again = lib.index([library_copy])
    assert again.encoded == 0 and len(again.unchanged) == 4 and again.vectors_added == 0


@on_both
def test_changed_moved_and_deleted_files(lib, library_copy, media_dir, monkeypatch):
    lib.index([library_copy])
    os.rename(library_copy / "bars.mp4", library_copy / "renamed_bars.mp4")
    (library_copy / "mandel.mp4").unlink()
    shutil.copy(media_dir / "probe_other.mp4", library_copy / "pan_b.mp4")  # same name, new content
    summary = lib.index([library_copy])
    assert [(os.path.basename(a), os.path.basename(b)) for a, b in summary.moved] == [("bars.mp4",
                                                                                      "renamed_bars.mp4")]
    assert [os.path.basename(p) for p in summary.removed] == ["mandel.mp4"]
    assert [os.path.basename(p) for p in summary.updated] == ["pan_b.mp4"]
    assert summary.added == ()
    paths = {os.path.basename(v.path) for v in lib._store.videos()}
    assert paths == {"pan_a.mp4", "pan_b.mp4", "renamed_bars.mp4"}
    # The FAISS index follows the store: every stored vector is searchable, nothing else.
    index, _ = lib._keeper.searchable()
    assert index.ntotal == lib._store.vector_count()


def test_deleted_video_disappears_from_results(lib, library_copy, media_dir):
    lib.index([library_copy])
    probe = library_copy / "bars.mp4"
    kept = media_dir / "bars_probe.mp4"
    shutil.copy(probe, kept)
    assert any(m.path == str(probe) for m in lib.query(kept, min_score=-1).matches)
    probe.unlink()
    assert [os.path.basename(p) for p in lib.index([library_copy]).removed] == ["bars.mp4"]
    assert all(m.path != str(probe) for m in lib.query(kept, min_score=-1).matches)


def test_a_match_says_which_view_of_the_clip_found_it(lib, library_copy, tmp_path):
    lib.index([library_copy])
    straight = cut(library_copy / "pan_a.mp4", tmp_path / "straight.mp4", 4, 8, scale=0.5)
    mirrored = cut(library_copy / "pan_a.mp4", tmp_path / "mirrored.mp4", 4, 8, scale=0.5, extra_vf="hflip")
    first = lambda clip: lib.query(clip, views="standard").matches[0]  # noqa: E731
    assert (Path(first(straight).path).name, first(straight).view) == ("pan_a.mp4", FULL)
    assert (Path(first(mirrored).path).name, first(mirrored).view) == ("pan_a.mp4", HFLIP)
    assert lib.query(straight).to_dict()["matches"][0]["view"] == FULL


@on_both
def test_a_broken_file_is_recorded_and_the_rest_indexed(lib, library_copy):
    (library_copy / "broken.mp4").write_bytes(random.Random(0).randbytes(4096))
    summary = lib.index([library_copy])
    assert len(summary.added) == 4
    assert [os.path.basename(f.path) for f in summary.failed] == ["broken.mp4"]
    assert summary.failed[0].reason
    # Unchanged failures are not retried, but still reported.
    again = lib.index([library_copy])
    assert again.encoded == 0 and [os.path.basename(f.path) for f in again.failed] == ["broken.mp4"]
    assert lib.info().failed == 1


@on_both
def test_remove_by_file_and_folder(lib, library_copy):
    lib.index([library_copy])
    assert lib.remove([library_copy / "bars.mp4"]) == [str(library_copy / "bars.mp4")]
    assert len(lib.remove([library_copy])) == 3
    assert lib._store.vector_count() == 0
    assert lib.remove([library_copy]) == []


def test_query_before_indexing_and_missing_index(tmp_path, lib, media_dir):
    with pytest.raises(EmptyIndex, match="sora-search index"):
        lib.query(media_dir / "probe_a.mp4")
    with pytest.raises(IndexNotFound, match="sora-search index"):
        Library.open(tmp_path / "nowhere", create=False)


def test_index_remembers_its_encoder(tmp_path, library_copy):
    with Library.open(tmp_path / "idx", encoder="tiny") as lib:
        lib.index([library_copy / "bars.mp4"])
    with pytest.raises(EncoderMismatch, match="tiny"):
        Library.open(tmp_path / "idx", encoder="sora-lite0")
    with Library.open(tmp_path / "idx") as lib:  # no encoder given: the index's own
        assert lib.info().encoder == "tiny"


@on_both
def test_second_writer_is_refused(lib, library_copy):
    with write_lock(lib.location):
        with pytest.raises(IndexLocked, match="wait"):
            lib.index([library_copy])
    with write_lock(lib.location, lib.catalogue):
        with pytest.raises(IndexLocked, match="wait"):
            lib.remove([library_copy])


def test_one_run_at_a_time_over_every_folder_of_a_postgresql_catalogue(pg_url, tmp_path, library_copy):
    """Two index folders (two machines) on one catalogue: a run in one refuses a run in the other, naming who holds
    the catalogue; the lock goes with its holder's connection, even when the holder is killed."""
    import signal
    import subprocess
    import sys

    with Library.open(tmp_path / "a", encoder="tiny", db=pg_url) as a, \
            Library.open(tmp_path / "b", db=pg_url) as b:
        with write_lock(a.location, a.catalogue):
            with pytest.raises(IndexLocked, match=rf"catalogue .* is being written by sora-search pid {os.getpid()}"):
                b.index([library_copy])
        b.index([library_copy])  # released
        assert a.info().videos == 4  # ... and a sees what b committed
        code = ("import sys, time; from pathlib import Path; from sora_search.library import write_lock; "
                "from sora_search.store.catalogue import Catalogue\n"
                f"with write_lock(Path({str(tmp_path / 'c')!r}), Catalogue.of({pg_url!r})):\n"
                "    print('locked', flush=True); time.sleep(60)")
        (tmp_path / "c").mkdir()
        with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as holder:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            with pytest.raises(IndexLocked, match="catalogue"):
                b.remove([library_copy / "bars.mp4"])
            holder.send_signal(signal.SIGKILL)
            holder.wait(30)
        deadline = time.monotonic() + 10
        while True:  # the server notices the dead connection at once on a local socket
            try:
                assert b.remove([library_copy / "bars.mp4"]) == [str(library_copy / "bars.mp4")]
                break
            except IndexLocked:
                assert time.monotonic() < deadline
                time.sleep(0.2)


@on_both
def test_stale_faiss_file_is_rebuilt_from_the_store(lib, library_copy, monkeypatch):
    lib.index([library_copy])
    (lib.location / "vectors.faiss").write_bytes(b"corrupt")
    _forbid_decoding(monkeypatch)
    with Library.open(lib.location) as writer:
        writer.index([library_copy])  # nothing changed on disk: the FAISS file is rebuilt from stored vectors
    with Library.open(lib.location) as reader:
        index, projection = reader._keeper.searchable()
    assert index.ntotal == lib._store.vector_count()
    ids, raw = next(lib._store.iter_vectors())
    _, found = index.search(projection.apply(raw), 1)
    assert set(found.ravel().tolist()) <= set(ids.tolist())


def test_matches_behind_the_best_lose_part_of_their_gap(lib, library_copy, media_dir):
    lib.index([library_copy])
    probe = media_dir / "probe_a.mp4"
    raw = {m.path: m.score for m in lib.query(probe, params=QueryParams(runner_up_gap=0.0, min_score=-1,
                                                                      views="standard")).matches}
    adjusted = lib.query(probe, params=QueryParams(runner_up_gap=0.5, min_score=-1, views="standard")).matches
    top = max(raw.values())
    assert len(adjusted) >= 2 and adjusted[0].score == pytest.approx(top, abs=1e-4)
    for m in adjusted:
        assert m.score == pytest.approx(raw[m.path] - 0.5 * (top - raw[m.path]), abs=2e-4), m.path
        assert m.segments[0].score == pytest.approx(m.score, abs=1e-4)


def test_inset_alone_finds_the_inset_first_and_nothing_without_one(lib, library_copy, media_dir):
    lib.index([library_copy])
    with_inset = lib.query(media_dir / "probe_pip.mp4", views=["inset"], min_score=-1)
    assert with_inset.matches, "the inset of probe_pip.mp4 was not found or not searched"
    # Each match says where in the probe's frame it was found: the inset's rectangle (conftest: inset_box).
    x, y, w, h = inset_box(0.35, 0.8, 0.2)
    for m in with_inset.matches:
        assert m.view == "inset" and m.region == pytest.approx((x, y, w, h), abs=0.05)
    assert json.loads(json.dumps(with_inset.to_dict()))["matches"][0]["region"] == list(with_inset.matches[0].region)
    assert lib.query(media_dir / "probe_other.mp4", views=["inset"], min_score=-1).matches == ()


def test_a_probe_is_encoded_at_least_probe_batch_frames_a_pass_and_a_library_file_at_the_encoders(library_copy):
    from sora_search.embed import PROBE_BATCH, Embedder

    embedder = Embedder("tiny", device=None, fps=1.0, temporal_radius=0)
    encoder = embedder.encoder
    encoder.batch_size = 2
    passes: list[int | None] = []

    def counted(real):
        def call(frames, batch_size=None):
            passes.append(batch_size)
            return real(frames, batch_size)
        return call

    for name in ("embed", "embed_regions"):
        setattr(encoder, name, counted(getattr(encoder, name)))
    embedder.file(library_copy / "pan_a.mp4", timeout_s=60)
    assert passes and set(passes) == {None}  # the encoder's own batch
    passes.clear()
    embedder.probe(library_copy / "pan_a.mp4", [FULL, HFLIP], timeout_s=60, blank_std=QueryParams().blank_std)
    assert passes and set(passes) == {PROBE_BATCH}


def test_a_probe_seen_whole_is_decoded_as_the_library_was(lib, library_copy, monkeypatch):
    """Whole and mirrored views come from frames decoded at the encoder's side, so an indexed file queried as it is
    gives exactly its indexed vectors; a region pass decodes at twice the side."""
    from sora_search.decode import DecodeWorker
    from sora_search.embed import Embedder

    lib.index([library_copy])
    path = library_copy / "pan_a.mp4"
    embedder = Embedder("tiny", device=None, fps=1.0, temporal_radius=lib.params.temporal_radius)
    indexed = embedder.file(path, timeout_s=60)
    probe = embedder.probe(path, [FULL, HFLIP], timeout_s=60, blank_std=QueryParams().blank_std)
    np.testing.assert_array_equal(probe.timestamps_s, indexed.timestamps_s)
    np.testing.assert_array_equal(probe.vectors[FULL], indexed.vectors[FULL])
    assert not np.allclose(probe.vectors[HFLIP], indexed.vectors[FULL])
    _, _, stored = lib._store.vectors_of_video(lib._store.video_by_path(str(path)).id)
    np.testing.assert_allclose(stored, indexed.vectors[FULL], atol=1e-3)  # float16 in the store

    sides = []
    real_open = DecodeWorker.open

    def spy(self, p, **kw):
        sides.append(kw["size"])
        return real_open(self, p, **kw)

    monkeypatch.setattr(DecodeWorker, "open", spy)
    embedder.forget_probe()  # the probe above is kept: the next pass at S would not decode it again
    embedder.probe(path, [FULL, "left"], timeout_s=60, blank_std=5.0)
    embedder.probe(path, [HFLIP], timeout_s=60, blank_std=5.0)
    size = embedder.encoder.identity.input_size
    assert sides == [2 * size, size]
    embedder.close()


@pytest.mark.parametrize("params, expected", [
    (QueryParams(escalate_below=-1.0), [([FULL], 1)]),
    # Every view passes a gate of -1: each sample, then every second of all of them.
    (QueryParams(escalate_below=2.0, mirror_gate=-1.0, last_step_gate=-1.0),
     [([FULL], 1), ([HFLIP], 4), ([HFLIP], 1), ([*ROTATIONS, *HALVES], 4), ([*ROTATIONS, *HALVES], 1)]),
    # None passes a gate of 2: the mirror and the last step end with their samples (and the inset, if the finder saw
    # one).
    (QueryParams(escalate_below=2.0, mirror_gate=2.0, last_step_gate=2.0),
     [([FULL], 1), ([HFLIP], 4), ([*ROTATIONS, *HALVES], 4)]),
    (QueryParams(escalate_below=2.0, mirror_gate=None, last_step_gate=2.0),
     [([FULL], 1), ([HFLIP], 1), ([*ROTATIONS, *HALVES], 4)]),
    (QueryParams(escalate_below=2.0, last_step_sample=1), [([FULL], 1), ([HFLIP], 1), ([*ROTATIONS, *HALVES], 1)]),
])
def test_auto_views_escalate_one_step_at_a_time(lib, library_copy, media_dir, monkeypatch, params, expected):
    """Each step only while nothing scores ``escalate_below``; the mirror and the last step look at a sample of
    seconds first and then at every second of the views whose sample reached its gate (``mirror_gate``,
    ``last_step_gate``). The probe is decoded once, at S, for the first two steps (kept in memory between them); the
    last gets it at 2S from the pictures the decode worker held, without decoding it again (its sample gets only the
    sampled pictures)."""
    from sora_search.decode import DecodeWorker
    from sora_search.embed import Embedder

    lib.index([library_copy])
    seen, last_step, sides = [], [], []
    real, real_open = Embedder.probe, DecodeWorker.open

    def spy(self, path, views, **kw):
        seen.append(([v for v in views if v != "inset"], kw.get("every", 1)))  # the inset where the finder saw one
        last_step.extend([views] if not set(views) <= {FULL, HFLIP} else [])
        return real(self, path, views, **kw)

    def spy_open(self, p, **kw):
        video = real_open(self, p, **kw)
        sides.append((kw["size"], video.held))
        return video

    monkeypatch.setattr(Embedder, "probe", spy)
    monkeypatch.setattr(DecodeWorker, "open", spy_open)
    lib.query(media_dir / "probe_a.mp4", params=params)
    assert [call for call in seen if call[0]] == expected  # a call for the inset alone left out
    size = lib._embedder.encoder.identity.input_size
    # Each call of the last step (its sample, its full look, the inset's) gets the held pictures at 2S.
    assert sides == [(size, False)] + [(2 * size, True)] * len(last_step)
    assert lib._embedder._kept is None  # nothing kept once the query is answered, here or in the worker:
    with lib._embedder.worker(60).open(media_dir / "probe_a.mp4", size=size, hold_bytes=1 << 30) as again:
        assert not again.held


def _probe_calls(monkeypatch) -> list[tuple[tuple[str, ...], int]]:
    """Each ``Embedder.probe`` call from now on, as (views, every): the list fills as queries run."""
    from sora_search.embed import Embedder

    calls: list[tuple[tuple[str, ...], int]] = []
    real = Embedder.probe

    def spy(self, path, views, **kw):
        calls.append((tuple(views), kw.get("every", 1)))
        return real(self, path, views, **kw)

    monkeypatch.setattr(Embedder, "probe", spy)
    return calls


def test_a_mirrored_copy_passes_the_mirror_gate_and_is_found_through_the_whole_mirror(lib, library_copy, tmp_path,
                                                                                      monkeypatch):
    """``mirror_gate`` at its default: a mirrored copy's sampled mirror seconds find its source, so the mirror is then
    encoded at every second and the match is found through it (gates that no sample or every sample passes:
    ``test_auto_views_escalate_one_step_at_a_time``)."""
    lib.index([library_copy])
    mirrored = cut(library_copy / "pan_a.mp4", tmp_path / "mirrored.mp4", 2, 10, scale=0.5, extra_vf="hflip")
    seen = _probe_calls(monkeypatch)
    match = lib.query(mirrored, params=QueryParams(escalate_below=2.0)).matches[0]  # every step, whatever it finds
    assert (Path(match.path).name, match.view) == ("pan_a.mp4", HFLIP)
    assert seen[1:3] == [((HFLIP,), 4), ((HFLIP,), 1)]


def test_a_probe_too_long_to_keep_gets_its_whole_mirror_without_a_sample(lib, library_copy, media_dir, monkeypatch):
    """The mirror's sample reuses the frames the first step kept; a probe too long to keep would be decoded once more
    for it, so its mirror is looked at whole, as with ``mirror_gate=None``."""
    lib.index([library_copy])
    seen = _probe_calls(monkeypatch)
    params = QueryParams(escalate_below=2.0, mirror_gate=2.0)  # every step; no sample passes the gate
    lib.query(media_dir / "probe_a.mp4", params=params)
    assert seen[:2] == [((FULL,), 1), ((HFLIP,), 4)]
    seen.clear()
    monkeypatch.setattr("sora_search.embed.PROBE_KEEP_BYTES", 1000)
    lib.query(media_dir / "probe_a.mp4", params=params)
    assert seen[:2] == [((FULL,), 1), ((HFLIP,), 1)]


@pytest.mark.parametrize("inset_gate, looked_at_in_full", [(-1.0, True), (2.0, False)])
def test_a_found_inset_is_looked_at_in_full_only_past_its_gate(lib, library_copy, media_dir, monkeypatch, inset_gate,
                                                                looked_at_in_full):
    """The inset goes through the last step's sample with the turns and halves, and is encoded at every second only
    when its best sampled second reaches ``inset_gate``: a spurious inset in footage that matches nothing costs a
    sample, not a full look."""
    from sora_search.embed import Embedder

    lib.index([library_copy])
    seen = []
    real = Embedder.probe

    def spy(self, path, views, **kw):
        seen.append((tuple(views), kw.get("every", 1), kw.get("box") is not None))
        return real(self, path, views, **kw)

    monkeypatch.setattr(Embedder, "probe", spy)
    params = QueryParams(escalate_below=2.0, mirror_gate=2.0, last_step_gate=2.0, inset_gate=inset_gate)
    lib.query(media_dir / "probe_pip.mp4", params=params)
    sample = (*ROTATIONS, *HALVES, "inset")
    assert seen[1] == (("hflip",), 4, False)
    assert seen[2] == (sample, 4, True)  # the finder saw the inset during the mirror's sample
    assert seen[3:] == ([(("inset",), 1, True)] if looked_at_in_full else [])


def test_a_sample_encodes_every_nth_frame_alone(media_dir, monkeypatch):
    """``every``: the first frame and each N-th after it, across batches, each encoded on its own (not pooled with
    its neighbours); the inset finder still sees every frame."""
    from sora_search.decode import DecodeWorker
    from sora_search.embed import Embedder
    from sora_search.embed.inset import InsetFinder

    real_open = DecodeWorker.open
    monkeypatch.setattr(DecodeWorker, "open", lambda self, p, **kw: real_open(self, p, **{**kw, "chunk_size": 4}))
    path = media_dir / "probe_a.mp4"
    alone = Embedder("tiny", device=None, fps=1.0, temporal_radius=0)
    pooled = Embedder("tiny", device=None, fps=1.0, temporal_radius=1)
    every = alone.probe(path, [FULL, "left"], timeout_s=60, blank_std=5.0)
    all_seen, sample_seen = InsetFinder(), InsetFinder()
    pooled.probe(path, [FULL, "left"], timeout_s=60, blank_std=5.0, finder=all_seen)
    pooled.forget_probe()
    sample = pooled.probe(path, [FULL, "left"], timeout_s=60, blank_std=5.0, every=4, finder=sample_seen)
    assert len(every.timestamps_s) == 6  # in batches of 4 and 2: the sample is frames 0 and 4
    np.testing.assert_array_equal(sample.timestamps_s, every.timestamps_s[::4])
    for view in (FULL, "left"):
        np.testing.assert_allclose(sample.vectors[view], every.vectors[view][::4], atol=1e-6)
        np.testing.assert_array_equal(sample.blank[view], every.blank[view][::4])
    assert not np.allclose(pooled.probe(path, [FULL], timeout_s=60, blank_std=5.0).vectors[FULL][4],
                           every.vectors[FULL][4], atol=1e-4)  # the same frame pooled with its neighbours differs
    assert sample_seen.__dict__.keys() == all_seen.__dict__.keys()
    for name, value in all_seen.__dict__.items():
        np.testing.assert_array_equal(getattr(sample_seen, name), value)  # the same frames went by
    with pytest.raises(ValueError, match="every"):
        pooled.probe(path, [FULL], timeout_s=60, blank_std=5.0, every=0)
    alone.close()
    pooled.close()


def test_a_kept_probe_is_decoded_again_once_its_file_changes(lib, library_copy, media_dir, tmp_path, monkeypatch):
    from sora_search.decode import DecodeWorker
    from sora_search.embed import Embedder

    clip = tmp_path / "clip.mp4"
    shutil.copy(media_dir / "probe_a.mp4", clip)
    embedder = Embedder("tiny", device=None, fps=1.0, temporal_radius=1)
    opened = []
    real_open = DecodeWorker.open
    monkeypatch.setattr(DecodeWorker, "open", lambda self, p, **kw: opened.append(p) or real_open(self, p, **kw))
    first = embedder.probe(clip, [FULL], timeout_s=60, blank_std=5.0)
    again = embedder.probe(clip, [FULL, HFLIP], timeout_s=60, blank_std=5.0)
    assert len(opened) == 1
    np.testing.assert_array_equal(first.vectors[FULL], again.vectors[FULL])
    shutil.copy(media_dir / "probe_other.mp4", clip)
    other = embedder.probe(clip, [FULL], timeout_s=60, blank_std=5.0)
    assert len(opened) == 2 and len(other.timestamps_s) and not np.array_equal(other.vectors[FULL][:1],
                                                                               first.vectors[FULL][:1])
    embedder.forget_probe()
    embedder.probe(clip, [FULL], timeout_s=60, blank_std=5.0)
    assert len(opened) == 3
    monkeypatch.setattr("sora_search.embed.PROBE_KEEP_BYTES", 1000)  # a probe too long to keep is decoded each time
    embedder.forget_probe()
    embedder.probe(clip, [FULL], timeout_s=60, blank_std=5.0)
    embedder.probe(clip, [FULL], timeout_s=60, blank_std=5.0)
    assert len(opened) == 5 and embedder._kept is None
    embedder.close()


def test_a_copy_turned_a_quarter_is_found_turned_back(lib, library_copy, media_dir, tmp_path):
    lib.index([library_copy])
    probe = cut(library_copy / "pan_a.mp4", tmp_path / "turned.mp4", 5, 6, scale=0.5, extra_vf="transpose=clock")
    whole = {Path(m.path).name: m.score for m in lib.query(probe, views=[FULL], min_score=-1).matches}
    turned = lib.query(probe, views=["rot90"], min_score=-1).matches
    assert Path(turned[0].path).name == "pan_a.mp4"
    assert turned[0].score > whole.get("pan_a.mp4", -1.0) + 0.2, (turned[0].score, whole)
    seg = turned[0].segments[0]
    assert abs(seg.ref_start_s - 5) <= 1 and abs(seg.ref_end_s - 11) <= 1


def _black_then(pattern: str, dst: Path, black_s: int, pattern_s: int, *, black_first: bool = True) -> Path:
    """``black_s`` seconds of black and ``pattern_s`` seconds of a lavfi pattern, in one 320x240 clip."""
    from tests.media import ffmpeg, lavfi_source

    parts = ["color=c=black:size=320x240:rate=25", lavfi_source(pattern, (320, 240), 25)]
    durations = [black_s, pattern_s]
    if not black_first:
        parts, durations = parts[::-1], durations[::-1]
    ffmpeg("-f", "lavfi", "-t", str(durations[0]), "-i", parts[0], "-f", "lavfi", "-t", str(durations[1]),
           "-i", parts[1], "-filter_complex", "[0][1]concat=n=2:v=1[v]", "-map", "[v]", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", str(dst))
    return dst


@pytest.mark.parametrize("blank_std, matched", [(None, False), (-1.0, True)])
def test_black_seconds_of_a_probe_match_nothing(lib, library_copy, tmp_path, blank_std, matched):
    """A probe's black stretch would match any black stretch of the library (a fade, an intro); blank seconds are
    not searched. With blank detection off (``blank_std`` -1) the same probe matches the faded video on black alone,
    so the test can fail."""
    _black_then("mandelbrot", library_copy / "fades.mp4", 5, 5, black_first=False)
    lib.index([library_copy])
    probe = _black_then("life", tmp_path / "black_then_life.mp4", 6, 4)
    params = QueryParams(views=(FULL,), min_score=-1) if blank_std is None else \
        QueryParams(views=(FULL,), min_score=-1, blank_std=blank_std)
    found = {Path(m.path).name: m for m in lib.query(probe, params=params).matches}
    on_black = [seg for m in found.values() for seg in m.segments if seg.query_start_s < 5]
    if matched:
        assert "fades.mp4" in found and found["fades.mp4"].score > 0.2, found
    else:
        assert on_black == [], on_black


def test_blank_view_frames_are_not_encoded(tmp_path, monkeypatch):
    """A probe's blank frames (here 4 s of black, in the whole frame and its mirror) never reach the encoder; the
    seconds that are not blank get the vectors they get when every frame is encoded (blank detection off, and no
    frame taken for a repeat of the one before)."""
    import sora_search.embed as embed
    from sora_search.embed import Embedder

    monkeypatch.setattr(embed, "REPEAT_TOLERANCE", -1.0)

    probe = _black_then("life", tmp_path / "black_then_life.mp4", 4, 4)
    embedder = Embedder("tiny", device=None, fps=1.0, temporal_radius=0)
    encoded = []
    real_embed = embedder.encoder.embed
    embedder.encoder.embed = (  # type: ignore[method-assign]
        lambda frames, *batch: encoded.append(len(frames)) or real_embed(frames, *batch))
    skipping = embedder.probe(probe, [FULL, HFLIP], timeout_s=60, blank_std=5.0)
    embedder.forget_probe()
    n_blank = int(skipping.blank[FULL].sum())
    assert n_blank >= 3 and np.array_equal(skipping.blank[HFLIP], skipping.blank[FULL])
    assert sum(encoded) == 2 * (len(skipping.timestamps_s) - n_blank)
    encoded.clear()
    every = embedder.probe(probe, [FULL, HFLIP], timeout_s=60, blank_std=-1.0)
    assert sum(encoded) == 2 * len(every.timestamps_s) and not every.blank[FULL].any()
    for view in (FULL, HFLIP):
        live = ~skipping.blank[view]
        np.testing.assert_allclose(skipping.vectors[view][live], every.vectors[view][live], atol=1e-5)
        assert not skipping.vectors[view][~live].any()
    embedder.close()


def test_a_two_colour_pattern_of_equal_brightness_is_searched_not_blank(lib, library_copy, tmp_path):
    """Green cells on blue of nearly the same luma (as some of ffmpeg's colourised cellular automata are): a luma-only
    blank test called every second of its copy blank and answered "no match"; per colour channel it is found."""
    from tests.media import cut, ffmpeg

    colours = "lutrgb=r='if(gt(val,128),140,120)':g='if(gt(val,128),220,190)':b='if(gt(val,128),60,240)'"
    pattern = library_copy / "cells.mp4"
    ffmpeg("-f", "lavfi", "-i", f"cellauto=s=160x120:r=25:rule=18:seed=3:scroll=1,format=rgb24,{colours},"
           "scale=320:240:flags=neighbor", "-t", "8", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(pattern))
    lib.index([library_copy])
    result = lib.query(cut(pattern, tmp_path / "cells_copy.mp4", 2, 5), min_score=-1)
    assert not result.blank
    assert result.matches and Path(result.matches[0].path).name == "cells.mp4", result.matches


def test_faiss_follows_the_device_setting_onto_a_gpu(tmp_path, library_copy, media_dir, fake_gpu_faiss,
                                                     monkeypatch):
    monkeypatch.delenv("SORA_SEARCH_DEVICE", raising=False)
    with Library.open(tmp_path / "gpu", encoder="tiny") as library:  # auto: the GPU faiss sees
        library.index([library_copy])
        on_gpu = library.query(media_dir / "probe_a.mp4", min_score=-1)
        index, _ = library._keeper.searchable()
        assert index.search_device == "cuda:0"
    assert fake_gpu_faiss.searches > 0 and len(fake_gpu_faiss.copies) >= 2  # k-means, then a search copy
    searches = fake_gpu_faiss.searches
    monkeypatch.setenv("SORA_SEARCH_DEVICE", "cpu")
    with Library.open(tmp_path / "gpu", create=False) as library:
        on_cpu = library.query(media_dir / "probe_a.mp4", min_score=-1)
        assert library._keeper.searchable()[0].search_device == "cpu"
    assert fake_gpu_faiss.searches == searches
    assert [(m.path, m.score) for m in on_gpu.matches] == [(m.path, m.score) for m in on_cpu.matches]
    assert os.path.basename(on_gpu.matches[0].path) == "pan_a.mp4"
    monkeypatch.setenv("SORA_SEARCH_DEVICE", "tpu")
    with Library.open(tmp_path / "gpu", create=False) as library:
        with pytest.raises(EncoderError, match="unknown device 'tpu'"):
            library.query(media_dir / "probe_a.mp4")


def test_info_says_where_faiss_searches(lib, library_copy, fake_gpu_faiss, monkeypatch):
    monkeypatch.delenv("SORA_SEARCH_DEVICE", raising=False)
    lib.index([library_copy])
    assert lib.info().index_device == "cuda:0"
    monkeypatch.setenv("SORA_SEARCH_DEVICE", "cpu")
    with Library.open(lib.location, create=False) as again:
        assert again.info().index_device == "cpu"


def test_background_is_looked_for_past_a_video_that_fills_every_neighbour(lib, library_copy, media_dir):
    """A fixed camera's video fills all 64 neighbours of a probe second with its own seconds; 4 neighbours do the same
    here. The other videos' similarity is then looked for among more neighbours, so the score is the one plenty of
    neighbours give. With that search off (``background_max_k`` 4) the background is the row's smallest similarity, a
    loose upper bound, and the copy scores lower."""
    lib.index([library_copy])

    def top_score(**knobs: int) -> float:
        params = QueryParams(views=(FULL,), min_score=-1.0, **knobs)
        top = lib.query(media_dir / "probe_a.mp4", params=params).matches[0]
        assert top.path.endswith("pan_a.mp4"), top
        return top.score

    plenty = top_score()
    few = top_score(neighbours=4)
    bounded = top_score(neighbours=4, background_max_k=4)
    assert few == pytest.approx(plenty, abs=0.01) and bounded < plenty - 0.3, (plenty, few, bounded)


def test_copies_of_a_video_in_the_library_do_not_hide_one_another(lib, library_copy, media_dir):
    """pan_a stored six times (re-encoded): each copy would be the others' background and lower their scores, here to
    nothing at all. Counted as one video of the background, the copies score what one alone would (the last of six
    a little less: the copies' tied seconds fill the probe seconds' 64 neighbours)."""
    lib.index([library_copy])
    probe = media_dir / "probe_a.mp4"
    params = QueryParams(views=(FULL,), min_score=-1.0)
    single = lib.query(probe, params=params).matches[0]
    assert single.path.endswith("pan_a.mp4")
    for crf in (18, 20, 22, 24, 26):
        cut(library_copy / "pan_a.mp4", library_copy / f"pan_a_crf{crf}.mp4", 0, 16, crf=crf)
    lib.index([library_copy])

    def copies(**knobs: int) -> dict[str, float]:
        found = lib.query(probe, params=replace(params, **knobs)).matches
        return {Path(m.path).name: m.score for m in found if Path(m.path).name.startswith("pan_a")}

    merged, apart = copies(), copies(copies_merged=0)
    assert len(merged) == 6 and min(merged.values()) > 0.25, merged
    assert max(merged.values()) == pytest.approx(single.score, abs=0.02), (single.score, merged)
    assert max(apart.values(), default=-1.0) < single.score - 0.2, (single.score, apart)

    # Asked about one of them (an indexed video, answered from its stored vectors), the other five come back as an
    # identical copy scores, where without the merge only the copies the pair rule of `dupes` sets apart help.
    def stored(**knobs: int) -> dict[str, float]:
        found = lib.query(library_copy / "pan_a_crf18.mp4", params=replace(params, **knobs)).matches
        return {Path(m.path).name: m.score for m in found if Path(m.path).name.startswith("pan_a")}

    merged, apart = stored(), stored(copies_merged=0)
    assert set(merged) == {"pan_a.mp4", "pan_a_crf20.mp4", "pan_a_crf22.mp4", "pan_a_crf24.mp4", "pan_a_crf26.mp4"}
    assert min(merged.values()) > max(apart.values(), default=-1.0) + 0.3, (merged, apart)


def test_edited_copies_of_a_video_in_the_library_do_not_hide_one_another(lib, library_copy, media_dir):
    """pan_a stored with five edited copies (a box over it, a crop, a colour shift, a blur, a border): near-identical
    copies only count once, so each edited one was background to the others; their changes agree, so now they do too."""
    edits = {"box": "drawbox=x=iw*0.1:y=ih*0.7:w=iw*0.6:h=ih*0.18:color=0xF0C020:t=fill",
             "crop": "crop=trunc(iw*0.8/2)*2:trunc(ih*0.8/2)*2", "colour": "eq=contrast=1.2:saturation=1.4,hue=h=25",
             "blur": "boxblur=2:1",
             "border": "scale=trunc(iw*0.4)*2:trunc(ih*0.4)*2,pad=iw*1.25:ih*1.25:(ow-iw)/2:(oh-ih)/2"}
    for name, vf in edits.items():
        cut(library_copy / "pan_a.mp4", library_copy / f"pan_a_{name}.mp4", 0, 16, crf=20, extra_vf=vf)
    lib.index([library_copy])
    params = QueryParams(views=(FULL,), min_score=-1.0)

    def copies(**knobs: object) -> dict[str, float]:
        found = lib.query(media_dir / "probe_a.mp4", params=replace(params, **knobs)).matches
        return {Path(m.path).name: m.score for m in found if Path(m.path).name.startswith("pan_a")}

    merged, near_identical = copies(), copies(copy_agreement=None)
    assert max(merged, key=merged.get) == "pan_a.mp4" and len(near_identical) >= 4, (merged, near_identical)
    assert all(merged[name] > score + 0.05 for name, score in near_identical.items()), (merged, near_identical)


def test_what_an_index_is_fitted_on_does_not_depend_on_how_fast_it_was_built(library_copy, tmp_path):
    """Periodic saves come on a clock; if they retrained, a slower machine would fit the projection on another
    subset of the library and answer differently (a source of run-to-run differences on the accuracy benchmark)."""
    from sora_search.params import IndexParams

    fitted = []
    for save_every_s in (1e-6, 3600.0):  # a save after every file, or none before the end
        with Library.open(tmp_path / f"idx{save_every_s}", encoder="tiny",
                          params=IndexParams(save_every_s=save_every_s)) as lib:
            lib.index([library_copy])
            meta = lib._store.meta()
            fitted.append((meta.index_trained_n, meta.projection))
    assert fitted[0] == fitted[1] and fitted[0][0] == 48


def test_a_probe_frame_that_repeats_the_last_one_encoded_takes_its_vectors(tmp_path, monkeypatch):
    """A still stretch of a probe (a held slide, a cover image) is encoded once: each frame that repeats the last one
    encoded takes its vectors, blank flags and regions, across batches and in a sample; a frame that changes is
    encoded. Every frame encoded instead gives the same vectors to within the repeat tolerance."""
    import sora_search.embed as embed
    from sora_search.decode import DecodeWorker
    from sora_search.embed import Embedder
    from tests.media import concat, make_testsrc

    clip = concat([make_testsrc(tmp_path / "still.mp4", 9, pattern="smptebars"),
                   make_testsrc(tmp_path / "moving.mp4", 3, pattern="mandelbrot")], tmp_path / "clip.mp4")
    real_open = DecodeWorker.open
    monkeypatch.setattr(DecodeWorker, "open", lambda self, p, **kw: real_open(self, p, **{**kw, "chunk_size": 4}))
    encoded: list[int] = []
    real_encode = embed.encode
    monkeypatch.setattr(embed, "encode", lambda enc, frames, *batch: encoded.append(len(frames))
                        or real_encode(enc, frames, *batch))

    def embedded(tolerance: float, every: int = 1) -> tuple[embed.Embedded, int]:
        monkeypatch.setattr(embed, "REPEAT_TOLERANCE", tolerance)
        embedder = Embedder("tiny", device=None, fps=1.0, temporal_radius=0)
        encoded.clear()
        out = embedder.probe(clip, [FULL, "left"], timeout_s=60, blank_std=5.0, every=every)
        embedder.close()
        return out, sum(encoded)

    tolerance = embed.REPEAT_TOLERANCE
    (each, n_each), (once, n_once) = embedded(-1.0), embedded(tolerance)
    assert len(each.timestamps_s) == 12 and n_each == 2 * 12  # in batches of 4: the second is all repeats
    assert n_once == 2 * (1 + 3)  # the still's first second, then every second of the zoom
    for view in (FULL, "left"):
        np.testing.assert_array_equal(once.vectors[view][:9], np.repeat(once.vectors[view][:1], 9, axis=0))
        np.testing.assert_allclose(once.vectors[view], each.vectors[view], atol=0.02)
        np.testing.assert_array_equal(once.blank[view], each.blank[view])
    (sample, n_sample), (sample_each, _) = embedded(tolerance, every=2), embedded(-1.0, every=2)
    assert n_sample == 2 * 2  # seconds 0, 2, 4, 6 and 8 of the still are encoded once; 10 is the zoom
    np.testing.assert_array_equal(sample.timestamps_s, each.timestamps_s[::2])
    np.testing.assert_allclose(sample.vectors[FULL], sample_each.vectors[FULL], atol=0.02)
