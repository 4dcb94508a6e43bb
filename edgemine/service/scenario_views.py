"""What the scenario endpoints answer: scenario summaries, one scenario's members and lock diff,
saving a mining query as a scenario, and evaluations or gate reports within the request limits.

The routes (api/routes_scenarios.py) only parse and call these; the scenario library
(edgemine/scenarios) does the work. Errors are the library's domain errors, plus ScenarioExists.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgemine.bundle.errors import BundleError, UnknownImageIds
from edgemine.bundle.state import StateDB
from edgemine.scenarios import store
from edgemine.scenarios.errors import InputFileError, ScenarioError, UnknownScenario
from edgemine.scenarios.evaluate import evaluate
from edgemine.scenarios.files import SUFFIXES, list_scenarios, load_scenario, save_scenario, scenario_path
from edgemine.scenarios.gate import run_gate
from edgemine.scenarios.lock import (
    LockDiff,
    Resolver,
    load_locked,
    lock_state,
    make_lock,
    refresh,
    resolve_members,
    truth_ids,
    write_lock,
)
from edgemine.scenarios.results import Evaluation, GateReport, Measurement, ScenarioGate, SliceRow
from edgemine.scenarios.spec import NAME_PATTERN, GateSpec, Members, MetricSpec, Scenario
from edgemine.service import limits
from edgemine.service.miner import QueryError
from edgemine.service.paging import decode_after, encode_after

LockStatus = Literal["fresh", "stale", "missing", "invalid"]
ImageId = Annotated[str, Field(max_length=limits.MAX_ID_CHARS)]
# Evaluations hold a CPU for seconds: a few at a time per worker, the others wait their turn.
_SLOTS = threading.BoundedSemaphore(limits.EVALUATION_SLOTS)


class ScenarioExists(ScenarioError):
    """A scenario of that name already exists (and the request did not ask to overwrite it)."""


class ScenariosNotWritable(BundleError):
    """The scenarios folder cannot be written (the service answers 503, as for a read-only state database)."""


class ScenarioSummary(BaseModel):
    """One scenario of the folder, as GET /v1/scenarios lists it."""

    name: str
    description: str | None = None
    metric: MetricSpec | None = None
    gate: GateSpec | None = None
    members: int | None = Field(default=None, description="Locked members (null without a readable lock).")
    with_ground_truth: int | None = Field(default=None, description="Locked members with ground truth.")
    lock: LockStatus = Field(description="fresh, stale (see reason), missing, or invalid (the YAML is broken).")
    reason: str = ""


class LockInfo(BaseModel):
    """A lock file's header (its ids are the members)."""

    bundle_version: str
    spec_hash: str
    content_hash: str
    created_at: str
    edgemine_version: str
    count: int


class Member(BaseModel):
    """A locked member and whether it has ground truth (only those are scored)."""

    image_id: str
    ground_truth: bool


class DiffInfo(BaseModel):
    """What a refresh would change now: images joining and leaving (at most MAX_DIFF_IDS listed each)."""

    joined: list[str]
    left: list[str]
    joined_count: int
    left_count: int
    unchanged: int
    note: str = ""


class ScenarioDetail(BaseModel):
    """One scenario: its definition, lock, a page of members and what a refresh would change."""

    name: str
    file: str = Field(description="The YAML file's name in the scenarios folder.")
    scenario: Scenario
    lock: LockStatus
    reason: str = ""
    lock_info: LockInfo | None = None
    with_ground_truth: int = 0
    members: list[Member]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page of members.")
    diff: DiffInfo | None = Field(default=None, description="Null when `diff=false` or it could not be computed.")
    diff_error: str | None = Field(default=None, description="Why the diff could not be computed (e.g. a bad query).")


