"""Browser-test machinery for the review page: a real `edgemine serve` on a small bundle, and chromium.

The browser tests need Debian's chromium (/usr/bin/chromium) and the `playwright` package (its
Python API only; browsers are never downloaded). Without them they are skipped, unless
EDGEMINE_REQUIRE_BROWSER=1 (CI), where they fail instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw

from tests.support.live_server import serving

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMES_OF_DAY = ("day", "dusk", "night")
SKY = {"day": (120, 170, 230), "dusk": (225, 130, 80), "night": (18, 22, 48)}
N_IMAGES = 40
API_KEY = "review-page-key-7f3a"


def _require_browser() -> None:
    missing = []
    if not CHROMIUM.is_file():
        missing.append(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package is missing (pip install playwright; no browser download needed)")
    if missing:
        reason = "review page e2e needs a browser: " + "; ".join(missing)
        if os.environ.get("EDGEMINE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"EDGEMINE_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)


def _scene(time_of_day: str, rng: np.random.Generator) -> Image.Image:
    """A tiny road scene: sky by time of day, a road, a few coloured boxes."""
    im = Image.new("RGB", (160, 120), SKY[time_of_day])
    draw = ImageDraw.Draw(im)
    ground = (60, 62, 66) if time_of_day != "night" else (25, 26, 30)
    draw.polygon([(0, 120), (160, 120), (100, 55), (60, 55)], fill=ground)
    draw.rectangle((0, 55, 160, 58), fill=(70, 110, 60) if time_of_day == "day" else (35, 45, 35))
    for _ in range(int(rng.integers(1, 4))):
        x, y = int(rng.integers(10, 130)), int(rng.integers(62, 100))
        colour = tuple(int(c) for c in rng.integers(40, 255, 3))
        draw.rectangle((x, y, x + int(rng.integers(12, 28)), y + int(rng.integers(8, 16))), fill=colour)
    if time_of_day == "night":
        draw.ellipse((130, 10, 142, 22), fill=(230, 230, 200))
    return im


def build_bundle(root: Path, n: int = N_IMAGES, seed: int = 0) -> tuple[Path, list[str]]:
    """Write n PNGs and a BYO-embeddings Parquet (random 16-d), and index them with the CLI."""
    rng = np.random.default_rng(seed)
    ids, paths, seqs, tods, frames = [], [], [], [], []
    for i in range(n):
        seq, tod = f"seq{i % 5:02d}", TIMES_OF_DAY[i % 3]
        rel = f"images/{seq}/frame_{i:03d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        _scene(tod, rng).save(root / rel)
        ids.append(f"{seq}/frame_{i:03d}.png")
        paths.append(rel)
        seqs.append(seq)
        tods.append(tod)
        frames.append(i)
    vectors = rng.standard_normal((n, 16)).astype(np.float32)
    table = pa.table({
        "image_id": ids,
        "embedding": pa.array(vectors.tolist(), pa.list_(pa.float32())),
        "path": paths,
        "sequence_id": seqs,
        "time_of_day": tods,
        "frame": pa.array(frames, pa.int64()),
    })
    pq.write_table(table, root / "embeddings.parquet")
    bundle = root / "bundle"
    subprocess.run([sys.executable, "-m", "edgemine.cli.main", "index", "--embeddings",
                    str(root / "embeddings.parquet"), "--bundle", str(bundle)],
                   check=True, capture_output=True, cwd=root, timeout=120)
    return bundle, ids


@dataclass
class Served:
    url: str
    ids: list[str]
    api: httpx.Client  # talks to the service directly (no proxy from the environment)
    key: str | None = None  # the service's API key, if it has one


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A real `edgemine serve` process on a small bundle with image files."""
    yield from _serve(tmp_path)


@pytest.fixture
def served_with_key(tmp_path: Path) -> Iterator[Served]:
    """The same, started with an API key (from the environment, as the README recommends)."""
    yield from _serve(tmp_path, {"EDGEMINE_API_KEY": API_KEY})


def _serve(tmp_path: Path, env: dict[str, str] | None = None) -> Iterator[Served]:
    _require_browser()
    bundle, ids = build_bundle(tmp_path)
    with serving(bundle, tmp_path, env=env, name="serve") as url:
        headers = {"Authorization": f"Bearer {env['EDGEMINE_API_KEY']}"} if env else {}
        with httpx.Client(base_url=url, trust_env=False, timeout=30, headers=headers) as api:
            yield Served(url, ids, api, (env or {}).get("EDGEMINE_API_KEY"))


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Debian chromium driven by Playwright (closed after the test)."""
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
