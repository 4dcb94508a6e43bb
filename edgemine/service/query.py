"""The mining query and result models, shared by the HTTP API, the CLI and the library."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Strategy = Literal["mean", "max", "rrf"]
Scalar = str | int | float | bool


class Range(BaseModel):
    """A condition on one metadata column; several fields combine with AND."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    eq: Scalar | None = None
    ne: Scalar | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in")
    not_in: list[Scalar] | None = None
    gt: Scalar | None = None
    gte: Scalar | None = None
    lt: Scalar | None = None
    lte: Scalar | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> Range:
        if all(getattr(self, name) is None for name in type(self).model_fields):
            raise ValueError("a filter needs at least one of eq, ne, in, not_in, gt, gte, lt, lte")
        return self


# A bare value means equality, a list means membership.
FilterValue = Range | Scalar | list[Scalar]


class MineQuery(BaseModel):
    """What to mine: examples, rules and how many candidates."""

    model_config = ConfigDict(extra="forbid")

    positive_ids: list[str] = Field(default_factory=list, description="Failure examples in the bundle.")
    negative_ids: list[str] = Field(default_factory=list, description="Examples of what not to find.")
    texts: list[str] = Field(default_factory=list, description="CLIP text prompts (positive).")
    negative_texts: list[str] = Field(default_factory=list, description="CLIP text prompts (negative).")
    k: int = Field(default=50, ge=1, le=10_000, description="How many candidates to return.")
    offset: int = Field(default=0, ge=0, le=1_000_000, description="Skip this many (paging).")
    strategy: Strategy = "max"
    negative_weight: float = Field(default=0.5, ge=0.0, le=10.0)
    filters: dict[str, FilterValue] = Field(default_factory=dict)
    exclude_ids: list[str] = Field(default_factory=list)
    include_states: list[Literal["unlabeled", "queued", "labeled"]] = Field(
        default_factory=lambda: ["unlabeled"],  # type: ignore[arg-type]
        description="Labeling states eligible for mining (default: unlabeled only).")
    max_per_group: int | None = Field(default=None, ge=1)
    group_by: str | None = Field(default=None, description="Metadata column for max_per_group.")
    dedup_threshold: float | None = Field(
        default=None, gt=0.0, le=1.0,
        description="Drop a candidate whose cosine similarity to a better one is >= this.")
    min_score: float | None = Field(default=None, allow_inf_nan=False)

    @model_validator(mode="after")
    def _check(self) -> MineQuery:
        if self.max_per_group is not None and not self.group_by:
            raise ValueError("max_per_group needs group_by (a metadata column, e.g. sequence_id)")
        for name in ("positive_ids", "negative_ids", "texts", "negative_texts", "exclude_ids"):
            values = getattr(self, name)
            if any(not isinstance(v, str) or not v.strip() for v in values):
                raise ValueError(f"{name} must not contain empty strings")
            if len(values) > 10_000:
                raise ValueError(f"{name} has {len(values)} entries; at most 10000")
        return self

    def has_positive(self, uploads: int = 0) -> bool:
        """Return whether there is at least one positive input."""
        return bool(self.positive_ids or self.texts or uploads)


class Candidate(BaseModel):
    """One mined image and why it was picked."""

    image_id: str
    score: float
    rank: int
    nearest_example_id: str
    nearest_example_similarity: float
    metadata: dict[str, Any]
    state: str
    image_url: str


class Timings(BaseModel):
    """Where a query spent its time, in milliseconds."""

    embed_ms: float = 0.0
    search_ms: float = 0.0
    total_ms: float = 0.0


class MineResult(BaseModel):
    """The candidates and what produced them."""

    candidates: list[Candidate]
    eligible: int
    offset: int
    next_offset: int | None
    bundle_version: int
    model: str
    strategy: Strategy
    timings: Timings
