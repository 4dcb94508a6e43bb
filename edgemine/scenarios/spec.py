"""The scenario file's schema (YAML, one file per scenario in the team's scenarios folder).

    name: ped-crosswalk-night
    members:                      # union of query and ids, minus exclude
      query: {positive_ids: [...], texts: [...], filters: {...}, strategy: max, k: 2000, min_score: 0.25}
      ids: [...]
      exclude: [...]
    metric: {name: recall, classes: [pedestrian], iou: 0.5, min_score: 0.3}
    gate: {min_n: 30, max_drop: 0.02, alpha: 0.05, floor: 0.8}

Unknown keys are errors (a typo must not silently weaken a gate). `members.query` is the body of
`/v1/mine`; it is validated by the resolver that runs it (the service's MineQuery), not here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MetricName = Literal["accuracy", "precision", "recall", "f1", "ap50"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


class MetricSpec(BaseModel):
    """Which metric scores a scenario, over which classes, at which IoU and score thresholds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: MetricName = "accuracy"
    classes: list[str] | None = Field(
        default=None, description="Only these labels count (None: every label in the ground truth).")
    iou: float = Field(default=0.5, gt=0.0, le=1.0, description="Detection: IoU for a match.")
    min_score: float = Field(default=0.0, ge=0.0, le=1.0,
                             description="Predictions below this score are dropped (AP50 ignores it).")


class GateSpec(BaseModel):
    """When a candidate fails this scenario against the baseline."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_n: int = Field(default=30, ge=1, description="Fewer scored images: INSUFFICIENT.")
    max_drop: float = Field(default=0.02, ge=0.0, le=1.0,
                            description="A drop larger than this that is significant: FAIL.")
    alpha: float = Field(default=0.05, gt=0.0, lt=1.0, description="Family-wise level (Holm).")
    floor: float | None = Field(default=None, ge=0.0, le=1.0,
                                description="The candidate below this value: FAIL regardless.")


class Members(BaseModel):
    """How a scenario's images are chosen: a mining query, explicit ids, minus exclusions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    query: dict[str, Any] | None = None
    ids: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _some(self) -> Members:
        if self.query is None and not self.ids:
            raise ValueError("members needs a query, ids, or both")
        return self


class Scenario(BaseModel):
    """One named slice with its metric and gate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    members: Members
    metric: MetricSpec = Field(default_factory=MetricSpec)
    gate: GateSpec = Field(default_factory=GateSpec)
