"""Schema versions: where the Alembic scripts live, and checking/upgrading a database (optuna's _VersionManager).

The scripts ship inside the wheel as ``sora_search/migrations`` (pyproject force-includes the top-level
``migrations/``); in a source or editable checkout they are read from ``<checkout>/migrations``. The Alembic
``Config`` is built in code and the live connection is handed to ``migrations/env.py`` through
``config.attributes["connection"]``.
"""

from __future__ import annotations

import importlib.resources
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from sora_search.errors import SchemaOutdated, SchemaTooNew, StoreError

logger = logging.getLogger(__name__)

_SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_S = 30.0
_TABLES = ("videos", "vectors", "index_meta", "runs")


def script_location() -> Path:
    """The directory holding ``env.py`` and ``versions/`` (installed package first, then the checkout)."""
    try:
        packaged = importlib.resources.files("sora_search") / "migrations"
        if packaged.is_dir() and isinstance(packaged, Path):
            return packaged
    except (ModuleNotFoundError, TypeError, NotImplementedError):
        pass
    package_dir = Path(__file__).resolve().parent.parent
    for candidate in (package_dir / "migrations", package_dir.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise StoreError(
        f"sora-search's migration scripts are missing (looked in {package_dir / 'migrations'} and "
        f"{package_dir.parent / 'migrations'}); reinstall sora-search"
    )


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Any:
    """An ``alembic.config.Config`` built in code, bound to ``connection`` when given."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(script_location()))
    cfg.set_main_option("path_separator", "os")
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=8)
def _script_directory(location: str) -> Any:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", location)
    cfg.set_main_option("path_separator", "os")
    return ScriptDirectory.from_config(cfg)


def script_directory() -> Any:
    """The (cached) ``alembic.script.ScriptDirectory`` of this sora-search."""
    return _script_directory(str(script_location()))


def head_revision() -> str:
    """The schema revision this sora-search writes (the single Alembic head)."""
    heads = script_directory().get_heads()
    if len(heads) != 1:
        raise StoreError(f"sora-search's migrations have {len(heads)} heads {heads}; expected exactly one")
    return str(heads[0])


def known_revisions() -> set[str]:
    return {s.revision for s in script_directory().walk_revisions()}


def sqlite_url(db_path: Path) -> str:
    return f"sqlite+pysqlite:///{db_path}"


def check_sqlite_file(db_path: Path) -> None:
    """Raise StoreError unless ``db_path`` is empty or starts with the SQLite header."""
    try:
        with open(db_path, "rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as e:
        raise StoreError(f"cannot read {db_path}: {e}") from e
    if head and head != _SQLITE_MAGIC:
        raise StoreError(f"{db_path} is not a SQLite database (and so not a sora-search index); pick another path")


def make_engine(db_path: Path, *, foreign_keys: bool = True) -> Engine:
    """A SQLAlchemy engine for the store: WAL, ``busy_timeout`` 30 s, foreign keys ON (OFF for migrations).

    The driver's own transaction handling is switched off and SQLAlchemy emits ``BEGIN`` itself, so a
    connection with the execution option ``sora_begin="IMMEDIATE"`` takes the write lock up front (waiting up
    to the busy timeout) instead of failing on a read-to-write lock upgrade.
    """
    engine = create_engine(sqlite_url(db_path), connect_args={"timeout": BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
            cur.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sora_begin", "")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())

    return engine


@contextmanager
def translate_db_errors(db_path: Path) -> Iterator[None]:
    """Turn driver errors (corrupt file, locked, disk I/O) into StoreError naming the file."""
    try:
        yield
    except DBAPIError as e:
        reason = str(e.orig)
        hint = ""
        if any(w in reason for w in ("disk I/O error", "disk is full", "readonly", "read-only", "unable to open")):
            hint = f"; check free space and write permission in {db_path.parent} (nothing committed was lost)"
        elif "malformed" in reason or "not a database" in reason:
            hint = "; the file is damaged: restore a backup of the index folder or re-index into a new one"
        raise StoreError(f"SQLite error on {db_path}: {reason}{hint}") from e


def current_revision(conn: Connection) -> str | None:
    """The Alembic revision stamped in the database, or None when it has no ``alembic_version`` row."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def classify(conn: Connection, db_path: Path) -> str | None:
    """Check the database's schema revision against this sora-search.

    Returns None for an empty database (no tables), else the revision, which is then the head.

    Raises:
        SchemaOutdated: a known older revision (the message says to run ``sora-search upgrade``).
        SchemaTooNew: a revision this sora-search does not know.
        StoreError: a SQLite database that is not a sora-search store.
    """
    tables = set(inspect(conn).get_table_names())
    if not tables:
        return None
    if "alembic_version" not in tables:
        raise StoreError(
            f"{db_path} is a SQLite database without a sora-search schema revision "
            f"(tables: {', '.join(sorted(tables))}); it is not a sora-search index, pick another path"
        )
    rev = current_revision(conn)
    head = head_revision()
    if rev == head:
        return rev
    if rev is None:
        raise StoreError(f"{db_path} has an empty alembic_version table; it is not a usable sora-search index")
    if rev in known_revisions():
        raise SchemaOutdated(
            f"{db_path} has schema revision {rev}, this sora-search needs {head}; "
            f"run `sora-search upgrade --index {db_path.parent}`"
        )
    raise SchemaTooNew(
        f"{db_path} has schema revision {rev}, which this sora-search does not know (its newest is {head}); "
        "it was written by a newer sora-search: upgrade sora-search (`pip install -U sora-search`)"
    )


def create_schema(conn: Connection) -> None:
    """Create every table of the live models and stamp the Alembic head (new databases only)."""
    from alembic import command

    from sora_search.store.models import Base

    Base.metadata.create_all(conn)
    command.stamp(alembic_config(conn), "head")


def upgrade(db_path: str | Path) -> tuple[str, str]:
    """Upgrade the store at ``db_path`` to this sora-search's schema (Alembic upgrade to head).

    Runs with foreign keys OFF (SQLite batch migrations copy tables; with them ON a copy would cascade
    deletes) and checks ``PRAGMA foreign_key_check`` afterwards. An empty database is migrated from nothing.

    Returns:
        (from_revision, to_revision); from_revision is ``"base"`` for an empty database. Equal when there
        was nothing to do.

    Raises:
        IndexNotFound: no file at ``db_path``.
        SchemaTooNew: the database is newer than this sora-search.
        StoreError: not a sora-search database, or the migration failed.
    """
    from alembic import command

    from sora_search.errors import IndexNotFound

    path = Path(db_path)
    if not path.is_file():
        raise IndexNotFound(f"no sora-search database at {path}; run `sora-search index` to create one")
    check_sqlite_file(path)
    head = head_revision()
    engine = make_engine(path, foreign_keys=False)
    try:
        with translate_db_errors(path), engine.connect() as conn:
            conn = conn.execution_options(sora_begin="IMMEDIATE")
            tables = set(inspect(conn).get_table_names())
            conn.rollback()
            if tables and "alembic_version" not in tables:
                raise StoreError(
                    f"{path} is a SQLite database without a sora-search schema revision; it cannot be upgraded"
                )
            before = current_revision(conn) if tables else None
            conn.rollback()
            if before is not None and before != head and before not in known_revisions():
                raise SchemaTooNew(
                    f"{path} has schema revision {before}, newer than this sora-search ({head}); "
                    "upgrade sora-search instead (`pip install -U sora-search`)"
                )
            if before != head:
                logger.info("upgrading %s from %s to %s", path, before or "base", head)
                command.upgrade(alembic_config(conn), "head")
                if conn.in_transaction():
                    conn.commit()
            problems = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            conn.rollback()
            if problems:
                raise StoreError(f"{path}: foreign key check failed after upgrade: {problems[:5]}")
            after = current_revision(conn)
            conn.rollback()
    finally:
        engine.dispose()
    return (before or "base", str(after))


def revision(message: str, *, rev_id: str, autogenerate: bool = True) -> None:
    """Developer helper: write a new revision file into the checkout's ``migrations/versions``.

    Autogenerates against a scratch database upgraded to the current head.
    """
    import tempfile

    from alembic import command

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "scratch.db"
        db.touch()
        upgrade(db)
        engine = make_engine(db, foreign_keys=False)
        try:
            with engine.connect() as conn:
                command.revision(alembic_config(conn), message=message, rev_id=rev_id, autogenerate=autogenerate)
        finally:
            engine.dispose()
