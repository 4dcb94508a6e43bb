"""Fixtures for the service tests: small bundles, an independent brute-force miner, app clients."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edgemine.bundle.layout import ModelInfo
from edgemine.bundle.snapshot import load_current
from edgemine.indexer import ModelChoice, read_embeddings_source, run_index, scan_directory
from tests.support import state_backend
from tests.support.state_backend import state_url

BYO_MODEL = ModelChoice(ModelInfo(identity="byo:test", name="test", pretrained="external"), None)
T0 = datetime(2024, 3, 1, 0, 0, 0)
TIMES_OF_DAY = ("day", "night", "dusk")


@pytest.fixture(autouse=True)
def _state_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """With EDGEMINE_TEST_STATE=postgresql, every bundle's state is in a fresh PostgreSQL database."""
    if not state_backend.on_postgres():
        yield
        return
    monkeypatch.setenv("EDGEMINE_STATE_URL", state_backend.activate(request.getfixturevalue("pg_server")))
    yield
    state_backend.deactivate()


@dataclass
class BuiltBundle:
    """A bundle built for a test, with what went into it (ids and metadata in row order)."""

    path: Path
    ids: list[str]
    meta: dict[str, list[Any]]
    image_root: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def version_dir(self) -> Path:
        version = (self.path / "CURRENT").read_text().strip()
        return self.path / "versions" / version

    def embeddings(self) -> np.ndarray:
        """The stored vectors, read from the published version (row order = catalog)."""
        return np.asarray(load_current(self.path).embeddings, np.float64)

    def catalog_ids(self) -> list[str]:
        return load_current(self.path).image_ids

    def row(self) -> dict[str, int]:
        return {image_id: i for i, image_id in enumerate(self.catalog_ids())}


def byo_metadata(n: int) -> dict[str, list[Any]]:
    return {
        "sequence_id": [f"seq{i % 12:02d}" for i in range(n)],
        "frame": list(range(n)),
        "timestamp": [T0 + timedelta(minutes=i) for i in range(n)],
        "time_of_day": [TIMES_OF_DAY[i % 3] for i in range(n)],
        "speed": [float(i % 7) * 1.5 for i in range(n)],
    }


def write_byo(path: Path, ids: Sequence[str], vectors: np.ndarray, meta: dict[str, list[Any]]) -> Path:
    table = pa.table({
        "image_id": list(ids),
        "embedding": pa.array(np.asarray(vectors, np.float32).tolist(), pa.list_(pa.float32())),
        "sequence_id": pa.array(meta["sequence_id"], pa.string()),
        "frame": pa.array(meta["frame"], pa.int64()),
        "timestamp": pa.array(meta["timestamp"], pa.timestamp("us")),
        "time_of_day": pa.array(meta["time_of_day"], pa.string()),
        "speed": pa.array(meta["speed"], pa.float64()),
    })
    pq.write_table(table, path)
    return path


@pytest.fixture
def make_byo_bundle(tmp_path: Path) -> Callable[..., BuiltBundle]:
    """Build a bundle from random (or given) precomputed vectors with metadata; no model involved."""
    counter = [0]

    def make(n: int = 300, dim: int = 16, seed: int = 0, vectors: np.ndarray | None = None,
             bundle: Path | None = None, prefix: str = "im") -> BuiltBundle:
        counter[0] += 1
        if vectors is None:
            vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
        n = len(vectors)
        ids = [f"{prefix}{i:04d}" for i in range(n)]
        meta = byo_metadata(n)
        source = write_byo(tmp_path / f"embeddings-{counter[0]}.parquet", ids, vectors, meta)
        bundle = bundle or tmp_path / f"byo-bundle-{counter[0]}"
        report = run_index(read_embeddings_source(source), bundle, BYO_MODEL, progress=False,
                           state_url=state_url(bundle))
        assert report.published
        return BuiltBundle(bundle, ids, meta)

    return make


def write_metadata_csv(path: Path, ids: Sequence[str]) -> dict[str, list[Any]]:
    meta: dict[str, list[Any]] = {"sequence_id": [], "frame": [], "timestamp": [], "time_of_day": []}
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", "sequence_id", "frame", "timestamp", "time_of_day"])
        for i, image_id in enumerate(ids):
            ts = datetime(2024, 3, 1, tzinfo=UTC) + timedelta(hours=i)
            row = [image_id, f"seq{i % 4}", i, ts.isoformat().replace("+00:00", "Z"), TIMES_OF_DAY[i % 3]]
            writer.writerow(row)
            for key, value in zip(meta, row[1:], strict=True):
                meta[key].append(value)
    meta["timestamp"] = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in meta["timestamp"]]
    return meta


