"""A throwaway PostgreSQL server for tests and benchmarks (pytest-postgresql's executor, in small).

``initdb`` into a temp folder, ``pg_ctl start`` listening on a unix socket in another temp folder only
(``listen_addresses=''``), as the ``postgres`` user when running as root; stopped and deleted by :meth:`stop`.
Binaries come from ``/usr/lib/postgresql/*/bin`` (Debian keeps them off PATH), else PATH.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

REQUIRE_ENV = "SORA_SEARCH_REQUIRE_POSTGRES"


def pg_bin() -> Path | None:
    """The folder holding initdb and pg_ctl (the newest Debian version first), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]), reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def missing() -> str | None:
    """Why no server can be started here, or None."""
    if pg_bin() is None:
        return "PostgreSQL binaries (initdb, pg_ctl) not found: apt-get install postgresql"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser to start PostgreSQL as the postgres user"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed: pip install 'sora-search[postgres]'"
    return None


class PgServer:
    """One server; :meth:`new_database` hands out a fresh, empty database URL."""

    def __init__(self, *, fsync: bool = False) -> None:
        bindir = pg_bin()
        assert bindir is not None, missing()
        self._bin = bindir
        self._root = Path(tempfile.mkdtemp(prefix="sora-pg-"))
        self.data = self._root / "data"
        self.socket_dir = self._root / "sock"
        self.socket_dir.mkdir()
        self._as_root = os.geteuid() == 0
        self.user = "postgres" if self._as_root else (os.environ.get("USER") or "postgres")
        if self._as_root:
            shutil.chown(self._root, "postgres", "postgres")
            shutil.chown(self.socket_dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8", "--locale=C",
                  "--no-sync")
        options = f"-c listen_addresses='' -k {self.socket_dir} -c max_connections=200"
        if not fsync:  # a test server: nothing here must survive a crash of the machine
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self._root / "log"), "-w", "-t", "60",
                  "start")

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self._bin / tool), *args]
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=self._root)
        if done.returncode != 0:
            log = self._root / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr or done.stdout}\n{tail}")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@/{dbname}?host={self.socket_dir}"

    def new_database(self) -> str:
        """A fresh empty database; its SQLAlchemy URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(host=str(self.socket_dir), user=self.user, dbname="postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def clone(self, url: str) -> str:
        """A new database copied from the one at ``url`` (nobody may be connected to it): an index's copy."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:16]}"
        source = url.split("?")[0].rsplit("/", 1)[-1]
        with psycopg.connect(host=str(self.socket_dir), user=self.user, dbname="postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self._root, ignore_errors=True)
