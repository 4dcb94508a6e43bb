"""bundle_thumbnails: small JPEGs of a bundle's images, only from under its declared image roots."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from edgemine.bundle.layout import ModelInfo
from edgemine.indexer import ModelChoice, read_embeddings_source, run_index
from edgemine.scenarios.reports import bundle_thumbnails


def _bundle(tmp_path: Path) -> Path:
    images = tmp_path / "data" / "imgs"
    images.mkdir(parents=True)
    Image.new("RGB", (400, 200), (200, 10, 10)).save(images / "big.png")
    (images / "fake.jpg").write_bytes(b"GIF89a not really")
    Image.new("RGB", (10, 10), (0, 0, 255)).save(images / "link.png")
    ids = ["big", "fake", "link", "nofile"]
    paths = ["imgs/big.png", "imgs/fake.jpg", "imgs/link.png", None]
    vectors = np.random.default_rng(0).standard_normal((len(ids), 8)).astype(np.float32)
    table = pa.table({"image_id": ids, "path": paths,
                      "embedding": pa.array([list(map(float, v)) for v in vectors], pa.list_(pa.float32()))})
    pq.write_table(table, tmp_path / "data" / "emb.parquet")
    bundle = tmp_path / "bundle"
    choice = ModelChoice(ModelInfo(identity="byo:test", name="test", pretrained="external"), None)
    run_index(read_embeddings_source(tmp_path / "data" / "emb.parquet"), bundle, choice, progress=False)
    # after indexing, the file becomes a symlink to one outside the roots (the indexer refuses those)
    outside = tmp_path / "secret.png"
    Image.new("RGB", (10, 10), (0, 0, 255)).save(outside)
    (images / "link.png").unlink()
    (images / "link.png").symlink_to(outside)
    return bundle


def test_bundle_thumbnails_are_small_jpegs_of_images_under_the_roots(tmp_path: Path) -> None:
    thumbnail = bundle_thumbnails(_bundle(tmp_path), edge=64)
    body = thumbnail("big")
    assert body is not None and body.startswith(b"\xff\xd8\xff")
    with Image.open(io.BytesIO(body)) as im:
        assert im.format == "JPEG" and im.size == (64, 32)


def test_bundle_thumbnails_refuse_links_outside_the_roots_non_images_and_unknown_ids(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path)
    thumbnail = bundle_thumbnails(bundle)
    assert thumbnail("link") is None      # a symlink to a file outside the declared image roots
    assert thumbnail("fake") is None      # not an image by its bytes
    assert thumbnail("nofile") is None    # a precomputed embedding without a file
    assert thumbnail("not-in-bundle") is None
    # a 400x200 image is over a 1000-pixel limit: refused before decoding
    assert bundle_thumbnails(bundle, max_pixels=1000)("big") is None