@pytest.fixture
def image_bundle(tmp_path: Path, make_images: Callable[..., list[str]], fake_model: ModelChoice) -> BuiltBundle:
    """A bundle of 30 generated PNGs embedded with the fake model, with a metadata CSV."""
    root = tmp_path / "images"
    ids = make_images(root, 30, seed=3)
    meta = write_metadata_csv(tmp_path / "metadata.csv", ids)
    bundle = tmp_path / "img-bundle"
    run_index(scan_directory(root, tmp_path / "metadata.csv"), bundle, fake_model, workers=0, progress=False,
              state_url=state_url(bundle))
    built = BuiltBundle(bundle, ids, meta, image_root=root)
    # The indexer orders rows by directory walk: keep ids and metadata in catalog row order.
    order = [ids.index(i) for i in built.catalog_ids()]
    built.ids = [ids[i] for i in order]
    built.meta = {key: [values[i] for i in order] for key, values in meta.items()}
    return built


# -- an independent brute-force reference of edgemine/service/scoring.py's documented maths ----------

RRF_K = 60.0


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _rrf(E: np.ndarray, examples: np.ndarray, eligible: np.ndarray, depth: int) -> np.ndarray:
    out = np.zeros(len(E))
    rows = np.flatnonzero(eligible)
    for vec in examples:
        sims = E[rows] @ vec
        # rank by similarity (descending), ties by row number
        ranked = sorted(range(len(rows)), key=lambda i: (-sims[i], rows[i]))[:depth]
        for rank, i in enumerate(ranked, start=1):
            out[rows[i]] += 1.0 / (RRF_K + rank)
    return out


@dataclass
class RefHit:
    image_id: str
    score: float
    nearest: str
    nearest_sim: float


def brute_force(E: np.ndarray, ids: Sequence[str], *, pos: np.ndarray, pos_labels: Sequence[str],
                neg: np.ndarray | None = None, strategy: str = "max", negative_weight: float = 0.5,
                eligible: np.ndarray, k: int, offset: int = 0, min_score: float | None = None,
                groups: Sequence[Any] | None = None, max_per_group: int | None = None,
                dedup: float | None = None, depth: int | None = None) -> list[RefHit]:
    """Rank every eligible row the way scoring.py's docstring says, in float64 and plain Python."""
    E = np.asarray(E, np.float64)
    pos = np.asarray(pos, np.float64)
    neg = np.zeros((0, E.shape[1])) if neg is None else np.asarray(neg, np.float64)
    use_neg = len(neg) > 0 and negative_weight > 0
    S = E @ pos.T
    if depth is None:
        depth = max(1000, 4 * (offset + k))
    if strategy == "mean":
        score = E @ _unit(pos.mean(axis=0))
        if use_neg:
            score = score - negative_weight * (E @ _unit(neg.mean(axis=0)))
    elif strategy == "max":
        score = S.max(axis=1)
        if use_neg:
            score = score - negative_weight * (E @ neg.T).max(axis=1)
    elif strategy == "rrf":
        score = _rrf(E, pos, eligible, depth)
        if use_neg:
            score = score - negative_weight * _rrf(E, neg, eligible, depth)
    else:
        raise AssertionError(strategy)
    keep = eligible.copy()
    if min_score is not None:
        keep &= score >= min_score
    order = sorted(np.flatnonzero(keep).tolist(), key=lambda r: (-score[r], r))
    taken: list[int] = []
    per_group: dict[Any, int] = {}
    for r in order:
        if max_per_group is not None and groups is not None and groups[r] is not None \
                and per_group.get(groups[r], 0) >= max_per_group:
            continue
        if dedup is not None and any(float(E[r] @ E[t]) >= dedup for t in taken):
            continue
        if groups is not None:
            per_group[groups[r]] = per_group.get(groups[r], 0) + 1
        taken.append(r)
        if len(taken) >= offset + k:
            break
    hits = []
    for r in taken[offset:offset + k]:
        j = int(np.argmax(S[r]))
        hits.append(RefHit(ids[r], float(score[r]), pos_labels[j], float(S[r, j])))
    return hits


def assert_matches(candidates: Sequence[Any], expected: Sequence[RefHit], *, tol: float = 1e-5,
                   all_scores: dict[str, float] | None = None) -> None:
    """Same ids in the same order (rows tied to 1e-6 may swap), scores and explanations to `tol`."""
    got = [c.image_id if hasattr(c, "image_id") else c["image_id"] for c in candidates]
    want = [h.image_id for h in expected]
    assert len(got) == len(want), (got, want)
    assert len(set(got)) == len(got), "duplicate candidates"
    ref_score = {h.image_id: h.score for h in expected} | (all_scores or {})
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if g != w:
            assert g in ref_score and abs(ref_score[g] - ref_score[w]) < 1e-6, f"rank {i + 1}: {g} != {w}"
    for c, h in zip(candidates, expected, strict=True):
        c = c if isinstance(c, dict) else c.model_dump()
        if c["image_id"] != h.image_id:
            continue
        assert abs(c["score"] - h.score) < tol, (c["image_id"], c["score"], h.score)
        assert c["nearest_example_id"] == h.nearest
        assert abs(c["nearest_example_similarity"] - h.nearest_sim) < tol
    ranks = [c.rank if hasattr(c, "rank") else c["rank"] for c in candidates]
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks)


@pytest.fixture
def reference() -> Callable[..., list[RefHit]]:
    return brute_force


@pytest.fixture
def check() -> Callable[..., None]:
    return assert_matches
