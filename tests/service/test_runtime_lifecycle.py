"""Hot switching to newly published bundle versions, and refusing to start on a bad bundle."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from edgemine.bundle import BundleError, ModelMismatch
from edgemine.bundle.layout import ModelInfo
from edgemine.cli.main import app as cli
from edgemine.indexer import ModelChoice, run_index, scan_directory
from edgemine.service.app import create_app
from edgemine.service.config import Settings
from tests.support.state_backend import state_url

Make = Callable[..., Any]


def reindex(built: Any, model: ModelChoice, **kwargs: Any) -> int:
    metadata = built.path.parent / "metadata.csv"
    report = run_index(scan_directory(built.image_root, metadata), built.path, model, workers=0,
                       progress=False, **kwargs, state_url=state_url(built.path))
    assert report.published and report.version is not None
    return report.version


def test_hot_switch_to_a_new_version(image_bundle: Any, open_client: Make, make_images: Make,
                                     fake_model: ModelChoice) -> None:
    client = open_client(image_bundle.path)
    positive = image_bundle.ids[0]
    before = client.post("/v1/mine", json={"positive_ids": [positive], "k": 100}).json()
    assert before["bundle_version"] == 1 and len(before["candidates"]) == 29

    new_ids = make_images(image_bundle.image_root, 5, seed=41, prefix="fresh")
    assert reindex(image_bundle, fake_model) == 2

    after = client.post("/v1/mine", json={"positive_ids": [positive], "k": 100}).json()
    assert after["bundle_version"] == 2 and len(after["candidates"]) == 34
    assert set(new_ids) <= {c["image_id"] for c in after["candidates"]}
    by_new = client.post("/v1/mine", json={"positive_ids": [new_ids[0]], "k": 3})
    assert by_new.status_code == 200 and by_new.json()["candidates"][0]["nearest_example_id"] == new_ids[0]
    assert client.get(f"/v1/images/{new_ids[1]}").status_code == 200
    health = client.get("/v1/health").json()
    assert health["bundle_version"] == 2 and health["counts"]["images"] == 35 and health["switch_error"] is None


@pytest.mark.parametrize("expected_model", [None, "fake/v1"])
def test_version_built_with_another_model_is_not_switched_to(image_bundle: Any, open_client: Make,
                                                             fake_embedder: Any, fake_model: ModelChoice,
                                                             make_images: Make, expected_model: str | None) -> None:
    settings = {"expected_model": expected_model} if expected_model else {}
    client = open_client(image_bundle.path, **settings)
    positive = image_bundle.ids[0]
    assert client.post("/v1/mine", json={"positive_ids": [positive]}).json()["bundle_version"] == 1

    other = ModelChoice(ModelInfo(identity="fake/v2", name="fake2", pretrained="none"), lambda: fake_embedder)
    assert reindex(image_bundle, other, rebuild=True) == 2

    health = client.get("/v1/health").json()
    assert health["bundle_version"] == 1 and health["model"] == "fake/v1"
    assert "fake/v2" in health["switch_error"]
    for body in ({"positive_ids": [positive], "k": 5}, {"texts": ["night"], "k": 5}):
        response = client.post("/v1/mine", json=body)
        assert response.status_code == 200 and response.json()["bundle_version"] == 1
        assert response.json()["model"] == "fake/v1"
    assert client.get(f"/v1/images/{positive}").status_code == 200

    # A later version with the served model is picked up again, and the error clears.
    make_images(image_bundle.image_root, 2, seed=5, prefix="later")
    assert reindex(image_bundle, fake_model, rebuild=True) == 3
    health = client.get("/v1/health").json()
    assert health["bundle_version"] == 3 and health["switch_error"] is None
    assert client.post("/v1/mine", json={"positive_ids": [positive], "k": 100}).json()["bundle_version"] == 3


def publish_current(bundle: Path, name: str) -> None:
    # As the indexer does: a new file renamed over CURRENT (a new inode, so the switch is seen).
    tmp = bundle / ".CURRENT.test"
    tmp.write_text(f"{name}\n")
    os.replace(tmp, bundle / "CURRENT")


def test_broken_new_version_keeps_the_old_one(make_byo_bundle: Make, open_client: Make) -> None:
    built = make_byo_bundle(n=50)
    client = open_client(built.path)
    publish_current(built.path, "v000007")  # names a version that does not exist
    response = client.post("/v1/mine", json={"positive_ids": ["im0001"], "k": 3})
    assert response.status_code == 200 and response.json()["bundle_version"] == 1
    assert "v000007" in client.get("/v1/health").json()["switch_error"]
    publish_current(built.path, "v000001")
    health = client.get("/v1/health").json()
    assert health["switch_error"] is None and health["bundle_version"] == 1


def start(bundle: Path, **settings: Any) -> None:
    with TestClient(create_app(Settings(bundle=bundle, **settings), loader=lambda n, p: None)):
        pass  # pragma: no cover - the lifespan must raise first


def test_refuses_missing_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        start(tmp_path / "missing")


def test_refuses_bundle_without_current(make_byo_bundle: Make) -> None:
    built = make_byo_bundle(n=10)
    (built.path / "CURRENT").unlink()
    with pytest.raises(BundleError, match="no published version"):
        start(built.path)


def test_refuses_corrupt_current(make_byo_bundle: Make) -> None:
    built = make_byo_bundle(n=10)
    (built.path / "CURRENT").write_text("garbage")
    with pytest.raises(BundleError, match="corrupt"):
        start(built.path)


def test_refuses_corrupt_manifest(make_byo_bundle: Make) -> None:
    built = make_byo_bundle(n=10)
    (built.version_dir / "manifest.json").write_text('{"version": 1, "model": ')
    with pytest.raises(BundleError, match=r"manifest\.json is corrupt"):
        start(built.path)


def test_refuses_inconsistent_version(make_byo_bundle: Make) -> None:
    built = make_byo_bundle(n=10)
    manifest = json.loads((built.version_dir / "manifest.json").read_text())
    manifest["counts"]["images"] = 11
    (built.version_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="inconsistent"):
        start(built.path)


def test_refuses_another_model(make_byo_bundle: Make) -> None:
    built = make_byo_bundle(n=10)
    with pytest.raises(ModelMismatch, match="byo:test"):
        start(built.path, expected_model="ViT-B-32/laion2b_s34b_b79k")
    start_ok = create_app(Settings(bundle=built.path, expected_model="byo:test"))
    with TestClient(start_ok) as client:
        assert client.get("/v1/health").json()["model"] == "byo:test"


def test_cli_serve_refuses_bad_bundles(tmp_path: Path, make_byo_bundle: Make) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["serve", "--bundle", str(tmp_path / "missing"), "--port", "1"])
    assert result.exit_code == 2
    assert "error:" in result.output and "does not exist" in result.output
    built = make_byo_bundle(n=10)
    result = runner.invoke(cli, ["serve", "--bundle", str(built.path), "--expected-model", "other/v9"])
    assert result.exit_code == 2 and "error:" in result.output and "other/v9" in result.output


def test_cli_mine(make_byo_bundle: Make) -> None:
    built = make_byo_bundle(n=60)
    runner = CliRunner()
    result = runner.invoke(cli, ["mine", "--bundle", str(built.path), "-p", "im0001", "-k", "4", "--format", "jsonl",
                                 "-f", "frame<30", "-f", "time_of_day in day,night"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 4
    assert all(r["metadata"]["frame"] < 30 and r["metadata"]["time_of_day"] in ("day", "night") for r in rows)
    result = runner.invoke(cli, ["mine", "--bundle", str(built.path), "-p", "ghost"])
    assert result.exit_code == 2 and "error:" in result.output and "ghost" in result.output
    result = runner.invoke(cli, ["mine", "--bundle", str(built.path), "-p", "im0001", "-f", "nope=1"])
    assert result.exit_code == 2 and "valid columns" in result.output
