"""Schema versions: new DBs are stamped head, the ORM matches the migrations, old/new DBs are detected on open,
``upgrade()`` migrates frozen databases and their data stays usable, and the wheel ships the scripts.

Frozen databases: ``tests/data/rev<REV>.db``, one per revision, written once by ``python -m tests.test_migrations
freeze`` with that revision's scripts and raw SQL (never the live models), so they stay what that revision wrote.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, inspect

from sora_search.errors import SchemaOutdated, SchemaTooNew, StoreError
from sora_search.store import Store, head_revision, upgrade
from sora_search.store import migrate
from sora_search.store.models import Base

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
FROZEN = {"0001": DATA / "rev0001.db", "0002": DATA / "rev0002.db", "0003": DATA / "rev0003.db",
          "0004": DATA / "rev0004.db"}
HEAD = "0004"
FROZEN_UID = "f0" * 16
RAW_DIM = 4


# -- frozen fixtures -------------------------------------------------------------------------------------


def freeze(db: Path, revision: str) -> None:
    """Write the fixture of ``revision``: schema from the scripts up to it, rows by raw SQL."""
    from alembic import command

    db.unlink(missing_ok=True)
    db.touch()
    engine = migrate.make_engine(db, foreign_keys=False)
    with engine.connect() as conn:
        command.upgrade(migrate.alembic_config(conn), revision)
        if conn.in_transaction():
            conn.commit()
    engine.dispose()
    con = sqlite3.connect(db)
    con.execute(
        "INSERT INTO index_meta (id, encoder_name, encoder_version, raw_dim, input_size, sampling_fps, projection,"
        " projection_name, dim, index_trained_n, generation) VALUES (1, 'demo', '1', 4, 224, 1.0, NULL,"
        " 'identity', 4, 0, 2)"
    )
    if revision >= "0002":
        con.execute("UPDATE index_meta SET index_uid = ?", (FROZEN_UID,))
    videos = [("/lib/a.mp4", [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]), ("/lib/b.mp4", [[0, 0, 0, 1], [0.5, 0.5, 0.5, 0.5]])]
    for path, vecs in videos:
        cur = con.execute(
            "INSERT INTO videos (path, size, mtime, fingerprint, duration_s, fps, width, height, status, error,"
            " n_vectors, indexed_at) VALUES (?, 1000, 1700000000.0, ?, 3.0, 25.0, 64, 48, 'indexed', NULL, ?,"
            " 1700000001.0)",
            (path, "fp-" + path, len(vecs)),
        )
        for t, v in enumerate(vecs):
            con.execute(
                "INSERT INTO vectors (video_id, timestamp_s, data) VALUES (?, ?, ?)",
                (cur.lastrowid, t + 0.5, np.asarray(v, dtype="<f2").tobytes()),
            )
    if revision >= "0003":
        # One region per second: its float32 scale, then its values as int8 (value = int8 * scale).
        regions = np.asarray([1 / 127], "<f4").tobytes() + np.asarray([127, 0, -127, 0], np.int8).tobytes()
        con.execute("UPDATE vectors SET regions = ? WHERE id = 2", (regions,))
    con.execute(
        "INSERT INTO videos (path, size, mtime, fingerprint, duration_s, fps, width, height, status, error,"
        " n_vectors, indexed_at) VALUES ('/lib/bad.mp4', 5, 1700000000.0, 'fp-bad', 0, 0, 0, 0, 'failed',"
        " 'no frames', 0, 1700000001.0)"
    )
    con.execute(
        "INSERT INTO runs (started_at, finished_at, added, updated, unchanged, removed, failed)"
        " VALUES (1700000000.0, 1700000002.0, 2, 0, 0, 0, 1)"
    )
    con.commit()
    con.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
    con.execute("VACUUM")
    con.close()


def _copy_frozen(tmp_path: Path, revision: str = HEAD, name: str = "index.db") -> Path:
    target = tmp_path / name
    shutil.copyfile(FROZEN[revision], target)
    return target


def _check_frozen_data(store: Store) -> None:
    meta = store.meta()
    assert meta is not None and meta.encoder_name == "demo" and meta.raw_dim == RAW_DIM and meta.generation == 2
    assert [v.path for v in store.videos(status="indexed")] == ["/lib/a.mp4", "/lib/b.mp4"]
    assert [v.path for v in store.videos(status="failed")] == ["/lib/bad.mp4"]
    assert store.vector_count() == 5
    ids, vecs = next(store.iter_vectors())
    assert list(ids) == [1, 2, 3, 4, 5]
    np.testing.assert_array_equal(vecs[3], [0, 0, 0, 1])
    video_ids, times = store.locate(np.array([4, -1], dtype=np.int64))
    assert video_ids[0] == store.video_by_path("/lib/b.mp4").id and times[0] == 0.5
    a = store.video_by_path("/lib/a.mp4").id
    region_s, regions = store.regions_between(a, 0.0, 10.0)
    if store.revision() >= "0003" and region_s.size:  # the frozen 0003 stores one second's regions
        assert list(region_s) == [1.5]
        np.testing.assert_allclose(regions, [[[1, 0, -1, 0]]], atol=1e-6)
    else:
        assert regions.shape == (0, 0, RAW_DIM)
    # Still writable, and ids keep counting from where the frozen file stopped.
    _, new_ids, removed = store.add_video(
        path="/lib/a.mp4", size=1, mtime=1.0, fingerprint="fp2", duration_s=1.0, fps=1.0, width=1, height=1,
        timestamps_s=np.zeros(1), vectors=np.ones((1, RAW_DIM), np.float32),
    )
    assert list(removed) == [1, 2, 3] and list(new_ids) == [6]
    assert store.meta().generation == 3
    assert len(store.runs()) == 1


def _schema_snapshot(db: Path) -> dict[str, object]:
    engine = create_engine(f"sqlite:///{db}")
    try:
        insp = inspect(engine)
        snap: dict[str, object] = {}
        for table in sorted(t for t in insp.get_table_names() if t != "alembic_version"):
            snap[table] = {
                "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)],
                "pk": insp.get_pk_constraint(table)["constrained_columns"],
                "indexes": sorted((str(i["name"]), tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(table)),
                "unique": sorted((str(u["name"]), tuple(u["column_names"])) for u in insp.get_unique_constraints(table)),
                "fks": sorted(
                    (str(f["name"]), tuple(f["constrained_columns"]), f["referred_table"], str(f["options"].get("ondelete")))
                    for f in insp.get_foreign_keys(table)
                ),
                "checks": sorted(str(c["name"]) for c in insp.get_check_constraints(table)),
            }
        with engine.connect() as conn:
            sql: dict[str, str] = dict(conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'table'").all())
        snap["autoincrement"] = sorted(t for t, s in sql.items() if s and "AUTOINCREMENT" in s.upper())
        return snap
    finally:
        engine.dispose()


# -- tests -----------------------------------------------------------------------------------------------


def test_head_is_single_and_new_db_is_stamped(tmp_path: Path) -> None:
    assert head_revision() == HEAD
    with Store.open(tmp_path / "new.db") as s:
        assert s.revision() == head_revision()


def test_orm_matches_migrations(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    migrated = tmp_path / "migrated.db"
    migrated.touch()
    assert upgrade(migrated) == ("base", head_revision())
    engine = create_engine(f"sqlite:///{migrated}")
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diffs == []

    created = tmp_path / "created.db"
    Store.open(created).close()  # create_all + stamp
    snap = _schema_snapshot(created)
    assert snap == _schema_snapshot(migrated)
    assert snap["autoincrement"] == ["runs", "vectors", "videos"]


def test_frozen_head_opens_and_is_usable(tmp_path: Path) -> None:
    db = _copy_frozen(tmp_path)
    with Store.open(db, create=False) as s:
        assert s.revision() == HEAD
        assert s.meta().index_uid == FROZEN_UID
        assert s.regions_between(s.video_by_path("/lib/a.mp4").id, 0, 10)[0].size == 1
        _check_frozen_data(s)


def test_frozen_0003_is_outdated_then_upgraded_with_seconds_indexed_by_time(tmp_path: Path) -> None:
    db = _copy_frozen(tmp_path, "0003")
    with pytest.raises(SchemaOutdated, match="sora-search upgrade"):
        Store.open(db)
    assert upgrade(db) == ("0003", HEAD)
    engine = create_engine(f"sqlite:///{db}")
    try:
        indexes = {i["name"]: i["column_names"] for i in inspect(engine).get_indexes("vectors")}
    finally:
        engine.dispose()
    assert indexes == {"ix_vectors_video_id_timestamp_s": ["video_id", "timestamp_s"]}
    with Store.open(db) as s:
        at, got = s.vectors_near(s.video_by_path("/lib/a.mp4").id, np.array([1.4, 9.0]))
        np.testing.assert_array_equal(at, [1.5, 2.5])
        np.testing.assert_array_equal(got, [[0, 1, 0, 0], [0, 0, 1, 0]])
        _check_frozen_data(s)


def test_frozen_0002_is_outdated_then_upgraded_without_regions(tmp_path: Path) -> None:
    db = _copy_frozen(tmp_path, "0002")
    with pytest.raises(SchemaOutdated, match="sora-search upgrade"):
        Store.open(db)
    assert upgrade(db) == ("0002", HEAD)
    with Store.open(db) as s:
        assert s.meta().index_uid == FROZEN_UID
        assert s.mean_regions(100) is None  # the seconds stored before keep no regions
        _check_frozen_data(s)


def test_frozen_0001_is_outdated_then_upgraded_with_an_index_id(tmp_path: Path) -> None:
    db = _copy_frozen(tmp_path, "0001")
    with pytest.raises(SchemaOutdated, match="sora-search upgrade"):
        Store.open(db)
    assert upgrade(db) == ("0001", HEAD)
    with Store.open(db) as s:
        uid = s.meta().index_uid
        assert len(uid) == 32 and int(uid, 16) >= 0
        _check_frozen_data(s)
        assert s.meta().index_uid == uid  # written once, kept by every later write


def test_upgrade_at_head_is_a_no_op(tmp_path: Path) -> None:
    db = _copy_frozen(tmp_path)
    assert upgrade(db) == (HEAD, HEAD)
    with Store.open(db) as s:
        _check_frozen_data(s)


def test_newer_revision_is_schema_too_new(tmp_path: Path) -> None:
    db = _copy_frozen(tmp_path)
    con = sqlite3.connect(db)
    con.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    con.commit()
    con.close()
    with pytest.raises(SchemaTooNew, match="9999_from_the_future"):
        Store.open(db)
    with pytest.raises(SchemaTooNew):
        upgrade(db)


def test_sora_tables_without_revision_is_store_error(tmp_path: Path) -> None:
    db = _copy_frozen(tmp_path)
    con = sqlite3.connect(db)
    con.execute("DROP TABLE alembic_version")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="schema revision"):
        Store.open(db)
    with pytest.raises(StoreError):
        upgrade(db)


_REV_TEST = '''
"""Test-only revision: a nullable column on videos, forcing SQLite's copy-and-rename batch path (PostgreSQL alters
the table in place: a copy there cannot drop a table other tables' keys point at).

