"""`edgemine evaluate`: one model's metric on all labeled images, each scenario and metadata slices."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from edgemine.bundle.errors import BundleError
from edgemine.bundle.state import StateDB
from edgemine.cli.common import StateUrl, bundle_state, domain_errors, text_table
from edgemine.scenarios import evaluate as evaluation
from edgemine.scenarios.lock import load_locked
from edgemine.scenarios.results import Evaluation, LockedScenario, Measurement, SliceRow
from edgemine.scenarios.spec import MetricSpec

COLUMNS = ("n", "metric", "value", "95% interval", "method", "members", "unlabeled")
DEFAULT_SCENARIOS = Path("scenarios")


def load_scenarios(folder: Path, state: StateDB) -> list[LockedScenario]:
    """Return the folder's locked scenarios (LockError for a missing or stale lock)."""

    return load_locked(folder, state)


def evaluate(
    model: Annotated[str, typer.Option(help="Model whose imported predictions are scored.")],
    slice_by: Annotated[list[str] | None, typer.Option(
        "--slice-by", help="Also slice all labeled images by this metadata column (repeatable).")] = None,
    scenarios: Annotated[Path | None, typer.Option(
        help="Scenarios folder (default ./scenarios, skipped when it does not exist).")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the evaluation as JSON here.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap intervals (same seed, same figures).")] = 0,
    metric: Annotated[str | None, typer.Option(
        help="Metric of the aggregate and slice rows: accuracy|precision|recall|f1|ap50 (default: the "
             "scenarios' metric when they share one, else accuracy or recall by task).")] = None,
    classes: Annotated[str | None, typer.Option(help="With --metric: only these labels (comma-separated).")] = None,
    iou: Annotated[float, typer.Option(help="With --metric: IoU of a detection match.")] = 0.5,
    score_threshold: Annotated[float, typer.Option(
        help="With --metric: predictions below this score are dropped.")] = 0.0,
    bundle: Annotated[Path, typer.Option(help="Bundle directory.")] = Path("bundle"),
    state_url: StateUrl = None,
) -> None:
    """Print the model's metric with n and a 95% interval: all labeled images, each scenario, slices worst first."""
    with domain_errors():
        state = bundle_state(bundle, state_url)
        folder = scenarios if scenarios is not None else DEFAULT_SCENARIOS
        if scenarios is not None and not folder.is_dir():
            raise BundleError(f"scenarios folder {folder} does not exist")
        locked = load_scenarios(folder, state) if folder.is_dir() else []
        spec = None
        if metric is not None:
            try:
                spec = MetricSpec.model_validate({
                    "name": metric, "iou": iou, "min_score": score_threshold,
                    "classes": [c.strip() for c in classes.split(",") if c.strip()] if classes else None})
            except ValidationError as exc:
                raise ValueError(f"--metric/--classes/--iou/--score-threshold: "
                                 f"{exc.errors()[0]['msg']} ({exc.errors()[0]['loc']})") from exc
        elif classes is not None:
            raise ValueError("--classes needs --metric")
        result = evaluation.evaluate(state, model, locked, slice_by=slice_by or (), seed=seed, metric=spec)
        if json_path is not None:
            _write_json(json_path, result)
    typer.echo(format_evaluation(result))


def _write_json(path: Path, result: Evaluation) -> None:
    """Write the JSON report atomically (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


def _figures(m: Measurement) -> list[str]:
    value = "-" if m.value is None else f"{m.value:.3f}"
    interval = "-" if m.low is None or m.high is None else f"{m.low:.3f}-{m.high:.3f}"
    return [str(m.n), m.metric, value, interval, m.method]


def _table(title: str, rows: Sequence[SliceRow]) -> list[str]:
    return text_table(title, [["", *COLUMNS],
                              *([r.name, *_figures(r.measurement), str(r.members), str(r.unlabeled)] for r in rows)])


def format_evaluation(result: Evaluation) -> str:
    """Return the evaluation as plain-text tables: aggregate, scenarios, metadata slices (worst first)."""
    lines = [f"model {result.model}"]
    for kind, title in (("aggregate", "all labeled images"), ("scenario", "scenarios"),
                        ("slice", "metadata slices, worst first")):
        rows = [r for r in result.rows if r.kind == kind]
        if rows:
            lines += ["", *_table(title, rows)]
    if not any(r.measurement.n for r in result.rows):
        lines += ["", "nothing scored: import ground truth with `edgemine annotations import FILE`"]
    return "\n".join(lines)
