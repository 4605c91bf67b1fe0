"""``GET /v1/events/{event_id}``: the slate, each reward with its outcome, the event's state."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from functions.common import decision_store
from functions.common.auth import NewKey, create_key
from functions.rank.app import lambda_handler as rank_handler
from functions.rewards.app import lambda_handler as rewards_handler
from tests.functional.conftest import Api
from tests.queues import deliver_all

CANDIDATES = [{"id": f"item-{i}", "features": {"n": i}} for i in range(6)]
EVENT = "/v1/events/{event_id}"


def _rank(api: Api, **extra: Any) -> dict[str, Any]:
    body = {"context": {"user": {"cohort": "a"}}, "candidates": CANDIDATES, **extra}
    status, answer, _ = api.call(
        rank_handler,
        "POST",
        "/v1/policies/for-you/rank",
        body,
        resource="/v1/policies/{policy}/rank",
    )
    assert status == 200, answer
    return dict(answer)


def _post(api: Api, rewards: list[dict[str, Any]]) -> None:
    status, body, _ = api.call(
        rewards_handler, "POST", "/v1/rewards", json.dumps({"rewards": rewards}), sign_body=True
    )
    assert status == 202, body


def _event(api: Api, event_id: str, api_key: str | None = None) -> tuple[int, Any]:
    status, body, _ = api.call(
        rewards_handler, "GET", f"/v1/events/{event_id}", resource=EVENT, api_key=api_key
    )
    return status, body


def test_an_open_event_shows_its_slate_and_each_reward_with_its_outcome(
    aws: dict[str, str], api: Api, tenant: NewKey
) -> None:
    answer = _rank(api)
    event_id, (first, second, *_) = answer["event_id"], answer["slate"]
    _post(
        api,
        [
            {"event_id": event_id, "item_id": first["id"], "type": "click"},
            {"event_id": event_id, "item_id": first["id"], "type": "like"},  # not valued
            {"event_id": event_id, "item_id": "not-shown", "type": "click"},
            {
                "event_id": event_id,
                "item_id": second["id"],
                "type": "click",
                "timestamp": time.time() + 86_400,
            },  # after the reward wait
        ],
    )
    assert deliver_all(aws) == []
    status, state = _event(api, event_id)
    assert status == 200, state
    assert state["status"] == "open" and state["rewards"] == 4
    assert [(s["id"], s["position"], s["probability"], s["explored"]) for s in state["slate"]] == [
        (s["id"], s["position"], s["probability"], s["explored"]) for s in answer["slate"]
    ]
    assert all(s["seen"] and s["reward"] is None for s in state["slate"])
    assert [(r["item_id"], r["type"], r["outcome"]) for r in state["joined_rewards"]] == [
        (first["id"], "click", "pending"),
        (first["id"], "like", "unknown_type"),
        ("not-shown", "click", "orphan"),
        (second["id"], "click", "late"),
    ]


def test_a_learned_event_shows_what_each_slot_learned_and_a_late_reward(
    aws: dict[str, str], api: Api, tenant: NewKey
) -> None:
    answer = _rank(api)
    event_id = answer["event_id"]
    # A purchase on the first slot, a click on the second, final: the event closes and learns
    first, second = answer["slate"][0]["id"], answer["slate"][1]["id"]
    _post(
        api,
        [
            {"event_id": event_id, "item_id": first, "type": "purchase"},
            {"event_id": event_id, "item_id": second, "type": "click", "final": True},
        ],
    )
    assert deliver_all(aws) == []
    # And a click after it was learned, posted twice (stored once)
    for _ in range(2):
        _post(api, [{"event_id": event_id, "item_id": first, "type": "click", "timestamp": 5.0}])
    assert deliver_all(aws) == []
    state = _event(api, event_id)[1]
    assert state["status"] == "learned" and state["learned_version"] == 1
    # for-you values a purchase 5, a click 1, a slot without rewards the default 0
    assert [s["reward"] for s in state["slate"]] == [5.0, 1.0, 0.0, 0.0, 0.0]
    assert [r["outcome"] for r in state["joined_rewards"]] == ["learned", "learned", "late"]
    assert state["late_rewards"] == 1


def test_expired_and_set_aside_events_say_their_rewards_were_not_learned(
    aws: dict[str, str], api: Api, tenant: NewKey
) -> None:
    deferred = _rank(api, defer_activation=True)
    kept = _rank(api)
    for answer in (deferred, kept):
        item = answer["slate"][0]["id"]
        _post(api, [{"event_id": answer["event_id"], "item_id": item, "type": "click"}])
    assert deliver_all(aws) == []
    assert decision_store.expire(decision_store.event_key("acme", deferred["event_id"]))
    assert decision_store.fail(decision_store.event_key("acme", kept["event_id"]), "a test")
    expired = _event(api, deferred["event_id"])[1]
    assert expired["status"] == "expired"
    assert [r["outcome"] for r in expired["joined_rewards"]] == ["not_learned"]
    failed = _event(api, kept["event_id"])[1]
    assert (failed["status"], failed["reason"]) == ("failed", "a test")
    assert [r["outcome"] for r in failed["joined_rewards"]] == ["set_aside"]


@pytest.mark.parametrize(
    ("scopes", "status"), [({"admin"}, 200), ({"reward"}, 200), ({"rank"}, 403)]
)
def test_an_event_is_read_with_the_reward_or_the_admin_scope(
    aws: dict[str, str], api: Api, tenant: NewKey, scopes: set[str], status: int
) -> None:
    event_id = _rank(api)["event_id"]
    key = create_key("acme", scopes)
    assert _event(api, event_id, api_key=key.api_key)[0] == status


def test_another_tenants_event_and_an_unknown_one_are_not_found(
    aws: dict[str, str], api: Api, tenant: NewKey, other_tenant: NewKey
) -> None:
    event_id = _rank(api)["event_id"]
    assert _event(api, event_id, api_key=other_tenant.api_key)[0] == 404
    assert _event(api, "evt_unknown")[0] == 404