Revision ID: 9000
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "9000"
down_revision = "0004"
branch_labels = None
depends_on = None


def _recreate() -> str:
    return "always" if op.get_bind().dialect.name == "sqlite" else "auto"


def upgrade() -> None:
    with op.batch_alter_table("videos", recreate=_recreate(), table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(sa.Column("note", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("videos", recreate=_recreate(), table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("note")
'''


@pytest.fixture
def scripts_with_test_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This checkout's migrations plus a test-only 9000, so the head becomes an outdated revision."""
    location = tmp_path / "migrations"
    shutil.copytree(migrate.script_location(), location, ignore=shutil.ignore_patterns("__pycache__"))
    (location / "versions" / "9000_test_note.py").write_text(textwrap.dedent(_REV_TEST))
    monkeypatch.setattr(migrate, "script_location", lambda: location)
    return location


def test_older_revision_is_schema_outdated_then_upgrade(tmp_path: Path, scripts_with_test_revision: Path) -> None:
    assert head_revision() == "9000"
    db = _copy_frozen(tmp_path)
    with pytest.raises(SchemaOutdated) as info:
        Store.open(db)
    message = str(info.value)
    assert HEAD in message and "9000" in message
    assert f"sora-search upgrade --index {db.parent}" in message

    assert upgrade(db) == (HEAD, "9000")
    assert upgrade(db) == ("9000", "9000")
    with Store.open(db) as s:
        assert s.revision() == "9000"
        # The videos table was copied and dropped with vectors pointing at it: nothing may cascade.
        _check_frozen_data(s)
    con = sqlite3.connect(db)
    sql = con.execute("SELECT sql FROM sqlite_master WHERE name = 'videos'").fetchone()[0]
    assert "note" in sql and "AUTOINCREMENT" in sql.upper()
    assert con.execute("PRAGMA foreign_key_check").fetchall() == []
    con.close()


def test_wheel_ships_migrations_and_creates_a_store(tmp_path: Path) -> None:
    start = time.monotonic()
    # Build from a copy so the checkout gets no build artefacts (and the test does not depend on README.md).
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    for d in ("sora_search", "migrations"):
        shutil.copytree(ROOT / d, src / d, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    readme = ROOT / "README.md"
    if readme.exists():
        shutil.copy(readme, src)
    else:
        (src / "README.md").write_text("# sora-search\n")
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(src)],
        check=True, capture_output=True,
    )
    (wheel,) = out.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "sora_search/migrations/env.py" in names
    assert "sora_search/migrations/versions/0001_initial.py" in names
    assert "sora_search/migrations/versions/0002_index_uid.py" in names
    assert "sora_search/migrations/versions/0003_vector_regions.py" in names
    assert "sora_search/migrations/versions/0004_vector_times.py" in names
    assert "sora_search/migrations/script.py.mako" in names
    assert not any("__pycache__" in n for n in names)

    unzipped = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unzipped)
    work = tmp_path / "cwd"
    work.mkdir()
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(unzipped)!r})
        import sora_search
        from sora_search.store import Store, head_revision, migrate
        site = {str(unzipped)!r}
        assert all(p.startswith(site) for p in sora_search.__path__), sora_search.__path__
        assert str(migrate.script_location()).startswith(site), migrate.script_location()
        with Store.open("new.db") as s:
            assert s.revision() == head_revision() == "0004", s.revision()
        print("ok")
        """
    )
    # -I: no PYTHONPATH, user site or cwd on sys.path, so only the unzipped wheel provides sora_search.
    result = subprocess.run([sys.executable, "-I", "-c", code], cwd=work, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert time.monotonic() - start < 60


if __name__ == "__main__":
    if sys.argv[1:] == ["freeze"]:
        DATA.mkdir(exist_ok=True)
        for rev, path in FROZEN.items():
            if not path.exists():  # a fixture is what its revision wrote: never rewritten
                freeze(path, rev)
    else:
        sys.exit("usage: python -m tests.test_migrations freeze")


# -- PostgreSQL: the same scripts, the same data ------------------------------------------------------------------


def _pg_at_revision(url: str, revision: str) -> None:
    """A PostgreSQL database at ``revision`` (the scripts up to it), holding the rows of that revision's frozen
    SQLite fixture, inserted in id order so that the server hands out the same ids."""
    from alembic import command
    from sqlalchemy import text

    from sora_search.store.catalogue import Catalogue

    engine = migrate.make_engine(Catalogue.of(url), foreign_keys=False)
    try:
        with engine.connect() as conn:
            command.upgrade(migrate.alembic_config(conn), revision)
            if conn.in_transaction():
                conn.commit()
        frozen = sqlite3.connect(FROZEN[revision])
        with engine.begin() as conn:
            for table in ("index_meta", "videos", "vectors", "runs"):
                cur = frozen.execute(f"SELECT * FROM {table} ORDER BY id")
                names = [d[0] for d in cur.description if table == "index_meta" or d[0] != "id"]
                for row in cur.fetchall():
                    values = dict(zip([d[0] for d in cur.description], row))
                    conn.execute(text(f"INSERT INTO {table} ({', '.join(names)}) VALUES "
                                      f"({', '.join(':' + n for n in names)})"), {n: values[n] for n in names})
        frozen.close()
    finally:
        engine.dispose()


def _pg_snapshot(url: str) -> dict[str, object]:
    engine = create_engine(url)
    try:
        insp = inspect(engine)
        return {table: {
            "columns": [(c["name"], str(c["type"]), c["nullable"], bool(c.get("autoincrement"))) for c in insp.get_columns(table)],
            "pk": insp.get_pk_constraint(table)["constrained_columns"],
            "indexes": sorted((str(i["name"]), tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(table)),
            "unique": sorted((str(u["name"]), tuple(u["column_names"])) for u in insp.get_unique_constraints(table)),
            "fks": sorted((str(f["name"]), tuple(f["constrained_columns"]), f["referred_table"],
                           str(f["options"].get("ondelete"))) for f in insp.get_foreign_keys(table)),
            "checks": sorted(str(c["name"]) for c in insp.get_check_constraints(table)),
        } for table in sorted(t for t in insp.get_table_names() if t != "alembic_version")}
    finally:
        engine.dispose()


def test_pg_orm_matches_migrations(pg_server) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    migrated = pg_server.new_database()
    assert upgrade(migrated) == ("base", head_revision())
    engine = create_engine(migrated)
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diffs == []
    created = pg_server.new_database()
    Store.open(created).close()  # create_all + stamp
    assert _pg_snapshot(created) == _pg_snapshot(migrated)


def test_pg_0001_is_outdated_then_upgraded_and_usable(pg_url: str) -> None:
    _pg_at_revision(pg_url, "0001")
    secret = pg_url.replace("postgres@", "postgres:pw@")  # trust auth ignores it; messages must not show it
    with pytest.raises(SchemaOutdated) as info:
        Store.open(secret)
    assert "sora-search upgrade --db postgresql+psycopg://postgres:***@" in str(info.value)
    assert "pw" not in str(info.value).replace("psycopg", "")
    assert upgrade(secret) == ("0001", HEAD)
    assert upgrade(secret) == (HEAD, HEAD)
    with Store.open(pg_url) as s:
        uid = s.meta().index_uid
        assert len(uid) == 32
        _check_frozen_data(s)
        assert s.integrity_problems() == []


def test_pg_newer_revision_is_schema_too_new(pg_url: str) -> None:
    from sqlalchemy import text

    _pg_at_revision(pg_url, HEAD)
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    engine.dispose()
    with pytest.raises(SchemaTooNew, match="9999_from_the_future"):
        Store.open(pg_url)
    with pytest.raises(SchemaTooNew):
        upgrade(pg_url)


def test_pg_upgrade_to_a_new_revision(pg_url: str, scripts_with_test_revision: Path) -> None:
    """A revision written for SQLite's batch mode runs on PostgreSQL too, in one transaction, data kept."""
    _pg_at_revision(pg_url, HEAD)
    with pytest.raises(SchemaOutdated):
        Store.open(pg_url)
    assert upgrade(pg_url) == (HEAD, "9000")
    with Store.open(pg_url) as s:
        assert s.revision() == "9000"
        _check_frozen_data(s)
    engine = create_engine(pg_url)
    assert "note" in [c["name"] for c in inspect(engine).get_columns("videos")]
    engine.dispose()
