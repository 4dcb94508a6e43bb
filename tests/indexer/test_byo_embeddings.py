"""Precomputed ("bring your own") embeddings: no CLIP model, normalized, validated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from edgemine.bundle import ModelMismatch, load_current
from edgemine.bundle.layout import ModelInfo
from edgemine.cli.main import app
from edgemine.indexer import ModelChoice, SourceError, read_embeddings_source, run_index

DIM = 8


def byo_model(name: str = "mymodel") -> ModelChoice:
    return ModelChoice(ModelInfo(identity=f"byo:{name}", name=name, pretrained="external"), None)


def write_embeddings(path: Path, vectors: Any, *, with_path: bool = True, **extra: Any) -> Path:
    n = len(vectors)
    columns: dict[str, Any] = {
        "image_id": [f"frame-{i:03d}" for i in range(n)],
        "embedding": pa.array([list(map(float, v)) if v is not None else None for v in vectors],
                              pa.list_(pa.float32())),
        "weather": ["rain" if i % 2 else "sun" for i in range(n)],
    }
    if with_path:
        columns["path"] = [f"imgs/frame-{i:03d}.jpg" if i % 3 else None for i in range(n)]
    columns.update(extra)
    pq.write_table(pa.table(columns), path)
    return path


@pytest.fixture
def raw_vectors() -> np.ndarray:
    return np.random.default_rng(11).standard_normal((10, DIM)).astype(np.float32) * 5


def test_byo_indexes_normalized_vectors_without_a_model(tmp_path: Path, raw_vectors: np.ndarray) -> None:
    src = write_embeddings(tmp_path / "emb.parquet", raw_vectors)
    bundle = tmp_path / "bundle"
    source = read_embeddings_source(src)
    assert source.kind == "embeddings"
    report = run_index(source, bundle, byo_model(), progress=False)
    assert report.published and report.version == 1
    assert (report.added, report.embedded_now) == (10, 0)

    snap = load_current(bundle)
    assert snap.manifest.model.identity == "byo:mymodel"
    assert snap.manifest.dim == DIM
    assert snap.manifest.metadata_columns == ["weather"]
    expected = raw_vectors / np.linalg.norm(raw_vectors, axis=1, keepdims=True)
    for row, image_id in enumerate(snap.image_ids):
        np.testing.assert_allclose(snap.embeddings[row], expected[int(image_id[-3:])], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(snap.embeddings, axis=1), 1.0, atol=1e-6)
    rec = snap.record(snap.row_by_id["frame-001"])
    assert rec["path"] == str((tmp_path / "imgs" / "frame-001.jpg").resolve())
    assert rec["weather"] == "rain"
    assert snap.record(snap.row_by_id["frame-003"])["path"] is None
    assert snap.load_index().ntotal == 10

    # unchanged: nothing published; one changed vector: one update
    assert not run_index(read_embeddings_source(src), bundle, byo_model(), progress=False).published
    raw_vectors[4] = -raw_vectors[4]
    write_embeddings(src, raw_vectors)
    again = run_index(read_embeddings_source(src), bundle, byo_model(), progress=False)
    assert (again.updated, again.unchanged, again.version) == (1, 9, 2)
    snap2 = load_current(bundle)
    np.testing.assert_allclose(snap2.embeddings[snap2.row_by_id["frame-004"]], -expected[4], atol=1e-6)


def test_byo_other_dimension_or_name_is_refused(tmp_path: Path, raw_vectors: np.ndarray) -> None:
    bundle = tmp_path / "bundle"
    run_index(read_embeddings_source(write_embeddings(tmp_path / "a.parquet", raw_vectors)), bundle,
              byo_model(), progress=False)
    wider = np.random.default_rng(1).standard_normal((4, DIM * 2))
    with pytest.raises(ModelMismatch, match="dimension 8"):
        run_index(read_embeddings_source(write_embeddings(tmp_path / "b.parquet", wider)), bundle,
                  byo_model(), progress=False)
    with pytest.raises(ModelMismatch, match="byo:other"):
        run_index(read_embeddings_source(tmp_path / "a.parquet"), bundle, byo_model("other"), progress=False)


def test_byo_through_the_cli(tmp_path: Path, raw_vectors: np.ndarray) -> None:
    src = write_embeddings(tmp_path / "emb.parquet", raw_vectors, with_path=False)
    bundle = tmp_path / "bundle"
    result = CliRunner().invoke(app, ["index", "--embeddings", str(src), "--embedding-model", "dinov2",
                                      "--bundle", str(bundle), "--no-progress", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["published"] and report["added"] == 10
    manifest = load_current(bundle).manifest
    assert manifest.model.identity == "byo:dinov2"
    assert manifest.model.pretrained == "external"
    assert manifest.dim == DIM


def test_ragged_dimensions_are_rejected(tmp_path: Path) -> None:
    vectors = [np.ones(DIM), np.ones(DIM), np.ones(DIM + 1)]
    with pytest.raises(SourceError, match=r"same length.*\[8, 9\]"):
        read_embeddings_source(write_embeddings(tmp_path / "e.parquet", vectors))


def test_null_embedding_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="same length"):
        read_embeddings_source(write_embeddings(tmp_path / "e.parquet", [np.ones(DIM), None]))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values_are_rejected(tmp_path: Path, bad: float) -> None:
    vectors = np.ones((3, DIM))
    vectors[1, 2] = bad
    with pytest.raises(SourceError, match="NaN or infinite") as info:
        read_embeddings_source(write_embeddings(tmp_path / "e.parquet", vectors))
    assert "e.parquet" in str(info.value)


def test_all_zero_vector_is_rejected(tmp_path: Path) -> None:
    vectors = np.ones((3, DIM))
    vectors[2] = 0
    with pytest.raises(SourceError, match=r"all-zero.*\[2\]"):
        read_embeddings_source(write_embeddings(tmp_path / "e.parquet", vectors))


def test_missing_columns_and_wrong_types(tmp_path: Path) -> None:
    no_emb = tmp_path / "no_emb.parquet"
    pq.write_table(pa.table({"image_id": ["a", "b"], "vector": [[1.0], [2.0]]}), no_emb)
    with pytest.raises(SourceError, match="no 'embedding' column"):
        read_embeddings_source(no_emb)
    no_id = tmp_path / "no_id.parquet"
    pq.write_table(pa.table({"embedding": [[1.0], [2.0]]}), no_id)
    with pytest.raises(SourceError, match="no 'image_id' column"):
        read_embeddings_source(no_id)
    not_list = tmp_path / "not_list.parquet"
    pq.write_table(pa.table({"image_id": ["a"], "embedding": [1.0]}), not_list)
    with pytest.raises(SourceError, match="must be a list of floats"):
        read_embeddings_source(not_list)
    with pytest.raises(SourceError, match="does not exist"):
        read_embeddings_source(tmp_path / "missing.parquet")


def test_duplicate_ids_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "dupes.parquet"
    pq.write_table(pa.table({"image_id": ["a", "b", "a"], "embedding": [[1.0, 0.0]] * 3}), path)
    with pytest.raises(SourceError, match=r"duplicate image_id.*'a'"):
        read_embeddings_source(path)
