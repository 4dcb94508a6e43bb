"""Atomic publish of immutable versions, and clear errors for missing or corrupt bundles."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pytest

from edgemine.bundle import FORMAT_VERSION, BundleError, BundlePaths, load_current
from edgemine.bundle.layout import Counts, Manifest, ModelInfo
from edgemine.bundle.snapshot import publish_version
from edgemine.search.build import build_index
from edgemine.search.plan import choose_index

DIM = 4
FILES = {"manifest.json", "index.faiss"}  # format 2: the rows live in segments/
SEGMENT_FILES = {"catalog.parquet", "embeddings.npy"}


def publish(root: Path, version: int, n: int = 3) -> Path:
    vectors = np.eye(n, DIM, dtype=np.float32) if n <= DIM else np.ones((n, DIM), np.float32) / 2
    vec_ids = np.arange(n, dtype=np.int64) + 100 * version
    catalog = pa.table({"vec_id": vec_ids, "image_id": [f"v{version}/img{i}" for i in range(n)],
                        "path": [None] * n, "fingerprint": ["f"] * n})
    manifest = Manifest(version=version, model=ModelInfo(identity="m/1", name="m", pretrained="none"),
                        dim=DIM, counts=Counts(images=n), next_vec_id=int(vec_ids.max()) + 1,
                        created_at="t", updated_at="t", edgemine_version="")
    index, _ = build_index(vectors, vec_ids, choose_index(*vectors.shape, forced="flat"))
    return publish_version(BundlePaths(root), manifest, catalog, vectors, index)


def listing(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "versions").iterdir())


def test_publish_then_read(tmp_path: Path) -> None:
    final = publish(tmp_path, 1)
    assert final == tmp_path / "versions" / "v000001"
    assert {p.name for p in final.iterdir()} == FILES
    assert {p.name for p in (tmp_path / "segments" / "s000000").iterdir()} == SEGMENT_FILES
    assert (tmp_path / "CURRENT").read_text() == "v000001\n"
    snap = load_current(tmp_path)
    assert snap.version == 1 and snap.dir == final
    assert snap.image_ids == ["v1/img0", "v1/img1", "v1/img2"]
    assert snap.manifest.format_version == FORMAT_VERSION
    assert snap.manifest.edgemine_version  # stamped at publish
    idx = snap.load_index()
    _, ids = idx.search(np.eye(1, DIM, dtype=np.float32), 1)
    assert ids[0, 0] == 100
    # nothing but complete versions and the pointer: no temp files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CURRENT", "segments", "versions"]


def test_only_recent_complete_versions_are_kept(tmp_path: Path) -> None:
    for version in (1, 2, 3):
        publish(tmp_path, version)
        for name in listing(tmp_path):
            assert {p.name for p in (tmp_path / "versions" / name).iterdir()} == FILES
    assert listing(tmp_path) == ["v000002", "v000003"]
    assert load_current(tmp_path).image_ids[0] == "v3/img0"
    # the segment only v000001 used is collected with it
    assert sorted(p.name for p in (tmp_path / "segments").iterdir()) == ["s000001", "s000002"]


def test_leftover_partial_dirs_are_ignored_then_cleaned(tmp_path: Path) -> None:
    publish(tmp_path, 1)
    for name in ("v000002.partial", "v000009.partial"):
        junk = tmp_path / "versions" / name
        junk.mkdir()
        (junk / "embeddings.npy").write_bytes(b"half a file")
    # an unpublished but renamed version (crash between rename and CURRENT) is ignored too
    orphan = tmp_path / "versions" / "v000002"
    orphan.mkdir()
    (orphan / "manifest.json").write_text("{garbage")

    assert load_current(tmp_path).version == 1
    publish(tmp_path, 2)
    assert listing(tmp_path) == ["v000001", "v000002"]
    snap = load_current(tmp_path)
    assert snap.version == 2 and snap.image_ids[0] == "v2/img0"
    assert {p.name for p in snap.dir.iterdir()} == FILES


def test_crash_during_publish_leaves_the_old_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    publish(tmp_path, 1)

    def boom(*args: object) -> None:
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(faiss, "write_index", boom)
        with pytest.raises(OSError, match="disk full"):
            publish(tmp_path, 2)
    assert (tmp_path / "CURRENT").read_text() == "v000001\n"
    assert load_current(tmp_path).version == 1
    assert (tmp_path / "versions" / "v000002.partial").is_dir()
    publish(tmp_path, 2)
    assert listing(tmp_path) == ["v000001", "v000002"]
    assert load_current(tmp_path).version == 2


def test_missing_or_empty_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        load_current(tmp_path / "nope")
    with pytest.raises(BundleError, match="no published version yet"):
        load_current(tmp_path)


@pytest.mark.parametrize("text", ["", "garbage", "v12x", "000001"])
def test_corrupt_current(tmp_path: Path, text: str) -> None:
    publish(tmp_path, 1)
    (tmp_path / "CURRENT").write_text(text)
    with pytest.raises(BundleError, match="CURRENT is corrupt"):
        load_current(tmp_path)


def test_current_names_a_missing_version(tmp_path: Path) -> None:
    publish(tmp_path, 1)
    (tmp_path / "CURRENT").write_text("v000007\n")
    with pytest.raises(BundleError, match=r"v000007/manifest.json is missing"):
        load_current(tmp_path)


def corrupt(vdir: Path, how: str) -> None:
    segment = vdir.parent.parent / "segments" / "s000000"
    if how == "manifest-json":
        (vdir / "manifest.json").write_text("{not json")
    elif how == "manifest-schema":
        (vdir / "manifest.json").write_text(json.dumps({"version": 1}))
    elif how == "embeddings":
        (segment / "embeddings.npy").write_bytes(b"\x93NUMPY garbage")
    elif how == "catalog":
        (segment / "catalog.parquet").write_bytes(b"PAR1 nope")
    elif how == "segment":
        (segment / "embeddings.npy").unlink()
    elif how == "counts":
        data = json.loads((vdir / "manifest.json").read_text())
        data["counts"]["images"] = 5
        (vdir / "manifest.json").write_text(json.dumps(data))
    elif how == "future":
        data = json.loads((vdir / "manifest.json").read_text())
        data["format_version"] = FORMAT_VERSION + 1
        (vdir / "manifest.json").write_text(json.dumps(data))


@pytest.mark.parametrize(("how", "message"), [
    ("manifest-json", "manifest.json is corrupt"),
    ("manifest-schema", "manifest.json is corrupt"),
    ("embeddings", "is corrupt"),
    ("catalog", "is corrupt"),
    ("segment", "is corrupt"),
    ("counts", "inconsistent"),
    ("future", "upgrade edgemine"),
])
def test_corrupt_version(tmp_path: Path, how: str, message: str) -> None:
    corrupt(publish(tmp_path, 1), how)
    with pytest.raises(BundleError, match=message):
        load_current(tmp_path)
