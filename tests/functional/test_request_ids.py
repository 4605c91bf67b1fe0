"""Request ids on moto: every /v1 answer carries ``x-request-id``, the one in the log lines.

The id is API Gateway's ``requestContext.requestId`` (a fresh one when the event has none),
whatever the answer: a route's, an error handler's, or a refusal before the resolver. The
caller's own ``x-request-id`` is never taken for it; it is logged as ``client_request_id``.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from functions.admin.app import lambda_handler as admin_handler
from functions.common import api, policy_store
from functions.common.auth import NewKey, create_key
from functions.common.errors import StorageError
from functions.common.observability import logger
from functions.rank.app import lambda_handler as rank_handler
from functions.rewards.app import lambda_handler as rewards_handler
from local.lambda_events import FakeLambdaContext, proxy_event, response_json
from tests.functional.conftest import Handler

POLICY = "/v1/policies/{policy}"
LogLines = Callable[[], list[dict[str, Any]]]


def send(
    handler: Handler,
    method: str,
    path: str,
    *,
    key: NewKey,
    resource: str | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
    request_id: str | None = "gateway-id",
) -> tuple[int, Any, dict[str, str]]:
    """One proxy event with API Gateway's ``request_id`` (None: an event without one)."""
    raw = None if body is None else (body if isinstance(body, str) else json.dumps(body))
    sent = {"content-type": "application/json", "x-api-key": key.api_key, **(headers or {})}
    event = proxy_event(method, path, resource=resource, body=raw, headers=sent)
    if request_id is None:
        del event["requestContext"]["requestId"]
    else:
        event["requestContext"]["requestId"] = request_id
    response = handler(event, FakeLambdaContext())
    answered = {k.lower(): v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()}
    answered.update({k.lower(): v for k, v in (response.get("headers") or {}).items()})
    return response["statusCode"], response_json(response), answered


@pytest.fixture
def log_lines() -> Iterator[LogLines]:
    """The functions' JSON log lines written from now on."""
    handler = logger.registered_handler
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines() if line]
    finally:
        handler.setStream(previous)


