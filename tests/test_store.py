"""The store: videos, vectors, generation, lookups; the engine codes against exactly this. The tests that take the
``store`` fixture run on SQLite and on PostgreSQL (a throwaway server, tests/pg.py)."""

from __future__ import annotations

import os

import dataclasses
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sora_search.errors import IndexNotFound, StoreError
from sora_search.store import IndexMeta, Store, head_revision

RAW_DIM = 8


def _meta(**kw: object) -> IndexMeta:
    base = dict(
        encoder_name="demo",
        encoder_version="1",
        raw_dim=RAW_DIM,
        input_size=224,
        sampling_fps=1.0,
        projection=None,
        projection_name="identity",
        dim=RAW_DIM,
    )
    base.update(kw)
    return IndexMeta(**base)  # type: ignore[arg-type]


def _vecs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, RAW_DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return np.arange(n, dtype=np.float64) + 0.5, v


def _add(store: Store, path: str, n: int, seed: int = 0, fingerprint: str = "fp") -> tuple[int, np.ndarray, np.ndarray]:
    ts, v = _vecs(n, seed)
    return store.add_video(
        path=path, size=100 + n, mtime=1000.0 + seed, fingerprint=fingerprint, duration_s=float(n),
        fps=25.0, width=64, height=48, timestamps_s=ts, vectors=v,
    )


@pytest.fixture
def store(tmp_path: Path, backend: str | None) -> Iterator[Store]:
    s = Store.open(backend or tmp_path / "index" / "index.db")
    s.set_meta(_meta())
    yield s
    s.close()


