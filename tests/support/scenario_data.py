"""Ground truth, two models and locked scenarios for a test bundle (classification, written with the library).

The candidate `v8` is better than the baseline `v7` on all labeled images but wrong on every
image of the `night` scenario, where `v7` is right: the gate fails that scenario and passes
`day`. Every image gets ground truth.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgemine.bundle.snapshot import load_current
from edgemine.scenarios.files import save_scenario
from edgemine.scenarios.lock import make_lock, write_lock
from edgemine.scenarios.spec import GateSpec, Members, MetricSpec, Scenario
from edgemine.scenarios.store import import_annotations, import_predictions
from tests.support.state_backend import state_of


@dataclass
class ScenarioData:
    """What was written: the scenarios folder and which images are in which scenario."""

    folder: Path
    night: list[str]
    day: list[str]
    regressed: list[str]  # right under v7, wrong under v8: the night images


def _write(path: Path, records: dict[str, str]) -> Path:
    path.write_text("".join(json.dumps({"image_id": i, "classification": {"label": label, **extra}}) + "\n"
                            for i, (label, extra) in ((i, _split(v)) for i, v in records.items())))
    return path


def _split(value: str) -> tuple[str, dict[str, float]]:
    label, _, score = value.partition("@")
    return label, ({"score": float(score)} if score else {})


def add_scenario_data(bundle: Path, ids: Sequence[str], times_of_day: Sequence[str], folder: Path,
                      work: Path) -> ScenarioData:
    """Import truth and predictions of v7 and v8 for every image; lock scenarios `night` and `day`."""
    state = state_of(bundle)
    truth = {i: ("pedestrian" if k % 2 else "car") for k, i in enumerate(ids)}
    other = {"car": "pedestrian", "pedestrian": "car"}
    night = [i for i, t in zip(ids, times_of_day, strict=True) if t == "night"]
    day = [i for i in ids if i not in set(night)]
    # v7: right at night, wrong on most other images; v8: wrong at night, right elsewhere.
    v7 = {i: truth[i] if i in set(night) or k % 4 == 0 else other[truth[i]] for k, i in enumerate(ids)}
    v8 = {i: other[truth[i]] if i in set(night) else truth[i] for i in ids}
    import_annotations(state, _write(work / "truth.jsonl", truth))
    import_predictions(state, _write(work / "v7.jsonl", {i: f"{v}@0.9" for i, v in v7.items()}), "v7")
    import_predictions(state, _write(work / "v8.jsonl", {i: f"{v}@0.8" for i, v in v8.items()}), "v8")
    version = str(load_current(bundle).version)
    for name, members in (("night", night), ("day", day)):
        scenario = Scenario(name=name, description=f"{name} frames", members=Members(ids=members),
                            metric=MetricSpec(name="accuracy"), gate=GateSpec(min_n=5, max_drop=0.02))
        write_lock(save_scenario(folder, scenario), make_lock(scenario, members, version))
    return ScenarioData(folder, night, day, sorted(night))
