"""Manifest and directory sources: metadata, labeled flags, sidecars, and their errors."""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edgemine.bundle import load_current
from edgemine.bundle.layout import ModelInfo
from edgemine.indexer import ModelChoice, SourceError, read_manifest_source, run_index, scan_directory

T0 = datetime(2024, 5, 1, 10, 0, 0)
META = ["sequence_id", "timestamp", "time_of_day"]


def rows_for(ids: list[str], labeled: set[str], night: set[str] = frozenset()) -> list[dict[str, Any]]:  # type: ignore[assignment]
    return [{"image_id": f"cam/{i:02d}", "path": f"images/{rel}", "sequence_id": i // 4,
             "timestamp": T0 + timedelta(seconds=i), "time_of_day": "night" if rel in night else "day",
             "labeled": rel in labeled}
            for i, rel in enumerate(ids)]


def write_manifest(path: Path, rows: list[dict[str, Any]]) -> Path:
    if path.suffix == ".csv":
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            for row in rows:
                writer.writerow({**row, "timestamp": row["timestamp"].isoformat(),
                                 "labeled": str(row["labeled"]).lower()})
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps({**r, "timestamp": r["timestamp"].isoformat()}) + "\n" for r in rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def counting_model(embedder: Any) -> tuple[ModelChoice, list[int]]:
    loads: list[int] = []

    def load() -> Any:
        loads.append(1)
        return embedder

    return ModelChoice(ModelInfo(identity="fake/v1", name="fake", pretrained="none"), load), loads


def states(bundle: Path) -> dict[str, str]:
    with sqlite3.connect(bundle / "state.sqlite") as db:
        return dict(db.execute("SELECT image_id, state FROM images").fetchall())


@pytest.fixture
def data_dir(tmp_path: Path, make_images: Callable[..., list[str]]) -> tuple[Path, list[str]]:
    data = tmp_path / "data"
    return data, make_images(data / "images", 12)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_manifest_metadata_and_labels(tmp_path: Path, data_dir: tuple[Path, list[str]], fake_embedder: Any,
                                      suffix: str) -> None:
    data, rels = data_dir
    labeled = {rels[0], rels[5]}
    manifest = write_manifest(data / f"manifest{suffix}", rows_for(rels, labeled))
    bundle = tmp_path / "bundle"
    model, loads = counting_model(fake_embedder)

    source = read_manifest_source(manifest)
    assert source.kind == "manifest"
    assert source.image_roots == [str(data.resolve())]  # the manifest's folder, declared
    report = run_index(source, bundle, model, workers=0, progress=False)
    assert report.published and report.added == 12 and not report.failed

    snap = load_current(bundle)
    assert snap.manifest.metadata_columns == META
    assert snap.metadata_columns == META
    schema = snap.catalog.schema
    assert "labeled" not in schema.names
    assert pa.types.is_integer(schema.field("sequence_id").type)
    assert pa.types.is_timestamp(schema.field("timestamp").type)
    assert pa.types.is_string(schema.field("time_of_day").type)
    rec = snap.record(snap.row_by_id["cam/06"])
    assert rec["sequence_id"] == 1
    assert rec["timestamp"] == T0 + timedelta(seconds=6)
    assert rec["time_of_day"] == "day"
    assert rec["path"] == str((data / "images" / rels[6]).resolve())
    # the catalog parquet on disk carries the same types
    on_disk = pq.read_schema(snap.paths.segments / snap.manifest.segments[0].name / "catalog.parquet")
    assert pa.types.is_timestamp(on_disk.field("timestamp").type)

    st = states(bundle)
    assert {k for k, v in st.items() if v == "labeled"} == {"cam/00", "cam/05"}
    assert sum(v == "unlabeled" for v in st.values()) == 10
    with sqlite3.connect(bundle / "state.sqlite") as db:
        meta = json.loads(db.execute("SELECT metadata FROM images WHERE image_id = 'cam/03'").fetchone()[0])
    assert meta["time_of_day"] == "day" and meta["sequence_id"] == 0

    # Metadata-only change: republished, nothing re-embedded.
    write_manifest(manifest, rows_for(rels, labeled, night={rels[3]}))
    again = run_index(read_manifest_source(manifest), bundle, model, workers=0, progress=False)
    assert again.published and again.version == 2
    assert (again.unchanged, again.embedded_now, again.added, again.updated) == (12, 0, 0, 0)
    assert loads == [1]  # loaded for the first run only
    snap2 = load_current(bundle)
    assert snap2.record(snap2.row_by_id["cam/03"])["time_of_day"] == "night"
    # Format 2: the re-described image is a new row (new vec_id, same vector; old id tombstoned).
    old_ids = dict(zip(snap.image_ids, snap.catalog.column("vec_id").to_pylist(), strict=True))
    new_ids = dict(zip(snap2.image_ids, snap2.catalog.column("vec_id").to_pylist(), strict=True))
    assert {k: v for k, v in new_ids.items() if k != "cam/03"} == {k: v for k, v in old_ids.items() if k != "cam/03"}
    assert new_ids["cam/03"] == 12 and snap2.tombstones.tolist() == [old_ids["cam/03"]]
    np.testing.assert_array_equal(snap2.embeddings[snap2.row_by_id["cam/03"]],
                                  snap.embeddings[snap.row_by_id["cam/03"]])

    # Labeled-only change: no new version, but the state follows.
    write_manifest(manifest, rows_for(rels, labeled | {rels[7]}, night={rels[3]}))
    third = run_index(read_manifest_source(manifest), bundle, model, workers=0, progress=False)
    assert (third.published, third.version) == (False, 2)
    assert states(bundle)["cam/07"] == "labeled"


