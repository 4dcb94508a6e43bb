"""The OpenAPI document matches reality: schemathesis generates requests for every operation
(schema-valid and invalid ones, with real image and batch ids mixed in) and checks that none
answers 5xx and every answer is declared: status code, content type and body schema (issue 8, item 6)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from edgemine.service.app import create_app
from edgemine.service.config import Settings
from tests.support.scenario_data import add_scenario_data

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Per operation and generation mode; 19 operations x (16 + 8) keeps the whole run to ~450 cases.
EXAMPLES = {GenerationMode.POSITIVE: 16, GenerationMode.NEGATIVE: 8}
VALID_FILTERS: list[dict[str, Any]] = [{}, {"time_of_day": "night"}, {"frame": {"gte": 3, "lt": 20}},
                                       {"sequence_id": ["seq0", "seq1"]}, {"time_of_day": {"not_in": ["day"]}}]


class RealIds:
    """Replaces generated ids with real ones in about two cases out of three, deterministically."""

    def __init__(self, bundle: Any, batches: list[str], doomed: list[str]) -> None:
        self.ids: list[str] = bundle.ids
        self.scenarios = ["night", "day"]  # tests/support/scenario_data.py
        self.models = ["v7", "v8"]
        self.png = (bundle.image_root / bundle.ids[0]).read_bytes()
        self.batches = batches  # read by GET/export
        self.doomed = doomed  # given to DELETE, so the others stay readable

    def apply(self, case: Any, rnd: random.Random) -> None:
        """Edit `case` in place (only dict bodies; others are left as generated)."""
        if rnd.random() < 1 / 3:
            return
        path = case.operation.path
        params = case.path_parameters or {}
        if "image_id" in params:
            params["image_id"] = rnd.choice(self.ids)
        if "name" in params:
            params["name"] = rnd.choice(self.scenarios)
        if "batch_id" in params:
            params["batch_id"] = rnd.choice(self.doomed if case.method.upper() == "DELETE" else self.batches)
        if path == "/v1/images" and isinstance(case.query, dict):
            case.query["filters"] = json.dumps(rnd.choice(VALID_FILTERS))
            case.query["contains"] = rnd.choice(self.ids)[: rnd.randint(0, 6)]
        body = case.body
        if not isinstance(body, dict):
            return
        some = rnd.sample(self.ids, rnd.randint(1, 3))
        if path == "/v1/mine":
            body["positive_ids"] = some
            body["negative_ids"] = rnd.sample(self.ids, rnd.randint(0, 2))
            body["exclude_ids"] = rnd.sample(self.ids, rnd.randint(0, 2))
            body["filters"] = rnd.choice(VALID_FILTERS)
            if body.get("max_per_group") is not None or body.get("group_by") is not None:
                body["group_by"] = "sequence_id"
        elif path == "/v1/mine/upload":
            body["files"] = [self.png]
            body["query"] = json.dumps({"positive_ids": some, "k": rnd.randint(1, 20),
                                        "filters": rnd.choice(VALID_FILTERS)})
        elif path == "/v1/batches" and isinstance(body.get("items"), list):
            body["items"] = [{"image_id": i, "score": rnd.random()} for i in some]
        elif path == "/v1/labels":
            body["image_ids"] = some
        elif path == "/v1/scenarios":
            body["ids"] = some
            body["query"] = rnd.choice([None, {"positive_ids": some, "k": rnd.randint(1, 20)}])
        elif path == "/v1/evaluations":
            body["model"] = rnd.choice(self.models)
            if "baseline" in body:
                body["baseline"] = rnd.choice(self.models)
            if body.get("scenarios") is not None:
                body["scenarios"] = rnd.sample(self.scenarios, rnd.randint(1, 2))
            if body.get("slice_by"):
                body["slice_by"] = ["time_of_day"]
        elif path == "/v1/verdicts" and isinstance(body.get("verdicts"), list):
            body["verdicts"] = [{"image_id": i, "verdict": rnd.choice(["accept", "reject", "skip"])} for i in some]


@pytest.fixture
def served(image_bundle: Any, open_client: Callable[..., Any], fake_embedder: Any,
           tmp_path: Path) -> Iterator[tuple[Any, RealIds]]:
    """The app under test (its lifespan run by schemathesis) and real ids, with a few batches, ground truth,
    two models' predictions and two locked scenarios."""
    folder = tmp_path / "scenarios"
    add_scenario_data(image_bundle.path, image_bundle.ids[:20], image_bundle.meta["time_of_day"][:20], folder,
                      tmp_path)
    seed = open_client(image_bundle.path)
    made = [seed.post("/v1/batches", json={"name": f"seed-{i}", "items": [{"image_id": image_bundle.ids[20 + i]}]})
            for i in range(6)]
    batch_ids = [r.json()["batch_id"] for r in made]
    app = create_app(Settings(bundle=image_bundle.path, scenarios=folder),
                     loader=lambda name, pretrained: fake_embedder)
    yield app, RealIds(image_bundle, batch_ids[:3], batch_ids[3:])
    shutdown_lifespans()  # schemathesis keeps an app's lifespan running until told (or process exit)


