"""What evaluation and the gate produce; every report (JSON, JUnit, Markdown, HTML, HTTP) renders these.

Plain dataclasses so reports need no computation of their own. `to_json()` on the top-level
objects gives the JSON report / HTTP body (the same for the CLI and `POST /v1/evaluations`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from edgemine.scenarios.spec import GateSpec, MetricSpec


def _plain(value: Any) -> Any:
    """Return `value` with pydantic models (GateSpec, MetricSpec) dumped and tuples as lists: JSON types only."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


Verdict = Literal["PASS", "FAIL", "WARN", "INSUFFICIENT", "ERROR"]


@dataclass(frozen=True)
class LockedScenario:
    """A scenario with its members fixed by its lock file: what evaluation and the gate score."""

    name: str
    metric: MetricSpec
    gate: GateSpec
    member_ids: tuple[str, ...]      # sorted, from NAME.lock.json
    lock_hash: str                   # the lock file's content hash
    path: str = ""                   # the YAML file, for messages


@dataclass(frozen=True)
class Measurement:
    """One metric on one set of images: the value with a 95% interval and the sample size."""

    metric: str                      # e.g. "recall", "accuracy", "ap50"
    value: float | None              # None when n == 0 (nothing to score)
    low: float | None
    high: float | None
    n: int                           # images scored (members with ground truth)
    method: str                      # interval method: "wilson" or "bootstrap"
    detail: dict[str, float] = field(default_factory=dict)  # e.g. tp/fp/fn, per-class figures


@dataclass(frozen=True)
class SliceRow:
    """One row of an evaluation table: a scenario, the aggregate, or a metadata slice."""

    kind: Literal["aggregate", "scenario", "slice"]
    name: str                        # "all labeled", a scenario name, or "time_of_day=night"
    measurement: Measurement
    members: int                     # images in the slice, with or without ground truth
    unlabeled: int                   # of those, without ground truth (not scored)


@dataclass(frozen=True)
class Evaluation:
    """`edgemine evaluate`: one model on the aggregate, each scenario and each metadata slice."""

    model: str
    rows: list[SliceRow]             # aggregate first, then scenarios, then slices worst first
    hashes: dict[str, str]           # "ground_truth", "predictions:<model>", "lock:<scenario>"

    def to_json(self) -> dict[str, Any]:
        """Return the JSON report (plain types only)."""
        return _plain(dataclasses.asdict(self))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Flip:
    """An image right under the baseline and wrong under the candidate (or the reverse)."""

    image_id: str
    direction: Literal["regressed", "fixed"]


@dataclass(frozen=True)
class ScenarioGate:
    """The gate's decision for one scenario, with every figure behind it."""

    name: str
    verdict: Verdict
    reason: str                      # one sentence a CI log can show
    metric: str
    candidate: Measurement
    baseline: Measurement
    drop: float | None               # baseline.value - candidate.value
    p_value: float | None            # one-sided, raw
    p_adjusted: float | None         # Holm-adjusted across the run's scenarios
    test: str                        # "mcnemar-exact" or "paired-bootstrap"
    discordant: tuple[int, int] = (0, 0)   # (regressed, fixed) image counts for McNemar
    decisive_n: int | None = None    # WARN: about how many images would make this drop significant
    flips: list[Flip] = field(default_factory=list)
    gate: GateSpec = field(default_factory=GateSpec)
    lock_hash: str = ""


@dataclass(frozen=True)
class GateReport:
    """`edgemine gate`: the candidate against the baseline on every scenario; exit code from `status`."""

    candidate: str
    baseline: str
    strict: bool
    scenarios: list[ScenarioGate]
    aggregate: tuple[Measurement, Measurement]   # (candidate, baseline) on all labeled images
    hashes: dict[str, str]
    seed: int = 0

    @property
    def status(self) -> Literal["pass", "fail", "error"]:
        """Return "error" if any scenario could not be evaluated, else "fail" on any FAIL (with strict,
        also on INSUFFICIENT), else "pass". The CLI exits 2, 1, 0."""
        if any(s.verdict == "ERROR" for s in self.scenarios) or not self.scenarios:
            return "error"
        bad = {"FAIL"} | ({"INSUFFICIENT"} if self.strict else set())
        return "fail" if any(s.verdict in bad for s in self.scenarios) else "pass"

    def to_json(self) -> dict[str, Any]:
        """Return the JSON report (plain types only)."""
        out: dict[str, Any] = _plain(dataclasses.asdict(self))
        out["status"] = self.status
        return out
