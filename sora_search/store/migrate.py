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
from sora_search.store.catalogue import Catalogue

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


def make_engine(db: Path | Catalogue, *, foreign_keys: bool = True) -> Engine:
    """A SQLAlchemy engine for the store: WAL, ``busy_timeout`` 30 s, foreign keys ON (OFF for migrations).

    The driver's own transaction handling is switched off and SQLAlchemy emits ``BEGIN`` itself, so a
    connection with the execution option ``sora_begin="IMMEDIATE"`` takes the write lock up front (waiting up
    to the busy timeout) instead of failing on a read-to-write lock upgrade. PostgreSQL: :mod:`.postgres`.
    """
    catalogue = db if isinstance(db, Catalogue) else Catalogue.of(db)
    if catalogue.path is None:
        from sora_search.store import postgres

        return postgres.make_engine(catalogue, BUSY_TIMEOUT_S)
    engine = create_engine(sqlite_url(catalogue.path), connect_args={"timeout": BUSY_TIMEOUT_S})

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
def translate_db_errors(db: Path | Catalogue) -> Iterator[None]:
    """Turn driver errors (corrupt file, locked, disk I/O, server unreachable) into StoreError naming the store."""
    catalogue = db if isinstance(db, Catalogue) else Catalogue.of(db)
    try:
        yield
    except DBAPIError as e:
        if catalogue.path is None:
            from sora_search.store import postgres

            raise StoreError(f"PostgreSQL error on {catalogue.shown}: {postgres.reason(e, catalogue)}") from e
        db_path = catalogue.path
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


def classify(conn: Connection, catalogue: Catalogue) -> str | None:
    """Check the database's schema revision against this sora-search.

    Returns None for an empty database (no tables), else the revision, which is then the head.

    Raises:
        SchemaOutdated: a known older revision (the message says to run ``sora-search upgrade``).
        SchemaTooNew: a revision this sora-search does not know.
        StoreError: a database that is not a sora-search store.
    """
    tables = set(inspect(conn).get_table_names())
    where = catalogue.shown
    if not tables:
        return None
    if "alembic_version" not in tables:
        raise StoreError(
            f"{where} is a {catalogue.kind} database without a sora-search schema revision "
            f"(tables: {', '.join(sorted(tables))}); it is not a sora-search index, pick another "
            f"{'path' if catalogue.is_sqlite else 'database'}"
        )
    rev = current_revision(conn)
    head = head_revision()
    if rev == head:
        return rev
    if rev is None:
        raise StoreError(f"{where} has an empty alembic_version table; it is not a usable sora-search index")
    if rev in known_revisions():
        raise SchemaOutdated(
            f"{where} has schema revision {rev}, this sora-search needs {head}; run {catalogue.upgrade_hint()}"
        )
    raise SchemaTooNew(
        f"{where} has schema revision {rev}, which this sora-search does not know (its newest is {head}); "
        "it was written by a newer sora-search: upgrade sora-search (`pip install -U sora-search`)"
    )


def create_schema(conn: Connection) -> None:
    """Create every table of the live models and stamp the Alembic head (new databases only)."""
    from alembic import command

    from sora_search.store.models import Base

    Base.metadata.create_all(conn)
    command.stamp(alembic_config(conn), "head")


def upgrade(db: str | Path | Catalogue) -> tuple[str, str]:
    """Upgrade the store at ``db`` (a SQLite file or a :class:`Catalogue`) to this sora-search's schema (Alembic
    upgrade to head).

    On SQLite, runs with foreign keys OFF (batch migrations copy tables; with them ON a copy would cascade
    deletes) and checks ``PRAGMA foreign_key_check`` afterwards; PostgreSQL alters tables in place, in one
    transaction. An empty database is migrated from nothing.

    Returns:
        (from_revision, to_revision); from_revision is ``"base"`` for an empty database. Equal when there
        was nothing to do.

    Raises:
        IndexNotFound: no SQLite file there.
        SchemaTooNew: the database is newer than this sora-search.
        StoreError: not a sora-search database, or the migration failed.
    """
    from alembic import command

    from sora_search.errors import IndexNotFound

    catalogue = Catalogue.of(db)
    path = catalogue.shown
    if catalogue.path is not None:
        if not catalogue.path.is_file():
            raise IndexNotFound(f"no sora-search database at {path}; run `sora-search index` to create one")
        check_sqlite_file(catalogue.path)
    head = head_revision()
    engine = make_engine(catalogue, foreign_keys=False)
    try:
        with translate_db_errors(catalogue), engine.connect() as conn:
            conn = conn.execution_options(sora_begin="IMMEDIATE")
            tables = set(inspect(conn).get_table_names())
            conn.rollback()
            if tables and "alembic_version" not in tables:
                raise StoreError(
                    f"{path} is a {catalogue.kind} database without a sora-search schema revision; it cannot be "
                    "upgraded"
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
            problems = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() if catalogue.is_sqlite else []
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
