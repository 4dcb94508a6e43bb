"""Bundles of precomputed vectors (no model) that a test can re-index with new or fewer rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from edgemine.bundle.layout import ModelInfo
from edgemine.bundle.snapshot import load_current
from edgemine.bundle.state import StateDB
from edgemine.indexer import ModelChoice, read_embeddings_source, run_index

BYO = ModelChoice(ModelInfo(identity="byo:vec", name="vec", pretrained="external"), None)


@dataclass
class VecBundle:
    """A bundle built from `vectors` (row i is image `ids[i]`)."""

    path: Path
    ids: list[str]
    vectors: np.ndarray

    @property
    def state(self) -> StateDB:
        return StateDB(self.path / "state.sqlite")

    @property
    def version(self) -> str:
        """The currently published version (read now: re-indexing changes it)."""
        return str(load_current(self.path).version)

    def cosine_to(self, image_id: str) -> dict[str, float]:
        """Cosine similarity of every image to `image_id`, computed here with numpy."""
        unit = self.vectors / np.linalg.norm(self.vectors, axis=1, keepdims=True)
        sims = unit @ unit[self.ids.index(image_id)]
        return dict(zip(self.ids, sims.tolist(), strict=True))


def build_vec_bundle(bundle: Path, ids: list[str], vectors: np.ndarray, *, prune: bool = False) -> VecBundle:
    """Index (or re-index) `bundle` from these ids and vectors, with a time_of_day column."""
    bundle.parent.mkdir(parents=True, exist_ok=True)
    n = len(list(bundle.parent.glob("vectors-*.parquet")))
    source = bundle.parent / f"vectors-{n}.parquet"
    pq.write_table(pa.table({"image_id": ids,
                             "embedding": pa.array(np.asarray(vectors, np.float32).tolist(), pa.list_(pa.float32())),
                             "time_of_day": [("day", "night")[i % 2] for i in range(len(ids))]}), source)
    report = run_index(read_embeddings_source(source), bundle, BYO, prune=prune, progress=False)
    assert report.published
    return VecBundle(bundle, list(ids), np.asarray(vectors, np.float64))


def clustered(n: int = 40, near: int = 4, dim: int = 8, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """n random vectors where im001..im{near-1} lie close to im000 (cosine > 0.9), the rest random."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim))
    vectors[1:near] = vectors[0] + 0.05 * rng.standard_normal((near - 1, dim))
    return [f"im{i:03d}" for i in range(n)], vectors