class ScenarioCreate(BaseModel):
    """Save a mining query (and/or ids) as a scenario: the YAML file and its lock are written."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="The scenario's name; the file is NAME.yaml.")
    query: dict[str, Any] | None = Field(default=None, description="A POST /v1/mine body: the members' query.")
    ids: list[ImageId] = Field(default_factory=list, max_length=limits.MAX_EXCLUDE_IDS)
    exclude: list[ImageId] = Field(default_factory=list, max_length=limits.MAX_EXCLUDE_IDS)
    metric: MetricSpec | None = None
    gate: GateSpec | None = None
    description: str | None = Field(default=None, max_length=limits.MAX_DESCRIPTION_CHARS)
    overwrite: bool = Field(default=False, description="Replace a scenario of the same name.")

    @model_validator(mode="after")
    def _some(self) -> ScenarioCreate:
        if self.query is None and not self.ids:
            raise ValueError("a scenario needs members: give a query, ids, or both")
        return self


class ScenarioCreated(BaseModel):
    """The written scenario and its lock."""

    name: str
    file: str
    members: int
    lock_info: LockInfo


class EvaluationRequest(BaseModel):
    """Evaluate a model on the locked scenarios, or gate it against a baseline."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(pattern=NAME_PATTERN, description="The model (candidate) whose predictions are scored.")
    baseline: str | None = Field(default=None, pattern=NAME_PATTERN,
                                 description="Gate the model against this one: the answer is a gate report.")
    scenarios: list[Annotated[str, Field(pattern=NAME_PATTERN)]] | None = Field(
        default=None, max_length=limits.MAX_EVALUATION_SCENARIOS,
        description="Scenario names (default: every scenario of the folder).")
    slice_by: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=limits.MAX_SLICE_COLUMNS,
        description="Metadata columns to slice all labeled images by (evaluation only).")
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Seed of bootstraps: same seed, same figures.")
    strict: bool = Field(default=False, description="Gate: INSUFFICIENT fails too.")

    @model_validator(mode="after")
    def _slices_without_baseline(self) -> EvaluationRequest:
        if self.baseline is not None and self.slice_by:
            raise ValueError("slice_by applies to an evaluation (no baseline); a gate scores scenarios")
        return self


class EvaluationBody(BaseModel):
    """`edgemine evaluate --json`: the model on all labeled images, each scenario and metadata slices."""

    model_config = ConfigDict(protected_namespaces=())

    model: str
    rows: list[SliceRow]
    hashes: dict[str, str]


class GateReportBody(BaseModel):
    """`edgemine gate --json`: the candidate against the baseline per scenario, and `status`."""

    candidate: str
    baseline: str
    strict: bool
    scenarios: list[ScenarioGate]
    aggregate: tuple[Measurement, Measurement]
    hashes: dict[str, str]
    seed: int
    status: Literal["pass", "fail", "error"]


# The store's dataclass is the response model too (FastAPI serialises dataclasses).
ModelOut = store.ModelInfo


def models(state: StateDB) -> list[ModelOut]:
    """Return the models whose predictions are stored, by name."""
    return store.list_models(state)


def _lock_info(lock: Any) -> LockInfo:
    return LockInfo(bundle_version=lock.bundle_version, spec_hash=lock.spec_hash, content_hash=lock.content_hash,
                    created_at=lock.created_at, edgemine_version=lock.edgemine_version, count=len(lock.ids))


def summaries(folder: Path, state: StateDB) -> list[ScenarioSummary]:
    """Return every scenario of the folder with its lock status (none when the folder does not exist yet)."""
    if not Path(folder).is_dir():
        return []
    out: list[ScenarioSummary] = []
    for path in list_scenarios(folder):
        try:
            found = lock_state(path, state)
        except InputFileError as exc:  # one broken file must not hide the others
            out.append(ScenarioSummary(name=path.stem, lock="invalid", reason=str(exc)))
            continue
        sc = found.scenario
        ids = found.lock.ids if found.lock else None
        out.append(ScenarioSummary(
            name=found.name, description=sc.description if sc else None, metric=sc.metric if sc else None,
            gate=sc.gate if sc else None, members=len(ids) if ids is not None else None,
            with_ground_truth=len(truth_ids(state, ids)) if ids is not None else None,
            lock=found.status, reason=found.reason))
    return out


def _diff(diff: LockDiff) -> DiffInfo:
    return DiffInfo(joined=diff.joined[:limits.MAX_DIFF_IDS], left=diff.left[:limits.MAX_DIFF_IDS],
                    joined_count=len(diff.joined), left_count=len(diff.left), unchanged=diff.unchanged,
                    note=diff.note)


def detail(folder: Path, name: str, state: StateDB, bundle_version: str, resolver: Resolver, *,
           limit: int = 100, cursor: str | None = None, with_diff: bool = True) -> ScenarioDetail:
    """Return one scenario: definition, lock status, a page of members (sorted ids), and the lock diff.

    Raises UnknownScenario, InputFileError (a broken YAML), CursorError (a cursor of another lock).
    """
    if not Path(folder).is_dir():
        raise UnknownScenario(f"no scenario {name!r}: the scenarios folder {folder} does not exist")
    path = scenario_path(folder, name)
    found = lock_state(path, state)
    scenario = found.scenario or load_scenario(path)
    ids = list(found.lock.ids) if found.lock else []
    scope = found.lock.content_hash if found.lock else ""
    start = 0
    if cursor:
        after = decode_after(cursor, scope)
        start = next((i for i, x in enumerate(ids) if x > after), len(ids))  # ids are sorted
    page = ids[start:start + limit]
    labeled = truth_ids(state, ids) if ids else set()
    more = start + limit < len(ids)
    out = ScenarioDetail(
        name=scenario.name, file=path.name, scenario=scenario, lock=found.status, reason=found.reason,
        lock_info=_lock_info(found.lock) if found.lock else None, with_ground_truth=len(labeled),
        members=[Member(image_id=i, ground_truth=i in labeled) for i in page],
        next_cursor=encode_after(scope, page[-1]) if more and page else None)
    if with_diff:
        try:
            out.diff = _diff(refresh(path, state, bundle_version, resolver, write=False))
        except (ScenarioError, ValueError, UnknownImageIds) as exc:  # e.g. a bad query, a gone example: say why
            out.diff_error = str(exc)
    return out


