"""The state backend the service tests run on: SQLite in the bundle (default) or PostgreSQL.

`EDGEMINE_TEST_STATE=postgresql` runs tests/service with every bundle's state in its own fresh
PostgreSQL database (tests/service/conftest.py activates it per test): the indexer writes it
(`run_index(..., state_url=state_url(bundle))`), the app serves with it, and tests read or set
state through `state_of(bundle)`. The first bundle of a test uses the database also named by
EDGEMINE_STATE_URL, which `edgemine serve` subprocesses and `Settings()` read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from edgemine.bundle.layout import BundlePaths
from edgemine.bundle.state import StateDB, open_state
from edgemine.service.runtime import Runtime
from tests.support.postgres import PgServer

BACKEND = os.environ.get("EDGEMINE_TEST_STATE", "sqlite")
if BACKEND not in ("sqlite", "postgresql"):
    raise RuntimeError(f"EDGEMINE_TEST_STATE must be sqlite or postgresql, not {BACKEND!r}")

# For tests of SQLite file behaviour (permissions, its write lock) that have no PostgreSQL twin.
sqlite_only = pytest.mark.skipif(BACKEND == "postgresql", reason="tests state.sqlite itself (file permissions, "
                                 "its write lock); PostgreSQL's faults are in tests/service/test_pg_scaleout.py")

_server: PgServer | None = None
_default: str | None = None
_urls: dict[Path, str] = {}


def on_postgres() -> bool:
    """Return whether the service tests run with state on PostgreSQL."""
    return BACKEND == "postgresql"


def activate(server: PgServer) -> str:
    """Start a test on PostgreSQL: return the URL of its first (default) database."""
    global _server, _default
    _server, _default = server, server.create_db()
    return _default


def deactivate() -> None:
    """End a test: drop every database it used."""
    global _server, _default
    if _server is not None:
        for url in {*_urls.values(), *([_default] if _default else [])}:
            _server.drop_db(url)
    _server, _default = None, None
    _urls.clear()


def state_url(bundle: Path | str) -> str | None:
    """Return the state URL of `bundle` (None on SQLite: state.sqlite in the bundle)."""
    global _default
    if _server is None:
        return None
    key = Path(bundle).resolve()
    if key not in _urls:
        if _default is not None:
            _urls[key], _default = _default, None
        else:
            _urls[key] = _server.create_db()
    return _urls[key]


def state_of(bundle: Path | str) -> StateDB:
    """Open `bundle`'s state on the backend the tests run on."""
    return open_state(BundlePaths(Path(bundle)), state_url(bundle))


def runtime_of(bundle: Path | str, **kwargs: Any) -> Runtime:
    """Return a service Runtime over `bundle` with its state on the backend the tests run on."""
    return Runtime(Path(bundle), state_url=state_url(bundle), **kwargs)


def state_env(bundle: Path | str) -> dict[str, str]:
    """Return EDGEMINE_STATE_URL for a CLI subprocess over `bundle` (nothing on SQLite)."""
    url = state_url(bundle)
    return {"EDGEMINE_STATE_URL": url} if url else {}
