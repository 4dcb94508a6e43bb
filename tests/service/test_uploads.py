"""Uploads and thumbnails are bounded: request bodies, file counts and sizes, pixels decoded."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile, JpegImagePlugin

from edgemine.models.images import ImageTooLarge, decode_image
from edgemine.service.miner import Miner
from tests.support.state_backend import state_url

Make = Callable[..., Any]


def huge_png(width: int = 14000, height: int = 14000) -> bytes:
    """A valid 1-bit PNG of width x height (all black) that weighs a few tens of KB: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, int]]]:
    """Record the size of every image Pillow decodes; refuse (instead of allocating) anything over 50 MP."""
    seen: list[tuple[int, int]] = []
    real = ImageFile.ImageFile.load

    def spy(self: ImageFile.ImageFile) -> Any:
        seen.append(self.size)
        if self.size[0] * self.size[1] > 50_000_000:
            raise AssertionError(f"decoding {self.size} would allocate it")
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    yield seen


def png_bytes(size: tuple[int, int] = (40, 30), seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_huge_png_upload_is_refused_before_decoding(image_bundle: Any, open_client: Make,
                                                    loads: list[tuple[int, int]]) -> None:
    bomb = huge_png()
    assert len(bomb) < 200_000
    client = open_client(image_bundle.path)
    files = [("files", ("ok.png", png_bytes(), "image/png")), ("files", ("bomb.png", bomb, "image/png"))]
    response = client.post("/v1/mine/upload", files=files)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "'bomb.png'" in detail and "196.0 MP, over the limit of 24 MP" in detail
    assert set(loads) == {(40, 30)}  # refused from the header, never decoded


def test_uploads_are_decoded_and_embedded_one_at_a_time(image_bundle: Any, open_client: Make,
                                                       fake_embedder: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    batches: list[int] = []
    real = fake_embedder.embed_images
    monkeypatch.setattr(fake_embedder, "embed_images", lambda images: batches.append(len(images)) or real(images))
    client = open_client(image_bundle.path)
    files = [("files", (f"u{i}.png", png_bytes(seed=i), "image/png")) for i in range(3)]
    response = client.post("/v1/mine/upload", files=files, data={"query": '{"k": 2}'})
    assert response.status_code == 200, response.text
    assert batches == [1, 1, 1]
    # Same result as embedding them together: the mean of the three upload vectors.
    nearest = {c["nearest_example_id"] for c in response.json()["candidates"]}
    assert nearest <= {"upload:u0.png", "upload:u1.png", "upload:u2.png"}


def test_upload_jpeg_is_decoded_at_a_reduced_scale(image_bundle: Any, open_client: Make, fake_embedder: Any,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  loads: list[tuple[int, int]]) -> None:
    monkeypatch.setattr(fake_embedder, "input_size", 224, raising=False)
    buf = io.BytesIO()
    Image.new("RGB", (3200, 2400), (90, 120, 150)).save(buf, "JPEG")
    client = open_client(image_bundle.path)
    response = client.post("/v1/mine/upload", files=[("files", ("big.jpg", buf.getvalue(), "image/jpeg"))])
    assert response.status_code == 200, response.text
    assert set(loads) == {(400, 300)}  # 1/8 scale: the short side still covers the model's 224


def test_too_many_or_too_large_files_are_refused(image_bundle: Any, open_client: Make,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[Any] = []
    monkeypatch.setattr(Miner, "mine", lambda *a, **k: ran.append(a))
    client = open_client(image_bundle.path, max_upload_files=2, max_upload_file_bytes=2048)
    many = [("files", (f"u{i}.png", png_bytes((4, 4)), "image/png")) for i in range(3)]
    response = client.post("/v1/mine/upload", files=many)
    assert response.status_code == 413 and "at most 2 per request" in response.json()["detail"]
    big = [("files", ("big.png", png_bytes((64, 64)), "image/png"))]
    response = client.post("/v1/mine/upload", files=big)
    assert response.status_code == 413 and "'big.png' is larger than 2048 bytes" in response.json()["detail"]
    assert ran == []


def test_over_limit_bodies_get_413_before_the_route_runs(image_bundle: Any, open_client: Make,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[Any] = []
    real = Miner.mine
    monkeypatch.setattr(Miner, "mine", lambda *a, **k: ran.append(a) or real(*a, **k))
    client = open_client(image_bundle.path, max_json_body_bytes=4096, max_upload_body_bytes=8192)
    ids = [f"id{i:05d}" for i in range(1000)]  # ~11 KB of JSON
    response = client.post("/v1/mine", json={"positive_ids": ids})
    assert response.status_code == 413
    assert "request body of" in response.json()["detail"] and "limit of 4096 bytes" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:
        yield b'{"positive_ids": ['
        for i in range(2000):
            yield f'"id{i:05d}", '.encode()
        yield b'"x"]}'

    # No Content-Length: the body arrives chunked and is counted as it comes.
    response = client.post("/v1/mine", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["detail"] == "request body is over the limit of 4096 bytes"  # counted, not declared

    upload = [("files", ("a.png", png_bytes((80, 80)), "image/png"))]  # ~19 KB > the 8 KB upload limit
    response = client.post("/v1/mine/upload", files=upload)
    assert response.status_code == 413 and "multipart upload" in response.json()["detail"]
    assert ran == []
    # Under the limits, the same routes run.
    assert client.post("/v1/mine", json={"positive_ids": [image_bundle.ids[0]]}).status_code == 200
    assert len(ran) == 1


def test_huge_jpeg_thumbnail_uses_draft_mode(tmp_path: Path, open_client: Make, make_images: Make,
                                            fake_model: Any, loads: list[tuple[int, int]],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from edgemine.indexer import run_index, scan_directory

    root = tmp_path / "images"
    root.mkdir()
    Image.new("RGB", (4000, 3000), (10, 200, 30)).save(root / "huge.jpg", quality=80)
    drafts: list[tuple[int, int] | None] = []
    real_draft = JpegImagePlugin.JpegImageFile.draft
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft",
                        lambda self, mode, size: drafts.append(size) or real_draft(self, mode, size))
    bundle = tmp_path / "bundle"
    run_index(scan_directory(root), bundle, fake_model, workers=0, progress=False, state_url=state_url(bundle))
    loads.clear()
    # The limit is below the full image (12 MP) but the thumbnail decodes at 1/8 scale: 500x375.
    client = open_client(bundle, max_image_pixels=1_000_000)
    thumb = client.get("/v1/images/huge.jpg", params={"size": 256})
    assert thumb.status_code == 200
    with Image.open(io.BytesIO(thumb.content)) as im:
        assert im.size == (256, 192)
    assert set(loads) == {(500, 375)} and drafts[-1] == (256, 192)
    full = client.get("/v1/images/huge.jpg")
    assert full.status_code == 422 and "4000x3000" in full.json()["detail"]
    assert "over the limit of 1 MP" in full.json()["detail"]


def test_decode_image_limit_is_explicit_and_checked_on_the_header(loads: list[tuple[int, int]]) -> None:
    bomb = huge_png()
    with pytest.raises(ImageTooLarge, match=r"196\.0 MP, over the limit of 40 MP"):
        decode_image(bomb)
    with pytest.raises(ImageTooLarge, match=r"7000x14000 = 98\.0 MP, over the limit of 40 MP"):
        decode_image(huge_png(7000, 14000))
    with pytest.raises(ImageTooLarge):
        decode_image(png_bytes((40, 30)), max_pixels=1000)
    assert loads == []
    assert decode_image(png_bytes((40, 30))).size == (40, 30)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # Pillow's global is left alone