def create(folder: Path, request: ScenarioCreate, state: StateDB, bundle_version: str,
           resolver: Resolver) -> ScenarioCreated:
    """Write NAME.yaml and NAME.lock.json from a mining query and/or ids; nothing is written on an error.

    Raises ScenarioExists (unless overwrite), UnknownImageIds for ids not in the bundle, ValueError
    for a query that does not validate, ScenarioError when the members resolve to no image.
    """
    folder = Path(folder)
    if not request.overwrite and any((folder / f"{request.name}{s}").exists() for s in SUFFIXES):
        raise ScenarioExists(f"scenario {request.name!r} already exists in the scenarios folder "
                             "(choose another name, or pass overwrite: true)")
    scenario = Scenario(name=request.name, description=request.description,
                        members=Members(query=request.query, ids=request.ids, exclude=request.exclude),
                        metric=request.metric or MetricSpec(), gate=request.gate or GateSpec())
    unknown = sorted(set(request.ids) - state.known_ids(request.ids))
    if unknown:
        raise UnknownImageIds(unknown)
    # Resolve before writing anything: a bad query leaves no half-made scenario.
    try:
        ids = resolve_members(scenario, state.known_ids, resolver if request.query is not None else None)
    except ScenarioError:
        raise
    except ValueError as exc:  # the query does not validate (scenario_query names the field)
        raise QueryError(str(exc)) from exc
    lock = make_lock(scenario, ids, bundle_version)
    try:
        path = save_scenario(folder, scenario, overwrite=request.overwrite)
        write_lock(path, lock)
    except OSError as exc:
        raise ScenariosNotWritable(f"cannot write scenario {request.name!r} to the scenarios folder {folder}: "
                                   f"{exc.strerror or exc}") from exc
    return ScenarioCreated(name=scenario.name, file=path.name, members=len(lock.ids), lock_info=_lock_info(lock))


def _check_slices(state: StateDB, columns: list[str]) -> None:
    """Refuse slicing by columns with more than MAX_SLICE_VALUES values in all (each value is a row)."""
    values = sum(len(set(store.load_metadata(state, c).values())) for c in dict.fromkeys(columns))
    if values > limits.MAX_SLICE_VALUES:
        raise ScenarioError(f"slice_by {', '.join(columns)}: {values} slices, more than MAX_SLICE_VALUES "
                            f"{limits.MAX_SLICE_VALUES} per request (slice by columns with fewer values)")


def run_evaluation(folder: Path, request: EvaluationRequest, state: StateDB) -> dict[str, Any]:
    """Return the Evaluation JSON (no baseline) or the GateReport JSON: the CLI's `--json` output.

    Raises UnknownScenario, LockError (missing or stale locks), UnknownModel, NotEvaluable, and
    ScenarioError for a request over the limits (too many scenarios in the folder, or slices).
    """
    folder = Path(folder)
    names = request.scenarios
    if names is None:
        count = len(list_scenarios(folder)) if folder.is_dir() else 0
        if count > limits.MAX_EVALUATION_SCENARIOS:
            raise ScenarioError(f"the scenarios folder holds {count} scenarios, more than MAX_EVALUATION_SCENARIOS "
                                f"{limits.MAX_EVALUATION_SCENARIOS} per request: name them in `scenarios`")
    if names is not None and not folder.is_dir() and names:
        raise UnknownScenario(f"no scenario {names[0]!r}: the scenarios folder {folder} does not exist")
    locked = load_locked(folder, state, list(dict.fromkeys(names)) if names is not None else None) \
        if folder.is_dir() else []
    # Unknown models are reported before any scoring starts.
    for model in (request.model, request.baseline):
        if model is not None:
            store.predictions_hash(state, model)
    _check_slices(state, request.slice_by)
    with _SLOTS:
        if request.baseline is None:
            result: Evaluation | GateReport = evaluate(state, request.model, locked, slice_by=request.slice_by,
                                                       seed=request.seed)
        else:
            result = run_gate(state, request.model, request.baseline, locked, strict=request.strict,
                              seed=request.seed)
    return result.to_json()
