"""The gate's decision table: every verdict, Holm across scenarios, flips, determinism with a seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgemine.scenarios.gate import gate_records
from edgemine.scenarios.records import Detection, ImageRecord, Records
from edgemine.scenarios.results import GateReport, LockedScenario
from edgemine.scenarios.spec import GateSpec, MetricSpec
from edgemine.scenarios.stats import mcnemar_one_sided


def _ids(n: int, prefix: str = "im") -> list[str]:
    return [f"{prefix}{i:03d}" for i in range(n)]


def _truth(ids: list[str]) -> Records:
    return {i: ImageRecord(i, "classification", label="ped") for i in ids}


def _preds(ids: list[str], wrong: set[str] = frozenset()) -> Records:  # type: ignore[assignment]
    return {i: ImageRecord(i, "classification", label="car" if i in wrong else "ped", score=0.9) for i in ids}


def _scenario(name: str, ids: list[str], metric: MetricSpec | None = None, **gate: float | None) -> LockedScenario:
    spec = GateSpec(**gate)  # type: ignore[arg-type]
    return LockedScenario(name, metric or MetricSpec(name="accuracy"), spec, tuple(sorted(ids)), f"hash-{name}")


def _gate(truth: Records, cand: Records, base: Records, scenarios: list[LockedScenario], **kw: object) -> GateReport:
    return gate_records("v8", "v7", truth, cand, base, scenarios, hashes={"ground_truth": "g"}, **kw)  # type: ignore[arg-type]


def test_a_significant_drop_fails_with_flips_and_the_exact_mcnemar_p() -> None:
    ids = _ids(100)
    worse = set(ids[:20])
    fixed = {ids[50]}
    base = _preds(ids, fixed)
    report = _gate(_truth(ids), _preds(ids, worse), base, [_scenario("night", ids)])
    gate = report.scenarios[0]
    assert gate.verdict == "FAIL" and report.status == "fail"
    assert gate.discordant == (20, 1)
    assert gate.p_value == pytest.approx(mcnemar_one_sided(20, 1)) and gate.p_adjusted == gate.p_value
    assert gate.drop == pytest.approx(0.99 - 0.80)
    assert {f.image_id for f in gate.flips if f.direction == "regressed"} == worse
    assert [f.image_id for f in gate.flips if f.direction == "fixed"] == [ids[50]]
    assert gate.test == "mcnemar-exact" and gate.lock_hash == "hash-night" and "significant" in gate.reason
    assert (gate.candidate.method, gate.candidate.n) == ("wilson", 100)


def test_below_the_floor_fails_even_without_a_drop() -> None:
    ids = _ids(100)
    same = _preds(ids, set(ids[:15]))
    gate = _gate(_truth(ids), same, same, [_scenario("s", ids, floor=0.9)]).scenarios[0]
    assert gate.verdict == "FAIL" and gate.drop == 0 and "floor" in gate.reason


def test_a_drop_that_is_not_significant_warns_with_a_decisive_n() -> None:
    ids = _ids(40)
    base = _preds(ids, {ids[0]})
    cand = _preds(ids, set(ids[1:4]))  # 3 regressed, 1 fixed: drop 0.05, p = 5/16
    report = _gate(_truth(ids), cand, base, [_scenario("s", ids)])
    gate = report.scenarios[0]
    assert gate.verdict == "WARN" and report.status == "pass"
    assert gate.p_value == pytest.approx(5 / 16)
    assert gate.decisive_n is not None and gate.decisive_n > 40
    n = gate.decisive_n
    assert mcnemar_one_sided(round(3 * n / 40), round(1 * n / 40)) < 0.05
    assert f"about {n} images" in gate.reason


def test_too_few_scored_images_is_insufficient_and_strict_makes_it_a_failure() -> None:
    ids = _ids(10)
    truth, cand, base = _truth(ids), _preds(ids, set(ids[:5])), _preds(ids)
    report = _gate(truth, cand, base, [_scenario("small", ids)])
    assert report.scenarios[0].verdict == "INSUFFICIENT" and report.status == "pass"
    assert report.scenarios[0].p_adjusted is None and "min_n 30" in report.scenarios[0].reason
    assert _gate(truth, cand, base, [_scenario("small", ids)], strict=True).status == "fail"


def test_an_equal_candidate_passes() -> None:
    ids = _ids(60)
    preds = _preds(ids, set(ids[:6]))
    report = _gate(_truth(ids), preds, preds, [_scenario("s", ids), _scenario("t", ids[:40])])
    assert [g.verdict for g in report.scenarios] == ["PASS", "PASS"] and report.status == "pass"
    assert all(g.p_value == 1.0 and g.flips == [] for g in report.scenarios)


def test_unscorable_scenarios_are_errors_not_passes() -> None:
    ids = _ids(40)
    unlabeled = _ids(5, "new")
    truth, preds = _truth(ids), _preds(ids)
    report = _gate(truth, {}, preds, [_scenario("no-preds", ids), _scenario("no-truth", unlabeled)])
    assert [g.verdict for g in report.scenarios] == ["ERROR", "ERROR"] and report.status == "error"
    assert "'v8' has no prediction" in report.scenarios[0].reason
    assert "ground truth" in report.scenarios[1].reason and report.scenarios[1].candidate.n == 0
    assert _gate(truth, preds, preds, []).status == "error"  # nothing to gate never passes


def test_images_without_a_prediction_record_count_as_predicted_nothing() -> None:
    ids = _ids(50)
    cand = {k: v for k, v in _preds(ids).items() if k not in ids[:25]}
    gate = _gate(_truth(ids), cand, _preds(ids), [_scenario("s", ids)]).scenarios[0]
    assert gate.candidate.value == pytest.approx(0.5) and gate.discordant == (25, 0) and gate.verdict == "FAIL"


def test_holm_across_scenarios_turns_two_borderline_failures_into_warnings() -> None:
    a, b = _ids(40, "a"), _ids(40, "b")
    truth, base = _truth(a + b), _preds(a + b)
    cand = _preds(a + b, set(a[:5]) | set(b[:5]))  # each: 5 regressed, 0 fixed, p = 1/32
    alone = _gate(truth, cand, base, [_scenario("a", a)]).scenarios[0]
    assert alone.verdict == "FAIL" and alone.p_value == pytest.approx(1 / 32)
    both = _gate(truth, cand, base, [_scenario("a", a), _scenario("b", b)]).scenarios
    assert [g.verdict for g in both] == ["WARN", "WARN"]
    assert [g.p_adjusted for g in both] == pytest.approx([1 / 16, 1 / 16])
    # INSUFFICIENT and ERROR scenarios are not in the Holm family
    tiny = _gate(truth, cand, base, [_scenario("a", a), _scenario("tiny", b[:5]), _scenario("x", ["nope"])])
    assert [g.verdict for g in tiny.scenarios] == ["FAIL", "INSUFFICIENT", "ERROR"]


def _detection_case(n: int) -> tuple[Records, Records, Records]:
    box = (10.0, 10.0, 20.0, 40.0)
    ids = _ids(n)
    truth = {i: ImageRecord(i, "detection", detections=(Detection("ped", box),)) for i in ids}
    base = {i: ImageRecord(i, "detection", detections=(Detection("ped", box, 0.9),)) for i in ids}
    cand = {i: ImageRecord(i, "detection", detections=(Detection("ped", box if k % 2 else (60.0, 60.0, 5.0, 5.0),
                                                                 0.9),)) for k, i in enumerate(ids)}
    return truth, cand, base


@pytest.mark.parametrize("metric", ["ap50", "f1", "precision"])
def test_bootstrap_metrics_fail_on_a_real_detection_drop(metric: str) -> None:
    truth, cand, base = _detection_case(60)
    gate = _gate(truth, cand, base, [_scenario("ped", list(truth), MetricSpec(name=metric, classes=["ped"]))])
    g = gate.scenarios[0]
    assert g.test == "paired-bootstrap" and g.candidate.method == "bootstrap"
    assert g.verdict == "FAIL" and g.p_value is not None and g.p_value < 0.01
    assert g.baseline.value == pytest.approx(1.0) and g.candidate.value is not None and g.candidate.value <= 0.5 + 1e-9
    assert len([f for f in g.flips if f.direction == "regressed"]) == 30


def test_detection_recall_uses_mcnemar_on_all_objects_found() -> None:
    truth, cand, base = _detection_case(60)
    g = _gate(truth, cand, base, [_scenario("ped", list(truth), MetricSpec(name="recall"))]).scenarios[0]
    assert g.test == "mcnemar-exact" and g.discordant == (30, 0) and g.verdict == "FAIL"


def test_the_same_seed_gives_the_same_report_and_it_is_plain_json() -> None:
    truth, cand, base = _detection_case(40)
    scenarios = [_scenario("ped", list(truth), MetricSpec(name="f1")), _scenario("all", list(truth))]
    first = _gate(truth, cand, base, scenarios, seed=5).to_json()
    assert first == _gate(truth, cand, base, scenarios, seed=5).to_json()
    assert first["seed"] == 5 and first["hashes"] == {"ground_truth": "g"} and first["status"] == "fail"
    json.dumps(first, allow_nan=False)
    assert first["scenarios"][0]["gate"] == {"min_n": 30, "max_drop": 0.02, "alpha": 0.05, "floor": None}


def test_the_aggregate_is_both_models_on_every_labeled_image() -> None:
    ids = _ids(50)
    report = _gate(_truth(ids), _preds(ids, set(ids[:10])), _preds(ids), [_scenario("s", ids[:30])])
    cand, base = report.aggregate
    assert (cand.metric, cand.n, cand.value, base.value) == ("accuracy", 50, pytest.approx(0.8), 1.0)


def test_run_gate_reads_stored_truth_and_both_models(tmp_path: Path) -> None:
    from edgemine.bundle import StateDB
    from edgemine.scenarios import store
    from edgemine.scenarios.gate import run_gate
    from tests.support.byo_bundle import byo_bundle

    ids = _ids(40)
    bundle = byo_bundle(tmp_path, ids, ["night"] * 40)
    files = {}
    for name, wrong in (("truth", set()), ("v7", {ids[0]}), ("v8", set(ids[:12]))):
        files[name] = tmp_path / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps({"image_id": i, "classification": {  # the last image is a car
            "label": "car" if i in wrong or i == ids[-1] else "ped", **({} if name == "truth" else {"score": 0.9})}})
            + "\n" for i in ids))
    state = StateDB(bundle / "state.sqlite")
    store.import_annotations(state, files["truth"])
    for model in ("v7", "v8"):
        store.import_predictions(state, files[model], model)
    report = run_gate(state, "v8", "v7", [_scenario("night", ids)], seed=1)
    assert report.status == "fail" and report.scenarios[0].discordant == (11, 0)
    assert set(report.hashes) == {"ground_truth", "predictions:v8", "predictions:v7", "lock:night"}
    assert report.hashes["ground_truth"] == store.truth_hash(state)


def test_a_drop_of_exactly_max_drop_passes() -> None:
    ids = _ids(100)
    base, cand = _preds(ids, {ids[0]}), _preds(ids, set(ids[:3]))  # 0.99 vs 0.97: drop 0.02 in floats
    gate = _gate(_truth(ids), cand, base, [_scenario("s", ids, max_drop=0.02, floor=0.97)]).scenarios[0]
    assert gate.verdict == "PASS", gate.reason
