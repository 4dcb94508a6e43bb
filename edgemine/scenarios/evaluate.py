"""`edgemine evaluate`: one model's metric on all labeled images, on each scenario and on metadata slices.

The core (`evaluate_records`) works on Records; `evaluate` reads them from the bundle's state database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from edgemine.bundle.state import StateDB
from edgemine.scenarios import store
from edgemine.scenarios.errors import NotEvaluable
from edgemine.scenarios.metrics import measure, scored_ids, task_of
from edgemine.scenarios.records import Records
from edgemine.scenarios.results import Evaluation, LockedScenario, Measurement, SliceRow
from edgemine.scenarios.spec import MetricSpec

AGGREGATE = "all labeled"


def default_metric(truth: Records) -> MetricSpec:
    """Return the aggregate metric for this ground truth: accuracy (classification) or recall (detection)."""
    task = task_of(truth, list(truth))
    return MetricSpec(name="accuracy" if task == "classification" else "recall")


def aggregate_metric(truth: Records, scenarios: Sequence[LockedScenario],
                     metric: MetricSpec | None = None) -> MetricSpec:
    """Return the metric of the aggregate and slice rows: `metric`, else the scenarios' metric when they
    all share one (so the aggregate is comparable with each scenario), else `default_metric`."""
    if metric is not None:
        return metric
    shared = [s.metric for s in scenarios]
    if shared and all(m == shared[0] for m in shared):
        return shared[0]
    return default_metric(truth) if truth else MetricSpec()


def _empty(metric: MetricSpec) -> Measurement:
    return Measurement(metric.name, None, None, None, 0, "wilson" if metric.name == "accuracy" else "bootstrap")


def _worst_first(row: SliceRow) -> tuple[bool, float, str]:
    value = row.measurement.value
    return (value is None, value if value is not None else 0.0, row.name)


def evaluate_records(model: str, truth: Records, preds: Records, scenarios: Sequence[LockedScenario], *,
                     metadata: Mapping[str, Mapping[str, str]] | None = None, seed: int = 0,
                     metric: MetricSpec | None = None, hashes: Mapping[str, str] | None = None) -> Evaluation:
    """Return the Evaluation of `preds` against `truth`: aggregate, scenarios (given order), slices worst first.

    `metadata` maps a column to {image_id: value}; each value becomes a slice of the labeled images
    that have it (scored with the aggregate metric). A scenario that cannot be scored (e.g. mixed
    tasks) raises NotEvaluable naming it.
    """
    labeled = sorted(truth)
    common = aggregate_metric(truth, scenarios, metric)
    rows = [SliceRow("aggregate", AGGREGATE,
                     measure(common, truth, preds, labeled, seed=seed) if labeled
                     else _empty(common), len(labeled), 0)]
    for scenario in scenarios:
        try:
            measurement = measure(scenario.metric, truth, preds, scenario.member_ids, seed=seed)
        except NotEvaluable as exc:
            raise NotEvaluable(f"scenario {scenario.name!r}: {exc}") from exc
        members = len(set(scenario.member_ids))
        rows.append(SliceRow("scenario", scenario.name, measurement, members,
                             members - len(scored_ids(truth, scenario.member_ids))))
    slices: list[SliceRow] = []
    for column, values in (metadata or {}).items():
        if not values:
            raise NotEvaluable(f"no image has a value in metadata column {column!r} (nothing to slice by)")
        groups: dict[str, list[str]] = {}
        for image_id, value in values.items():
            groups.setdefault(value, []).append(image_id)
        for value, group in groups.items():
            ids = sorted(group)
            scored = scored_ids(truth, ids)
            measurement = measure(common, truth, preds, scored, seed=seed) if scored \
                else _empty(common)
            slices.append(SliceRow("slice", f"{column}={value}", measurement, len(ids), len(ids) - len(scored)))
    rows += sorted(slices, key=_worst_first)
    return Evaluation(model=model, rows=rows, hashes=dict(hashes or {}))


def evaluate(state: StateDB, model: str, scenarios: Sequence[LockedScenario], *, slice_by: Sequence[str] = (),
             seed: int = 0, metric: MetricSpec | None = None) -> Evaluation:
    """Evaluate a model's stored predictions on the stored ground truth (aggregate, scenarios, metadata slices)."""
    # Imported here so the metrics core stays importable without the store (part A) in partial checkouts.

    truth = store.load_truth(state)
    preds = store.load_predictions(state, model)
    metadata = {column: store.load_metadata(state, column) for column in slice_by}
    hashes = {"ground_truth": store.truth_hash(state), f"predictions:{model}": store.predictions_hash(state, model)}
    hashes.update({f"lock:{s.name}": s.lock_hash for s in scenarios})
    return evaluate_records(model, truth, preds, scenarios, metadata=metadata, seed=seed, metric=metric,
                            hashes=hashes)
