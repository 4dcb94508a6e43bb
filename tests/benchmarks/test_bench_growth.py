"""bench_growth's bytes per vector: a version's own files and the segments it serves."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_growth  # noqa: E402


def test_a_format_2_version_counts_the_segments_its_manifest_lists_and_no_others(tmp_path: Path) -> None:
    version = tmp_path / "versions" / "v000002"
    version.mkdir(parents=True)
    (version / "index.faiss").write_bytes(b"q" * 100)
    manifest = {"segments": [{"name": "s000000"}, {"name": "s000002"}]}
    (version / "manifest.json").write_text(json.dumps(manifest))
    for name, size in (("s000000", 1000), ("s000001", 50_000), ("s000002", 300)):  # s000001: only an older version
        seg = tmp_path / "segments" / name
        seg.mkdir(parents=True)
        (seg / "embeddings.npy").write_bytes(b"e" * size)
    own = 100 + len(json.dumps(manifest))
    assert bench_growth.version_bytes(tmp_path, version) == own + 1000 + 300


def test_a_format_1_version_is_its_own_directory(tmp_path: Path) -> None:
    version = tmp_path / "versions" / "v000001"
    version.mkdir(parents=True)
    (version / "embeddings.npy").write_bytes(b"e" * 4096)
    (version / "manifest.json").write_text("{}")
    assert bench_growth.version_bytes(tmp_path, version) == 4096 + 2
