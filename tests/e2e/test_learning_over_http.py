"""Acceptance: a user who clicks only one category, 300 rounds over real HTTP.

Every round ranks over HTTP, then posts a signed reward for every shown item (click value 1 for
the liked category, 0 otherwise) twice. The learner runs in the stack's SQS poller, as it would
behind the real queue.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from functions.common import decision_store, policy_store
from functions.common.auth import create_key
from local.client import SerendipClient
from local.stack import LocalStack
from tests.e2e.conftest import ROOT

LIKED = "music"
CATEGORIES = ("news", "sports", "music", "food")
ITEMS = [
    {
        "id": f"{category}-{i}",
        "category": category,
        "features": {"length": "short" if i else "long"},
    }
    for category in CATEGORIES
    for i in range(3)
]
ROUNDS = 300
TENANT = "e2e-learning"


@pytest.fixture(scope="module")
def trained(stack: LocalStack) -> dict[str, Any]:
    """300 rank + doubly-posted reward rounds, then the learner drained."""
    key = create_key(TENANT, {"rank", "reward", "admin"})
    policy_store.seed(TENANT, ROOT / "policies")
    client = SerendipClient(stack.url, key.api_key, key.webhook_secret)
    shuffler = random.Random(5)
    responses = []
    for round_number in range(1, ROUNDS + 1):
        candidates = shuffler.sample(ITEMS, len(ITEMS))
        response = client.rank(
            "for-you",
            {"context": {"user": {"plan": "free"}}, "user_id": "fan-1", "candidates": candidates},
        )
        assert response.status == 200, response.body
        responses.append(response.body)
        category = {item["id"]: item["category"] for item in ITEMS}
        rewards = [
            {
                "event_id": response.body["event_id"],
                "item_id": slot["id"],
                "type": "click",
                "value": 1.0 if category[slot["id"]] == LIKED else 0.0,
            }
            for slot in response.body["slate"]
        ]
        for _ in range(2):  # every reward posted twice
            posted = client.post_rewards(rewards)
            assert (posted.status, posted.body) == (202, {"accepted": len(rewards)})
        if round_number % 50 == 0:
            stack.drain(timeout=120)
    stack.drain(timeout=120)
    return {"client": client, "responses": responses}


def first_slot_categories(client: SerendipClient, rounds: int) -> list[str]:
    category = {item["id"]: item["category"] for item in ITEMS}
    shuffler = random.Random(9)
    picks = []
    for _ in range(rounds):
        body = {
            "context": {"user": {"plan": "free"}},
            "user_id": "fan-1",
            "candidates": shuffler.sample(ITEMS, len(ITEMS)),
        }
        response = client.rank("for-you", body)
        assert response.status == 200
        picks.append(category[response.body["slate"][0]["id"]])
    return picks


def test_first_slot_learns_the_liked_category(trained: dict[str, Any]) -> None:
    picks = first_slot_categories(trained["client"], 100)
    share = picks.count(LIKED) / len(picks)
    assert share >= 0.8, f"first slot showed {LIKED} in {share:.0%} of 100 ranks"
    late = [r["slate"][0]["id"].split("-")[0] for r in trained["responses"][-100:]]
    assert late.count(LIKED) / len(late) >= 0.8


def test_model_grew_and_learned_each_closed_event_exactly_once(trained: dict[str, Any]) -> None:
    models = trained["client"].request("GET", "/v1/policies/for-you/models")
    assert models.status == 200
    head = models.body["versions"][0]
    assert models.body["head"] == head["version"] > 1
    shown = sum(len(r["slate"]) for r in trained["responses"])
    assert head["events_learned"] == ROUNDS
    assert head["examples_learned"] == shown


def test_probabilities_served_equal_the_stored_records(trained: dict[str, Any]) -> None:
    for response in trained["responses"]:
        stored = decision_store.get(TENANT, response["event_id"])
        assert stored.status == "learned"
        assert [(s.item_id, s.probability, s.explored) for s in stored.record.slate] == [
            (s["id"], s["probability"], s["explored"]) for s in response["slate"]
        ]
        assert len({(r.item_id, r.type, r.value) for r in stored.record.rewards}) == len(
            stored.record.rewards
        ), "a reward posted twice was stored twice"


def test_unsigned_or_wrongly_signed_rewards_are_refused_and_change_nothing(
    stack: LocalStack, trained: dict[str, Any]
) -> None:
    client: SerendipClient = trained["client"]
    event = client.rank("for-you", {"context": {}, "candidates": ITEMS[:3]}).body
    reward = [{"event_id": event["event_id"], "item_id": event["slate"][0]["id"]}]
    assert client.post_rewards(reward, signed=False).status == 401
    forged = SerendipClient(client.url, client.api_key, "whsec_not_the_secret")
    assert forged.post_rewards(reward).status == 401
    stack.drain(timeout=60)
    stored = decision_store.get(TENANT, event["event_id"])
    assert stored.record.rewards == [] and stored.status == "open"
