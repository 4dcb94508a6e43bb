"""The HTTP backend's transport behaviour: retries with backoff, typed errors from status codes, auth, reuse."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

import edgemine
from edgemine.client import HttpBackend
from edgemine.service.batches import BatchCreate, BatchItemIn
from edgemine.service.query import MineQuery
from edgemine.service.verdicts import VerdictIn, VerdictsRequest
from tests.support.live_server import free_port

from .conftest import ApiBundle, live_server

Handler = Callable[[httpx.Request], httpx.Response]
MINED = {"query_id": "q-test", "candidates": [], "eligible": 0, "offset": 0, "next_offset": None, "next_cursor": None,
         "bundle_version": 1, "model": "byo:test", "strategy": "max", "timings": {}}


def backend(handler: Handler, waits: list[float], **options: float) -> HttpBackend:
    return HttpBackend("http://edgemine.test", transport=httpx.MockTransport(handler), sleep=waits.append,
                       **options)  # type: ignore[arg-type]


def flaky(statuses: list[int], seen: list[httpx.Request], body: object = MINED,
          headers: dict[str, str] | None = None) -> Handler:
    """Answer with `statuses` in turn (the last one repeats), recording the requests."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status = statuses[min(len(seen) - 1, len(statuses) - 1)]
        content = body if status < 400 else {"detail": "bundle is being republished"}
        return httpx.Response(status, json=content, headers=headers or {})

    return handle


def test_503_is_retried_with_exponential_backoff_then_succeeds() -> None:
    seen: list[httpx.Request] = []
    waits: list[float] = []
    http = backend(flaky([503, 503, 200], seen), waits, retries=3, backoff=0.5)
    result = http.mine(MineQuery(positive_ids=["a"]))
    assert result.model == "byo:test" and len(seen) == 3 and waits == [0.5, 1.0]


def test_503_after_every_retry_raises_service_unavailable() -> None:
    seen: list[httpx.Request] = []
    waits: list[float] = []
    http = backend(flaky([503], seen), waits, retries=3, backoff=0.25)
    with pytest.raises(edgemine.ServiceUnavailable, match="republished") as failed:
        http.health()
    assert failed.value.status == 503 and len(seen) == 4 and waits == [0.25, 0.5, 1.0]


def test_retry_after_header_sets_the_wait() -> None:
    seen: list[httpx.Request] = []
    waits: list[float] = []
    http = backend(flaky([503, 200], seen, headers={"Retry-After": "2"}), waits, retries=1)
    http.health()
    assert waits == [2.0]


def test_refused_connection_is_retried_then_service_unavailable() -> None:
    waits: list[float] = []
    http = HttpBackend(f"http://127.0.0.1:{free_port()}", retries=2, backoff=0.1, sleep=waits.append)
    with pytest.raises(edgemine.ServiceUnavailable, match="ConnectError"):
        http.health()
    assert waits == [0.1, 0.2]