def test_manifest_with_missing_image_reports_it(tmp_path: Path, data_dir: tuple[Path, list[str]],
                                                fake_model: ModelChoice) -> None:
    data, rels = data_dir
    rows = rows_for(rels, set())
    rows.append({**rows[0], "image_id": "cam/ghost", "path": "images/ghost.png"})
    manifest = write_manifest(data / "m.csv", rows)
    report = run_index(read_manifest_source(manifest), tmp_path / "b", fake_model, workers=0, progress=False)
    assert report.added == 12
    assert [(f["image_id"], f["reason"]) for f in report.failed] == [("cam/ghost", "file not found")]


def test_manifest_duplicate_ids_are_named(tmp_path: Path, data_dir: tuple[Path, list[str]]) -> None:
    data, rels = data_dir
    rows = rows_for(rels, set())
    rows[4]["image_id"] = rows[1]["image_id"]
    rows[9]["image_id"] = rows[2]["image_id"]
    manifest = write_manifest(data / "dupes.csv", rows)
    with pytest.raises(SourceError, match="duplicate image_id") as info:
        read_manifest_source(manifest)
    assert "'cam/01'" in str(info.value) and "'cam/02'" in str(info.value)


@pytest.mark.parametrize(("text", "message"), [
    ("path\nimages/a.png\n", "no 'image_id' column"),
    ("image_id\na\n", "no 'path' column"),
    ("image_id,path\na,\n", "empty path"),
    ("image_id,path,labeled\na,images/a.png,maybe\n", "'labeled' must be a boolean"),
])
def test_bad_manifests(tmp_path: Path, text: str, message: str) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(text)
    with pytest.raises(SourceError, match=message):
        read_manifest_source(manifest)


def test_missing_or_unsupported_manifest(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        read_manifest_source(tmp_path / "nope.csv")
    odd = tmp_path / "m.xlsx"
    odd.write_text("x")
    with pytest.raises(SourceError, match="unsupported table format"):
        read_manifest_source(odd)


def test_directory_sidecars_and_metadata_table(tmp_path: Path, image_tree: tuple[Path, list[str]],
                                               fake_model: ModelChoice) -> None:
    root, ids = image_tree
    # The table covers only some images and the sidecar sits on a later one: the catalog must
    # still get every column, with nulls where an image has no value.
    table = tmp_path / "meta.csv"
    with table.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", "sequence_id", "time_of_day", "labeled"])
        for i, image_id in enumerate(ids[2:], start=2):
            writer.writerow([image_id, 100 + i, "night" if i % 2 else "day", "yes" if i == 4 else "no"])
    sidecar = root / (ids[3] + ".json")
    sidecar.write_text(json.dumps({"weather": "rain", "sequence_id": 7}))

    source = scan_directory(root, table)
    assert len(source.items) == 12  # the .json sidecar is not an image
    by_id = {item.image_id: item for item in source.items}
    assert by_id[ids[3]].metadata == {"sequence_id": 7, "time_of_day": "night", "weather": "rain"}
    assert by_id[ids[0]].metadata == {}
    assert by_id[ids[4]].labeled and not by_id[ids[5]].labeled

    bundle = tmp_path / "bundle"
    run_index(source, bundle, fake_model, workers=0, progress=False)
    snap = load_current(bundle)
    assert set(snap.manifest.metadata_columns) == {"sequence_id", "time_of_day", "weather"}
    assert pa.types.is_integer(snap.catalog.schema.field("sequence_id").type)
    assert snap.record(snap.row_by_id[ids[3]])["weather"] == "rain"
    assert snap.record(snap.row_by_id[ids[3]])["sequence_id"] == 7  # the sidecar wins
    assert snap.record(snap.row_by_id[ids[6]])["sequence_id"] == 106
    assert snap.record(snap.row_by_id[ids[0]])["time_of_day"] is None
    assert snap.record(snap.row_by_id[ids[5]])["weather"] is None
    assert states(bundle)[ids[4]] == "labeled"


def test_bad_sidecar_fails_its_image_only(image_tree: tuple[Path, list[str]]) -> None:
    root, ids = image_tree
    (root / (ids[0] + ".json")).write_text("{not json")
    by_id = {item.image_id: item for item in scan_directory(root).items}
    assert "sidecar" in (by_id[ids[0]].error or "") and "not valid JSON" in (by_id[ids[0]].error or "")
    assert all(by_id[i].error is None for i in ids[1:])


def test_sidecar_cannot_override_reserved_columns(tmp_path: Path, image_tree: tuple[Path, list[str]],
                                                  fake_model: ModelChoice) -> None:
    root, ids = image_tree
    (root / (ids[0] + ".json")).write_text(json.dumps(
        {"path": "/recordings/x.jpg", "image_id": "other", "fingerprint": "abc", "vec_id": 99, "weather": "fog"}))
    bundle = tmp_path / "bundle"
    run_index(scan_directory(root), bundle, fake_model, workers=0, progress=False)
    snap = load_current(bundle)
    assert sorted(snap.image_ids) == sorted(ids)
    rec = snap.record(snap.row_by_id[ids[0]])
    assert rec["path"] == str(root.resolve() / ids[0])
    assert rec["vec_id"] != 99 and rec["fingerprint"] != "abc"
    assert rec["weather"] == "fog"
    assert snap.manifest.metadata_columns == ["weather"]
    # and so the next run sees nothing changed
    again = run_index(scan_directory(root), bundle, fake_model, workers=0, progress=False)
    assert (again.published, again.unchanged, again.embedded_now) == (False, 12, 0)
