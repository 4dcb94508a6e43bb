"""Metadata filters: every operator against plain-Python predicates, and clear errors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest
from pydantic import ValidationError

from edgemine.service import MineQuery
from edgemine.service.filters import FilterError, filter_mask
from tests.support.state_backend import runtime_of

Make = Callable[..., Any]
ALL_STATES = ["unlabeled", "queued", "labeled"]
POSITIVE = "im0000"


def mined_ids(built: Any, filters: dict[str, Any], loader: Any = None) -> set[str]:
    runtime = runtime_of(built.path, **({"loader": loader} if loader else {}))
    positive = built.ids[0]
    result = runtime.current().miner.mine(MineQuery(positive_ids=[positive], k=1000, filters=filters,
                                                    include_states=ALL_STATES))
    assert result.eligible == len(result.candidates)
    return {c.image_id for c in result.candidates}


def expected_ids(built: Any, predicate: Callable[[dict[str, Any]], bool]) -> set[str]:
    rows = [dict(zip(built.meta, values, strict=True)) for values in zip(*built.meta.values(), strict=True)]
    return {i for i, row in zip(built.ids, rows, strict=True) if predicate(row) and i != built.ids[0]}


def naive(text: str) -> datetime:
    return datetime.fromisoformat(text)


CASES: list[tuple[str, dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
    ("bare equality", {"time_of_day": "night"}, lambda r: r["time_of_day"] == "night"),
    ("eq", {"time_of_day": {"eq": "dusk"}}, lambda r: r["time_of_day"] == "dusk"),
    ("bare list", {"time_of_day": ["night", "dusk"]}, lambda r: r["time_of_day"] in ("night", "dusk")),
    ("in", {"sequence_id": {"in": ["seq01", "seq05", "seq99"]}}, lambda r: r["sequence_id"] in ("seq01", "seq05")),
    ("ne", {"time_of_day": {"ne": "day"}}, lambda r: r["time_of_day"] != "day"),
    ("not_in", {"time_of_day": {"not_in": ["day", "dusk"]}}, lambda r: r["time_of_day"] == "night"),
    ("int range", {"frame": {"gte": 10, "lt": 50}}, lambda r: 10 <= r["frame"] < 50),
    ("int open range", {"frame": {"gt": 10, "lte": 50}}, lambda r: 10 < r["frame"] <= 50),
    ("bare int", {"frame": 7}, lambda r: r["frame"] == 7),
    ("int given as text", {"frame": {"lt": "5"}}, lambda r: r["frame"] < 5),
    ("int membership", {"frame": [1, 2, 3, 250]}, lambda r: r["frame"] in (1, 2, 3, 250)),
    ("float range", {"speed": {"gt": 3.0, "lte": 7.5}}, lambda r: 3.0 < r["speed"] <= 7.5),
    ("float eq with int", {"speed": 3}, lambda r: r["speed"] == 3.0),
    ("timestamp range", {"timestamp": {"gte": "2024-03-01T01:00:00", "lt": "2024-03-01T02:30:00"}},
     lambda r: naive("2024-03-01T01:00:00") <= r["timestamp"] < naive("2024-03-01T02:30:00")),
    ("timestamp with Z", {"timestamp": {"gte": "2024-03-01T01:00:00Z"}},
     lambda r: r["timestamp"] >= naive("2024-03-01T01:00:00")),
    ("timestamp with offset", {"timestamp": {"lt": "2024-03-01T03:00:00+02:00"}},
     lambda r: r["timestamp"] < naive("2024-03-01T01:00:00")),
    ("timestamp date only", {"timestamp": {"gte": "2024-03-01", "lt": "2024-03-02"}}, lambda r: True),
    ("timestamp epoch seconds", {"timestamp": {"lt": datetime(2024, 3, 1, 0, 30, tzinfo=UTC).timestamp()}},
     lambda r: r["timestamp"] < naive("2024-03-01T00:30:00")),
    ("several columns AND", {"time_of_day": "night", "frame": {"lt": 100}, "sequence_id": {"ne": "seq04"}},
     lambda r: r["time_of_day"] == "night" and r["frame"] < 100 and r["sequence_id"] != "seq04"),
    ("several ops AND", {"frame": {"gte": 100, "lte": 200, "ne": 150, "not_in": [101, 102]}},
     lambda r: 100 <= r["frame"] <= 200 and r["frame"] not in (150, 101, 102)),
]


@pytest.mark.parametrize(("name", "filters", "predicate"), CASES, ids=[c[0] for c in CASES])
def test_filter_selects_exactly_the_matching_rows(make_byo_bundle: Make, name: str, filters: dict[str, Any],
                                                 predicate: Callable[[dict[str, Any]], bool]) -> None:
    built = make_byo_bundle(n=300)
    want = expected_ids(built, predicate)
    assert want, f"case {name!r} should select something"
    assert mined_ids(built, filters) == want


def test_timezone_aware_column(image_bundle: Any, fake_embedder: Any) -> None:
    # The metadata CSV held "...Z" times, so the column is timestamp[us, tz=UTC]; one row per hour.
    built = image_bundle
    loader = lambda name, pretrained: fake_embedder  # noqa: E731
    start = datetime(2024, 3, 1, 5, tzinfo=UTC)
    want = expected_ids(built, lambda r: r["timestamp"] >= start)
    assert mined_ids(built, {"timestamp": {"gte": "2024-03-01T05:00:00Z"}}, loader) == want
    assert mined_ids(built, {"timestamp": {"gte": "2024-03-01T05:00:00"}}, loader) == want  # naive = UTC
    assert mined_ids(built, {"timestamp": {"gte": "2024-03-01T06:00:00+01:00"}}, loader) == want
    assert mined_ids(built, {"frame": {"lt": 3}, "sequence_id": "seq1"}, loader) == expected_ids(
        built, lambda r: r["frame"] < 3 and r["sequence_id"] == "seq1")


def test_unknown_column_names_the_valid_ones(make_byo_bundle: Make) -> None:
    miner = runtime_of(make_byo_bundle(n=20).path).current().miner
    for column in ("weather", "path", "vec_id", "image_id"):
        with pytest.raises(FilterError) as err:
            miner.mine(MineQuery(positive_ids=[POSITIVE], filters={column: "x"}))
        message = str(err.value)
        assert repr(column) in message
        assert "sequence_id, frame, timestamp, time_of_day, speed" in message


@pytest.mark.parametrize("filters", [
    {"frame": "abc"},
    {"frame": {"gte": "abc"}},
    {"frame": 1.5},
    {"frame": {"in": [1, "two"]}},
    {"frame": {"eq": 1e19}},  # does not fit int64
    {"frame": True},
    {"speed": {"gt": "fast"}},
    {"speed": False},
    {"timestamp": {"gte": "yesterday"}},
    {"timestamp": {"gte": "2024-13-45"}},
    {"timestamp": True},
    {"timestamp": {"lt": 1e20}},  # out of range for any clock
    {"time_of_day": 5},  # a number on a string column
    {"time_of_day": {"in": ["night", 3]}},
    {"time_of_day": {"ne": 2.5}},
    {"sequence_id": True},
])
def test_wrong_type_is_a_filter_error(make_byo_bundle: Make, filters: dict[str, Any]) -> None:
    miner = runtime_of(make_byo_bundle(n=20).path).current().miner
    column = next(iter(filters))
    with pytest.raises(FilterError, match=repr(column)):
        miner.mine(MineQuery(positive_ids=[POSITIVE], filters=filters))


@pytest.mark.parametrize("filters", [
    {"frame": {"gt": 10_000}},
    {"time_of_day": "midnight"},
    {"time_of_day": {"in": []}},
    {"frame": {"gt": 10, "lt": 5}},
    {"timestamp": {"lt": "1999-01-01"}},
])
def test_filter_leaving_nothing_is_an_empty_result(make_byo_bundle: Make, filters: dict[str, Any]) -> None:
    miner = runtime_of(make_byo_bundle(n=30).path).current().miner
    result = miner.mine(MineQuery(positive_ids=[POSITIVE], filters=filters, k=5))
    assert result.candidates == [] and result.eligible == 0 and result.next_offset is None


def test_number_on_string_column_names_column_and_type(make_byo_bundle: Make, open_client: Make) -> None:
    built = make_byo_bundle(n=20)
    response = open_client(built.path).post("/v1/mine", json={"positive_ids": [POSITIVE],
                                                              "filters": {"time_of_day": 5}})
    assert response.status_code == 422
    assert "'time_of_day'" in response.json()["detail"] and "string" in response.json()["detail"]


@pytest.mark.parametrize("spec", [{}, {"eq": None}, {"eq": None, "in": None}, {"between": [1, 2]},
                                  {"gt": True}, {"lte": False}])
def test_empty_or_unknown_condition_is_rejected_by_the_query(spec: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        MineQuery(positive_ids=[POSITIVE], filters={"frame": spec})


def test_nulls_never_pass() -> None:
    table = pa.table({"image_id": ["a", "b", "c", "d"], "weather": ["rain", None, "sun", None],
                      "frame": pa.array([1, None, 3, 4], pa.int64())})
    def parsed(filters: dict[str, Any]) -> dict[str, Any]:
        return dict(MineQuery(positive_ids=["a"], filters=filters).filters)

    mask = filter_mask(table, parsed({"weather": {"ne": "sun"}}))
    assert mask is not None and mask.tolist() == [True, False, False, False]
    mask = filter_mask(table, parsed({"weather": {"not_in": ["sun"]}, "frame": {"gte": 0}}))
    assert mask is not None and mask.tolist() == [True, False, False, False]
    assert filter_mask(table, {}) is None


def test_nan_metadata_never_passes() -> None:
    nan = float("nan")
    table = pa.table({"image_id": ["a", "b", "c", "d", "e"],
                      "speed": pa.array([1.0, nan, 3.0, None, 5.0], pa.float64()),
                      "ratio": pa.array([0.5, 0.5, nan, 0.5, 0.5], pa.float32())})

    def rows(filters: dict[str, Any]) -> list[str]:
        mask = filter_mask(table, dict(MineQuery(positive_ids=["a"], filters=filters).filters))
        assert mask is not None
        return [i for i, keep in zip(table.column("image_id").to_pylist(), mask.tolist(), strict=True) if keep]

    assert rows({"speed": {"ne": 3.0}}) == ["a", "e"]
    assert rows({"speed": {"not_in": [3.0, 7.0]}}) == ["a", "e"]
    assert rows({"speed": {"gte": 0}}) == ["a", "c", "e"]
    assert rows({"speed": {"lt": 100}, "ratio": {"ne": 1.0}}) == ["a", "e"]
    assert rows({"ratio": {"not_in": [9.0]}}) == ["a", "b", "d", "e"]
    assert rows({"ratio": 0.5}) == ["a", "b", "d", "e"]


def test_fractional_range_on_integer_column_compares_as_float(make_byo_bundle: Make) -> None:
    miner = runtime_of(make_byo_bundle(n=20).path).current().miner
    result = miner.mine(MineQuery(positive_ids=[POSITIVE], k=20, filters={"frame": {"gt": 1.5, "lte": 3}}))
    assert result.candidates
    assert all(1.5 < c.metadata["frame"] <= 3 for c in result.candidates)
