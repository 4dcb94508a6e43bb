"""The images-table sync plans exact differences, and its fast metadata encoder is the canonical one."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa

from edgemine.bundle import StateDB, images_sync
from edgemine.bundle.images_sync import catalog_rows, encode_metadata, plan_sync


def test_column_encoding_equals_the_canonical_form_for_every_kind_of_value() -> None:
    utc = dt.UTC
    meta = pa.table({
        "text": ["a", "é\n\"q\"", None, "", "日本"],
        "count": [1, -2, None, 2**62, 0],
        "speed": [1.5, float("nan"), None, float("inf"), -0.0],
        "flag": [True, False, None, True, False],
        "when": pa.array([dt.datetime(2024, 3, 1, 12, 0, 0, 5), None, dt.datetime(2024, 3, 1),
                          dt.datetime(1999, 1, 1), dt.datetime(2024, 2, 29, 23)], pa.timestamp("us")),
        "when_utc": pa.array([dt.datetime(2024, 3, 1, tzinfo=utc)] * 5, pa.timestamp("s", tz="UTC")),
        "day": [dt.date(2024, 3, 1), None, dt.date(2000, 1, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 3)],
        "tags": [["x", "y"], [], None, ["z"], ["w"]],
        "nested": [{"b": 1, "a": "s"}, None, {"b": 2, "a": None}, {"b": 3, "a": "t"}, {"b": 4, "a": ""}],
    })
    assert images_sync._encode_columns(meta) == [encode_metadata(m) for m in meta.to_pylist()]
    assert images_sync._encode_columns(meta.select([])) == ["{}"] * 5
    assert encode_metadata(meta.slice(0, 1).to_pylist()[0]).startswith('{"count": 1, "day": "2024-03-01"')


def test_plan_finds_new_changed_and_orphan_rows(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "state.sqlite")
    stored = [("a", "/a", "{}", 0), ("b", "/b", "{}", 1), ("c", None, "{}", 2),
              ("e", "/e", '{"k": 1}', 4)]
    images_sync.apply_upserts(db, stored)
    db.set_state(["b", "e"], "labeled")
    target = [("b", "/b", "{}", 1), ("c", "/c", "{}", 2), ("d", None, "{}", 3),
              ("e", "/e", '{"k": 2}', 4)]
    plan = plan_sync(db, target)
    assert plan.upserts == target[1:] and plan.deletes == ["a"]
    images_sync.apply_upserts(db, plan.upserts)
    images_sync.apply_deletes(db, plan.deletes)
    assert plan_sync(db, target) == images_sync.SyncPlan()
    assert db.state_counts() == {"unlabeled": 2, "queued": 0, "labeled": 2, "rejected": 0}  # state kept on update


def test_catalog_rows_are_sorted_and_carry_metadata() -> None:
    catalog = pa.table({"vec_id": [5, 3], "image_id": ["z", "m"], "path": ["/z", None],
                        "fingerprint": ["f", "g"], "night": [True, None]})
    assert catalog_rows(catalog) == [("m", None, '{"night": null}', 3),
                                     ("z", "/z", '{"night": true}', 5)]
