"""The service over its state database: read-only state, database errors while switching, one
timestamp format in what it returns."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from edgemine.bundle import state as state_module
from edgemine.bundle.state import StateDB
from edgemine.indexer import ModelChoice, run_index, scan_directory
from edgemine.service import runtime as runtime_module
from tests.support.state_backend import sqlite_only, state_of, state_url

Make = Callable[..., Any]
UTC_TEXT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def test_health_reports_a_writable_state_database(image_bundle: Any, open_client: Make) -> None:
    assert open_client(image_bundle.path).get("/v1/health").json()["writable"] is True


@sqlite_only
def test_read_only_state_serves_reads_and_answers_writes_with_503(
        image_bundle: Any, open_client: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    # How a non-root container user sees a root-owned bundle (see StateDB: the same probe decides).
    monkeypatch.setattr(state_module, "state_writable", lambda path: False)
    client = open_client(image_bundle.path, raise_server_exceptions=False)
    health = client.get("/v1/health")
    assert health.status_code == 200 and health.json()["writable"] is False and health.json()["ready"]
    mined = client.post("/v1/mine", json={"positive_ids": [image_bundle.ids[0]], "k": 5})
    assert mined.status_code == 200 and len(mined.json()["candidates"]) == 5
    assert client.get("/v1/batches").json() == []

    for path, body in (("/v1/labels", {"image_ids": [image_bundle.ids[1]]}),
                       ("/v1/batches", {"name": "b", "items": [{"image_id": image_bundle.ids[2]}]})):
        response = client.post(path, json=body)
        assert response.status_code == 503, response.text
        assert "read-only" in response.json()["detail"]
    monkeypatch.undo()
    assert state_of(image_bundle.path).state_counts()["unlabeled"] == 30


def test_switch_meeting_a_database_error_keeps_serving_the_old_version(
        image_bundle: Any, open_client: Make, make_images: Make, fake_model: ModelChoice,
        monkeypatch: pytest.MonkeyPatch) -> None:
    client = open_client(image_bundle.path)
    positive = image_bundle.ids[0]
    assert client.post("/v1/mine", json={"positive_ids": [positive]}).json()["bundle_version"] == 1
    make_images(image_bundle.image_root, 2, seed=12, prefix="more")
    run_index(scan_directory(image_bundle.image_root), image_bundle.path, fake_model, workers=0, progress=False,
              state_url=state_url(image_bundle.path))

    real = StateDB.non_unlabeled

    def broken(self: StateDB) -> Any:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(StateDB, "non_unlabeled", broken)
    monkeypatch.setattr(runtime_module, "SWITCH_RETRY_SECONDS", 0.0)  # retried on every request
    health = client.get("/v1/health").json()
    assert health["bundle_version"] == 1 and "disk I/O error" in health["switch_error"]
    response = client.post("/v1/mine", json={"positive_ids": [positive], "k": 100})
    assert response.status_code == 200 and response.json()["bundle_version"] == 1

    # A database error may be transient: once it clears, the switch is retried.
    monkeypatch.setattr(StateDB, "non_unlabeled", real)
    health = client.get("/v1/health").json()
    assert health["bundle_version"] == 2 and health["switch_error"] is None


def test_batches_show_metadata_and_times_as_mining_does(image_bundle: Any, open_client: Make) -> None:
    client = open_client(image_bundle.path)
    candidate = client.post("/v1/mine", json={"positive_ids": [image_bundle.ids[0]], "k": 1}).json()["candidates"][0]
    batch = client.post("/v1/batches", json={"name": "b", "items": [{"image_id": candidate["image_id"]}]}).json()
    assert batch["items"][0]["metadata"] == candidate["metadata"]
    assert UTC_TEXT.match(batch["created_at"])
    assert client.post("/v1/labels", json={"image_ids": [candidate["image_id"]]}).status_code == 200
    with state_of(image_bundle.path).write() as db:
        stamps = [r[0] for r in db.execute("SELECT at FROM label_events UNION ALL "
                                           "SELECT state_updated_at FROM images WHERE state_updated_at IS NOT NULL")]
    assert len(stamps) == 3 and all(UTC_TEXT.match(s) for s in stamps), stamps
    manifest = (image_bundle.version_dir / "manifest.json").read_text()
    assert all(UTC_TEXT.match(s) for s in re.findall(r'"(?:created|updated)_at": "([^"]+)"', manifest))


REAL_CHECK = """
import json, sys
from fastapi.testclient import TestClient
from edgemine.service.app import create_app
from edgemine.service.config import Settings
with TestClient(create_app(Settings(bundle=sys.argv[1])), raise_server_exceptions=False) as client:
    health = client.get("/v1/health")
    label = client.post("/v1/labels", json={"image_ids": [sys.argv[2]]})
    mine = client.post("/v1/mine", json={"positive_ids": [sys.argv[2]], "k": 2})
print(json.dumps([health.status_code, health.json().get("writable"), label.status_code,
                  label.json().get("detail"), mine.status_code]))
"""


@sqlite_only
def test_state_file_really_not_writable_by_the_service_user(make_byo_bundle: Make) -> None:
    # Not simulated: the service runs as a user that may not write the bundle (a non-root
    # container on a bundle owned by someone else), with no -wal/-shm files left beside it.
    built = make_byo_bundle(n=20)
    entries = [built.path, *built.path.rglob("*")]
    prefix: list[str] = []
    try:
        if os.geteuid() == 0:
            # root ignores permissions; root without the capabilities that bypass them does not.
            if shutil.which("setpriv") is None:
                pytest.skip("running as root without setpriv: cannot drop the permission override")
            try:
                for entry in entries:
                    os.chown(entry, 65534, 65534)
            except OSError as exc:
                pytest.skip(f"cannot hand the bundle to another user here: {exc}")
            prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner,-chown"]
        else:
            for entry in (built.path, built.path / "state.sqlite"):
                entry.chmod(entry.stat().st_mode & ~0o222)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        done = subprocess.run([*prefix, sys.executable, "-c", REAL_CHECK, str(built.path), built.ids[0]],
                              capture_output=True, text=True, timeout=300, env=env)
    finally:
        built.path.chmod(0o755)
    assert done.returncode == 0, done.stderr[-3000:]
    health, writable, label, detail, mine = json.loads(done.stdout.strip().splitlines()[-1])
    assert (health, writable, label, mine) == (200, False, 503, 200)
    assert "read-only" in detail
