"""`edgemine serve` configured through EDGEMINE_* variables: the environment counts unless an option is given."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from edgemine.cli.main import app
from edgemine.service.config import Settings
from tests.support.live_server import serving

Make = Callable[..., Any]
PUBLIC = "https://mine.example.org/edge"
ORIGINS = ("http://labeling.example", "http://review.example")


def test_serve_subprocess_reads_bundle_public_url_and_cors_origins_from_environment(
        tmp_path: Path, make_byo_bundle: Make) -> None:
    built = make_byo_bundle(n=60, seed=5)
    workdir = tmp_path / "elsewhere"  # no ./bundle here: the bundle must come from EDGEMINE_BUNDLE
    workdir.mkdir()
    env = {"EDGEMINE_BUNDLE": str(built.path), "EDGEMINE_PUBLIC_URL": PUBLIC,
           "EDGEMINE_CORS_ORIGINS": ",".join(ORIGINS)}
    with serving(None, tmp_path, env=env, cwd=workdir) as base:
        health = httpx.get(f"{base}/v1/health").json()
        assert health["counts"]["images"] == 60 and health["model"] == "byo:test"

        mined = httpx.post(f"{base}/v1/mine", json={"positive_ids": ["im0001"], "k": 3}).json()["candidates"]
        batch = httpx.post(f"{base}/v1/batches", json={"name": "env", "items": mined})
        assert batch.status_code == 201, batch.text
        export = httpx.get(f"{base}/v1/batches/{batch.json()['batch_id']}/export", params={"format": "jsonl"})
        assert export.status_code == 200, export.text
        urls = [json.loads(line)["image_url"] for line in export.text.splitlines() if line.strip()]
        assert urls == [f"{PUBLIC}/v1/images/{c['image_id']}" for c in mined]

        for origin in ORIGINS:
            answer = httpx.get(f"{base}/v1/health", headers={"Origin": origin})
            assert answer.headers.get("access-control-allow-origin") == origin
        other = httpx.get(f"{base}/v1/health", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def _serve_without_uvicorn(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[Any, dict[str, str]]:
    """Run `edgemine serve ARGS` up to the point where uvicorn would start; return the result and its env."""
    import uvicorn

    seen: dict[str, str] = {}

    def fake_run(*_: Any, **__: Any) -> None:
        seen.update({k: v for k, v in os.environ.items() if k.startswith("EDGEMINE_")})

    monkeypatch.setattr(uvicorn, "run", fake_run)
    saved = {k: v for k, v in os.environ.items() if k.startswith("EDGEMINE_")}
    try:
        return CliRunner().invoke(app, ["serve", *args]), seen
    finally:  # serve writes EDGEMINE_* for its workers: leave this process as it was
        for name in [k for k in os.environ if k.startswith("EDGEMINE_")]:
            del os.environ[name]
        os.environ.update(saved)


def test_serve_options_not_given_keep_the_environment(tmp_path: Path, make_byo_bundle: Make,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    built = make_byo_bundle(n=20)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEMINE_BUNDLE", str(built.path))
    monkeypatch.setenv("EDGEMINE_PUBLIC_URL", PUBLIC)
    monkeypatch.setenv("EDGEMINE_EXPECTED_MODEL", "byo:test")
    result, seen = _serve_without_uvicorn(monkeypatch)
    assert result.exit_code == 0, result.output
    assert seen["EDGEMINE_BUNDLE"] == str(built.path.resolve())
    assert seen["EDGEMINE_PUBLIC_URL"] == PUBLIC
    assert seen["EDGEMINE_EXPECTED_MODEL"] == "byo:test"


def test_serve_options_given_override_the_environment(tmp_path: Path, make_byo_bundle: Make,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    built = make_byo_bundle(n=20)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEMINE_BUNDLE", str(tmp_path / "missing"))
    monkeypatch.setenv("EDGEMINE_PUBLIC_URL", PUBLIC)
    result, seen = _serve_without_uvicorn(monkeypatch, "--bundle", str(built.path),
                                          "--public-url", "http://other.example")
    assert result.exit_code == 0, result.output
    assert seen["EDGEMINE_BUNDLE"] == str(built.path.resolve())
    assert seen["EDGEMINE_PUBLIC_URL"] == "http://other.example"


def test_serve_expected_model_from_environment_refuses_another_model(
        tmp_path: Path, make_byo_bundle: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    built = make_byo_bundle(n=20)
    monkeypatch.setenv("EDGEMINE_BUNDLE", str(built.path))
    monkeypatch.setenv("EDGEMINE_EXPECTED_MODEL", "byo:other")
    result, _ = _serve_without_uvicorn(monkeypatch)
    assert result.exit_code == 2
    assert "byo:other" in result.stderr and "byo:test" in result.stderr


@pytest.mark.parametrize(("raw", "expected"), [
    ("http://a.example,http://b.example", ["http://a.example", "http://b.example"]),
    (" http://a.example , http://b.example ,", ["http://a.example", "http://b.example"]),
    ("http://a.example", ["http://a.example"]),
    ('["http://a.example", "http://b.example"]', ["http://a.example", "http://b.example"]),
    ("*", ["*"]),
    ("", []),
])
def test_cors_origins_accept_comma_separated_and_json_lists(monkeypatch: pytest.MonkeyPatch, raw: str,
                                                            expected: list[str]) -> None:
    monkeypatch.setenv("EDGEMINE_CORS_ORIGINS", raw)
    assert Settings().cors_origins == expected


def test_cors_origins_malformed_json_list_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEMINE_CORS_ORIGINS", '["http://a.example", ')
    with pytest.raises(ValueError, match="cors_origins"):
        Settings()


@pytest.mark.parametrize(("args", "expected"), [((), 120), (("--worker-healthcheck-timeout", "30"), 30)])
def test_serve_gives_workers_time_to_load_a_large_bundle(tmp_path: Path, make_byo_bundle: Make,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         args: tuple[str, ...], expected: int) -> None:
    # uvicorn's default (5 s) kills and restarts workers still loading a 1M-vector bundle on a busy host.
    import uvicorn

    built = make_byo_bundle(n=20)
    monkeypatch.chdir(tmp_path)
    given: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *_, **kwargs: given.update(kwargs))
    saved = {k: v for k, v in os.environ.items() if k.startswith("EDGEMINE_")}
    try:
        result = CliRunner().invoke(app, ["serve", "--bundle", str(built.path), "--workers", "2", *args])
    finally:
        for name in [k for k in os.environ if k.startswith("EDGEMINE_")]:
            del os.environ[name]
        os.environ.update(saved)
    assert result.exit_code == 0, result.output
    assert given["workers"] == 2 and given["timeout_worker_healthcheck"] == expected
def test_serve_scenarios_folder_option_and_environment(tmp_path: Path, make_byo_bundle: Make,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    built = make_byo_bundle(n=20)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EDGEMINE_SCENARIOS", raising=False)  # an earlier in-process `serve` may have set it
    result, seen = _serve_without_uvicorn(monkeypatch, "--bundle", str(built.path))
    assert result.exit_code == 0, result.output
    assert seen["EDGEMINE_SCENARIOS"] == str(tmp_path / "scenarios")  # ./scenarios of the working directory
    monkeypatch.setenv("EDGEMINE_SCENARIOS", str(tmp_path / "from-env"))
    result, seen = _serve_without_uvicorn(monkeypatch, "--bundle", str(built.path))
    assert seen["EDGEMINE_SCENARIOS"] == str(tmp_path / "from-env")
    result, seen = _serve_without_uvicorn(monkeypatch, "--bundle", str(built.path), "--scenarios", "team/scen")
    assert result.exit_code == 0, result.output
    assert seen["EDGEMINE_SCENARIOS"] == str(tmp_path / "team" / "scen")  # resolved for the workers