def test_open_creates_and_reopens(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with pytest.raises(IndexNotFound):
        Store.open(db, create=False)
    assert not db.exists()
    with Store.open(db) as s:
        assert s.db_path == db
        assert s.meta() is None
        assert s.revision() == head_revision()
        assert s.vector_count() == 0
    with Store.open(db, create=False) as s:
        assert s.revision() == head_revision()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_closed_store_raises(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "a.db")
    s.close()
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.meta()


def test_not_a_database(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is a text file, not sqlite" * 10)
    with pytest.raises(StoreError, match="not a SQLite database"):
        Store.open(junk)
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE notes (x TEXT)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="not a sora-search index"):
        Store.open(other)
    with pytest.raises(StoreError):
        Store.open(tmp_path)


def test_meta_round_trip_and_generation_never_decreases(store: Store) -> None:
    m = store.meta()
    assert len(m.index_uid) == 32  # given by the store on the first write
    assert m == dataclasses.replace(_meta(), index_uid=m.index_uid)
    fitted = dataclasses.replace(m, projection=b"\x00\x01blob", projection_name="pca-whiten-4", dim=4, index_trained_n=5)
    store.set_meta(fitted)
    assert store.meta() == fitted
    _add(store, "/v/a.mp4", 3)
    g = store.meta().generation
    assert g == 1
    store.set_meta(fitted)  # stale generation 0 passed back
    assert store.meta().generation == g
    store.set_meta(dataclasses.replace(fitted, generation=g + 5))
    assert store.meta().generation == g + 5
    with pytest.raises(ValueError, match="raw_dim"):
        store.set_meta(dataclasses.replace(fitted, raw_dim=RAW_DIM + 1))
    with pytest.raises(ValueError):
        _meta(raw_dim=0)


def test_add_video_requires_meta(tmp_path: Path) -> None:
    with Store.open(tmp_path / "a.db") as s:
        with pytest.raises(StoreError, match="set_meta"):
            _add(s, "/v/a.mp4", 2)


def test_add_and_read_back(store: Store) -> None:
    ts, v = _vecs(5, 1)
    vid, ids, removed = _add(store, "/v/a.mp4", 5, seed=1)
    assert ids.dtype == np.int64 and list(ids) == [1, 2, 3, 4, 5]
    assert removed.dtype == np.int64 and removed.size == 0
    rec = store.video_by_path("/v/a.mp4")
    assert rec is not None and rec.id == vid and rec.status == "indexed" and rec.n_vectors == 5
    assert (rec.size, rec.mtime, rec.fps, rec.width, rec.height) == (105, 1001.0, 25.0, 64, 48)
    got_ids, got_ts, got_v = store.vectors_of_video(vid)
    np.testing.assert_array_equal(got_ids, ids)
    np.testing.assert_array_equal(got_ts, ts)
    assert got_v.dtype == np.float32 and got_v.shape == (5, RAW_DIM)
    np.testing.assert_allclose(got_v, v, atol=1e-3)  # float16 storage
    assert store.vector_count() == 5
    assert store.meta().generation == 1
    assert store.video_by_path("/v/nope.mp4") is None


def test_vectors_near_reads_the_stored_seconds_nearest_each_time(store: Store) -> None:
    ts, v = _vecs(6, 2)  # seconds 0.5 .. 5.5
    vid, _, _ = _add(store, "/v/near.mp4", 6, seed=2)
    _add(store, "/v/other.mp4", 4, seed=3)
    at, got = store.vectors_near(vid, np.array([5.9, 0.0, 2.4, 2.6, 100.0]))
    np.testing.assert_array_equal(at, [5.5, 0.5, 2.5, 2.5, 5.5])
    np.testing.assert_allclose(got, v[[5, 0, 2, 2, 5]], atol=1e-3)
    at, got = store.vectors_near(vid + 99, np.array([1.0]))
    assert at.shape == (0,) and got.shape[0] == 0
    # A second removed between the two reads (a query during an index run) comes back as nan, not as another's.
    real = store.vectors_by_id
    store.vectors_by_id = lambda ids: real(np.asarray(ids)[np.asarray(ids) != np.asarray(ids).max()])
    at, got = store.vectors_near(vid, np.array([0.0, 5.9]))
    assert at[0] == 0.5 and np.isnan(at[1]) and not got[1].any()


def test_vectors_near_reads_only_around_the_times_and_answers_as_the_whole_list_would(store: Store) -> None:
    """A long video's seconds are read only near the times asked (windows, joined where close); a time with no stored
    second that near (a gap, past the end) falls back to the whole list. The answer is the nearest stored second
    either way, the earlier of two as near."""
    from sora_search.store import vectors as reads

    stamps = np.r_[np.arange(0.0, 400.0), np.arange(700.0, 1000.0)]  # a 300 s gap with nothing stored
    v = np.random.default_rng(5).standard_normal((len(stamps), RAW_DIM)).astype(np.float32)
    vid, _, _ = store.add_video(path="/v/long.mp4", size=1, mtime=1.0, fingerprint="long", duration_s=1000.0,
                                fps=25.0, width=64, height=48, timestamps_s=stamps, vectors=v)
    seen: list[object] = []
    real = store._seconds
    store._seconds = lambda video_id, ranges: (seen.append(ranges), real(video_id, ranges))[1]  # type: ignore
    for times, whole in ((np.array([3.5, 3.2, 150.0, 151.0, 399.9, 750.5]), False),  # a tie at 3.5 and 750.5
                         (np.array([10.0, 550.0]), True), (np.array([550.0 + 1e-9, 1200.0]), True)):
        seen.clear()
        at, got = store.vectors_near(vid, times)
        want = np.array([np.flatnonzero(np.abs(stamps - t) == np.abs(stamps - t).min())[0] for t in times])
        np.testing.assert_array_equal(at, stamps[want])
        np.testing.assert_allclose(got, v[want], atol=1e-2)
        assert seen[0] is not None and (seen[-1] is None) == whole and len(seen) == 1 + whole
    assert np.allclose(reads._merged_windows(np.array([3.5, 3.2, 150.0, 151.0]), 2.0), [(1.2, 5.5), (148.0, 153.0)])
    assert reads._merged_windows(np.array([3.5, 40.0]), 2.0) == [(1.5, 42.0)]  # under NEAR_MERGE_S apart: one read


def test_region_vectors_are_stored_at_8_bits_and_read_back_by_time(store: Store) -> None:
    ts, v = _vecs(4, 2)
    regions = np.random.default_rng(3).standard_normal((4, 3, RAW_DIM)).astype(np.float32)
    regions[2, 1] = 0.0  # an all-zero region (a blank quadrant) must come back zero, not NaN
    vid, _, _ = store.add_video(path="/v/r.mp4", size=1, mtime=1.0, fingerprint="r", duration_s=4.0, fps=25.0,
                                width=64, height=48, timestamps_s=ts, vectors=v, regions=regions)
    _add(store, "/v/plain.mp4", 3, seed=4)  # stored without regions
    got_s, got = store.regions_between(vid, 1.0, 3.0)
    np.testing.assert_array_equal(got_s, [1.5, 2.5])
    scale = np.abs(regions[1:3]).max(axis=2, keepdims=True) / 127
    assert got.dtype == np.float32 and np.all(np.abs(got - regions[1:3]) <= scale / 2 + 1e-6)
    assert not got[1, 1].any()
    plain = store.video_by_path("/v/plain.mp4").id
    assert store.regions_between(plain, 0, 10)[1].shape == (0, 0, RAW_DIM)
    np.testing.assert_allclose(store.mean_regions(100), store.regions_between(vid, 0, 10)[1].mean(axis=0), atol=1e-6)
    assert store.mean_regions(2).shape == (3, RAW_DIM)  # a sample of the seconds that have regions
    with pytest.raises(ValueError, match="regions must be"):
        store.add_video(path="/v/bad.mp4", size=1, mtime=1.0, fingerprint="b", duration_s=4.0, fps=25.0, width=64,
                        height=48, timestamps_s=ts, vectors=v, regions=regions[:, :, :4])
    assert store.video_by_path("/v/bad.mp4") is None


def test_reindex_replaces_vectors_and_ids_are_never_reused(store: Store) -> None:
    vid, first, _ = _add(store, "/v/a.mp4", 4)
    store.record_failure(path="/v/a.mp4", size=1, mtime=2.0, fingerprint="fp2", error="boom")
    vid2, second, removed = _add(store, "/v/a.mp4", 3, seed=2)
    assert vid2 == vid
    assert removed.size == 0  # the failure already dropped them
    assert second.min() > first.max()
    vid3, third, removed = _add(store, "/v/a.mp4", 2, seed=3)
    np.testing.assert_array_equal(removed, second)
    assert third.min() > second.max()
    assert store.vector_count() == 2
    rec = store.video_by_path("/v/a.mp4")
    assert rec.status == "indexed" and rec.error is None and rec.n_vectors == 2
    _, v = _vecs(2, 3)
    with pytest.raises(ValueError, match="raw_dim"):
        store.add_video(path="/v/b.mp4", size=1, mtime=1, fingerprint="x", duration_s=1, fps=1, width=1, height=1,
                        timestamps_s=np.zeros(2), vectors=np.zeros((2, RAW_DIM + 1), np.float32))
    with pytest.raises(ValueError):
        store.add_video(path="/v/b.mp4", size=1, mtime=1, fingerprint="x", duration_s=1, fps=1, width=1, height=1,
                        timestamps_s=np.zeros(3), vectors=v)
    assert store.video_by_path("/v/b.mp4") is None


def test_record_failure(store: Store) -> None:
    assert store.record_failure(path="/v/bad.mp4", size=9, mtime=3.0, fingerprint="f", error="no frames").size == 0
    assert store.meta().generation == 0
    rec = store.video_by_path("/v/bad.mp4")
    assert rec.status == "failed" and rec.error == "no frames" and rec.n_vectors == 0
    _, ids, _ = _add(store, "/v/ok.mp4", 3)
    g = store.meta().generation
    dropped = store.record_failure(path="/v/ok.mp4", size=9, mtime=4.0, fingerprint="f2", error="decode")
    np.testing.assert_array_equal(dropped, ids)
    assert store.meta().generation == g + 1
    assert store.vector_count() == 0
    assert [r.path for r in store.videos(status="failed")] == ["/v/bad.mp4", "/v/ok.mp4"]
    assert store.videos(status="indexed") == []
    with pytest.raises(ValueError):
        store.videos(status="weird")


def test_videos_under_a_folder_is_an_exact_directory_prefix(store: Store) -> None:
    from sora_search.scan import under_roots

    for p in ["/a/b/x.mp4", "/a/b/c/y.mp4", "/a/bc/z.mp4", "/A/b/w.mp4", "/a/b%/q.mp4", "/a/b_/r.mp4", "/a/x.mp4"]:
        _add(store, p, 1)

    def under(root: str) -> list[str]:
        return [r.path for r in under_roots(store.videos(), [root])]

    assert under("/a/b") == ["/a/b/x.mp4", "/a/b/c/y.mp4"]
    assert under("/a/b/") == ["/a/b/x.mp4", "/a/b/c/y.mp4"]
    assert under("/a/b%") == ["/a/b%/q.mp4"]
    assert under("/a/b_") == ["/a/b_/r.mp4"]
    assert len(under("/a")) == 6
    assert len(store.videos()) == 7


def test_a_path_that_is_not_utf8_is_stored_losslessly(store: Store) -> None:
    odd = os.fsdecode(b"/v/caf\xe9-latin1.mp4")  # a Latin-1 name: not valid UTF-8, so it carries a surrogate escape
    _add(store, odd, 2)
    _add(store, "/v/plain.mp4", 1)
    assert store.video_by_path(odd).path == odd
    assert os.fsencode(store.video_by_path(odd).path) == b"/v/caf\xe9-latin1.mp4"
    assert {v.path for v in store.videos()} == {odd, "/v/plain.mp4"}
    assert store.video_paths([store.video_by_path(odd).id]) == {store.video_by_path(odd).id: odd}


def test_fingerprint_move_touch(store: Store) -> None:
    vid, ids, _ = _add(store, "/v/a.mp4", 2, fingerprint="same")
    vid2, _, _ = _add(store, "/v/copy.mp4", 2, fingerprint="same")
    assert [r.id for r in store.videos_by_fingerprint("same")] == [vid, vid2]
    assert store.videos_by_fingerprint("other") == []
    g = store.meta().generation
    store.move_video(vid, "/w/renamed.mp4", 77.0)
    rec = store.video_by_path("/w/renamed.mp4")
    assert rec.id == vid and rec.mtime == 77.0 and store.video_by_path("/v/a.mp4") is None
    np.testing.assert_array_equal(store.vectors_of_video(vid)[0], ids)
    with pytest.raises(StoreError, match="another video"):
        store.move_video(vid, "/v/copy.mp4", 1.0)
    store.touch_video(vid, mtime=88.0, size=12345)
    rec = store.video(vid)
    assert (rec.mtime, rec.size, rec.path) == (88.0, 12345, "/w/renamed.mp4")
    assert store.meta().generation == g
    with pytest.raises(KeyError):
        store.touch_video(999, mtime=1.0, size=1)
    with pytest.raises(KeyError):
        store.move_video(999, "/x", 1.0)


def test_remove_videos(store: Store) -> None:
    a, ids_a, _ = _add(store, "/v/a.mp4", 3)
    b, ids_b, _ = _add(store, "/v/b.mp4", 2)
    g = store.meta().generation
    removed = store.remove_videos([a, 12345])
    np.testing.assert_array_equal(removed, ids_a)
    assert store.meta().generation == g + 1
    assert store.video_by_path("/v/a.mp4") is None
    assert store.vector_count() == 2
    assert store.remove_videos([]).size == 0
    assert store.remove_videos([12345]).size == 0
    assert store.meta().generation == g + 1
    assert store.video_paths([a, b, 5]) == {b: "/v/b.mp4"}


def test_foreign_key_cascade(store: Store) -> None:
    vid, _, _ = _add(store, "/v/a.mp4", 3)
    if store.db_path is not None:
        con = sqlite3.connect(store.db_path)
        con.execute("PRAGMA foreign_keys = ON")
        con.execute("DELETE FROM videos WHERE id = ?", (vid,))
        con.commit()
        con.close()
    else:
        _pg_execute(store.catalogue.url, f"DELETE FROM videos WHERE id = {int(vid)}")
    assert store.vector_count() == 0


def _pg_execute(url: str, sql: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(sql))
    engine.dispose()


def test_iter_sample_locate(store: Store) -> None:
    all_ids = []
    all_v = []
    for i in range(4):
        vid, ids, _ = _add(store, f"/v/{i}.mp4", 5 + i, seed=i)
        all_ids.append(ids)
        all_v.append(store.vectors_of_video(vid)[2])
    ids = np.concatenate(all_ids)
    vecs = np.concatenate(all_v)
    batches = list(store.iter_vectors(batch_size=7))
    assert all(b[0].dtype == np.int64 and b[1].dtype == np.float32 for b in batches)
    assert [len(b[0]) for b in batches] == [7, 7, 7, 5]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), ids)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), vecs)

    s1 = store.sample_vectors(10, seed=3)
    assert s1.shape == (10, RAW_DIM) and s1.dtype == np.float32
    np.testing.assert_array_equal(s1, store.sample_vectors(10, seed=3))
    assert not np.array_equal(s1, store.sample_vectors(10, seed=4))
    assert store.sample_vectors(1000).shape == (len(ids), RAW_DIM)
    assert store.sample_vectors(0).shape == (0, RAW_DIM)

    query = np.array([ids[0], -1, ids[-1], 10**9, ids[6]], dtype=np.int64)
    video_ids, times = store.locate(query)
    assert video_ids.dtype == np.int64 and times.dtype == np.float64
    v0 = store.video_by_path("/v/0.mp4").id
    v3 = store.video_by_path("/v/3.mp4").id
    v1 = store.video_by_path("/v/1.mp4").id
    assert list(video_ids) == [v0, -1, v3, -1, v1]
    assert times[0] == 0.5 and times[2] == 7.5 and times[4] == 1.5
    assert np.isnan(times[1]) and np.isnan(times[3])
    empty = store.locate(np.full(3, -1, dtype=np.int64))
    assert list(empty[0]) == [-1, -1, -1]


