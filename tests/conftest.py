"""Shared fixtures: a fake embedder and tiny generated image trees."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from edgemine.bundle.layout import ModelInfo
from edgemine.indexer import ModelChoice
from edgemine.models.pixels import Pixels, PixelStep, ResizePixelStep
from edgemine.models.vectors import Vectors, l2_normalize
from edgemine.service.app import create_app
from edgemine.service.config import Settings
from tests.support.postgres import pg_server, pg_url  # noqa: F401 - fixtures for every suite
from tests.support.state_backend import state_url

FAKE_DIM = 16
# Fixtures of the S3-compatible test server (moto on 127.0.0.1): s3_env, bucket.
pytest_plugins = ["tests.support.s3"]


def pytest_configure(config: pytest.Config) -> None:
    """With EDGEMINE_TEST_FAISS_SIMD=AVX2, FAISS runs its AVX2 kernels even on an AVX-512 CPU."""
    # Recall assertions depend on the index that k-means and the SIMD kernels produce, and CI's
    # machine need not have this one's CPU: .ci/search-other-cpus runs the search suite on
    # other instruction sets too.
    level = os.environ.get("EDGEMINE_TEST_FAISS_SIMD")
    if level:
        import faiss

        wanted = getattr(faiss, f"SIMDLevel_{level.upper()}", None)
        if wanted is None:
            raise pytest.UsageError(f"EDGEMINE_TEST_FAISS_SIMD={level}: not a FAISS SIMD level (AVX2, AVX512, ...)")
        faiss.SIMDConfig.set_level(wanted)
        if faiss.SIMDConfig.get_level_name() != level.upper():
            raise pytest.UsageError(f"EDGEMINE_TEST_FAISS_SIMD={level}: FAISS runs at "
                                    f"{faiss.SIMDConfig.get_level_name()}")


@pytest.fixture(autouse=True)
def _service_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """TestClient sends `Host: testserver`: allow it (and the usual local names); no API key from the shell."""
    monkeypatch.setenv("EDGEMINE_ALLOWED_HOSTS", "localhost,127.0.0.1,::1,testserver")
    monkeypatch.delenv("EDGEMINE_API_KEY", raising=False)


class FakeEmbedder:
    """Deterministic stand-in for CLIP: a fixed random projection of 8x8 RGB thumbnails."""

    identity = "fake/v1"
    dim = FAKE_DIM

    def __init__(self) -> None:
        self._proj = np.random.default_rng(7).standard_normal((8 * 8 * 3, FAKE_DIM)).astype(np.float32)
        self.batches = 0

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        small = image.convert("RGB").resize((8, 8), Image.Resampling.BILINEAR)
        return torch.from_numpy(np.asarray(small, np.float32).reshape(-1) / 255.0 - 0.5)

    def embed_batch(self, batch: torch.Tensor) -> Vectors:
        self.batches += 1
        return l2_normalize(batch.numpy() @ self._proj + 1e-3)

    def pixel_step(self) -> PixelStep:
        return ResizePixelStep((8, 8))

    def to_pixels(self, image: Image.Image) -> Pixels:
        return self.pixel_step()(image)

    def embed_pixels(self, pixels: Pixels) -> Vectors:
        flat = pixels.reshape(len(pixels), -1).astype(np.float32) / 255.0 - 0.5
        return self.embed_batch(torch.from_numpy(flat))

    def embed_images(self, images: Sequence[Image.Image]) -> Vectors:
        return self.embed_batch(torch.stack([self.preprocess(im) for im in images]))

    def embed_texts(self, texts: Sequence[str]) -> Vectors:
        rows = [np.random.default_rng(int(hashlib.sha1(t.encode()).hexdigest()[:8], 16))
                .standard_normal(FAKE_DIM) for t in texts]
        return l2_normalize(np.array(rows, np.float32))


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def fake_model(fake_embedder: FakeEmbedder) -> ModelChoice:
    return ModelChoice(ModelInfo(identity=FakeEmbedder.identity, name="fake", pretrained="none"),
                       lambda: fake_embedder)


def write_images(root: Path, n: int, seed: int = 0, size: tuple[int, int] = (24, 16),
                 prefix: str = "img") -> list[str]:
    """Write n small random JPEGs under root/<group>/; return their ids (relative paths)."""
    rng = np.random.default_rng(seed)
    ids = []
    for i in range(n):
        rel = f"g{i % 3}/{prefix}{i:03d}.png"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        ids.append(rel)
    return ids


@pytest.fixture
def image_tree(tmp_path: Path) -> tuple[Path, list[str]]:
    root = tmp_path / "images"
    return root, write_images(root, 12)


@pytest.fixture
def make_images() -> Callable[..., list[str]]:
    """Return `write_images`, for tests that need more images than `image_tree` makes."""
    return write_images


@pytest.fixture
def open_client(fake_embedder: Any) -> Iterator[Callable[..., TestClient]]:
    """Open a TestClient (lifespan run) over a bundle; closed at teardown."""
    opened: list[TestClient] = []

    def open_(bundle: Path, loader: Any = None, raise_server_exceptions: bool = True,
              **settings: Any) -> TestClient:
        settings.setdefault("state_url", state_url(bundle))
        app = create_app(Settings(bundle=bundle, **settings),
                         loader=loader or (lambda name, pretrained: fake_embedder))
        client = TestClient(app, raise_server_exceptions=raise_server_exceptions)
        client.__enter__()
        opened.append(client)
        return client

    yield open_
    for client in reversed(opened):
        client.__exit__(None, None, None)
