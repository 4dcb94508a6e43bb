"""`edgemine compact --bundle DIR`: one segment, tombstones dropped, the same images and vectors served."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from edgemine.bundle.snapshot import load_current
from edgemine.cli.main import app
from tests.support.vec_bundle import build_vec_bundle, clustered


def test_compact_command_rewrites_one_segment_and_serves_the_same_rows(tmp_path: Path) -> None:
    ids, X = clustered(n=40)
    bundle = tmp_path / "b"
    build_vec_bundle(bundle, ids[:20], X[:20])
    build_vec_bundle(bundle, ids[:30], X[:30])
    X2 = X.copy()
    X2[3] += 1.0  # changed: tombstone
    build_vec_bundle(bundle, ids, X2)
    before = load_current(bundle)
    assert len(before.manifest.segments) == 3 and len(before.tombstones) == 1
    vectors = {i: np.asarray(before.embeddings[r]) for i, r in before.row_by_id.items()}

    result = CliRunner().invoke(app, ["compact", "--bundle", str(bundle), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["published"] and report["compacted"] and report["version"] == before.version + 1
    after = load_current(bundle)
    assert len(after.manifest.segments) == 1 and not len(after.tombstones)
    assert sorted(after.image_ids) == sorted(before.image_ids)
    for image_id, row in after.row_by_id.items():
        np.testing.assert_array_equal(after.embeddings[row], vectors[image_id])
    assert after.record(after.row_by_id["im005"]) | {"vec_id": 0} == \
        before.record(before.row_by_id["im005"]) | {"vec_id": 0}  # same path, fingerprint, metadata
    with sqlite3.connect(bundle / "state.sqlite") as db:
        rows = dict(db.execute("SELECT image_id, vec_id FROM images").fetchall())
    assert rows == dict(zip(after.image_ids, after.catalog.column("vec_id").to_pylist(), strict=True))


def test_compact_command_names_a_missing_bundle(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["compact", "--bundle", str(tmp_path / "nope")])
    assert result.exit_code != 0 and "does not exist" in result.output
