"""The Ray engine indexes images on object storage like the local engine: same ids, vectors, failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgemine.bundle import load_current
from edgemine.cli.index import read_source
from edgemine.indexer import IndexReport, ModelChoice, run_index
from edgemine.indexer.ray_engine import RayEngine
from tests.support.s3 import Bucket, png_bytes


def index(source: Any, bundle: Path, model: ModelChoice, engine: Any = None) -> IndexReport:
    return run_index(source, bundle, model, batch_size=4, workers=0, progress=False, engine=engine)


def test_ray_engine_indexes_an_s3_prefix_like_the_local_engine(
        ray_local: Any, tmp_path: Path, bucket: Bucket, fake_model: ModelChoice) -> None:
    ids = [f"g{i % 2}/img{i:02d}.png" for i in range(8)]
    for i, image_id in enumerate(ids):
        bucket.put(f"drive/{image_id}", png_bytes(i))
    bucket.put("drive/g0/broken.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a PNG header, no image
    local = index(read_source(bucket.uri("drive"), None, None), tmp_path / "local", fake_model)
    # The decode tasks read the objects with the driver's endpoint and credentials (runtime_env).
    ray = index(read_source(bucket.uri("drive"), None, None), tmp_path / "ray", fake_model, RayEngine(actors=1))
    assert (ray.added, ray.published) == (local.added, True) == (8, True)
    assert [f["image_id"] for f in ray.failed] == [f["image_id"] for f in local.failed] == ["g0/broken.png"]
    assert ray.failed[0]["reason"] == local.failed[0]["reason"]
    a, b = load_current(tmp_path / "local"), load_current(tmp_path / "ray")
    assert a.image_ids == b.image_ids and sorted(b.image_ids) == sorted(ids)
    np.testing.assert_allclose(np.asarray(b.embeddings[np.arange(8)]), np.asarray(a.embeddings[np.arange(8)]),
                               atol=1e-6)
    assert b.manifest.image_roots == [bucket.uri("drive/")]
