"""Fixtures for the Python API: a small bundle with image files, a live `edgemine serve`, clients on both backends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import edgemine
from edgemine.bundle.layout import ModelInfo
from edgemine.indexer import ModelChoice, read_embeddings_source, run_index
from tests.support.live_server import serving

BYO_MODEL = ModelChoice(ModelInfo(identity="byo:test", name="test", pretrained="external"), None)
TIMES = ("day", "night", "dusk")
T0 = datetime(2024, 3, 1, 6, 0, 0)


@dataclass
class ApiBundle:
    """A published bundle of generated images with precomputed vectors (no model needed to serve it)."""

    path: Path
    ids: list[str]
    vectors: np.ndarray


@pytest.fixture
def api_bundle(tmp_path: Path, make_images: Callable[..., list[str]]) -> ApiBundle:
    """60 small PNGs (ids like g0/img000.png) with 16-d random vectors and metadata (text, int, float, time)."""
    root = tmp_path / "images"
    ids = make_images(root, 60, seed=5)
    vectors = np.random.default_rng(11).standard_normal((len(ids), 16)).astype(np.float32)
    table = pa.table({
        "image_id": ids,
        "path": [f"images/{i}" for i in ids],  # relative to the table's folder
        "embedding": pa.array(vectors.tolist(), pa.list_(pa.float32())),
        "time_of_day": [TIMES[i % 3] for i in range(len(ids))],
        "sequence_id": [f"seq{i % 5}" for i in range(len(ids))],
        # Typed columns, so that both backends are compared on more than strings.
        "frame": pa.array(range(len(ids)), pa.int64()),
        "speed": [float(i % 7) * 1.5 for i in range(len(ids))],
        "timestamp": pa.array([T0 + timedelta(minutes=i) for i in range(len(ids))], pa.timestamp("us")),
    })
    pq.write_table(table, tmp_path / "embeddings.parquet")
    report = run_index(read_embeddings_source(tmp_path / "embeddings.parquet", image_root=root),
                       tmp_path / "bundle", BYO_MODEL, progress=False)
    assert report.published
    return ApiBundle(tmp_path / "bundle", ids, vectors)


@contextmanager
def live_server(bundle: Path, log_dir: Path, *args: str) -> Iterator[str]:
    """Run `edgemine serve` on `bundle` in a subprocess; yield its base URL; stop it afterwards."""
    with serving(bundle, log_dir, *args) as base:
        yield base


@pytest.fixture
def server(api_bundle: ApiBundle, tmp_path: Path) -> Iterator[str]:
    """A live `edgemine serve` on `api_bundle`: its base URL."""
    with live_server(api_bundle.path, tmp_path) as base:
        yield base


@pytest.fixture(params=["local", "http"])
def api(request: pytest.FixtureRequest, api_bundle: ApiBundle) -> Iterator[edgemine.Client]:
    """A Client on `api_bundle`: in process (`edgemine.open`) or over a live server (`edgemine.connect`)."""
    if request.param == "local":
        with edgemine.open(api_bundle.path) as client:
            yield client
        return
    base = request.getfixturevalue("server")
    with edgemine.connect(base, retries=0) as client:
        yield client


@pytest.fixture
def both(api_bundle: ApiBundle, server: str) -> Iterator[tuple[edgemine.Client, edgemine.Client]]:
    """A local and an HTTP Client on the same bundle (the server serves the same directory)."""
    with edgemine.open(api_bundle.path) as local, edgemine.connect(server, retries=0) as remote:
        yield local, remote
