"""What the store does differently on PostgreSQL: the engine, the locks, the size.

Locks are advisory locks on keys derived in SQL from the catalogue's schema (advisory locks are per database):

* a write *transaction* takes ``pg_advisory_xact_lock`` first, so writers queue one after another as SQLite's
  ``BEGIN IMMEDIATE`` makes them (waiting up to the same 30 s), and it ends with the transaction;
* an index, remove or repair *run* holds ``pg_try_advisory_lock`` on a dedicated connection: a second run fails at
  once with IndexLocked, and a run that dies (even with its machine) frees it when the server drops the connection.

Readers take no lock at all (MVCC) and read in ``REPEATABLE READ``: one read sees one snapshot, as on SQLite WAL.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError

from sora_search.errors import IndexLocked, StoreError
from sora_search.store.catalogue import POSTGRES_HINT, Catalogue

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10
_RUN_KEY = "hashtextextended('sora-search run ' || current_schema(), 0)"
_TXN_KEY = "hashtextextended('sora-search write ' || current_schema(), 0)"
TABLES = ("videos", "vectors", "index_meta", "runs", "alembic_version")


def make_engine(catalogue: Catalogue, busy_timeout_s: float) -> Engine:
    """An engine whose connections with the execution option ``sora_begin`` take the write-transaction lock.

    Raises:
        StoreError: psycopg is not installed.
    """
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise StoreError(f"the catalogue {catalogue.shown} is PostgreSQL, which needs psycopg: {POSTGRES_HINT}") \
            from None
    engine = create_engine(catalogue.url, pool_pre_ping=True,
                           connect_args={"connect_timeout": CONNECT_TIMEOUT_S, "application_name": _who()})

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("sora_begin"):
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(busy_timeout_s * 1000)}ms'")
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_TXN_KEY})")

    return engine


def _who() -> str:
    return f"sora-search pid {os.getpid()} on {socket.gethostname()}"[:63]


@contextmanager
def run_lock(catalogue: Catalogue) -> Iterator[None]:
    """Hold the catalogue's run lock on a connection of its own for the ``with`` block.

    Raises:
        IndexLocked: another run holds it. StoreError: the server cannot be reached.
    """
    from sqlalchemy.pool import NullPool

    engine = create_engine(catalogue.url, poolclass=NullPool,
                           connect_args={"connect_timeout": CONNECT_TIMEOUT_S, "application_name": _who()})
    try:
        with _held(engine, catalogue):
            yield
    except DBAPIError as exc:
        raise StoreError(f"PostgreSQL error on {catalogue.shown}: {reason(exc, catalogue)}") from exc
    finally:
        engine.dispose()


@contextmanager
def _held(engine: Engine, catalogue: Catalogue) -> Iterator[None]:
    conn = engine.connect()
    try:
        got = conn.execute(text(f"SELECT pg_try_advisory_lock({_RUN_KEY})")).scalar()
        conn.commit()
        if not got:
            raise IndexLocked(f"the catalogue {catalogue.shown} is being written by {_holder(conn)}; wait for it to "
                              "finish (only one index or remove run at a time, over every machine)")
        try:
            yield
        finally:
            try:
                conn.execute(text(f"SELECT pg_advisory_unlock({_RUN_KEY})"))
                conn.commit()
            except DBAPIError as exc:  # the connection is gone: so is the lock
                logger.info("run lock on %s released with its connection: %s", catalogue.shown, exc.orig)
    finally:
        conn.close()


def _holder(conn: Connection) -> str:
    """Who holds the run lock, from its connection's application name."""
    row = conn.execute(text(
        "SELECT a.application_name, a.client_addr FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database()) "
        f"AND ((l.classid::bigint << 32) | l.objid::bigint) = {_RUN_KEY} "
        "LIMIT 1")).first()
    conn.rollback()
    if row is None:
        return "another process"
    name, addr = row
    return f"{name or 'another process'}{f' ({addr})' if addr else ''}"


def size_bytes(conn: Connection) -> int:
    """Bytes on disk of the store's tables, with their indexes and TOAST."""
    total = 0
    for table in TABLES:
        total += int(conn.execute(text("SELECT COALESCE(pg_total_relation_size(to_regclass(:t)), 0)"),
                                  {"t": table}).scalar() or 0)
    return total


def reason(exc: DBAPIError, catalogue: Catalogue) -> str:
    """The driver's message without the URL's password, and what to do about the usual causes."""
    text_ = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
    secret = make_url(catalogue.url).password
    if secret:
        text_ = text_.replace(str(secret), "***")
    hint = ""
    if any(w in text_ for w in ("connection", "could not", "timeout", "refused", "does not exist", "authentication")):
        hint = "; check the URL, that the server is up and reachable, and the user's rights"
    return f"{text_}{hint}"
