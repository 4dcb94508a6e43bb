"""Several service hosts on one PostgreSQL state: shared labels, a read-only bundle, 503 while it is down.

Against a real PostgreSQL server (tests/support/postgres.py). These tests choose their backend
themselves, so they run once, in the default (SQLite) invocation of tests/service.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgemine.bundle.layout import BundlePaths
from edgemine.bundle.state import open_state
from tests.support.live_server import child_env, serving
from tests.support.postgres import free_port, running_server
from tests.support.state_backend import on_postgres

Make = Callable[..., Any]
pytestmark = pytest.mark.skipif(on_postgres(), reason="chooses its own backends: runs in the default invocation")


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def _mine(base: str, positive: str, k: int = 400) -> list[str]:
    response = httpx.post(f"{base}/v1/mine", json={"positive_ids": [positive], "k": k}, timeout=60)
    assert response.status_code == 200, response.text
    return [c["image_id"] for c in response.json()["candidates"]]


def _drop_sqlite_state(bundle: Path) -> None:
    for path in bundle.glob("state.sqlite*"):
        path.unlink()


def test_two_serve_processes_share_labels_through_postgres_over_a_read_only_bundle(
        tmp_path: Path, make_byo_bundle: Make, pg_url: str) -> None:
    # Indexed with its own state.sqlite, then served by two hosts from PostgreSQL: the first one
    # to start fills the images table; the bundle is only read (no state file appears in it).
    built = make_byo_bundle(n=120, seed=4)
    _drop_sqlite_state(built.path)
    for path in [built.path, *built.path.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    before = _files(built.path)
    try:
        with serving(built.path, tmp_path, "--state", pg_url, name="host-a") as a, \
                serving(built.path, tmp_path, env={"EDGEMINE_STATE_URL": pg_url}, name="host-b") as b:
            seen_by_a = _mine(a, "im0001")
            assert _mine(b, "im0001") == seen_by_a  # same bundle, same state
            first, second = seen_by_a[0], seen_by_a[1]
            assert httpx.post(f"{b}/v1/labels", json={"image_ids": [first]}).status_code == 200
            after_label = _mine(a, "im0001")  # the very next query on the other host
            assert first not in after_label and second in after_label
            queued = httpx.post(f"{a}/v1/batches", json={"name": "q", "items": [{"image_id": second}]})
            assert queued.status_code == 201, queued.text
            assert second not in _mine(b, "im0001")
            health = httpx.get(f"{b}/v1/health").json()
            assert (health["counts"]["labeled"], health["counts"]["queued"]) == (1, 1)
    finally:
        for path in [built.path, *built.path.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
    assert _files(built.path) == before  # nothing written into the bundle
    state = open_state(BundlePaths(built.path), pg_url)
    assert state.state_counts()["labeled"] == 1 and state.known_ids(built.ids) == set(built.ids)


def test_requests_answer_503_while_postgres_is_down_and_succeed_after_with_no_label_lost(
        make_byo_bundle: Make, open_client: Make) -> None:
    built = make_byo_bundle(n=60, seed=6)
    with running_server() as server:
        url = server.create_db()
        client = open_client(built.path, raise_server_exceptions=False, state_url=url)
        assert client.post("/v1/labels", json={"image_ids": ["im0003"]}).status_code == 200
        server.stop()
        down = client.post("/v1/labels", json={"image_ids": ["im0004"]})
        assert down.status_code == 503, down.text
        assert f"127.0.0.1:{server.port}/" in down.json()["detail"] and down.headers["retry-after"]
        assert client.post("/v1/mine", json={"positive_ids": ["im0001"], "k": 5}).status_code == 503
        assert client.get("/v1/health").status_code == 503
        server.start()
        assert client.post("/v1/labels", json={"image_ids": ["im0004"]}).status_code == 200  # no restart
        mined = client.post("/v1/mine", json={"positive_ids": ["im0001"], "k": 60}).json()["candidates"]
        assert {"im0003", "im0004"}.isdisjoint(c["image_id"] for c in mined)
        stored = open_state(BundlePaths(built.path), url)
        with stored.read() as db:
            labeled = {r[0] for r in db.execute("SELECT image_id FROM images WHERE state = 'labeled'")}
        stored.close()
        assert labeled == {"im0003", "im0004"}  # both acknowledged labels are in PostgreSQL


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgemine.cli.main", *args], env=child_env(env),
                          capture_output=True, text=True, timeout=120)


def test_serve_and_index_with_an_unreachable_state_url_exit_nonzero_naming_the_endpoint(
        tmp_path: Path, make_byo_bundle: Make) -> None:
    built = make_byo_bundle(n=10, seed=1)
    port = free_port()
    url = f"postgresql://edgemine:hunter2@127.0.0.1:{port}/shared"
    for args, env in ((["serve", "--bundle", str(built.path), "--port", str(free_port()), "--state", url], None),
                      (["index", "--embeddings", str(tmp_path / "embeddings-1.parquet"), "--bundle",
                        str(tmp_path / "new-bundle"), "--embedding-model", "test"], {"EDGEMINE_STATE_URL": url})):
        done = _cli(*args, env=env)
        assert done.returncode == 2, done.stderr
        assert f"cannot reach the state database 127.0.0.1:{port}/shared" in done.stderr
        assert "hunter2" not in done.stderr + done.stdout


def test_index_with_a_state_url_keeps_state_in_postgres_and_none_in_the_bundle(
        tmp_path: Path, make_byo_bundle: Make, pg_url: str) -> None:
    make_byo_bundle(n=30, seed=2)  # writes tmp_path/embeddings-1.parquet
    bundle = tmp_path / "pg-bundle"
    done = _cli("index", "--embeddings", str(tmp_path / "embeddings-1.parquet"), "--bundle", str(bundle),
                "--embedding-model", "test", "--state", pg_url)
    assert done.returncode == 0, done.stderr
    assert not list(bundle.glob("state.sqlite*"))
    state = open_state(BundlePaths(bundle), pg_url)
    assert state.state_counts()["unlabeled"] == 30
    labels = tmp_path / "labels.csv"
    labels.write_text("image_id\nim0001\nim0002\n")
    done = _cli("labels", "import", str(labels), "--bundle", str(bundle), env={"EDGEMINE_STATE_URL": pg_url})
    assert done.returncode == 0, done.stderr
    assert state.state_counts()["labeled"] == 2
    assert not list(bundle.glob("state.sqlite*"))


def test_text_with_a_nul_character_is_refused_with_422_on_postgres(
        make_byo_bundle: Make, open_client: Make, pg_url: str) -> None:
    client = open_client(make_byo_bundle(n=10).path, state_url=pg_url, raise_server_exceptions=False)
    response = client.post("/v1/verdicts", json={"verdicts": [{"image_id": "im0001", "verdict": "accept"}],
                                                 "reviewer": "a\x00b"})
    assert response.status_code == 422 and "NUL" in response.json()["detail"]


def test_serve_refuses_a_state_url_that_is_not_postgresql(make_byo_bundle: Make) -> None:
    built = make_byo_bundle(n=10)
    done = _cli("serve", "--bundle", str(built.path), "--port", str(free_port()),
                env={"EDGEMINE_STATE_URL": "sqlite:///x.db", "PATH": os.environ.get("PATH", "")})
    assert done.returncode == 2 and "postgresql://" in done.stderr

