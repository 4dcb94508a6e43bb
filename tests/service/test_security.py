"""Security of the service: only image pixels are served, the optional API key, allowed Host headers."""

from __future__ import annotations

import hmac
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from edgemine.bundle.layout import ModelInfo
from edgemine.indexer import ModelChoice, read_embeddings_source, run_index
from edgemine.service.api import security
from edgemine.service.api.security import host_of, issue_read_token, verify_read_token
from edgemine.service.app import create_app
from edgemine.service.config import Settings
from tests.support.state_backend import state_url

Make = Callable[..., Any]
KEY = "s3cret-key-for-tests"
BYO_MODEL = ModelChoice(ModelInfo(identity="byo:test", name="test", pretrained="external"), None)


# -- only files that decode as images are served ------------------------------------------------------

def _byo_bundle_with_paths(tmp_path: Path, paths: dict[str, str], roots: list[str] | None = None) -> Path:
    """A BYO bundle whose rows point at `paths`; optionally its manifest's image_roots rewritten (old bundles)."""
    ids = list(paths)
    vectors = np.random.default_rng(0).standard_normal((len(ids), 4)).astype(np.float32)
    source = tmp_path / "embeddings.parquet"
    pq.write_table(pa.table({
        "image_id": ids,
        "embedding": pa.array(vectors.tolist(), pa.list_(pa.float32())),
        "path": [paths[i] for i in ids],
    }), source)
    bundle = tmp_path / "bundle"
    # An operator may declare a root as wide as "/" (--image-root /): the index accepts it.
    root = Path("/") if roots is not None else None
    assert run_index(read_embeddings_source(source, root), bundle, BYO_MODEL, progress=False,
                     state_url=state_url(bundle)).published
    if roots is not None:
        manifest = bundle / "versions" / (bundle / "CURRENT").read_text().strip() / "manifest.json"
        data = json.loads(manifest.read_text())
        data["image_roots"] = roots  # what versions that computed roots as a common prefix wrote
        manifest.write_text(json.dumps(data))
    return bundle


def test_host_file_under_a_root_of_slash_is_never_served(tmp_path: Path, open_client: Make) -> None:
    secret = tmp_path / "secrets" / "passwd"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    html = tmp_path / "secrets" / "page.jpg"
    html.write_text("<html><script>alert(document.cookie)</script></html>")
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(photo)
    bundle = _byo_bundle_with_paths(
        tmp_path, {"pw": "/etc/passwd", "local-pw": str(secret), "html": str(html), "photo": str(photo)}, roots=["/"])
    client = open_client(bundle)

    for image_id in ("pw", "local-pw", "html"):
        for params in ({}, {"size": 64}):
            response = client.get(f"/v1/images/{image_id}", params=params)
            assert response.status_code == 415, (image_id, params, response.status_code)
            assert "not JPEG, PNG, WebP or BMP" in response.json()["detail"]
            assert response.headers["x-content-type-options"] == "nosniff"
            assert b"root:" not in response.content and b"<script>" not in response.content
    # A real image under the same (too wide) root is still served, as its pixels.
    ok = client.get("/v1/images/photo")
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/png"
    assert ok.headers["x-content-type-options"] == "nosniff"


def test_symlink_out_of_the_root_is_refused(tmp_path: Path, open_client: Make) -> None:
    root = tmp_path / "images"
    root.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "real.png")
    outside = tmp_path / "outside.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(outside)
    os.symlink(outside, root / "escape.png")
    os.symlink("/etc/passwd", root / "passwd.png")
    bundle = _byo_bundle_with_paths(tmp_path, {"real": str(root / "real.png"), "escape": str(root / "escape.png"),
                                               "passwd": str(root / "passwd.png")}, roots=[str(root)])
    client = open_client(bundle)
    assert client.get("/v1/images/real").status_code == 200
    for image_id in ("escape", "passwd"):
        response = client.get(f"/v1/images/{image_id}")
        assert response.status_code == 403 and "outside the bundle's image roots" in response.json()["detail"]


