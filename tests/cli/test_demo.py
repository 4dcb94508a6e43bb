"""`edgemine demo`: a port already in use is reported before anything is generated or indexed."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgemine.cli.main import app


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another process-like listener holds for the test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_demo_with_a_busy_port_fails_before_indexing_and_suggests_another(tmp_path: Path, busy_port: int) -> None:
    demo_dir = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--dir", str(demo_dir), "--port", str(busy_port),
                                      "--pretrained", "none", "--scenes", "10"])
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert f"port {busy_port}" in err and "already in use" in err
    suggested = int(err.rsplit("--port", 1)[1].split()[0])
    assert suggested != busy_port
    with socket.socket() as probe:  # the suggestion is a port that is free now
        probe.bind(("127.0.0.1", suggested))
    assert not demo_dir.exists()  # nothing generated, nothing indexed


def test_demo_port_must_be_a_valid_port(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--dir", str(tmp_path / "demo"), "--port", "70000"])
    assert result.exit_code == 2
    assert "65535" in result.output  # click names the valid range
    assert not (tmp_path / "demo").exists()
