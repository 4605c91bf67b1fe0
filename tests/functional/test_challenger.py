"""Challengers on moto: learn from the champion's log, promoted by the rule only when better.

The truth: users of cohort ``a`` click item-1, users of cohort ``b`` item-4, nothing else. A
spec with the context x item interaction (``-q CI``) can learn that; one without can only learn
the items' average appeal (half the clicks at best).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.admin.app import lambda_handler as admin_handler
from functions.common import policy_store
from functions.common.auth import NewKey
from tests.functional.conftest import Api
from tests.functional.traffic import run_traffic

CANDIDATES = [{"id": f"item-{i}", "features": {"kind": f"k{i}"}} for i in range(6)]
LIKES = {"a": "item-1", "b": "item-4"}
BLIND = ["--cb_type", "dm", "--learning_rate", "0.3"]
SEEING = ["--cb_type", "dm", "-q", "CI", "--learning_rate", "0.3"]
CHALLENGER = "/v1/policies/{policy}/challenger"


def spec(args: list[str], budget: float = 0.3) -> dict[str, Any]:
    return {
        "name": "duel",
        "slate_size": 1,
        "vw": {"args": args},
        "exploration": {"algorithm": "epsilon_greedy", "budget": budget},
        "cold_start": {"segments": [{"name": "everyone"}], "prior_examples": 0},
        "rewards": {"types": {"click": 1.0}, "aggregation": "max", "default": 0.0},
    }


def _admin(api: Api, method: str, path: str, body: Any = None, resource: str = CHALLENGER) -> Any:
    status, answer, _ = api.call(admin_handler, method, path, body, resource=resource)
    return status, answer


def _traffic(api: Api, aws: dict[str, str], events: int) -> list[dict[str, Any]]:
    """Cohorts a and b in turn; a click is worth 1 on the item the cohort likes."""
    return run_traffic(
        api,
        aws,
        "duel",
        events,
        request=lambda n: {"context": {"user": {"cohort": "ab"[n % 2]}}, "candidates": CANDIDATES},
        reward=lambda n, slot: 1.0 if slot["id"] == LIKES["ab"[n % 2]] else 0.0,
    )


def _start(
    api: Api,
    champion: list[str],
    challenger: list[str],
    *,
    trained_on: tuple[dict[str, str], int] | None = None,
    budgets: tuple[float, float] = (0.3, 0.3),
    **rule: Any,
) -> dict[str, Any]:
    """Put the champion (and let it learn ``trained_on``'s events first), then the challenger,
    with ``budgets`` (champion's, challenger's)."""
    status, body = _admin(
        api,
        "PUT",
        "/v1/policies/duel",
        spec(champion, budgets[0]),
        resource="/v1/policies/{policy}",
    )
    assert status == 200, body
    if trained_on is not None:
        _traffic(api, *trained_on)
    status, body = _admin(
        api, "PUT", "/v1/policies/duel/challenger", {"spec": spec(challenger, budgets[1]), **rule}
    )
    assert status == 200, body
    assert body["status"] == "running" and body["events_learned"] == 0
    return dict(body)


def test_a_better_challenger_is_promoted_as_a_model_version(
    aws: dict[str, str], api: Api, tenant: NewKey
) -> None:
    # Given a champion that explores half its slots (so the log supports other choices) and a
    # challenger that would explore a tenth
    _start(api, BLIND, SEEING, budgets=(0.5, 0.1), margin=0.05, min_events=100)
    _traffic(api, aws, 200)
    status, state = _admin(api, "GET", "/v1/policies/duel/challenger")
    assert status == 200, state
    # Then it was promoted once its lower bound beat the champion by the margin
    assert state["status"] == "promoted", state
    challenger, champion = state["estimates"]["challenger"], state["estimates"]["champion"]
    assert challenger["n"] >= 100 and challenger["low"] > champion["value"] + 0.05
    assert "beats" in state["judgement"]
    # And the policy now has the challenger's spec, and its model as the promoted version
    stored = policy_store.get("acme", "duel")
    assert list(stored.spec.vw.args) == SEEING
    assert stored.head_version >= state["promoted_version"] > state["champion_version"]
    status, models = _admin(
        api, "GET", "/v1/policies/duel/models", resource="/v1/policies/{policy}/models"
    )
    promoted = next(v for v in models["versions"] if v["version"] == state["promoted_version"])
    assert "promoted_challenger" in json.dumps(promoted)
    # And the next ranks are made with it: cohort b gets item-4 as its first choice
    answers = _traffic(api, aws, 20)
    assert all(a["model_version"] >= state["promoted_version"] for a in answers)
    exploited = [a for a in answers[1::2] if not a["slate"][0]["explored"]]
    assert exploited and all(a["slate"][0]["id"] == "item-4" for a in exploited)


def test_a_worse_challenger_is_not_promoted_and_a_forced_promotion_rolls_back(
    aws: dict[str, str], api: Api, tenant: NewKey
) -> None:
    # Given a champion that learned the cohorts' tastes first (a challenger that learns faster
    # than an untrained champion would rightly win the early events)
    _start(api, SEEING, BLIND, trained_on=(aws, 100), margin=0.0, min_events=50)
    _traffic(api, aws, 200)
    status, state = _admin(api, "GET", "/v1/policies/duel/challenger")
    assert state["status"] == "running", state
    assert state["events_learned"] == 200
    challenger, champion = state["estimates"]["challenger"], state["estimates"]["champion"]
    assert challenger["value"] < champion["value"]
    assert "does not beat" in state["judgement"]
    assert list(policy_store.get("acme", "duel").spec.vw.args) == SEEING
    # Promoted by hand, then rolled back: both are model versions
    before = policy_store.get("acme", "duel")
    status, promoted = _admin(
        api, "POST", "/v1/policies/duel/challenger/promote", resource=CHALLENGER + "/promote"
    )
    assert status == 200, promoted
    assert list(policy_store.get("acme", "duel").spec.vw.args) == BLIND
    status, rolled = _admin(
        api, "POST", "/v1/policies/duel/challenger/rollback", resource=CHALLENGER + "/rollback"
    )
    assert status == 200, rolled
    after = policy_store.get("acme", "duel")
    assert list(after.spec.vw.args) == SEEING and rolled["status"] == "rolled_back"
    assert after.head_version == before.head_version + 2 == rolled["model_version"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"spec": {"vw": {"args": ["--bogus"]}}}, 422, "spec.vw.args[0]"),
        ({"spec": {"name": "other"}}, 422, "spec.name"),
        ({"spec": {}, "margin": -1}, 422, "margin"),
        ({"spec": {}, "min_events": 0}, 422, "min_events"),
        ({"spec": {}, "surprise": 1}, 422, "surprise"),
        ({}, 422, "spec"),
    ],
)
def test_a_bad_challenger_is_refused_naming_the_field(
    aws: dict[str, str],
    api: Api,
    tenant: NewKey,
    *,
    body: dict[str, Any],
    status: int,
    field: str,
) -> None:
    assert _admin(api, "PUT", "/v1/policies/duel", spec(BLIND), "/v1/policies/{policy}")[0] == 200
    got, answer = _admin(api, "PUT", "/v1/policies/duel/challenger", body)
    assert (got, answer.get("field")) == (status, field), answer
    assert _admin(api, "GET", "/v1/policies/duel/challenger")[0] == 404


def test_a_challenger_needs_the_admin_scope_and_a_known_policy(
    aws: dict[str, str], api: Api, tenant: NewKey
) -> None:
    assert _admin(api, "PUT", "/v1/policies/nope/challenger", {"spec": {}})[0] == 404
    assert _admin(api, "DELETE", "/v1/policies/duel/challenger")[0] == 404
    _start(api, BLIND, SEEING)
    assert _admin(api, "DELETE", "/v1/policies/duel/challenger")[1]["deleted"] is True
    assert _admin(api, "GET", "/v1/policies/duel/challenger")[0] == 404
