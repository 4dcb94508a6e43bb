"""File layout of a bundle directory and its manifest.json schema."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from edgemine.bundle.errors import BundleError
from edgemine.bundle.objects import is_remote, uri_inside

FORMAT_VERSION = 2  # 2: segments + tombstones (O(new) publishes); 1 (files in the version dir) still loads
MANIFEST = "manifest.json"
EMBEDDINGS = "embeddings.npy"
CATALOG = "catalog.parquet"
INDEX = "index.faiss"
# Format 2 (issue 11, O(new) publishes): immutable segments shared by versions.
SEGMENTS = "segments"  # <bundle>/segments/<name>/{embeddings.npy, catalog.parquet[, index.faiss]}
TOMBSTONES = "tombstones.npy"  # in a version dir: sorted int64 vec_ids its segments hold but it does not serve
# Columns of catalog.parquet that are ours; every other column is user metadata.
RESERVED_COLUMNS = ("vec_id", "image_id", "path", "fingerprint")


# The one format of every timestamp edgemine stores or returns (state.sqlite, manifests):
# ISO-8601 UTC to the second with a "Z" suffix. Rows written by older code with `isoformat()`
# ("+00:00") are rewritten by state migration 3; `utc_text` normalizes one read from elsewhere.
UTC_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utc_now() -> str:
    """Return the current UTC time as ISO-8601 text, e.g. 2026-12-01T21:20:44Z."""
    return datetime.now(UTC).strftime(UTC_FORMAT)


def utc_text(stamp: str) -> str:
    """Return an ISO-8601 timestamp in utc_now's format (accepts "+00:00", "Z", other offsets)."""
    try:
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp  # not ours to fix: kept as written
    if parsed.tzinfo is None:
        return stamp
    return parsed.astimezone(UTC).strftime(UTC_FORMAT)


class ModelInfo(BaseModel):
    """Which model produced the vectors."""

    identity: str
    name: str
    pretrained: str


class FilteredTuning(BaseModel):
    """Search parameters tuned at one exclusion level, and the recall@k they measured."""

    excluded: float  # fraction of rows not eligible (labeled, filtered out)
    params: dict[str, float]
    recall: dict[str, float]  # by number of examples ("1", "10", "50"), each at its own params
    met_target: bool
    # Params tuned per number of examples ("1", "10", "50"): a query of m examples uses the largest
    # count not above m. Empty in bundles tuned before per-count tuning: `params` serve all.
    by_examples: dict[str, dict[str, float]] = Field(default_factory=dict)


class IndexInfo(BaseModel):
    """Which FAISS index is stored and how it was tuned."""

    type: str = "flat"
    factory: str = "IDMap2,Flat"
    search_params: dict[str, float] = Field(default_factory=dict)
    reason: str = ""
    nlist: int | None = None
    train_size: int = 0
    trained_on: int = 0  # vectors in the index when it was (re)trained; adds since are incremental
    build_seconds: float = 0.0
    bytes_per_vector: float = 0.0
    tuned_k: int | None = None
    recall_at_k: float | None = None  # measured against exact search on held-out queries
    held_out_queries: int | None = None  # tuning queries outside the training sample (0: none left)
    target_recall: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    # How nprobe / efSearch (and re-ranking) grow with exclusion (search/filtered.py); empty: 1/p.
    filtered: list[FilteredTuning] = Field(default_factory=list)


class Counts(BaseModel):
    """How many images the version holds."""

    images: int
    added: int = 0
    updated: int = 0
    removed: int = 0
    failed: int = 0


class SegmentRef(BaseModel):
    """One immutable segment a format-2 version serves (rows = vec_ids vec_id_start..vec_id_end-1)."""

    name: str  # directory under <bundle>/segments/
    rows: int
    vec_id_start: int
    vec_id_end: int  # exclusive; rows == vec_id_end - vec_id_start
    dtype: Literal["float32", "float16"] = "float32"
    has_index: bool = False  # segments/<name>/index.faiss: this segment's rows in the version's IVF


class Manifest(BaseModel):
    """manifest.json: everything a reader needs to trust a published version."""

    format_version: int = FORMAT_VERSION
    version: int
    model: ModelInfo
    dim: int
    metric: Literal["inner_product"] = "inner_product"
    normalized: bool = True
    index: IndexInfo = Field(default_factory=IndexInfo)
    counts: Counts
    next_vec_id: int
    image_roots: list[str] = Field(default_factory=list)
    # Format 2 only (empty for format 1, whose files sit in the version directory).
    segments: list[SegmentRef] = Field(default_factory=list)
    tombstones: int = 0  # how many vec_ids tombstones.npy lists
    metadata_columns: list[str] = Field(default_factory=list)
    created_at: str
    updated_at: str
    edgemine_version: str


class BundlePaths:
    """Paths inside a bundle directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.current = self.root / "CURRENT"
        self.versions = self.root / "versions"
        self.segments = self.root / SEGMENTS
        self.state_db = self.root / "state.sqlite"
        self.reports = self.root / "reports"
        self.lock = self.root / ".indexer.lock"

    def version_dir(self, version: int) -> Path:
        """Return the directory of a published version number."""
        return self.versions / f"v{version:06d}"

    def current_version(self) -> int | None:
        """Return the published version number named by CURRENT, or None if nothing is published."""
        try:
            text = self.current.read_text().strip()
        except FileNotFoundError:
            return None
        if not text.startswith("v") or not text[1:].isdigit():
            raise BundleError(f"{self.current} is corrupt: {text[:40]!r}")
        return int(text[1:])


def fsync_dir(path: Path) -> None:
    """Flush a directory entry so a rename inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file so readers see either the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def real_path_inside(path: Path | str, roots: list[str]) -> str | None:
    """Return the file's real path (symlinks resolved) if it lies under one of `roots`, else None."""
    # The one containment check for every reader of image files (service, Python API, reports):
    # a catalog path or a symlink pointing outside the declared image roots is never opened.
    # An object-store URI (s3://, gs://) is only ever inside a URI root, a local path only ever
    # inside a local root (a relative "s3:/..." folder must not match a URI root, nor the reverse).
    if is_remote(path):
        return uri_inside(str(path), roots)
    real = os.path.realpath(path)
    for root in roots:
        if is_remote(root):
            continue
        top = os.path.realpath(root)
        if os.path.commonpath([real, top]) == top:
            return real
    return None


def read_manifest(version_dir: Path) -> Manifest:
    """Read and validate a version's manifest.json."""
    path = version_dir / MANIFEST
    try:
        manifest = Manifest.model_validate(json.loads(path.read_text()))
    except FileNotFoundError as exc:
        raise BundleError(f"{path} is missing") from exc
    except ValueError as exc:
        raise BundleError(f"{path} is corrupt: {exc}") from exc
    if manifest.format_version > FORMAT_VERSION:
        raise BundleError(
            f"{path} has format_version {manifest.format_version}; this edgemine reads up to "
            f"{FORMAT_VERSION}: upgrade edgemine"
        )
    return manifest
