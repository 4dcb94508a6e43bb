"""Scenarios over HTTP (issue 9, part D): list, detail with member pages and lock diff, save a mining
query as a scenario, evaluations and gates (the CLI's JSON), models; domain errors as 404/409/422."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edgemine.cli.main import app as cli
from edgemine.scenarios.errors import NotEvaluable
from edgemine.scenarios.gate import run_gate
from edgemine.scenarios.lock import load_locked
from edgemine.service import limits, scenario_views
from tests.support.scenario_data import ScenarioData, add_scenario_data
from tests.support.state_backend import state_of

Make = Callable[..., Any]


@pytest.fixture
def data(image_bundle: Any, tmp_path: Path) -> ScenarioData:
    return add_scenario_data(image_bundle.path, image_bundle.ids, image_bundle.meta["time_of_day"],
                             tmp_path / "scenarios", tmp_path)


def test_scenarios_list_names_members_ground_truth_and_lock_status(image_bundle: Any, data: ScenarioData,
                                                                   open_client: Make) -> None:
    (data.folder / "broken.yaml").write_text("name: broken\nmembers: {ids: [a]}\nmetric: {nam: recall}\n")
    (data.folder / "unlocked.yaml").write_text(f"name: unlocked\nmembers: {{ids: [{image_bundle.ids[0]}]}}\n")
    # Editing the members block makes the lock stale.
    day = data.folder / "day.yaml"
    day.write_text(day.read_text().replace("exclude: []", f"exclude: [{data.day[0]}]"))
    client = open_client(image_bundle.path, scenarios=data.folder)
    listed = {s["name"]: s for s in client.get("/v1/scenarios").json()}
    assert set(listed) == {"broken", "day", "night", "unlocked"}
    night = listed["night"]
    assert night["lock"] == "fresh" and night["members"] == len(data.night) == night["with_ground_truth"]
    assert night["metric"]["name"] == "accuracy" and night["gate"]["min_n"] == 5
    assert night["description"] == "night frames"
    assert listed["day"]["lock"] == "stale" and "members block" in listed["day"]["reason"]
    assert listed["unlocked"]["lock"] == "missing" and listed["unlocked"]["members"] is None
    assert listed["broken"]["lock"] == "invalid" and "'nam'" in listed["broken"]["reason"]


def test_scenarios_list_is_empty_without_a_scenarios_folder(image_bundle: Any, open_client: Make,
                                                             tmp_path: Path) -> None:
    client = open_client(image_bundle.path, scenarios=tmp_path / "none")
    assert client.get("/v1/scenarios").json() == []
    missing = client.get("/v1/scenarios/night")
    assert missing.status_code == 404 and "does not exist" in missing.json()["detail"]


def test_an_unwritable_scenarios_folder_is_503_not_500(image_bundle: Any, open_client: Make, tmp_path: Path) -> None:
    folder = tmp_path / "a-file"
    folder.write_text("not a folder")
    client = open_client(image_bundle.path, scenarios=folder, raise_server_exceptions=False)
    assert client.get("/v1/scenarios").json() == []
    answer = client.post("/v1/scenarios", json={"name": "s", "ids": [image_bundle.ids[0]]})
    assert answer.status_code == 503 and "cannot write scenario 's'" in answer.json()["detail"]
    assert folder.read_text() == "not a folder"


def test_scenario_detail_pages_members_with_cursors(image_bundle: Any, data: ScenarioData, open_client: Make) -> None:
    client = open_client(image_bundle.path, scenarios=data.folder)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 4, "diff": False, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/scenarios/day", params=params).json()
        assert len(page["members"]) <= 4 and all(m["ground_truth"] for m in page["members"])
        seen += [m["image_id"] for m in page["members"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(data.day)
    assert page["lock"] == "fresh" and page["lock_info"]["count"] == len(data.day) and page["diff"] is None
    assert page["scenario"]["members"]["ids"] == data.day and page["file"] == "day.yaml"
    other = client.get("/v1/scenarios/night", params={"cursor": client.get(
        "/v1/scenarios/day", params={"limit": 1, "diff": False}).json()["next_cursor"]})
    assert other.status_code == 422 and "another list" in other.json()["detail"]
    unknown = client.get("/v1/scenarios/nope")
    assert unknown.status_code == 404 and "night" in unknown.json()["detail"]  # names the scenarios there are


def test_save_query_as_scenario_writes_yaml_and_lock_and_reports_its_diff(image_bundle: Any, data: ScenarioData,
                                                                          open_client: Make) -> None:
    client = open_client(image_bundle.path, scenarios=data.folder)
    query = {"positive_ids": [image_bundle.ids[3]], "k": 6, "strategy": "max"}
    body = {"name": "like-3", "query": query, "metric": {"name": "accuracy"}, "gate": {"min_n": 3},
            "description": "saved from the page"}
    created = client.post("/v1/scenarios", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["members"] == 7 and created.json()["file"] == "like-3.yaml"  # 6 found + the example
    assert (data.folder / "like-3.yaml").is_file() and (data.folder / "like-3.lock.json").is_file()
    lock = json.loads((data.folder / "like-3.lock.json").read_text())
    assert lock["content_hash"] == created.json()["lock_info"]["content_hash"]
    shown = client.get("/v1/scenarios/like-3").json()
    assert shown["scenario"]["members"]["query"] == query and shown["scenario"]["gate"]["min_n"] == 3
    assert shown["diff"]["joined"] == [] and shown["diff"]["left"] == [] and shown["diff"]["unchanged"] == 7
    assert "like-3" in {s["name"] for s in client.get("/v1/scenarios").json()}

    again = client.post("/v1/scenarios", json=body)
    assert again.status_code == 409 and "already exists" in again.json()["detail"]
    wider = client.post("/v1/scenarios", json={**body, "query": {**query, "k": 9}, "overwrite": True})
    assert wider.status_code == 201 and wider.json()["members"] == 10


def test_lock_diff_lists_what_a_refresh_would_change_without_writing(image_bundle: Any, data: ScenarioData,
                                                                     open_client: Make) -> None:
    client = open_client(image_bundle.path, scenarios=data.folder)
    query = {"positive_ids": [image_bundle.ids[3]], "k": 4, "strategy": "max"}
    assert client.post("/v1/scenarios", json={"name": "q", "query": query}).status_code == 201
    before = (data.folder / "q.lock.json").read_text()
    path = data.folder / "q.yaml"
    path.write_text(path.read_text().replace("k: 4", "k: 8"))
    shown = client.get("/v1/scenarios/q").json()
    assert shown["lock"] == "stale"
    assert shown["diff"]["joined_count"] == 4 and shown["diff"]["left"] == [] and shown["diff"]["unchanged"] == 5
    assert (data.folder / "q.lock.json").read_text() == before  # nothing written
    path.write_text(path.read_text().replace("strategy: max", "strategy: fastest"))
    broken = client.get("/v1/scenarios/q").json()
    assert broken["diff"] is None and "strategy" in broken["diff_error"]
    path.write_text(path.read_text().replace("strategy: fastest", "strategy: max").replace(image_bundle.ids[3],
                                                                                          "gone.png"))
    gone = client.get("/v1/scenarios/q")
    assert gone.status_code == 200 and "gone.png" in gone.json()["diff_error"]


def test_saving_a_bad_scenario_writes_nothing(image_bundle: Any, data: ScenarioData, open_client: Make) -> None:
    client = open_client(image_bundle.path, scenarios=data.folder)
    before = sorted(p.name for p in data.folder.iterdir())
    unknown = client.post("/v1/scenarios", json={"name": "u", "ids": ["nope.png", image_bundle.ids[0]]})
    assert unknown.status_code == 404 and unknown.json()["unknown_ids"] == ["nope.png"]
    bad_query = client.post("/v1/scenarios", json={"name": "b", "query": {"positive_ids": [image_bundle.ids[0]],
                                                                          "k": 0}})
    assert bad_query.status_code == 422 and "members.query.k" in bad_query.json()["detail"]
    unknown_example = client.post("/v1/scenarios", json={"name": "e", "query": {"positive_ids": ["gone.png"]}})
    assert unknown_example.status_code == 404 and unknown_example.json()["unknown_ids"] == ["gone.png"]
    for body in ({"name": "x"}, {"name": "../evil", "ids": [image_bundle.ids[0]]},
                 {"name": "x", "ids": [image_bundle.ids[0]], "metric": {"name": "auc"}}):
        assert client.post("/v1/scenarios", json=body).status_code == 422, body
    assert sorted(p.name for p in data.folder.iterdir()) == before


def test_evaluation_answers_the_same_json_as_edgemine_evaluate(image_bundle: Any, data: ScenarioData,
                                                               open_client: Make, tmp_path: Path) -> None:
    client = open_client(image_bundle.path, scenarios=data.folder)
    answer = client.post("/v1/evaluations", json={"model": "v8", "slice_by": ["time_of_day"], "seed": 3})
    assert answer.status_code == 200, answer.text
    out = tmp_path / "cli.json"
    result = CliRunner().invoke(cli, ["evaluate", "--model", "v8", "--slice-by", "time_of_day", "--seed", "3",
                                      "--scenarios", str(data.folder), "--json", str(out),
                                      "--bundle", str(image_bundle.path)])
    assert result.exit_code == 0, result.output
    assert answer.json() == json.loads(out.read_text())
    rows = {r["name"]: r for r in answer.json()["rows"]}
    assert rows["night"]["measurement"]["value"] == 0.0 and rows["day"]["measurement"]["value"] == 1.0
    assert rows["all labeled"]["measurement"]["n"] == len(image_bundle.ids)
    only = client.post("/v1/evaluations", json={"model": "v7", "scenarios": ["night"]}).json()
    assert [r["name"] for r in only["rows"]] == ["all labeled", "night"]


def test_gate_fails_the_regressed_scenario_with_its_flips(image_bundle: Any, data: ScenarioData,
                                                          open_client: Make) -> None:
    client = open_client(image_bundle.path, scenarios=data.folder)
    answer = client.post("/v1/evaluations", json={"model": "v8", "baseline": "v7", "seed": 1})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["status"] == "fail" and report["candidate"] == "v8" and report["baseline"] == "v7"
    verdicts = {s["name"]: s for s in report["scenarios"]}
    assert verdicts["night"]["verdict"] == "FAIL" and verdicts["day"]["verdict"] == "PASS"
    assert sorted(f["image_id"] for f in verdicts["night"]["flips"] if f["direction"] == "regressed") == data.regressed
    assert report["aggregate"][0]["value"] > report["aggregate"][1]["value"]  # better overall
    state = state_of(image_bundle.path)
    expected = run_gate(state, "v8", "v7", load_locked(data.folder, state), seed=1).to_json()
    assert report == json.loads(json.dumps(expected))  # the CLI's --json is report.to_json()


def test_evaluation_errors_are_404_409_and_422(image_bundle: Any, data: ScenarioData, open_client: Make,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    client = open_client(image_bundle.path, scenarios=data.folder, raise_server_exceptions=False)

    def post(**body: Any) -> Any:
        return client.post("/v1/evaluations", json=body)

    unknown_model = post(model="v9")
    assert unknown_model.status_code == 404 and "v7, v8" in unknown_model.json()["detail"]
    assert post(model="v8", baseline="v6").status_code == 404
    unknown = post(model="v8", scenarios=["nope"])
    assert unknown.status_code == 404 and "no scenario 'nope'" in unknown.json()["detail"]
    assert post(model="v8", baseline="v7", slice_by=["time_of_day"]).status_code == 422
    no_column = post(model="v8", slice_by=["weather"])
    assert no_column.status_code == 422 and "weather" in no_column.json()["detail"]
    monkeypatch.setattr(limits, "MAX_SLICE_VALUES", 2)
    too_many = post(model="v8", slice_by=["time_of_day"])
    assert too_many.status_code == 422 and "MAX_SLICE_VALUES" in too_many.json()["detail"]
    monkeypatch.setattr(limits, "MAX_EVALUATION_SCENARIOS", 1)
    folder = post(model="v8")
    assert folder.status_code == 422 and "MAX_EVALUATION_SCENARIOS" in folder.json()["detail"]
    assert post(model="v8", scenarios=["night"]).status_code == 200  # named: within the limit

    def not_evaluable(*_: Any, **__: Any) -> None:
        raise NotEvaluable("scenario 'night': mixed tasks")

    monkeypatch.setattr(scenario_views, "evaluate", not_evaluable)
    conflict = post(model="v8", scenarios=["night"])
    assert conflict.status_code == 409 and conflict.json()["detail"] == "scenario 'night': mixed tasks"
    night = data.folder / "night.yaml"
    night.write_text(night.read_text().replace("exclude: []", f"exclude: [{data.night[0]}]"))
    stale = post(model="v8", baseline="v7", scenarios=["night"])
    assert stale.status_code == 409 and "edgemine scenario refresh night" in stale.json()["detail"]
    night.write_text("name: night\nmembers: []\n")
    assert post(model="v8", scenarios=["night"]).status_code == 422  # a broken scenario file


def test_models_lists_the_imported_prediction_sets(image_bundle: Any, data: ScenarioData, open_client: Make) -> None:
    client = open_client(image_bundle.path, scenarios=data.folder)
    models = client.get("/v1/models").json()
    assert [m["name"] for m in models] == ["v7", "v8"]
    assert all(m["images"] == len(image_bundle.ids) and len(m["hash"]) == 64 for m in models)
    assert models[0]["source"] == "v7.jsonl" and models[0]["task"] == "classification"


def test_scenarios_folder_comes_from_the_environment(image_bundle: Any, data: ScenarioData, open_client: Make,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from edgemine.service.config import Settings

    monkeypatch.setenv("EDGEMINE_SCENARIOS", str(data.folder))
    assert Settings().scenarios == data.folder
    monkeypatch.delenv("EDGEMINE_SCENARIOS")
    assert Settings().scenarios == Path("scenarios")