def test_a_timed_out_batch_creation_is_not_sent_twice_but_a_mining_call_is() -> None:
    seen: list[httpx.Request] = []

    def timeout(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise httpx.ReadTimeout("timed out", request=request)

    http = backend(timeout, [], retries=2)
    request = BatchCreate(name="x", items=[BatchItemIn(image_id="a")])
    with pytest.raises(edgemine.ServiceUnavailable, match="ReadTimeout"):
        http.create_batch(request)
    assert len(seen) == 1  # it may have reached the server: no second batch
    with pytest.raises(edgemine.ServiceUnavailable):
        http.mine(MineQuery(positive_ids=["a"]))
    assert len(seen) == 1 + 3
    verdicts = VerdictsRequest(verdicts=[VerdictIn(image_id="a", verdict="reject")])
    with pytest.raises(edgemine.ServiceUnavailable, match="ReadTimeout"):
        http.record_verdicts(verdicts)
    assert len(seen) == 1 + 3 + 1  # a repeat would store the verdicts twice in the history


@pytest.mark.parametrize(("status", "body", "error", "check"), [
    (404, {"detail": "unknown image ids: 'x'", "unknown_ids": ["x", "y"]}, edgemine.UnknownImageIds,
     lambda e: e.ids == ["x", "y"]),
    (422, {"detail": [{"loc": ["body", "k"], "msg": "Input should be greater than 0"}]}, edgemine.QueryError,
     lambda e: str(e) == "k: Input should be greater than 0"),
    (413, {"detail": "request body of 9 bytes is over the limit"}, edgemine.QueryError,
     lambda e: "over the limit" in str(e)),
    (401, {"detail": "wrong API key"}, edgemine.AuthenticationError, lambda e: e.status == 401),
    (409, {"detail": "all 2 images are already queued or labeled", "skipped": ["a", "b"]},
     edgemine.BatchConflict, lambda e: e.skipped == ["a", "b"] and e.status == 409),
    (500, {"detail": "internal error", "request_id": "r-123"}, edgemine.EdgemineError,
     lambda e: e.request_id == "r-123" and "r-123" in str(e)),
])
def test_error_statuses_become_typed_errors(status: int, body: dict[str, object], error: type[Exception],
                                            check: Callable[[Exception], bool]) -> None:
    http = backend(lambda request: httpx.Response(status, json=body), [], retries=0)
    with pytest.raises(error) as raised:
        http.create_batch(BatchCreate(name="x", items=[BatchItemIn(image_id="a")]))
    assert check(raised.value)


def test_unknown_batch_and_delete_map_to_the_batch_routes() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "DELETE":
            return httpx.Response(200, json={"batch_id": "b-1", "released": 4})
        return httpx.Response(404, json={"detail": "unknown batch id 'b/2'"})

    http = backend(handle, [], retries=0)
    assert http.delete_batch("b-1") == 4
    with pytest.raises(edgemine.UnknownBatch) as unknown:
        http.get_batch("b/2")
    assert unknown.value.args[0] == "b/2"
    assert [(r.method, r.url.raw_path) for r in seen] == [("DELETE", b"/v1/batches/b-1"),
                                                          ("GET", b"/v1/batches/b%2F2")]


def test_requests_carry_the_bearer_key_and_queries_are_sent_by_alias() -> None:
    seen: list[httpx.Request] = []
    http = HttpBackend("http://edgemine.test", "s3cret", transport=httpx.MockTransport(flaky([200], seen)))
    http.mine(MineQuery.model_validate({"positive_ids": ["a"], "filters": {"time_of_day": {"in": ["night"]}}}))
    assert seen[0].headers["Authorization"] == "Bearer s3cret"
    assert json.loads(seen[0].content)["filters"]["time_of_day"]["in"] == ["night"]


def test_api_key_is_required_and_checked_by_a_live_server(api_bundle: ApiBundle, tmp_path: Path) -> None:
    with live_server(api_bundle.path, tmp_path, "--api-key", "right-key") as base:
        for key in (None, "wrong-key"):
            with edgemine.connect(base, api_key=key) as anonymous, \
                    pytest.raises(edgemine.AuthenticationError, match="API key") as refused:
                anonymous.mine(positive_ids=[api_bundle.ids[0]], k=3)
            assert refused.value.status == 401
        with edgemine.connect(base, api_key="right-key") as em:
            assert len(em.mine(positive_ids=[api_bundle.ids[0]], k=3)) == 3
            assert em.thumbnail(api_bundle.ids[0], 16)[:2] == b"\xff\xd8"


def test_one_connection_is_reused_across_calls(server: str, api_bundle: ApiBundle) -> None:
    with edgemine.connect(server) as em:
        for _ in range(5):
            em.mine(positive_ids=[api_bundle.ids[0]], k=3)
        em.health()
        pool = em.backend._http._transport._pool  # type: ignore[attr-defined]
        assert len(pool.connections) == 1


def test_a_success_body_that_is_not_the_model_is_an_edgemine_error() -> None:
    html = backend(lambda request: httpx.Response(200, text="<html>proxy login</html>"), [], retries=0)
    with pytest.raises(edgemine.EdgemineError, match="not MineResult"):
        html.mine(MineQuery(positive_ids=["a"]))
    with pytest.raises(edgemine.EdgemineError, match="not dict"):
        html.health()


def test_bad_backend_options_are_refused() -> None:
    with pytest.raises(ValueError, match="retries"):
        HttpBackend("http://edgemine.test", retries=-1)
