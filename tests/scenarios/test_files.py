"""Scenario YAML files: every error names the file, the line and the field; save/load round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgemine.scenarios.errors import InputFileError, ScenarioError, UnknownScenario
from edgemine.scenarios.files import list_scenarios, load_scenario, save_scenario, scenario_path
from edgemine.scenarios.spec import Scenario

GOOD = """\
name: ped-night
description: pedestrians at night
members:
  query: {positive_ids: [im000], k: 20, min_score: 0.25}
  ids: [im005, "007"]
  exclude: [im009]
metric: {name: recall, classes: [pedestrian], iou: 0.5, min_score: 0.3}
gate: {min_n: 30, max_drop: 0.02, alpha: 0.05, floor: 0.8}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_a_valid_file_loads_every_field(tmp_path: Path) -> None:
    sc = load_scenario(write(tmp_path, "ped-night.yaml", GOOD))
    assert sc.name == "ped-night" and sc.members.ids == ["im005", "007"] and sc.members.exclude == ["im009"]
    assert sc.members.query == {"positive_ids": ["im000"], "k": 20, "min_score": 0.25}
    assert sc.metric.name == "recall" and sc.metric.classes == ["pedestrian"] and sc.metric.min_score == 0.3
    assert sc.gate.floor == 0.8 and sc.gate.min_n == 30


def test_unknown_key_is_refused_with_its_line_and_the_valid_keys(tmp_path: Path) -> None:
    text = "name: s\nmembers:\n  ids: [a]\ngate:\n  min_n: 30\n  max_dorp: 0.5\n"
    path = write(tmp_path, "s.yaml", text)
    with pytest.raises(InputFileError) as err:
        load_scenario(path)
    assert err.value.line == 6 and err.value.field == "gate.max_dorp" and err.value.path == str(path)
    assert "unknown key 'max_dorp'" in str(err.value) and "max_drop" in str(err.value)
    assert str(err.value).startswith(f"{path}, line 6 (field 'gate.max_dorp')")


def test_unknown_top_level_key_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "ped-night.yaml", GOOD + "owner: me\n")
    with pytest.raises(InputFileError) as err:
        load_scenario(path)
    assert err.value.field == "owner" and err.value.line == len(GOOD.splitlines()) + 1


def test_bad_metric_name_names_line_field_and_choices(tmp_path: Path) -> None:
    path = write(tmp_path, "ped-night.yaml", GOOD.replace("name: recall", "name: recal"))
    with pytest.raises(InputFileError) as err:
        load_scenario(path)
    assert err.value.field == "metric.name" and err.value.line == 7
    assert "'accuracy'" in str(err.value) and "'ap50'" in str(err.value)


def test_name_must_match_the_file_name(tmp_path: Path) -> None:
    path = write(tmp_path, "other.yaml", GOOD)
    with pytest.raises(InputFileError) as err:
        load_scenario(path)
    assert err.value.field == "name" and err.value.line == 1 and "other.yaml" in str(err.value)


@pytest.mark.parametrize("members", ["members: {}\n", "members:\n  ids: []\n  exclude: [a]\n"])
def test_members_without_query_or_ids_is_refused(tmp_path: Path, members: str) -> None:
    path = write(tmp_path, "s.yaml", "name: s\n" + members)
    with pytest.raises(InputFileError) as err:
        load_scenario(path)
    assert err.value.field == "members" and err.value.line == 2 and "needs a query, ids, or both" in str(err.value)


def test_missing_members_and_duplicate_keys_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="required key is missing") as err:
        load_scenario(write(tmp_path, "s.yaml", "name: s\n"))
    assert err.value.field == "members"
    with pytest.raises(InputFileError, match="duplicate key 'min_n'") as err:
        load_scenario(write(tmp_path, "s.yaml", "name: s\nmembers: {ids: [a]}\ngate:\n  min_n: 3\n  min_n: 50\n"))
    assert err.value.line == 5 and err.value.field == "gate.min_n"
    with pytest.raises(InputFileError, match="not valid YAML") as err:
        load_scenario(write(tmp_path, "s.yaml", "name: s\nmembers: {ids: [a]\n"))
    assert err.value.line is not None
    with pytest.raises(InputFileError, match="YAML mapping"):
        load_scenario(write(tmp_path, "s.yaml", "- a\n- b\n"))


def test_unquoted_numeric_id_gets_a_hint_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", "name: s\nmembers:\n  ids:\n    - a\n    - 007\n")
    with pytest.raises(InputFileError) as err:
        load_scenario(path)
    assert err.value.field == "members.ids.1" and err.value.line == 5 and "quote it" in str(err.value)


def test_save_then_load_round_trips_and_refuses_to_overwrite(tmp_path: Path) -> None:
    sc = Scenario.model_validate({"name": "s1", "members": {"ids": ["007", "yes", "a b"], "query": {"k": 5}},
                                  "metric": {"name": "f1"}})
    path = save_scenario(tmp_path / "scen", sc)
    assert path == tmp_path / "scen" / "s1.yaml"
    assert load_scenario(path) == sc
    with pytest.raises(ScenarioError, match="already exists"):
        save_scenario(tmp_path / "scen", sc)
    assert save_scenario(tmp_path / "scen", sc, overwrite=True) == path
    assert list_scenarios(tmp_path / "scen") == [path]
    assert scenario_path(tmp_path / "scen", "s1") == path
    with pytest.raises(UnknownScenario, match="scenarios there: s1"):
        scenario_path(tmp_path / "scen", "nope")
    with pytest.raises(ScenarioError, match="does not exist"):
        list_scenarios(tmp_path / "missing")
