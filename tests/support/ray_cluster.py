"""Ray for the tests: a session-wide local instance, and a two-node cluster started with `ray start`.

Ray must run inside a loopback-only network namespace (README, "Running the tests"): it binds every
interface and probes cloud metadata endpoints on its own. Without Ray installed these tests skip,
except in CI (EDGEMINE_REQUIRE_SCALEOUT=1), where a missing extra is a failure.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def require_ray() -> ModuleType:
    """Return the ray module; skip without it, or fail in CI (EDGEMINE_REQUIRE_SCALEOUT=1)."""
    try:
        import ray
        import ray.data
    except ImportError:
        if os.environ.get("EDGEMINE_REQUIRE_SCALEOUT") == "1":
            pytest.fail("EDGEMINE_REQUIRE_SCALEOUT=1 but ray is not installed: pip install -e '.[ray]'")
        pytest.skip("ray is not installed (pip install -e '.[ray]')")
    return ray


def ray_env() -> dict[str, str]:
    """Environment for Ray processes: the repository importable (tests' fakes), quiet, no telemetry."""
    path = os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    return {"PYTHONPATH": path.rstrip(os.pathsep), "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token"}


@pytest.fixture(scope="session")
def ray_local() -> Iterator[Any]:
    """A local Ray for the session: 4 logical CPUs (actors must not starve tasks) and 1 logical GPU."""
    ray = require_ray()
    saved = {k: os.environ.get(k) for k in ray_env()}
    os.environ.update({**ray_env(), "RAY_AUTH_MODE": "disabled"})  # workers inherit the driver's env
    ray.init(num_cpus=4, num_gpus=1, object_store_memory=256 * 2**20, include_dashboard=False,
             log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class TwoNodeCluster:
    """A head and a worker node on 127.0.0.1, started with the `ray` CLI."""

    address: str
    env: dict[str, str]


def _ray_cli() -> str:
    found = Path(sys.executable).with_name("ray")
    return str(found) if found.exists() else (shutil.which("ray") or "ray")


def _alive_nodes(address: str, env: dict[str, str]) -> int:
    code = (f"import ray; ray.init(address={address!r}, log_to_driver=False); "
            "print(sum(1 for n in ray.nodes() if n['Alive']))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    return int(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 and done.stdout.strip() else 0


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    # Only the process groups this fixture started (`ray stop` would stop every Ray on the machine).
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


@contextlib.contextmanager
def two_nodes(port: int) -> Iterator[TwoNodeCluster]:
    """Run `ray start --head --block` and `ray start --address --block` on 127.0.0.1 until exit."""
    require_ray()
    temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    # Token auth with this cluster's own token (head, second node and drivers all read it).
    env = {**os.environ, **ray_env(), "HOME": str(temp), "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "2", "--disable-usage-stats", "--block"]
    address = f"127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen(
            [_ray_cli(), "start", "--head", "--port", str(port), "--include-dashboard", "false",
             "--temp-dir", str(temp / "r"), *common],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        procs.append(subprocess.Popen([_ray_cli(), "start", "--address", address, *common], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
        while time.monotonic() < deadline and _alive_nodes(address, env) < 2:
            time.sleep(1)
        assert _alive_nodes(address, env) == 2, "the two-node Ray cluster did not come up"
        yield TwoNodeCluster(address, env)
    finally:
        _stop(procs)
        shutil.rmtree(temp, ignore_errors=True)