def test_locate_many_ids_batches_parameters(store: Store) -> None:
    n = 2500  # several IN-batches
    ts = np.arange(n, dtype=np.float64)
    v = np.ones((n, RAW_DIM), np.float32)
    vid, ids, _ = store.add_video(path="/v/long.mp4", size=1, mtime=1, fingerprint="f", duration_s=n, fps=1,
                                  width=1, height=1, timestamps_s=ts, vectors=v)
    query = np.concatenate([ids[::-1], [-1]])
    video_ids, times = store.locate(query)
    assert (video_ids[:-1] == vid).all() and video_ids[-1] == -1
    np.testing.assert_array_equal(times[:-1], ts[::-1])
    assert store.remove_videos([vid]).size == n


def test_runs(store: Store) -> None:
    r1 = store.record_run(started_at=1.0, finished_at=2.0, added=3, failed=1)
    r2 = store.record_run(started_at=3.0, finished_at=4.0, unchanged=3)
    runs = store.runs()
    assert [r.id for r in runs] == [r2, r1]
    assert runs[1].added == 3 and runs[1].failed == 1 and runs[0].unchanged == 3
    assert len(store.runs(limit=1)) == 1


def test_record_run_from_summary(store: Store) -> None:
    from sora_search.types import IndexSummary

    fields = {f.name for f in dataclasses.fields(IndexSummary)}
    assert {"added", "updated", "unchanged", "moved", "removed", "failed", "seconds"} <= fields
    summary = IndexSummary(added=("/a", "/b"), updated=("/c",), unchanged=("/d",), moved=(("/e", "/f"),),
                           removed=("/g",), seconds=2.5)
    store.record_run(summary, finished_at=100.0)
    (run,) = store.runs()
    assert (run.added, run.updated, run.unchanged, run.removed, run.failed) == (2, 1, 2, 1, 0)
    assert (run.started_at, run.finished_at) == (97.5, 100.0)


