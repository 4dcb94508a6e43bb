"""The JSON report: `to_json()` of a gate run or an evaluation (every figure, the hashes), written atomically."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from edgemine.scenarios.reports.text import write_text
from edgemine.scenarios.results import Evaluation, GateReport


def _plain(value: object) -> object:
    # dataclasses.asdict keeps the specs (GateSpec, MetricSpec) as pydantic models
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def render_json(report: GateReport | Evaluation) -> str:
    """Return the report as JSON text; a NaN or infinity is an error (not valid JSON), never written."""
    return json.dumps(report.to_json(), indent=2, allow_nan=False, default=_plain) + "\n"


def write_json(report: GateReport | Evaluation, path: Path) -> None:
    """Write the JSON report atomically."""
    write_text(path, render_json(report))
