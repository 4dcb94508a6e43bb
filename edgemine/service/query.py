"""The mining query and result models, shared by the HTTP API, the CLI and the library."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, model_validator

from edgemine.service import limits
from edgemine.service.surrogates import CleanStr

Strategy = Literal["mean", "max", "rrf", "probe"]
Scalar = str | int | float | bool
# Range bounds are numbers or times (ISO text): a bool there is a mistake, not 0 or 1.
Bound = StrictStr | StrictInt | StrictFloat
Values = Annotated[list[Scalar], Field(max_length=limits.MAX_FILTER_VALUES)]
ImageId = Annotated[str, Field(max_length=limits.MAX_ID_CHARS)]
Text = Annotated[str, Field(max_length=limits.MAX_TEXT_CHARS)]
# No bools where numbers are expected ("k": true is not 1); ints are fine for floats.
Number = Annotated[float, Field(strict=True)]


class Range(BaseModel):
    """A condition on one metadata column; several fields combine with AND."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    eq: Scalar | None = None
    ne: Scalar | None = None
    in_: Values | None = Field(default=None, alias="in")
    not_in: Values | None = None
    gt: Bound | None = None
    gte: Bound | None = None
    lt: Bound | None = None
    lte: Bound | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> Range:
        if all(getattr(self, name) is None for name in type(self).model_fields):
            raise ValueError("a filter needs at least one of eq, ne, in, not_in, gt, gte, lt, lte")
        return self


# A bare value means equality, a list means membership.
FilterValue = Range | Scalar | Values


