"""Run a real `edgemine serve` subprocess for a test and wait until it answers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.state_backend import state_url


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return this environment without EDGEMINE_* settings (the tests' own), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEMINE_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env["PYTHONUNBUFFERED"] = "1"
    return env | dict(extra or {})


@contextmanager
def serving(bundle: Path | None, log_dir: Path, *args: str, env: Mapping[str, str] | None = None,
            workers: int = 1, cwd: Path | None = None, name: str = "server",
            ready_timeout: float = 60) -> Iterator[str]:
    """Run `edgemine serve [--bundle BUNDLE] --port P ARGS` until the block ends; yield its base URL.

    Ready when /v1/health answers 200 and, with several workers, every worker has finished its
    lifespan (each logs it). `bundle=None` leaves the bundle to EDGEMINE_BUNDLE in `env`.
    """
    port = free_port()
    log_path = log_dir / f"{name}-{port}.log"
    command = [sys.executable, "-m", "edgemine.cli.main", "serve", "--port", str(port), "--log-level", "info"]
    if bundle is not None:
        command += ["--bundle", str(bundle)]
    if workers > 1:
        command += ["--workers", str(workers)]
    base = f"http://127.0.0.1:{port}"
    served = bundle if bundle is not None else (env or {}).get("EDGEMINE_BUNDLE")
    url = state_url(served) if served is not None else None  # the state backend the tests run on
    extra = {**({"EDGEMINE_STATE_URL": url} if url else {}), **(env or {})}
    with log_path.open("wb") as log:
        proc = subprocess.Popen([*command, *args], cwd=cwd or log_dir, env=child_env(extra), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + ready_timeout
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
                started = log_path.read_text(errors="replace").count("Application startup complete")
                try:
                    ok = httpx.get(f"{base}/v1/health", timeout=2, trust_env=False).status_code == 200
                except httpx.TransportError:
                    ok = False
                if ok and started >= workers:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"server not ready in {ready_timeout:g} s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.1)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the session this helper started
                proc.wait(timeout=10)