class Findings:
    """What a run saw: the cases, the status codes per operation and every check that failed."""

    def __init__(self) -> None:
        self.cases = 0
        self.codes: dict[str, set[int]] = {}
        self.failures: list[str] = []


def exercise(operation: Any, mode: GenerationMode, real: RealIds, seen: Findings) -> None:
    """Run EXAMPLES[mode] generated cases of one operation through the checks."""
    label = f"{operation.label} [{mode.value}]"

    @given(case=operation.as_strategy(generation_mode=mode), seed=st.integers(0, 2**32 - 1))
    @settings(max_examples=EXAMPLES[mode], derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case: Any, seed: int) -> None:
        seen.cases += 1
        real.apply(case, random.Random(seed))
        try:
            response = case.call_and_validate(checks=CHECKS)
        except (FailureGroup, Exception) as exc:  # collected: one run reports every finding
            seen.failures.append(f"{label}: {str(exc)[:1500]}")
            return
        seen.codes.setdefault(operation.label, set()).add(response.status_code)

    try:
        run()
    except Unsatisfiable:
        # Nothing to make invalid (an operation without parameters or body).
        assert mode is GenerationMode.NEGATIVE, label


def test_every_operation_answers_as_declared(served: tuple[Any, RealIds]) -> None:
    app, real = served
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    seen = Findings()
    for operation in operations:
        for mode in EXAMPLES:
            exercise(operation, mode, real, seen)
    assert not seen.failures, "\n\n".join(seen.failures[:10]) + \
        f"\n\n{len(seen.failures)} findings in {seen.cases} cases"
    assert 150 <= seen.cases <= 500
    # The real ids make the happy paths run too, not only 404s and 422s.
    for label in ("POST /v1/mine", "POST /v1/mine/upload", "GET /v1/images/{image_id}",
                  "GET /v1/batches/{batch_id}", "DELETE /v1/batches/{batch_id}", "POST /v1/labels",
                  "POST /v1/verdicts", "GET /v1/verdicts", "GET /v1/yield", "GET /v1/scenarios",
                  "GET /v1/scenarios/{name}", "POST /v1/evaluations", "GET /v1/models"):
        assert 200 in seen.codes.get(label, set()), (label, seen.codes.get(label))
    assert 201 in seen.codes["POST /v1/batches"], seen.codes["POST /v1/batches"]
    assert 201 in seen.codes["POST /v1/scenarios"], seen.codes["POST /v1/scenarios"]


def test_error_bodies_are_declared_per_route(image_bundle: Any, open_client: Callable[..., Any]) -> None:
    spec = open_client(image_bundle.path).get("/openapi.json").json()

    def declared(path: str, method: str) -> dict[str, str]:
        responses = spec["paths"][path][method]["responses"]
        return {code: body.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
                .rsplit("/", 1)[-1] for code, body in responses.items()}

    assert declared("/v1/mine", "post") == {"200": "MineResult", "400": "ErrorDetail", "401": "ErrorDetail",
                                            "404": "UnknownIdsError",
                                            "413": "ErrorDetail", "422": "ValidationErrorBody",
                                            "500": "InternalError", "503": "ErrorDetail"}
    assert declared("/v1/batches", "post")["409"] == "ConflictError"
    assert declared("/v1/batches/{batch_id}", "delete")["200"] == "BatchDeleted"
    image = declared("/v1/images/{image_id}", "get")
    assert image["403"] == "ErrorDetail" and image["404"] == "NotFoundError" and image["415"] == "ErrorDetail"
    assert "401" not in declared("/v1/health", "get")  # health stays open with an API key
    assert "image/*" in spec["paths"]["/v1/images/{image_id}"]["get"]["responses"]["200"]["content"]
    detail = spec["components"]["schemas"]["ValidationErrorBody"]["properties"]["detail"]
    assert {"type": "string"} in detail["anyOf"]  # our own 422s explain in one string
    assert "HTTPValidationError" not in json.dumps(spec["paths"])  # every 422 uses the declared shape