def test_full_size_is_reencoded_and_bounded(tmp_path: Path, open_client: Make) -> None:
    photo = tmp_path / "wide.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 900, 3), np.uint8)).save(photo, quality=95)
    # Bytes after the JPEG's end marker (a polyglot's payload) must not be served.
    photo.write_bytes(photo.read_bytes() + b"<script>alert(1)</script>")
    bundle = _byo_bundle_with_paths(tmp_path, {"wide": str(photo)})
    client = open_client(bundle, full_image_max_edge=600)
    response = client.get("/v1/images/wide")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert b"<script>" not in response.content
    with Image.open(io.BytesIO(response.content)) as im:
        assert im.format == "JPEG" and im.size == (600, 200)


# -- optional API key ---------------------------------------------------------------------------------

@pytest.fixture
def keyed(make_byo_bundle: Make, open_client: Make) -> TestClient:
    bundle = make_byo_bundle(n=20)
    client: TestClient = open_client(bundle.path, api_key=KEY)
    return client


def test_api_key_is_required_on_v1_but_not_on_health_and_metrics(keyed: TestClient,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    query = {"positive_ids": ["im0001"], "k": 3}
    missing = keyed.post("/v1/mine", json=query)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert "API key" in missing.json()["detail"]
    wrong = keyed.post("/v1/mine", json=query, headers={"Authorization": "Bearer not-the-key"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "wrong API key"
    assert wrong.headers["www-authenticate"].startswith("Bearer")
    basic = keyed.post("/v1/mine", json=query, headers={"Authorization": f"Basic {KEY}"})
    assert basic.status_code == 401
    right = keyed.post("/v1/mine", json=query, headers={"Authorization": f"Bearer {KEY}"})
    assert right.status_code == 200 and len(right.json()["candidates"]) == 3
    assert compared and all(b == KEY.encode() for _, b in compared)  # constant-time comparison

    for path in ("/v1/images", "/v1/batches", "/v1/read-token", "/v1/nope"):
        assert keyed.get(path).status_code == 401, path
    assert keyed.get("/v1/health").status_code == 200
    assert keyed.get("/metrics").status_code == 200
    assert keyed.get("/").status_code == 200  # the page itself, which then asks for the key


def test_read_tokens_open_images_and_exports_only(tmp_path: Path, open_client: Make) -> None:
    photo = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    client = open_client(_byo_bundle_with_paths(tmp_path, {"a": str(photo)}), api_key=KEY)
    auth = {"Authorization": f"Bearer {KEY}"}
    issued = client.get("/v1/read-token", headers=auth).json()
    token = issued["token"]
    assert issued["expires_in"] == security.READ_TOKEN_TTL_S and KEY not in token

    assert client.get("/v1/images/a").status_code == 401
    assert client.get("/v1/images/a", params={"token": token}).status_code == 200
    assert client.get("/v1/images/a", params={"token": token, "size": 32}).status_code == 200
    tampered = token[:-1] + ("1" if token.endswith("0") else "0")  # always differs from the real token
    assert client.get("/v1/images/a", params={"token": tampered}).status_code == 401
    # Not a key: it opens nothing else.
    assert client.get("/v1/images", params={"token": token}).status_code == 401
    assert client.get("/v1/batches", params={"token": token}).status_code == 401
    assert client.post("/v1/mine", params={"token": token}, json={"positive_ids": ["a"]}).status_code == 401
    batch = client.post("/v1/batches", headers=auth, json={"name": "b", "items": [{"image_id": "a"}]}).json()
    export = client.get(f"/v1/batches/{batch['batch_id']}/export", params={"format": "jsonl", "token": token})
    assert export.status_code == 200 and json.loads(export.text.splitlines()[0])["image_id"] == "a"


def test_read_tokens_expire_and_need_the_key() -> None:
    token = issue_read_token(KEY, now=1_000, ttl=60)
    assert verify_read_token(KEY, token, now=1_030)
    assert not verify_read_token(KEY, token, now=1_061)
    assert not verify_read_token("another-key", token, now=1_030)
    expiry, sig = token.split(".")
    assert not verify_read_token(KEY, f"{int(expiry) + 3600}.{sig}", now=1_030)  # a longer life is not forgeable
    assert not verify_read_token(KEY, "garbage", now=1_030)


def test_without_a_key_the_read_token_is_null(make_byo_bundle: Make, open_client: Make) -> None:
    client = open_client(make_byo_bundle(n=5).path)
    assert client.get("/v1/read-token").json() == {"token": None, "expires_in": None}
    assert Settings(bundle=Path("b"), api_key="").api_key is None


# -- allowed Host headers (DNS rebinding) ---------------------------------------------------------------

def test_host_header_must_be_an_allowed_host(make_byo_bundle: Make, open_client: Make,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGEMINE_ALLOWED_HOSTS")  # the defaults: local names only
    client = open_client(make_byo_bundle(n=5).path)
    for host in ("localhost", "localhost:8000", "127.0.0.1:9", "[::1]:8000", "LOCALHOST"):
        assert client.get("/v1/health", headers={"host": host}).status_code == 200, host
    for host in ("evil.example", "evil.example:8000", "testserver", "127.0.0.1.evil.example", "[::1", ""):
        response = client.get("/v1/health", headers={"host": host})
        assert response.status_code == 400, host
        assert "--allowed-host" in response.json()["detail"]
    assert client.get("/", headers={"host": "evil.example"}).status_code == 400


def test_allowed_hosts_from_the_environment_and_wildcards(make_byo_bundle: Make, open_client: Make,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = make_byo_bundle(n=5).path
    monkeypatch.setenv("EDGEMINE_ALLOWED_HOSTS", "miner.lan, *.corp.example")
    client = open_client(bundle)
    assert client.app.state.settings.allowed_hosts == ["miner.lan", "*.corp.example"]
    for host, status in (("miner.lan:8000", 200), ("a.corp.example", 200), ("corp.example", 400),
                         ("localhost", 400)):
        assert client.get("/v1/health", headers={"host": host}).status_code == status, host
    anyhost = open_client(bundle, allowed_hosts=["*"])
    assert anyhost.get("/v1/health", headers={"host": "whatever.example"}).status_code == 200
    with pytest.raises(ValueError, match="wildcard"):
        Settings(bundle=bundle, allowed_hosts=["evil.*"])


def test_host_parsing() -> None:
    assert host_of("Example.COM:80") == "example.com"
    assert host_of("[::1]:8000") == "::1" and host_of("[::1]") == "::1"
    assert host_of("a:b") is None and host_of("[::1]x") is None and host_of(":80") is None


# -- `edgemine serve` passes the options to its workers --------------------------------------------------

def test_serve_exports_api_key_and_allowed_hosts(make_byo_bundle: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from edgemine.cli.main import app as cli

    bundle = make_byo_bundle(n=5).path
    ran: list[dict[str, str | None]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: ran.append(
        {"key": os.environ.get("EDGEMINE_API_KEY"), "hosts": os.environ.get("EDGEMINE_ALLOWED_HOSTS")}))
    for var in ("EDGEMINE_BUNDLE", "EDGEMINE_PUBLIC_URL", "EDGEMINE_API_KEY", "EDGEMINE_ALLOWED_HOSTS"):
        monkeypatch.setenv(var, "")  # serve sets them: recorded, so monkeypatch restores them
        monkeypatch.delenv(var)
    runner = CliRunner()
    result = runner.invoke(cli, ["serve", "--bundle", str(bundle), "--host", "10.1.2.3", "--api-key", KEY,
                                 "--allowed-host", "miner.lan", "--allowed-host", "m2.lan"])
    assert result.exit_code == 0, result.output
    assert ran[-1] == {"key": KEY, "hosts": "miner.lan,m2.lan,10.1.2.3"}
    assert KEY not in result.output

    for var in ("EDGEMINE_API_KEY", "EDGEMINE_ALLOWED_HOSTS"):  # as in a fresh process
        os.environ.pop(var)
    result = runner.invoke(cli, ["serve", "--bundle", str(bundle), "--host", "0.0.0.0"])
    assert result.exit_code == 0, result.output
    assert ran[-1] == {"key": None, "hosts": "localhost,127.0.0.1,::1"}
    settings = Settings()
    assert settings.allowed_hosts == ["localhost", "127.0.0.1", "::1"] and settings.api_key is None

    monkeypatch.setenv("EDGEMINE_API_KEY", "from-env")
    result = runner.invoke(cli, ["serve", "--bundle", str(bundle)])
    assert result.exit_code == 0, result.output
    assert ran[-1]["key"] == "from-env"
    assert create_app(Settings()).state.settings.api_key.get_secret_value() == "from-env"
