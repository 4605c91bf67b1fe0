"""A user's history through the real handlers: learned into the profile, logged with each rank."""

from __future__ import annotations

import json
from typing import Any

from bandit.spec import load_spec
from functions.common import decision_store, policy_store, users
from functions.rank.app import lambda_handler as rank_handler
from functions.rewards.app import lambda_handler as rewards_handler
from local.stack import POLICIES_DIR
from tests.functional.conftest import Api
from tests.functional.test_learning_loop import deliver

RANK = "/v1/policies/{policy}/rank"
CANDIDATES = [
    {"id": f"item-{i}", "category": "sports" if i % 2 else "music", "creator": f"maker-{i % 3}"}
    for i in range(8)
]


def use_history(policy: str = "for-you") -> None:
    spec = load_spec(POLICIES_DIR / f"{policy}.yaml")
    history = {"enabled": True, "items": 3, "categories": 2, "creators": 2, "decay": 0.5}
    policy_store.put("acme", spec.model_copy(update={"history": type(spec.history)(**history)}))


def rank(api: Api, user_id: str) -> dict[str, Any]:
    body = {"context": {"user": {"cohort": "a"}}, "user_id": user_id, "candidates": CANDIDATES}
    status, payload, _ = api.call(
        rank_handler, "POST", "/v1/policies/for-you/rank", body, resource=RANK
    )
    assert status == 200, payload
    return dict(payload)


def reward_first_slot(api: Api, answer: dict[str, Any]) -> str:
    item = answer["slate"][0]["id"]
    body = {"event_id": answer["event_id"], "item_id": item, "type": "click", "final": True}
    status, _, _ = api.call(
        rewards_handler, "POST", "/v1/rewards", json.dumps(body), sign_body=True
    )
    assert status == 202
    return str(item)


def test_a_new_user_ranks_with_an_empty_history_and_it_is_logged(
    aws: dict[str, str], api: Api
) -> None:
    use_history()
    answer = rank(api, "u-new")
    record = decision_store.get("acme", answer["event_id"]).record
    assert record.history is not None and record.history.empty


def test_rewarded_items_reach_the_profile_and_the_next_rank_logs_them(
    aws: dict[str, str], api: Api
) -> None:
    # Given a policy with history on, and two events of one user, each rewarded on its first slot
    use_history()
    rewarded = []
    for _ in range(2):
        rewarded.append(reward_first_slot(api, rank(api, "u1")))
        assert deliver(aws)["failures"] == []
    # Then the learner kept the rewarded items, with their category and creator, oldest first
    profile = users.profile("acme", "u1")
    assert profile.interactions == 2
    by_id = {c["id"]: c for c in CANDIDATES}
    assert [(r.item_id, r.category, r.creator) for r in profile.rewarded] == [
        (item, by_id[item]["category"], by_id[item]["creator"]) for item in rewarded
    ]
    # And the next rank logs the snapshot it used: newest item first, weighted categories
    record = decision_store.get("acme", rank(api, "u1")["event_id"]).record
    assert record.history is not None
    assert record.history.items == list(dict.fromkeys(reversed(rewarded)))
    assert set(record.history.categories) == {by_id[item]["category"] for item in rewarded}
    assert abs(sum(record.history.categories.values()) - 1.0) < 1e-3
    # And another user's history is their own
    other = decision_store.get("acme", rank(api, "u2")["event_id"]).record
    assert other.history is not None and other.history.empty


def test_a_policy_without_history_logs_none(aws: dict[str, str], api: Api) -> None:
    spec = load_spec(POLICIES_DIR / "for-you.yaml")
    off = spec.history.model_copy(update={"enabled": False})
    policy_store.put("acme", spec.model_copy(update={"history": off}))
    record = decision_store.get("acme", rank(api, "u1")["event_id"]).record
    assert record.history is None
