"""A small bundle of precomputed vectors with a metadata column (no model, no images): for scenario tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from edgemine.bundle.layout import ModelInfo


def byo_bundle(tmp_path: Path, ids: Sequence[str], time_of_day: Sequence[str]) -> Path:
    """Index random vectors for `ids` with a `time_of_day` metadata column into tmp_path/bundle."""
    from edgemine.indexer import ModelChoice, read_embeddings_source, run_index

    vectors = np.random.default_rng(3).standard_normal((len(ids), 8)).astype(np.float32)
    table = pa.table({"image_id": list(ids), "embedding": pa.array(vectors.tolist(), pa.list_(pa.float32())),
                      "time_of_day": list(time_of_day)})
    pq.write_table(table, tmp_path / "emb.parquet")
    model = ModelChoice(ModelInfo(identity="byo:test", name="test", pretrained="external"), None)
    assert run_index(read_embeddings_source(tmp_path / "emb.parquet"), tmp_path / "bundle", model,
                     progress=False).published
    return tmp_path / "bundle"