def test_every_kind_of_answer_carries_the_gateways_request_id(
    aws: dict[str, str], tenant: NewKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    rank_only = create_key("acme", {"rank"})
    nobody = NewKey("sk_nope", "", "acme", ("rank",), "none", "none")
    rank_body = {"context": {}, "candidates": [{"id": "a"}]}
    cases: list[tuple[int, Handler, str, str, str | None, Any, NewKey]] = [
        (200, admin_handler, "GET", "/v1/policies", None, None, tenant),
        (200, admin_handler, "GET", "/v1/health", None, None, nobody),
        (
            200,
            rank_handler,
            "POST",
            "/v1/policies/for-you/rank",
            POLICY + "/rank",
            rank_body,
            tenant,
        ),
        (401, admin_handler, "GET", "/v1/policies", None, None, nobody),
        (403, admin_handler, "PUT", "/v1/items", None, {"items": [{"id": "x"}]}, rank_only),
        (404, admin_handler, "GET", "/v1/policies/nope", POLICY, None, tenant),
        (404, admin_handler, "GET", "/v1/nowhere", None, None, tenant),
        (413, admin_handler, "PUT", "/v1/items", None, "x" * (1024 * 1024 + 1), tenant),
        (422, admin_handler, "PUT", "/v1/items", None, {"items": []}, tenant),
        (
            400,
            rewards_handler,
            "POST",
            "/v1/events/e/activate",
            "/v1/events/{event_id}/activate",
            "{not json",
            tenant,
        ),
    ]
    for status, handler, method, path, resource, body, key in cases:
        request_id = f"id-{uuid.uuid4()}"
        answered, payload, headers = send(
            handler, method, path, key=key, resource=resource, body=body, request_id=request_id
        )
        assert answered == status, (path, payload)
        assert headers["x-request-id"] == request_id, (path, status)
    # The error handlers' 503 and 500 too
    monkeypatch.setattr(
        policy_store, "list_policies", lambda tenant: (_ for _ in ()).throw(StorageError("down"))
    )
    status, _, headers = send(admin_handler, "GET", "/v1/policies", key=tenant, request_id="s-1")
    assert (status, headers["x-request-id"], headers["retry-after"]) == (503, "s-1", "5")
    monkeypatch.setattr(
        policy_store, "list_policies", lambda tenant: (_ for _ in ()).throw(RuntimeError("bug"))
    )
    status, error, headers = send(admin_handler, "GET", "/v1/policies", key=tenant, request_id="u")
    assert (status, error["error"], headers["x-request-id"]) == (500, "internal_error", "u")


def test_the_id_is_in_the_log_lines_and_the_callers_own_is_not_taken_for_it(
    aws: dict[str, str], tenant: NewKey, monkeypatch: pytest.MonkeyPatch, log_lines: LogLines
) -> None:
    # Given a storage outage, which the admin function logs
    monkeypatch.setattr(
        policy_store, "list_policies", lambda tenant: (_ for _ in ()).throw(StorageError("down"))
    )
    # When a caller sends its own x-request-id
    status, _, headers = send(
        admin_handler,
        "GET",
        "/v1/policies",
        key=tenant,
        headers={"x-request-id": "caller-chosen"},
        request_id="8f7e1c2a-0b1d-4c55-9a3e-2f6d7c8b9a01",
    )
    # Then the answer and the log line carry API Gateway's id, and the caller's is beside it
    assert status == 503
    assert headers["x-request-id"] == "8f7e1c2a-0b1d-4c55-9a3e-2f6d7c8b9a01"
    (line,) = [line for line in log_lines() if line["message"] == "service unavailable"]
    assert line["correlation_id"] == "8f7e1c2a-0b1d-4c55-9a3e-2f6d7c8b9a01"
    assert line["client_request_id"] == "caller-chosen"
    # And the next request, without one, logs no caller's id
    send(admin_handler, "GET", "/v1/policies", key=tenant, request_id="second")
    last = [line for line in log_lines() if line["message"] == "service unavailable"][-1]
    assert last["correlation_id"] == "second" and "client_request_id" not in last


def test_an_event_without_an_id_gets_a_fresh_one(
    aws: dict[str, str], tenant: NewKey, log_lines: LogLines, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = set()
    for _ in range(3):
        status, _, headers = send(
            admin_handler,
            "GET",
            "/v1/policies",
            key=tenant,
            headers={"x-request-id": "same-every-time"},
            request_id=None,
        )
        assert status == 200
        ids.add(str(uuid.UUID(headers["x-request-id"])))
    assert len(ids) == 3 and "same-every-time" not in ids
    # A strange id (API Gateway's are UUIDs) is not echoed into a header either
    status, _, headers = send(
        admin_handler, "GET", "/v1/policies", key=tenant, request_id="bad\r\nx-evil: 1"
    )
    assert status == 200 and uuid.UUID(headers["x-request-id"])


def test_a_failure_before_the_route_is_a_500_with_the_id_and_a_log_line(
    aws: dict[str, str], tenant: NewKey, monkeypatch: pytest.MonkeyPatch, log_lines: LogLines
) -> None:
    def broken(key: str | None) -> Any:
        raise RuntimeError("the key cache is broken")

    monkeypatch.setattr(api, "authenticate_deferred", broken)
    status, error, headers = send(
        rank_handler,
        "POST",
        "/v1/policies/for-you/rank",
        key=tenant,
        resource=POLICY + "/rank",
        body={"context": {}, "candidates": [{"id": "a"}]},
        request_id="before-route",
    )
    assert (status, error) == (500, {"error": "internal_error", "detail": "internal error"})
    assert headers["x-request-id"] == "before-route"
    (line,) = [
        line for line in log_lines() if line["message"] == "unhandled error before the route"
    ]
    assert (
        line["correlation_id"] == "before-route" and "the key cache is broken" in line["exception"]
    )
