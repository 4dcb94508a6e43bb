"""`edgemine serve --cors-origin URL` (repeatable, else EDGEMINE_CORS_ORIGINS): Label Studio can load our images."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from edgemine.cli.main import app
from edgemine.service.app import create_app
from edgemine.service.config import Settings
from tests.support.live_server import serving

LABEL_STUDIO = "http://localhost:8080"
OTHER = "http://review.example:9000"


def serve_without_uvicorn(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[Any, dict[str, str]]:
    """Run `edgemine serve ARGS` up to where uvicorn would start; return the result and the workers' env."""
    import uvicorn

    seen: dict[str, str] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *_, **__: seen.update(
        {k: v for k, v in os.environ.items() if k.startswith("EDGEMINE_")}))
    saved = {k: v for k, v in os.environ.items() if k.startswith("EDGEMINE_")}
    try:
        return CliRunner().invoke(app, ["serve", *args]), seen
    finally:  # serve exports EDGEMINE_* for its workers: restore this process's environment
        for name in [k for k in os.environ if k.startswith("EDGEMINE_")]:
            del os.environ[name]
        os.environ.update(saved)


def allow_origin(client: TestClient, path: str, origin: str) -> str | None:
    answer = client.get(path, headers={"Origin": origin})
    assert answer.status_code == 200, answer.text
    return answer.headers.get("access-control-allow-origin")


def worker_app(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, bundle: Path) -> TestClient:
    """The app a worker builds from the environment `serve` handed it."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("EDGEMINE_ALLOWED_HOSTS", "testserver")
    monkeypatch.setenv("EDGEMINE_BUNDLE", str(bundle))
    return TestClient(create_app(Settings()))


def test_cors_header_on_images_for_allowed_origins_only(image_bundle: Any,
                                                        open_client: Callable[..., TestClient]) -> None:
    client = open_client(image_bundle.path, cors_origins=[LABEL_STUDIO, OTHER])
    image = f"/v1/images/{image_bundle.ids[0]}"
    for path in (image, f"{image}?size=256"):
        assert allow_origin(client, path, LABEL_STUDIO) == LABEL_STUDIO
        assert allow_origin(client, path, OTHER) == OTHER
        assert allow_origin(client, path, "http://evil.example") is None
    preflight = client.options(image, headers={"Origin": LABEL_STUDIO, "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == LABEL_STUDIO
    closed = open_client(image_bundle.path)
    assert allow_origin(closed, image, LABEL_STUDIO) is None  # no origin configured: no header


def test_serve_cors_origin_option_is_repeatable_and_reaches_the_workers(
        tmp_path: Path, image_bundle: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEMINE_CORS_ORIGINS", "http://from-env.example")  # the option wins over it
    result, seen = serve_without_uvicorn(monkeypatch, "--bundle", str(image_bundle.path),
                                         "--cors-origin", LABEL_STUDIO, "--cors-origin", OTHER)
    assert result.exit_code == 0, result.output
    assert json.loads(seen["EDGEMINE_CORS_ORIGINS"]) == [LABEL_STUDIO, OTHER]
    assert f"CORS origins: {LABEL_STUDIO}, {OTHER}" in result.stderr
    with worker_app(seen, monkeypatch, image_bundle.path) as client:
        image = f"/v1/images/{image_bundle.ids[1]}"
        assert allow_origin(client, image, LABEL_STUDIO) == LABEL_STUDIO
        assert allow_origin(client, image, "http://from-env.example") is None


def test_serve_takes_cors_origins_from_the_environment_without_the_option(
        image_bundle: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEMINE_CORS_ORIGINS", f"{LABEL_STUDIO},{OTHER}")
    result, seen = serve_without_uvicorn(monkeypatch, "--bundle", str(image_bundle.path))
    assert result.exit_code == 0, result.output
    assert json.loads(seen["EDGEMINE_CORS_ORIGINS"]) == [LABEL_STUDIO, OTHER]
    monkeypatch.delenv("EDGEMINE_CORS_ORIGINS")
    result, seen = serve_without_uvicorn(monkeypatch, "--bundle", str(image_bundle.path))
    assert result.exit_code == 0 and json.loads(seen["EDGEMINE_CORS_ORIGINS"]) == []


@pytest.mark.parametrize("origin", ["http://localhost:8080/", "localhost:8080", "http://localhost:8080/projects"])
def test_serve_refuses_a_cors_origin_a_browser_never_sends(image_bundle: Any, origin: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    result, seen = serve_without_uvicorn(monkeypatch, "--bundle", str(image_bundle.path), "--cors-origin", origin)
    assert result.exit_code == 2 and not seen
    assert f"CORS origin {origin!r} is not an origin: write scheme://host[:port]" in result.stderr
    monkeypatch.setenv("EDGEMINE_CORS_ORIGINS", origin)
    from_env, _ = serve_without_uvicorn(monkeypatch, "--bundle", str(image_bundle.path))
    assert from_env.exit_code == 2 and f"CORS origin {origin!r}" in from_env.stderr


def test_real_serve_with_cors_origin_sends_the_header_on_images(tmp_path: Path, image_bundle: Any) -> None:
    with serving(image_bundle.path, tmp_path, "--cors-origin", LABEL_STUDIO) as base:
        answer = httpx.get(f"{base}/v1/images/{image_bundle.ids[0]}", headers={"Origin": LABEL_STUDIO})
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("image/")
        assert answer.headers["access-control-allow-origin"] == LABEL_STUDIO