def test_writer_waits_for_other_writer(tmp_path: Path) -> None:
    """A second process holding the write lock briefly delays, not fails, a write (busy_timeout)."""
    db = tmp_path / "a.db"
    with Store.open(db) as s:
        s.set_meta(_meta())
        with subprocess.Popen(
            [sys.executable, "-c",
             "import sqlite3, sys, time\n"
             f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
             "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(1.0); c.execute('COMMIT')"],
            stdout=subprocess.PIPE, text=True,
        ) as holder:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            t0 = time.monotonic()
            _add(s, "/v/a.mp4", 2)  # blocks until the other transaction commits
            assert time.monotonic() - t0 > 0.3
            assert holder.wait(timeout=30) == 0
        assert s.vector_count() == 2
        assert s.meta() is not None  # readers never blocked


def test_store_does_not_import_torch_or_faiss() -> None:
    code = "import sys, sora_search.store; assert 'torch' not in sys.modules and 'faiss' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# -- PostgreSQL: URLs, errors, locks ------------------------------------------------------------------------------

_TXN_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('sora-search write ' || current_schema(), 0))"


def test_pg_writer_waits_for_other_writer_and_readers_do_not(pg_url: str) -> None:
    """On PostgreSQL a write transaction queues behind another one (the advisory transaction lock, as SQLite's BEGIN
    IMMEDIATE), while reads answer at once from what is committed."""
    import psycopg

    from sora_search.store.catalogue import Catalogue

    with Store.open(pg_url) as s:
        s.set_meta(_meta())
        _add(s, "/v/first.mp4", 1)
        url = Catalogue.of(pg_url).url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url) as holder:
            holder.execute(_TXN_LOCK)
            holder.execute("DELETE FROM runs")  # an open write transaction
            t0 = time.monotonic()
            assert s.vector_count() == 1 and s.meta() is not None and len(s.videos()) == 1
            assert time.monotonic() - t0 < 0.5  # readers never wait for a writer
            done: list[float] = []
            worker = threading.Thread(target=lambda: (_add(s, "/v/a.mp4", 2), done.append(time.monotonic())))
            worker.start()
            time.sleep(0.8)
            assert not done  # the write waits for the other transaction
            holder.commit()
            worker.join(timeout=30)
        assert done and done[0] - t0 > 0.7
        assert s.vector_count() == 3


