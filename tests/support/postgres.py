"""A real PostgreSQL server for the tests, on 127.0.0.1, in a temporary directory.

`pg_server` (session scope) starts one server (Debian's postgresql package: initdb and pg_ctl
under /usr/lib/postgresql/*/bin, run as the `postgres` user when the tests run as root); each
test gets a fresh database with `pg_url`, copied from a migrated template (CREATE DATABASE ...
TEMPLATE: milliseconds). Without PostgreSQL the tests skip with the reason, except where
EDGEMINE_REQUIRE_SCALEOUT=1 (CI), where they fail.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

TEMPLATE = "edgemine_template"
USER = "edgemine"


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def require_postgres() -> Path:
    """Return PostgreSQL's bin directory, or skip (fail under EDGEMINE_REQUIRE_SCALEOUT=1) without it."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        reason = "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; apt-get install postgresql)"
        if os.environ.get("EDGEMINE_REQUIRE_SCALEOUT") == "1":
            pytest.fail(f"EDGEMINE_REQUIRE_SCALEOUT=1 but {reason}")
        pytest.skip(reason)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        reason = "psycopg is not installed (pip install 'edgemine[postgres]')"
        if os.environ.get("EDGEMINE_REQUIRE_SCALEOUT") == "1":
            pytest.fail(f"EDGEMINE_REQUIRE_SCALEOUT=1 but {reason}")
        pytest.skip(reason)
    return bin_dir


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgServer:
    """One PostgreSQL cluster in a temporary directory, listening on 127.0.0.1:port."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="edgemine-pg-"))
        self.data, self.sockets, self.log = self.root / "data", self.root / "sockets", self.root / "server.log"
        self.sockets.mkdir()
        self.port = free_port()
        self._names = itertools.count(1)
        self._as_postgres = os.geteuid() == 0  # initdb refuses to run as root
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.sockets, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8", "--locale=C")

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr}{done.stdout}\n{log[-2000:]}")

    def start(self) -> None:
        """Start the server (again) on its port; returns once it accepts connections."""
        # fsync off: test databases need no crash safety, and a clean stop still writes everything.
        options = (f"-h 127.0.0.1 -p {self.port} -k {self.sockets} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-o", options, "start")

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are ended)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, dbname: str) -> str:
        """Return the URL of database `dbname` on this server."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{dbname}"

    def admin(self, sql: str) -> None:
        """Run one statement in the maintenance database (autocommit)."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql)

    def make_template(self) -> None:
        """Create the template database, migrated to the latest schema."""
        from edgemine.bundle.state_pg import PgStateDB

        self.admin(f"CREATE DATABASE {TEMPLATE}")
        PgStateDB(self.url(TEMPLATE)).close()

    def create_db(self, *, empty: bool = False) -> str:
        """Create a fresh database (migrated, unless `empty`); return its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE {'template0' if empty else TEMPLATE}")
        return self.url(name)

    def drop_db(self, url: str) -> None:
        """Drop the database of `url`, ending its open sessions."""
        with contextlib.suppress(Exception):
            self.admin(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")

    def close(self) -> None:
        """Stop the server and remove its directory."""
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running_server() -> Iterator[PgServer]:
    """Start a PostgreSQL server with a migrated template database; stop and remove it after."""
    server = PgServer(require_postgres())
    try:
        server.start()
        server.make_template()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL server for the whole session."""
    with running_server() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, migrated database for one test; dropped after it."""
    url = pg_server.create_db()
    yield url
    pg_server.drop_db(url)
