"""/v1/images/{id} serves images on object storage (a real S3-compatible server, moto, on 127.0.0.1):
thumbnails and full size, 403 outside the declared roots, 404 for a deleted object, 503 naming an
unreachable endpoint, and a bounded number of bytes read per request."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from edgemine.client.client import open as open_bundle
from edgemine.client.errors import ImageUnavailable
from edgemine.indexer import ModelChoice, read_manifest_source, run_index, scan_directory
from edgemine.scenarios.reports import bundle_thumbnails
from tests.support.live_server import free_port
from tests.support.s3 import Bucket, png_bytes


@pytest.fixture
def s3_bundle(tmp_path: Path, bucket: Bucket, fake_model: ModelChoice) -> Path:
    """A bundle indexed from s3://bucket/drive (four 24x16 PNGs)."""
    for i in range(4):
        bucket.put(f"drive/img{i}.png", png_bytes(i))
    run_index(scan_directory(bucket.uri("drive")), tmp_path / "b", fake_model, workers=0, progress=False)
    return tmp_path / "b"


def test_thumbnails_and_full_images_are_served_from_s3(s3_bundle: Path, open_client: Callable[..., TestClient]) -> None:
    client = open_client(s3_bundle)
    thumb = client.get("/v1/images/img1.png", params={"size": 16})
    assert thumb.status_code == 200, thumb.text
    assert thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size == (16, 11)
    full = client.get("/v1/images/img1.png")
    assert full.status_code == 200 and full.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(full.content)) as served:
        assert served.tobytes() == Image.open(io.BytesIO(png_bytes(1))).convert("RGB").tobytes()


def test_deleted_object_is_404_with_its_reason(s3_bundle: Path, bucket: Bucket,
                                              open_client: Callable[..., TestClient]) -> None:
    client = open_client(s3_bundle)
    bucket.delete("drive/img2.png")
    response = client.get("/v1/images/img2.png", params={"size": 64})
    assert response.status_code == 404
    assert response.json()["detail"] == (f"file of image 'img2.png' is gone: object not found: "
                                          f"{bucket.uri('drive/img2.png')}")


def test_object_outside_the_declared_roots_is_403(tmp_path: Path, bucket: Bucket, fake_model: ModelChoice,
                                                  open_client: Callable[..., TestClient]) -> None:
    bucket.put("old/a.png", png_bytes(1))
    bucket.put("new/b.png", png_bytes(2))
    bundle = tmp_path / "b"
    for key, root in (("old/a.png", "old"), ("new/b.png", "new")):
        manifest = tmp_path / f"{root}.csv"
        manifest.write_text(f"image_id,path\n{key},{bucket.uri(key)}\n")
        run_index(read_manifest_source(manifest, bucket.uri(root)), bundle, fake_model, workers=0, progress=False)
    client = open_client(bundle)
    # The kept row of the first run lies outside the roots the second run declared.
    assert client.get("/v1/images/new/b.png", params={"size": 32}).status_code == 200
    response = client.get("/v1/images/old/a.png", params={"size": 32})
    assert response.status_code == 403
    assert "outside the bundle's image roots" in response.json()["detail"]


def test_unreachable_object_store_is_503_naming_the_endpoint(s3_bundle: Path, open_client: Callable[..., TestClient],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    client = open_client(s3_bundle)
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", dead)
    response = client.get("/v1/images/img0.png", params={"size": 32})
    assert response.status_code == 503
    assert f"object store unreachable at {dead}" in response.json()["detail"]


def test_bytes_read_per_image_are_bounded(s3_bundle: Path, open_client: Callable[..., TestClient]) -> None:
    client = open_client(s3_bundle, max_object_bytes=1024)  # the PNGs are ~1.2 KB
    response = client.get("/v1/images/img0.png", params={"size": 32})
    assert response.status_code == 422
    assert "over the limit of 1024 bytes" in response.json()["detail"]


def test_python_api_and_report_thumbnails_read_s3_images(s3_bundle: Path, bucket: Bucket) -> None:
    thumbs = bundle_thumbnails(s3_bundle)
    data = thumbs("img3.png")
    assert data is not None and Image.open(io.BytesIO(data)).format == "JPEG"
    bucket.delete("drive/img3.png")
    assert thumbs("img3.png") is None
    with open_bundle(s3_bundle) as miner:
        body = miner.thumbnail("img0.png", 16)
        assert Image.open(io.BytesIO(body)).size == (16, 11)
        with pytest.raises(ImageUnavailable, match=r"img3\.png.*object not found"):
            miner.thumbnail("img3.png", 16)
