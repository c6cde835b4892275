"""Alembic environment for sora-search (optuna style).

The :class:`alembic.config.Config` is built in code by :mod:`sora_search.store.migrate`; no alembic.ini is
needed. The caller passes a live connection in ``config.attributes["connection"]``; a URL in
``sqlalchemy.url`` is used only when no connection is given (e.g. running ``alembic`` by hand).
``render_as_batch=True`` because SQLite can only alter tables by copying them.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Connection

from sora_search.store.models import Base

config = context.config
# Used by autogenerate only; revision files never import the live models.
target_metadata = Base.metadata


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("sora-search migrations need config.attributes['connection'] or sqlalchemy.url")
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            _configure_and_run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
