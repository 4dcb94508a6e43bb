"""Shared helpers for the search tests: clustered unit vectors, BYO bundles, exact references.

Everything here is small (a few thousand vectors, d <= 64) and seeded; FAISS runs on one thread
while these tests run, so that graph builds (HNSW) and timings are reproducible.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edgemine.bundle import StateDB, images_sync
from edgemine.bundle.layout import ModelInfo
from edgemine.bundle.snapshot import Snapshot, load_current
from edgemine.indexer import IndexReport, ModelChoice, read_embeddings_source, run_index
from edgemine.indexer.job import IndexOptions
from edgemine.models.vectors import l2_normalize
from edgemine.search.searcher import Searcher
from edgemine.service.miner import Miner
from edgemine.service.row_states import STATE_CODE, RowStates

BYO = ModelChoice(ModelInfo(identity="byo:search-tests", name="search-tests", pretrained="external"), None)
TIMES_OF_DAY = ("day", "night", "dusk")


@pytest.fixture(scope="session", autouse=True)
def _one_faiss_thread() -> Iterator[None]:
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def clustered(n: int, d: int = 32, clusters: int = 64, spread: float = 0.1, seed: int = 0) -> np.ndarray:
    """Return n unit vectors around `clusters` random unit centres (noise `spread` per dimension)."""
    rng = np.random.default_rng(seed)
    centres = l2_normalize(rng.standard_normal((clusters, d)).astype(np.float32))
    labels = rng.integers(0, clusters, n)
    return l2_normalize(centres[labels] + spread * rng.standard_normal((n, d)).astype(np.float32))


def exact_max_topk(E: np.ndarray, examples: np.ndarray, eligible: np.ndarray, k: int) -> np.ndarray:
    """Exact reference of the miner's "max" rule: top-k eligible rows by max similarity to an example."""
    score = (np.asarray(E, np.float64) @ np.asarray(examples, np.float64).T).max(axis=1)
    rows = np.flatnonzero(eligible)
    order = np.lexsort((rows, -score[rows]))
    return rows[order[:k]]


def index_ids(index: Any) -> np.ndarray:
    """Return every id stored in an IVF or id-mapped index (sorted), read from its structures."""
    import faiss

    from edgemine.search.build import ivf_of

    ivf = ivf_of(index)
    if ivf is None:
        return np.sort(faiss.vector_to_array(faiss.downcast_index(index).id_map))
    lists = ivf.invlists
    parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
             for i in range(ivf.nlist) if lists.list_size(i)]
    return np.sort(np.concatenate(parts)) if parts else np.empty(0, np.int64)


@dataclass
class Bundle:
    """A BYO bundle built for a test."""

    path: Path
    ids: list[str]
    vectors: np.ndarray
    report: IndexReport

    def snapshot(self) -> Snapshot:
        return load_current(self.path)


def write_byo(path: Path, ids: Sequence[str], vectors: np.ndarray) -> Path:
    """Write a precomputed-embeddings Parquet: image_id, embedding, time_of_day, shard, frame."""
    n = len(ids)
    frame = [int(i[2:]) for i in ids]
    pq.write_table(pa.table({
        "image_id": list(ids),
        "embedding": pa.array(np.asarray(vectors, np.float32).tolist(), pa.list_(pa.float32())),
        "time_of_day": pa.array([TIMES_OF_DAY[f % 3] for f in frame], pa.string()),
        "shard": pa.array([(f * 7919) % 10 for f in frame], pa.int64()),
        "frame": pa.array(frame, pa.int64()),
    }), path)
    assert n == len(vectors)
    return path


def ids_for(n: int, start: int = 0) -> list[str]:
    return [f"im{i:06d}" for i in range(start, start + n)]


def index_bundle(bundle: Path, ids: Sequence[str], vectors: np.ndarray, index: str, *,
                 prune: bool = False, rebuild: bool = False) -> Bundle:
    """Index precomputed vectors into `bundle` with a forced index spec."""
    source = bundle.parent / f"{bundle.name}-{len(list(bundle.parent.glob(bundle.name + '-*.parquet')))}.parquet"
    write_byo(source, ids, vectors)
    report = run_index(read_embeddings_source(source), bundle, BYO, progress=False, prune=prune,
                       rebuild=rebuild, options=IndexOptions(index))
    return Bundle(bundle, list(ids), np.asarray(vectors, np.float32), report)


def searcher_of(snap: Snapshot) -> Searcher | None:
    """Return the searcher the service would create for a version (None for exact bundles)."""
    info = snap.manifest.index
    if info.type not in ("ivf", "hnsw"):
        return None
    return Searcher(snap.load_index(), info.type, dict(info.search_params),
                    snap.catalog.column("vec_id").to_numpy())


def fresh_states(snap: Snapshot, db_path: Path, labeled: Sequence[str] = ()) -> RowStates:
    """Return labeling states from a new state database holding the version's images."""
    db = StateDB(db_path)
    images_sync.apply_upserts(db, images_sync.catalog_rows(snap.catalog))
    if labeled:
        db.set_state(list(labeled), "labeled")
    return RowStates(snap.row_by_id, db)


class MaskStates:
    """In-memory labeling states (the RowStates interface the miner uses), for many cheap cases."""

    def __init__(self, n: int, labeled_rows: Sequence[int] | np.ndarray = ()) -> None:
        self.codes = np.zeros(n, np.int8)
        self.codes[np.asarray(labeled_rows, np.int64)] = STATE_CODE["labeled"]

    def eligible(self, states: list[str]) -> np.ndarray:
        return np.isin(self.codes, [STATE_CODE[s] for s in states])

    def eligible_at(self, states: list[str]) -> tuple[np.ndarray, int]:
        return self.eligible(states), 0

    def changed_since(self, seq: int) -> np.ndarray:
        return np.empty(0, np.int64)


def miner_of(snap: Snapshot, states: RowStates | MaskStates, exact: bool = False) -> Miner:
    return Miner(snap, states, None, searcher=None if exact else searcher_of(snap))


class Kit:
    """The helpers above, handed to tests as a fixture (conftest modules are not importable)."""

    clustered = staticmethod(clustered)
    exact_max_topk = staticmethod(exact_max_topk)
    index_ids = staticmethod(index_ids)
    write_byo = staticmethod(write_byo)
    ids_for = staticmethod(ids_for)
    index_bundle = staticmethod(index_bundle)
    searcher_of = staticmethod(searcher_of)
    fresh_states = staticmethod(fresh_states)
    miner_of = staticmethod(miner_of)
    MaskStates = MaskStates
    BYO = BYO


@pytest.fixture(scope="session")
def kit() -> type[Kit]:
    return Kit
