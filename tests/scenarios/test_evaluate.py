"""Classification metrics, intervals, and the evaluation table (aggregate, scenarios, slices worst first)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgemine.scenarios.errors import NotEvaluable
from edgemine.scenarios.evaluate import evaluate_records
from edgemine.scenarios.metrics import measure, outcomes
from edgemine.scenarios.records import Detection, ImageRecord, Records
from edgemine.scenarios.results import LockedScenario
from edgemine.scenarios.spec import GateSpec, MetricSpec
from edgemine.scenarios.stats import wilson


def _cls(pairs: dict[str, tuple[str, str | None]], score: float = 0.9) -> tuple[Records, Records]:
    truth = {i: ImageRecord(i, "classification", label=t) for i, (t, _) in pairs.items()}
    preds = {i: ImageRecord(i, "classification", label=p, score=score) for i, (_, p) in pairs.items() if p}
    return truth, preds


PAIRS = {"a": ("ped", "ped"), "b": ("ped", "car"), "c": ("car", "car"), "d": ("car", "ped"),
         "e": ("bike", "ped"), "f": ("ped", None), "g": ("car", "car")}


def test_classification_accuracy_is_a_wilson_proportion_over_images() -> None:
    truth, preds = _cls(PAIRS)
    m = measure(MetricSpec(name="accuracy"), truth, preds, [*PAIRS, "unlabeled"])
    assert (m.value, m.n, m.method) == (pytest.approx(3 / 7), 7, "wilson")
    assert (m.low, m.high) == pytest.approx(wilson(3, 7))
    # an image without a prediction record ("f") counts as predicted nothing: wrong
    assert outcomes(MetricSpec(name="accuracy"), truth, preds, list(PAIRS)).tolist() == [
        True, False, True, False, False, False, True]


def test_per_class_precision_recall_f1_by_hand() -> None:
    truth, preds = _cls(PAIRS)
    ped = MetricSpec(name="precision", classes=["ped"])
    m = measure(ped, truth, preds, list(PAIRS))
    # predicted ped: a (right), d, e (wrong) -> precision 1/3; true ped: a, b, f -> recall 1/3
    assert m.value == pytest.approx(1 / 3) and m.detail["trials"] == 3
    assert measure(ped.model_copy(update={"name": "recall"}), truth, preds, list(PAIRS)).value == pytest.approx(1 / 3)
    f1 = measure(ped.model_copy(update={"name": "f1"}), truth, preds, list(PAIRS))
    assert f1.value == pytest.approx(1 / 3) and f1.method == "bootstrap"
    every = measure(MetricSpec(name="accuracy"), truth, preds, list(PAIRS)).detail
    # car: predicted c, b, g (b wrong) -> 2/3; true car: c, d, g -> 2/3
    assert every["precision:car"] == pytest.approx(2 / 3) and every["recall:car"] == pytest.approx(2 / 3)
    assert every["recall:bike"] == 0 and "precision:bike" not in every and every["f1:bike"] == 0


def test_predictions_below_min_score_count_as_predicted_nothing() -> None:
    truth, preds = _cls({"a": ("ped", "ped"), "b": ("ped", "ped")})
    low = {**preds, "b": ImageRecord("b", "classification", label="ped", score=0.1)}
    assert measure(MetricSpec(name="accuracy", min_score=0.5), truth, low, ["a", "b"]).value == 0.5


def test_detection_accuracy_is_the_share_of_images_fully_right() -> None:
    box = (0.0, 0.0, 10.0, 10.0)
    truth = {i: ImageRecord(i, "detection", detections=(Detection("ped", box),)) for i in "abcd"}
    preds = {"a": ImageRecord("a", "detection", detections=(Detection("ped", box, 0.9),)),
             "b": ImageRecord("b", "detection", detections=(Detection("ped", box, 0.9),
                                                              Detection("ped", (40.0, 40.0, 5.0, 5.0), 0.9)))}
    m = measure(MetricSpec(name="accuracy"), truth, preds, list("abcd"))
    assert (m.value, m.method, m.low) == (0.25, "wilson", pytest.approx(wilson(1, 4)[0]))


def test_mixed_tasks_and_ap50_on_classification_are_refused() -> None:
    truth, preds = _cls(PAIRS)
    with pytest.raises(NotEvaluable, match="ap50 needs detection"):
        measure(MetricSpec(name="ap50"), truth, preds, list(PAIRS))
    mixed = {**truth, "z": ImageRecord("z", "detection")}
    with pytest.raises(NotEvaluable, match="mixes classification and detection"):
        measure(MetricSpec(), mixed, preds, list(mixed))


def _locked(name: str, ids: list[str], metric: MetricSpec) -> LockedScenario:
    return LockedScenario(name, metric, GateSpec(), tuple(sorted(ids)), f"lock-{name}")


def test_evaluation_rows_aggregate_then_scenarios_then_slices_worst_first() -> None:
    rng = np.random.default_rng(0)
    ids = [f"im{i:03d}" for i in range(60)]
    pairs = {i: ("ped", "ped" if (k % 3 or k >= 30) else "car") for k, i in enumerate(ids)}  # night: 10 wrong of 30
    truth, preds = _cls(pairs)
    metadata = {"time_of_day": {i: "night" if k < 30 else "day" for k, i in enumerate(ids)},
                "weather": {i: str(rng.choice(["rain", "dry"])) for i in ids}}
    scenario = _locked("night", [*ids[:30], "unlabeled1", "unlabeled2"], MetricSpec(name="recall", classes=["ped"]))
    ev = evaluate_records("v8", truth, preds, [scenario], metadata=metadata, hashes={"ground_truth": "h"})
    kinds = [r.kind for r in ev.rows]
    assert kinds == ["aggregate", "scenario", "slice", "slice", "slice", "slice"]
    agg, scen = ev.rows[0], ev.rows[1]
    assert (agg.name, agg.measurement.value, agg.measurement.n) == ("all labeled", pytest.approx(50 / 60), 60)
    assert (scen.name, scen.members, scen.unlabeled, scen.measurement.n) == ("night", 32, 2, 30)
    assert scen.measurement.value == pytest.approx(20 / 30)
    slices = ev.rows[2:]
    values = [r.measurement.value for r in slices]
    assert values == sorted(values) and slices[0].name == "time_of_day=night"
    assert {r.name for r in slices} == {"time_of_day=night", "time_of_day=day", "weather=rain", "weather=dry"}
    assert ev.hashes == {"ground_truth": "h"}
    json.dumps(ev.to_json(), allow_nan=False)


def test_evaluation_with_an_empty_metadata_column_is_refused() -> None:
    truth, preds = _cls(PAIRS)
    with pytest.raises(NotEvaluable, match="metadata column 'nope'"):
        evaluate_records("v8", truth, preds, [], metadata={"nope": {}})


def test_evaluation_of_a_detection_bundle_uses_recall_for_the_aggregate() -> None:
    box = (0.0, 0.0, 10.0, 10.0)
    truth = {i: ImageRecord(i, "detection", detections=(Detection("ped", box), Detection("car", box)))
             for i in "ab"}
    preds = {"a": ImageRecord("a", "detection", detections=(Detection("ped", box, 0.9),))}
    row = evaluate_records("v8", truth, preds, []).rows[0]
    assert (row.measurement.metric, row.measurement.value, row.measurement.method) == ("recall", 0.25, "bootstrap")
    assert evaluate_records("v8", {}, {}, []).rows[0].measurement.value is None


def test_aggregate_uses_the_scenarios_shared_metric_else_the_default_or_the_given_one() -> None:
    box = (0.0, 0.0, 10.0, 10.0)
    truth = {i: ImageRecord(i, "detection", detections=(Detection("ped", box), Detection("car", box)))
             for i in "ab"}
    preds = {i: ImageRecord(i, "detection", detections=(Detection("car", box, 0.9),)) for i in "ab"}
    peds = MetricSpec(name="recall", classes=["ped"])
    shared = evaluate_records("v8", truth, preds, [_locked("s1", ["a"], peds), _locked("s2", ["b"], peds)])
    assert [r.measurement.value for r in shared.rows if r.kind == "aggregate"] == [0.0]  # pedestrians only
    mixed = evaluate_records("v8", truth, preds, [_locked("s1", ["a"], peds),
                                                  _locked("s2", ["b"], MetricSpec(name="recall"))])
    assert mixed.rows[0].measurement.value == 0.5  # the default: recall over every label
    given = evaluate_records("v8", truth, preds, [_locked("s1", ["a"], peds)],
                             metric=MetricSpec(name="recall", classes=["car"]))
    assert given.rows[0].measurement.value == 1.0
