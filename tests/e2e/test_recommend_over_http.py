"""Recommend over real HTTP: the stack's own index builder takes in the catalog, recommend serves
from it, and its events are rewarded and learned like rank's."""

from __future__ import annotations

import time
from typing import Any

from local.lambda_events import schedule_event
from local.stack import LocalStack
from tests.e2e.conftest import Client

DEADLINE_SECONDS = 180.0  # the stack builds every 15 s; generous for a busy machine


def _wait(what: str, check: Any) -> Any:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_recommend_serves_from_the_catalog_once_the_stack_has_indexed_it(
    client: Client, stack: LocalStack
) -> None:
    # Given catalog items upserted over HTTP
    items = [
        {"id": f"rec-{n:03d}", "category": ("news", "sport", "film")[n % 3], "created_at": 1e9 + n}
        for n in range(60)
    ]
    status, answer, _ = client.call("PUT", "/v1/items", {"items": items})
    assert status == 200, answer
    # (the stack builds every 15 s on its own; one run now, as `aws lambda invoke` would, so
    # the test need not wait for the schedule)
    stack.functions["IndexFunction"].invoke(schedule_event())

    # When recommend is asked until the stack's builder has indexed them
    ours = {"categories": ["news", "sport", "film"]}
    body = {"user_id": "e2e-reader", "slate_size": 4, "size": 30, "filters": ours}

    def recommended() -> dict[str, Any] | None:
        status, answer, headers = client.call("POST", "/v1/policies/for-you/recommend", body)
        if status == 503:
            assert answer["error"] == "index_not_built", answer
            assert headers.get("Retry-After") == "60"
            return None
        if status == 409 or (status == 422 and answer.get("field") == "filters"):
            return None  # built before the upsert: an empty catalog, or none of these categories
        assert status == 200, answer
        return answer if answer["retrieval"]["candidates"] == 30 else None

    answer = _wait("the catalog index", recommended)
    # Then the slate holds 4 catalog items with their sources and probabilities
    assert len(answer["slate"]) == 4
    assert all(0.0 < s["probability"] <= 1.0 for s in answer["slate"])
    assert {s["id"] for s in answer["slate"]} <= {i["id"] for i in items}
    sources = {"similar", "embedding", "coverage", "new", "popular"}
    assert all(s["source"] in sources for s in answer["slate"])

    # And a reward on it is learned like a rank's
    first = answer["slate"][0]["id"]
    reward = {"event_id": answer["event_id"], "item_id": first, "type": "click", "final": True}
    status, _, _ = client.call("POST", "/v1/rewards", reward, signed=True)
    assert status == 202

    def learned() -> bool:
        status, event, _ = client.call("GET", f"/v1/events/{answer['event_id']}")
        return status == 200 and event["status"] == "learned"

    _wait("the event to be learned", learned)

    # And filters hold over HTTP
    filtered = {**body, "filters": {"categories": ["film"]}, "size": 10}
    status, answer, _ = client.call("POST", "/v1/policies/for-you/recommend", filtered)
    assert status == 200, answer
    films = {i["id"] for i in items if i["category"] == "film"}
    assert {s["id"] for s in answer["slate"]} <= films
