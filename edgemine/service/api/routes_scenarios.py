"""Scenario regression testing over HTTP: scenarios, their members and locks, models, evaluations and gates.

Thin: each route calls one function of edgemine/service/scenario_views.py; the domain errors are
translated in api/errors.py (unknown scenario or model 404, missing or stale lock, not evaluable
or an existing name 409, a broken scenario file or a request over a limit 422).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from edgemine.service import limits
from edgemine.service.api.deps import LoadedDep, RuntimeDep, SettingsDep, StateDep
from edgemine.service.api.guard import GuardedRoute
from edgemine.service.api.responses import UnknownIdsError, errors
from edgemine.service.scenario_query import miner_resolver
from edgemine.service.scenario_views import (
    EvaluationBody,
    EvaluationRequest,
    GateReportBody,
    ModelOut,
    ScenarioCreate,
    ScenarioCreated,
    ScenarioDetail,
    ScenarioSummary,
    create,
    detail,
    models,
    run_evaluation,
    summaries,
)

router = APIRouter(prefix="/v1", tags=["scenarios"], route_class=GuardedRoute)


@router.get("/scenarios", response_model=list[ScenarioSummary], responses=errors(422))
def list_all(state: StateDep, settings: SettingsDep) -> list[ScenarioSummary]:
    """List the scenarios of the service's scenarios folder with their members and lock status."""
    return summaries(settings.scenarios, state)


@router.get("/scenarios/{name}", response_model=ScenarioDetail, responses=errors(404, 422))
def get_one(
    name: str,
    state: StateDep,
    settings: SettingsDep,
    loaded: LoadedDep,
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=limits.MAX_MEMBERS_PAGE, description="Members per page.")] = 100,
    cursor: Annotated[str | None, Query(max_length=limits.MAX_ID_CHARS + 200,
                                        description="`next_cursor` of the previous page.")] = None,
    diff: Annotated[bool, Query(description="Also re-resolve the members (without writing the lock) and "
                                            "report what would join and leave.")] = True,
) -> ScenarioDetail:
    """Return a scenario: definition, lock status, a page of its members (sorted) and the lock diff."""
    return detail(settings.scenarios, name, state, str(loaded.snapshot.version),
                  miner_resolver(lambda: runtime.current().miner), limit=limit, cursor=cursor, with_diff=diff)


@router.post("/scenarios", response_model=ScenarioCreated, status_code=201,
             responses=errors(404, 409, 413, 422, not_found=UnknownIdsError))
def save(request: ScenarioCreate, state: StateDep, settings: SettingsDep, loaded: LoadedDep,
         runtime: RuntimeDep) -> ScenarioCreated:
    """Save a mining query (a POST /v1/mine body) and/or ids as a scenario: NAME.yaml and NAME.lock.json.

    An existing name is a 409 unless `overwrite`; nothing is written when the query or an id is bad.
    """
    return create(settings.scenarios, request, state, str(loaded.snapshot.version),
                  miner_resolver(lambda: runtime.current().miner))


@router.post("/evaluations", response_model=EvaluationBody | GateReportBody,
             responses=errors(404, 409, 413, 422))
def evaluations(request: EvaluationRequest, state: StateDep, settings: SettingsDep) -> dict[str, Any]:
    """Evaluate a model on the locked scenarios (Evaluation JSON), or with `baseline` gate it (GateReport
    JSON with `status`): the same JSON as `edgemine evaluate --json` / `edgemine gate --json`."""
    # A sync route: FastAPI runs it in its threadpool; scenario_views bounds concurrent evaluations.
    return run_evaluation(settings.scenarios, request, state)


@router.get("/models", response_model=list[ModelOut], responses=errors())
def list_models(state: StateDep) -> list[ModelOut]:
    """List the models with imported predictions (name, images, import time, source file, content hash)."""
    return models(state)