class MineQuery(BaseModel):
    """What to mine: examples, rules and how many candidates."""

    model_config = ConfigDict(extra="forbid")

    positive_ids: list[ImageId] = Field(default_factory=list, max_length=limits.MAX_EXAMPLES,
                                        description="Failure examples in the bundle.")
    negative_ids: list[ImageId] = Field(default_factory=list, max_length=limits.MAX_EXAMPLES,
                                        description="Examples of what not to find.")
    texts: list[Text] = Field(default_factory=list, max_length=limits.MAX_TEXTS,
                              description="CLIP text prompts (positive).")
    negative_texts: list[Text] = Field(default_factory=list, max_length=limits.MAX_TEXTS,
                                       description="CLIP text prompts (negative).")
    k: StrictInt = Field(default=50, ge=1, le=limits.MAX_K, description="How many candidates to return.")
    offset: StrictInt = Field(
        default=0, ge=0, le=limits.MAX_DEPTH - 1,
        description=f"Skip this many (best-effort paging: queuing a page shifts the ranking; prefer "
                    f"cursor). offset + k <= {limits.MAX_DEPTH}.")
    cursor: str | None = Field(
        default=None, max_length=4 * limits.MAX_ID_CHARS,
        description="next_cursor of the previous page: the page after it, among rows eligible now.")
    strategy: Strategy = "max"
    negative_weight: Number = Field(default=0.5, ge=0.0, le=10.0)
    filters: dict[str, FilterValue] = Field(default_factory=dict, max_length=limits.MAX_FILTERS)
    exclude_ids: list[ImageId] = Field(default_factory=list, max_length=limits.MAX_EXCLUDE_IDS)
    include_states: list[Literal["unlabeled", "queued", "labeled", "rejected"]] = Field(
        default_factory=lambda: ["unlabeled"],  # type: ignore[arg-type]
        max_length=4, description="Labeling states eligible for mining (default: unlabeled only; "
                                  "\"rejected\": images whose latest review verdict is reject).")
    max_per_group: StrictInt | None = Field(default=None, ge=1)
    group_by: str | None = Field(default=None, max_length=1000,
                                 description="Metadata column for max_per_group.")
    dedup_threshold: Number | None = Field(
        default=None, gt=0.0, le=1.0,
        description="Drop a candidate whose cosine similarity to a better one is >= this.")
    min_score: Number | None = Field(default=None, allow_inf_nan=False)
    session_id: CleanStr | None = Field(
        default=None, min_length=1, max_length=limits.MAX_SESSION_CHARS,
        description="The review session this query belongs to (stored with the query, for yield and "
                    "use_verdicts).")
    parent_query_id: CleanStr | None = Field(
        default=None, min_length=1, max_length=limits.MAX_SESSION_CHARS,
        description="The query_id this query refines (stored, for provenance).")
    use_verdicts: bool = Field(
        default=False, description="Add the session's accepted images (latest verdict) as positives and its "
                                   "rejected ones as negatives; needs session_id.")

    @model_validator(mode="after")
    def _check(self) -> MineQuery:
        if self.use_verdicts and self.session_id is None:
            raise ValueError("use_verdicts needs session_id (the session whose verdicts to use)")
        if self.max_per_group is not None and not self.group_by:
            raise ValueError("max_per_group needs group_by (a metadata column, e.g. sequence_id)")
        for name in ("positive_ids", "negative_ids", "texts", "negative_texts", "exclude_ids"):
            values = getattr(self, name)
            if any(not isinstance(v, str) or not v.strip() for v in values):
                raise ValueError(f"{name} must not contain empty strings")
        if self.offset + self.k > limits.MAX_DEPTH:
            raise ValueError(f"offset + k is {self.offset + self.k}; at most {limits.MAX_DEPTH} "
                             "(the ranking is computed from the top for every page)")
        if self.cursor is not None and self.offset:
            raise ValueError("give cursor or offset, not both")
        texts = len(self.texts) + len(self.negative_texts)
        if texts > limits.MAX_TEXTS:
            raise ValueError(f"texts + negative_texts has {texts} prompts; at most {limits.MAX_TEXTS}")
        self.check_examples()
        return self

    def check_examples(self, uploads: int = 0) -> None:
        """Raise ValueError when the query has more example vectors than MAX_EXAMPLES."""
        count = (len(self.positive_ids) + len(self.negative_ids) + len(self.texts)
                 + len(self.negative_texts) + uploads)
        if count > limits.MAX_EXAMPLES:
            raise ValueError(
                f"positive_ids + negative_ids + texts + negative_texts + uploaded files have {count} "
                f"examples; at most {limits.MAX_EXAMPLES}")

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

    @classmethod
    def trusted(cls, image_id: str, score: float, rank: int, nearest_example_id: str,
                nearest_example_similarity: float, metadata: dict[str, Any], state: str,
                image_url: str) -> Candidate:
        """Build a candidate from values the miner produced (already typed): no validation."""
        # What model_construct leaves behind, without its per-field default and alias walk:
        # 1.5-1.6 us against 3.7-4.8 us a candidate, a page of 100 on every query. Held equal to a
        # validated Candidate (==, JSON, fields set, copies) by tests/service/test_candidates.py.
        obj = _new_object(cls)
        _set_attr(obj, "__dict__", {
            "image_id": image_id, "score": score, "rank": rank, "nearest_example_id": nearest_example_id,
            "nearest_example_similarity": nearest_example_similarity, "metadata": metadata,
            "state": state, "image_url": image_url})
        _set_attr(obj, "__pydantic_fields_set__", set(_CANDIDATE_FIELDS))
        _set_attr(obj, "__pydantic_extra__", None)
        _set_attr(obj, "__pydantic_private__", None)
        return obj


_new_object = object.__new__
_set_attr = object.__setattr__
_CANDIDATE_FIELDS = frozenset(Candidate.model_fields)


class Timings(BaseModel):
    """Where a query spent its time, in milliseconds."""

    embed_ms: float = 0.0
    search_ms: float = 0.0
    total_ms: float = 0.0  # the whole library call, storing the query included


class MineResult(BaseModel):
    """The candidates and what produced them."""

    query_id: str = Field(description="Names this query: send it with verdicts on its candidates "
                                      "(POST /v1/verdicts) and as parent_query_id of a refinement.")
    candidates: list[Candidate]
    eligible: int
    offset: int
    next_offset: int | None = Field(description="offset of the next page (best-effort; see cursor).")
    next_cursor: str | None = Field(
        default=None, description="Pass as cursor for the next page; null when there is none.")
    bundle_version: int
    model: str
    strategy: Strategy
    timings: Timings
