"""Metadata filters evaluated as a boolean mask over a bundle version's rows."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from edgemine.bundle.layout import RESERVED_COLUMNS
from edgemine.service.query import FilterValue, Range, Scalar

Mask = npt.NDArray[np.bool_]


class FilterError(ValueError):
    """A filter names an unknown column or a value of the wrong type."""


def _coerce(value: Scalar, column: str, dtype: pa.DataType, op: str = "eq") -> pa.Scalar:
    try:
        if pa.types.is_timestamp(dtype) or pa.types.is_date(dtype):
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise ValueError("expected an ISO-8601 time")
            if isinstance(value, str):
                parsed: Any = datetime.fromisoformat(value.replace("Z", "+00:00"))
            else:
                parsed = datetime.fromtimestamp(float(value), tz=UTC)  # epoch seconds are UTC
            tz = getattr(dtype, "tz", None)
            if tz is None and parsed.tzinfo is not None:
                # Naive columns hold UTC: convert (a zero offset, e.g. "Z", must work too).
                parsed = parsed.astimezone(UTC).replace(tzinfo=None)
            elif tz is not None and parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            if pa.types.is_date(dtype):
                parsed = parsed.date() if isinstance(parsed, datetime) else date.fromisoformat(str(value))
            return pa.scalar(parsed, type=dtype)
        if pa.types.is_boolean(dtype):
            if isinstance(value, bool):
                return pa.scalar(value)
            if str(value).lower() in ("true", "false"):
                return pa.scalar(str(value).lower() == "true")
            raise ValueError("expected true or false")
        if pa.types.is_integer(dtype) or pa.types.is_floating(dtype):
            if isinstance(value, bool):
                raise ValueError("expected a number")
            if not math.isfinite(float(value)):
                raise ValueError("expected a finite number")
            if op in ("gt", "gte", "lt", "lte") and pa.types.is_integer(dtype) and not float(value).is_integer():
                # A fractional bound on an integer column compares as a float (frame >= 1.5).
                return pa.scalar(float(value), type=pa.float64())
            number = float(value) if pa.types.is_floating(dtype) else _as_int(value)
            return pa.scalar(number, type=dtype)
        if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
            if not isinstance(value, str):
                # A number never equals text: {"time_of_day": 5} is a mistake, not an empty result.
                raise ValueError("expected text")
            return pa.scalar(value, type=dtype)
        return pa.scalar(value).cast(dtype)
    except (ValueError, TypeError, OverflowError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise FilterError(
            f"filter on {column!r}: {value!r} does not fit the column type {dtype} ({exc})"
        ) from exc


def _as_int(value: Scalar) -> int:
    number = float(value)
    if not number.is_integer():
        raise ValueError("expected an integer")
    return int(number)


def _condition(column: pa.ChunkedArray, name: str, spec: FilterValue) -> pa.ChunkedArray:
    if isinstance(spec, list):
        spec = Range.model_validate({"in": spec})
    elif not isinstance(spec, Range):
        spec = Range(eq=spec)
    dtype = column.type
    parts = []
    ops = {"eq": pc.equal, "ne": pc.not_equal, "gt": pc.greater, "gte": pc.greater_equal,
           "lt": pc.less, "lte": pc.less_equal}
    for op, fn in ops.items():
        value = getattr(spec, op)
        if value is not None:
            parts.append(fn(column, _coerce(value, name, dtype, op)))
    for op, negate in (("in_", False), ("not_in", True)):
        values = getattr(spec, op)
        if values is not None:
            options = pa.array([_coerce(v, name, dtype).as_py() for v in values], type=dtype)
            hit = pc.is_in(column, value_set=options)
            # is_in gives false (not null) for a null, so inverting it would let nulls through.
            parts.append(pc.and_(pc.invert(hit), pc.is_valid(column)) if negate else hit)
    result = parts[0]
    for part in parts[1:]:
        result = pc.and_(result, part)
    return result


def filter_mask(catalog: pa.Table, filters: dict[str, FilterValue]) -> Mask | None:
    """Return rows passing every filter (None when there are no filters); nulls and NaN never pass."""
    if not filters:
        return None
    columns = [c for c in catalog.column_names if c not in RESERVED_COLUMNS]
    mask = np.ones(catalog.num_rows, dtype=bool)
    for name, spec in filters.items():
        if name not in columns:
            raise FilterError(f"unknown filter column {name!r}; valid columns: {', '.join(columns) or '(none)'}")
        column = catalog.column(name)
        cond = _condition(column, name, spec)
        if pa.types.is_floating(column.type):
            # NaN is a missing value too: it passes no condition, not even ne / not_in.
            cond = pc.and_(cond, pc.invert(pc.is_nan(column)))
        mask &= pc.fill_null(cond, False).to_numpy(zero_copy_only=False).astype(bool)
    return mask
