"""Tests for the synthetic recorded-drive dataset generator."""

from __future__ import annotations

import csv
from collections import Counter
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgemine.demo.scenes import EDGE_CASES, MANIFEST_COLUMNS, DemoDataset, generate_demo_dataset

SIZE = (96, 72)


def _rows(ds: DemoDataset) -> list[dict[str, str]]:
    with ds.manifest_path.open(newline="") as f:
        return list(csv.DictReader(f))


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> DemoDataset:
    return generate_demo_dataset(tmp_path_factory.mktemp("small"), n_scenes=40, image_size=SIZE)


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> DemoDataset:
    # default scene count; tiny images keep it fast, and the layout does not depend on size
    return generate_demo_dataset(tmp_path_factory.mktemp("full"), image_size=(48, 36))


def test_same_seed_gives_identical_bytes(tmp_path: Path, small: DemoDataset) -> None:
    again = generate_demo_dataset(tmp_path, n_scenes=40, image_size=SIZE)
    assert _tree(again.root) == _tree(small.root)
    assert again.image_ids == small.image_ids
    assert again.edge_case_ids == small.edge_case_ids


def test_other_seed_differs(tmp_path: Path, small: DemoDataset) -> None:
    other = generate_demo_dataset(tmp_path, n_scenes=40, seed=1, image_size=SIZE)
    assert _tree(other.root) != _tree(small.root)


def test_manifest_matches_images_on_disk(small: DemoDataset) -> None:
    with small.manifest_path.open(newline="") as f:
        header = next(csv.reader(f))
    assert tuple(header) == MANIFEST_COLUMNS
    rows = _rows(small)
    assert len(rows) == 40
    assert [r["image_id"] for r in rows] == small.image_ids
    on_disk = {p.relative_to(small.images_dir).as_posix() for p in small.images_dir.rglob("*.*")}
    assert on_disk == set(small.image_ids)
    for r in rows:
        assert r["path"] == f"images/{r['image_id']}"
        assert r["image_id"] == f"{r['sequence_id']}/frame_{int(r['frame']):04d}.jpg"
        assert r["time_of_day"] in {"day", "dusk", "night"}
        assert r["weather"] in {"clear", "rain", "fog"}
        assert r["scene"] in {"urban", "suburban", "highway"}
        assert r["sensor"] in {"front_cam", "rear_cam"}
        assert r["edge_case"] in {"", *EDGE_CASES}
        assert r["labeled"] in {"true", "false"}


def test_every_image_opens_with_requested_size(small: DemoDataset) -> None:
    for image_id in small.image_ids:
        with Image.open(small.images_dir / image_id) as im:
            assert im.size == SIZE
            assert im.mode == "RGB"


def test_sequences_have_consecutive_frames_and_timestamps(small: DemoDataset) -> None:
    by_seq: dict[str, list[dict[str, str]]] = {}
    for r in _rows(small):
        by_seq.setdefault(r["sequence_id"], []).append(r)
    assert 10 <= len(by_seq) <= 20
    starts = set()
    for seq_rows in by_seq.values():
        assert [int(r["frame"]) for r in seq_rows] == list(range(len(seq_rows)))
        times = [datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")) for r in seq_rows]
        assert all(t.year == 2026 and t.utcoffset() == timedelta(0) for t in times)
        assert all(b - a == timedelta(milliseconds=100) for a, b in pairwise(times))
        assert len({(r["time_of_day"], r["weather"], r["scene"]) for r in seq_rows}) == 1
        starts.add(times[0].replace(minute=0, second=0, microsecond=0))
    assert len(starts) == len(by_seq)  # each drive on its own day/hour


def test_default_count_has_every_edge_case(full: DemoDataset) -> None:
    rows = _rows(full)
    assert len(rows) == 300
    counts = Counter(r["edge_case"] for r in rows if r["edge_case"])
    assert set(counts) == set(EDGE_CASES)
    assert 0.03 <= sum(counts.values()) / len(rows) <= 0.05
    assert full.edge_case_ids == [r["image_id"] for r in rows if r["edge_case"]]
    for kind in EDGE_CASES:  # spread over more than one drive
        assert len({r["sequence_id"] for r in rows if r["edge_case"] == kind}) >= 2
    night_cross = [r for r in rows if r["edge_case"] == "pedestrian_crosswalk_night"]
    assert all(r["time_of_day"] == "night" for r in night_cross)
    assert all(r["weather"] == "rain" for r in rows if r["edge_case"] == "reflection_wet_road")


def test_small_dataset_still_has_each_edge_case(small: DemoDataset) -> None:
    assert {r["edge_case"] for r in _rows(small)} - {""} == set(EDGE_CASES)


@pytest.mark.parametrize("name", ["small", "full"])
def test_edge_cases_are_never_labeled(name: str, request: pytest.FixtureRequest) -> None:
    rows = _rows(request.getfixturevalue(name))
    assert not [r for r in rows if r["edge_case"] and r["labeled"] == "true"]
    n_labeled = sum(r["labeled"] == "true" for r in rows)
    assert 0 < n_labeled < 0.35 * len(rows)


def _pixels(ds: DemoDataset, image_id: str) -> np.ndarray:
    with Image.open(ds.images_dir / image_id) as im:
        return np.asarray(im, dtype=np.float32)


def test_consecutive_frames_are_near_duplicates(small: DemoDataset) -> None:
    rows = _rows(small)
    within = [
        float(np.abs(_pixels(small, a["image_id"]) - _pixels(small, b["image_id"])).mean())
        for a, b in pairwise(rows)
        if a["sequence_id"] == b["sequence_id"]
    ]
    firsts = [r["image_id"] for r in rows if r["frame"] == "0"]
    across = [
        float(np.abs(_pixels(small, a) - _pixels(small, b)).mean())
        for i, a in enumerate(firsts)
        for b in firsts[i + 1 :]
    ]
    assert within and across
    assert np.mean(within) * 2 < np.mean(across)


def test_rerun_on_same_root_overwrites_cleanly(tmp_path: Path) -> None:
    generate_demo_dataset(tmp_path, n_scenes=30, image_size=(48, 36))
    ds = generate_demo_dataset(tmp_path, n_scenes=12, image_size=(48, 36))
    on_disk = {p.relative_to(ds.images_dir).as_posix() for p in ds.images_dir.rglob("*.*")}
    assert on_disk == set(ds.image_ids)
    assert len(_rows(ds)) == 12
    assert not list(tmp_path.rglob("*.tmp"))
