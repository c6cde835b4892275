"""Where the store (the catalogue) lives: SQLite inside the index folder by default, or a database URL.

``--db URL`` / ``Library.open(path, db=URL)``, else ``$SORA_SEARCH_DB``, else ``<index folder>/sora.db``. Two
kinds of URL are supported: ``sqlite:///FILE`` and PostgreSQL (``postgresql+psycopg://user:pw@host/db``; a bare
``postgresql://`` or ``postgres://`` means psycopg too). The URL's password never appears in a message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sora_search.errors import StoreError

DB_ENV = "SORA_SEARCH_DB"
DB_NAME = "sora.db"
POSTGRES_HINT = "pip install 'sora-search[postgres]'"
_BARE_POSTGRES = ("postgresql://", "postgres://")


def hide_password(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part replaced by ``***`` (the URL may not parse)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


@dataclass(frozen=True)
class Catalogue:
    """A store's address: ``url`` (with its password: never show it; use :attr:`shown`) and, for SQLite, ``path``."""

    url: str
    path: Path | None = None

    @classmethod
    def resolve(cls, location: Path, db: str | Path | Catalogue | None = None) -> Catalogue:
        """``db``, else ``$SORA_SEARCH_DB``, else the SQLite file ``location/sora.db``."""
        given = db if db is not None else (os.environ.get(DB_ENV) or None)
        return cls.of(given if given is not None else location / DB_NAME)

    @classmethod
    def of(cls, db: str | Path | Catalogue) -> Catalogue:
        """A catalogue from a URL, or a SQLite file path (a ``Path``, or a string without ``://``).

        Raises:
            StoreError: a malformed URL, or a database kind sora-search does not support.
        """
        if isinstance(db, Catalogue):
            return db
        if isinstance(db, Path) or "://" not in db:
            path = Path(db).expanduser().absolute()
            return cls(f"sqlite+pysqlite:///{path}", path)
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        url = db.strip()
        if url.startswith(_BARE_POSTGRES):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError) as exc:
            raise StoreError(f"--db {hide_password(db)} is not a database URL ({exc}); give e.g. "
                             "postgresql+psycopg://user:password@host/dbname or sqlite:///path/to/sora.db") from None
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            if not parsed.database or parsed.database == ":memory:":
                raise StoreError(f"--db {db}: a SQLite catalogue must be a file: sqlite:///path/to/sora.db")
            return cls.of(Path(parsed.database))
        if backend != "postgresql":
            raise StoreError(f"--db {hide_password(db)}: sora-search keeps its catalogue in SQLite or PostgreSQL, "
                             f"not {backend}")
        if parsed.get_driver_name() != "psycopg":
            raise StoreError(f"--db {hide_password(db)}: use the psycopg (v3) driver: postgresql+psycopg://...")
        return cls(url)

    @property
    def is_sqlite(self) -> bool:
        return self.path is not None

    @property
    def kind(self) -> str:
        return "SQLite" if self.is_sqlite else "PostgreSQL"

    @property
    def shown(self) -> str:
        """What messages name: the SQLite file, or the URL without its password."""
        return str(self.path) if self.path is not None else hide_password(self.url)

    @property
    def described(self) -> str:
        """``SQLite FILE`` or ``PostgreSQL URL`` (without its password)."""
        return f"{self.kind} {self.shown}"

    def upgrade_hint(self) -> str:
        """The command that upgrades this catalogue's schema, in backticks."""
        if self.path is not None:
            return f"`sora-search upgrade --index {self.path.parent}`"
        return f"`sora-search upgrade --db {self.shown}`"

    def __repr__(self) -> str:
        return f"Catalogue({self.shown!r})"

