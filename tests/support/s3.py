"""A real S3-compatible server for tests: moto's server mode on 127.0.0.1, one bucket per test.

Without moto the tests skip, except under EDGEMINE_REQUIRE_SCALEOUT=1 (CI), where they fail.
Run them in a loopback-only network namespace (see the README, "Running the tests").
"""

from __future__ import annotations

import io
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from PIL import Image

REGION = "us-east-1"
_BUCKETS = itertools.count()


def _require_moto() -> Any:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        reason = f"moto's server mode is not installed ({exc}); pip install 'moto[server]'"
        if os.environ.get("EDGEMINE_REQUIRE_SCALEOUT") == "1":
            pytest.fail(f"EDGEMINE_REQUIRE_SCALEOUT=1 but {reason}")
        pytest.skip(reason)
    return ThreadedMotoServer


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """Start one moto S3 server on 127.0.0.1 (a free port) for the session; yield its URL."""
    server_class = _require_moto()
    server = server_class(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@dataclass
class Bucket:
    """A fresh bucket on the test server, and helpers to put, replace and delete objects."""

    name: str
    endpoint: str
    client: Any  # boto3's S3 client (moto depends on boto3)

    def uri(self, key: str) -> str:
        """Return s3://bucket/key."""
        return f"s3://{self.name}/{key}"

    def put(self, key: str, body: bytes) -> str:
        """Write (or overwrite) an object; return its URI."""
        self.client.put_object(Bucket=self.name, Key=key, Body=body)
        return self.uri(key)

    def delete(self, key: str) -> None:
        """Remove an object."""
        self.client.delete_object(Bucket=self.name, Key=key)

    def etag(self, key: str) -> str:
        """Return the object's ETag as the server reports it."""
        return str(self.client.head_object(Bucket=self.name, Key=key)["ETag"]).strip('"')


def png_bytes(seed: int, size: tuple[int, int] = (24, 16)) -> bytes:
    """Return a small random PNG (distinct per seed)."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def s3_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the AWS variables at the test server (dummy credentials, no instance metadata)."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return moto_endpoint


@pytest.fixture
def bucket(s3_env: str) -> Bucket:
    """A new, empty bucket on the test server (its name unique in the session)."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_env, region_name=REGION,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    name = f"edgemine-test-{os.getpid()}-{next(_BUCKETS)}"
    client.create_bucket(Bucket=name)
    return Bucket(name, s3_env, client)