def test_pg_empty_database_is_not_an_index_without_create(pg_url: str) -> None:
    with pytest.raises(IndexNotFound, match="no sora-search catalogue"):
        Store.open(pg_url, create=False)
    with Store.open(pg_url) as s:
        assert s.revision() == head_revision() and s.db_path is None and s.size_bytes() > 0
    with Store.open(pg_url, create=False) as s:
        assert s.vector_count() == 0


def test_pg_unreachable_and_bad_urls_are_clear_errors(tmp_path: Path) -> None:
    """A URL that cannot be used says so, and which one, never with its password."""
    from sora_search.store.catalogue import Catalogue

    gone = f"postgresql+psycopg://me:s3cret@/nodb?host={tmp_path}/nosocket"
    with pytest.raises(StoreError) as info:
        Store.open(gone)
    message = str(info.value)
    assert "s3cret" not in message and "me:***@" in message and "check the URL" in message
    with pytest.raises(StoreError, match="SQLite or PostgreSQL, not mysql") as info:
        Store.open("mysql://me:s3cret@host/db")
    assert "s3cret" not in str(info.value)
    with pytest.raises(StoreError, match="psycopg"):
        Store.open("postgresql+psycopg2://me:s3cret@host/db")
    assert Catalogue.of("postgres://u:p@h/d").url == "postgresql+psycopg://u:p@h/d"
    assert Catalogue.of(f"sqlite:///{tmp_path}/x.db").path == tmp_path / "x.db"


def test_pg_helper_says_why_no_server_can_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without PostgreSQL's binaries the pg tests skip with this reason (or fail, with SORA_SEARCH_REQUIRE_POSTGRES=1)."""
    from tests import pg

    monkeypatch.setattr(pg.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(pg.shutil, "which", lambda name: None)
    assert pg.pg_bin() is None and "initdb" in (pg.missing() or "")
