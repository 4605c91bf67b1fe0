"""``GET /v1/policies/{policy}/progress`` on moto: a policy that learns and one that cannot."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from functions.admin.app import lambda_handler as admin_handler
from functions.common.auth import NewKey
from local.lambda_events import FakeLambdaContext, proxy_event, response_json
from tests.functional.conftest import Api
from tests.functional.traffic import run_traffic

CANDIDATES = [{"id": f"item-{i}", "features": {"kind": f"k{i}"}} for i in range(6)]
SPEC = {
    "name": "two-slots",
    "slate_size": 2,
    "vw": {"args": ["--cb_type", "dm", "-q", "CI", "--learning_rate", "0.3"]},
    "exploration": {"algorithm": "epsilon_greedy", "budget": 0.2},
    "cold_start": {"segments": [{"name": "everyone"}], "prior_examples": 0},
    "rewards": {"types": {"click": 1.0}, "aggregation": "max", "default": 0.0},
}
PROGRESS = "/v1/policies/{policy}/progress"


def _put_policy(api: Api, budget: float = 0.2) -> None:
    spec = {**SPEC, "exploration": {"algorithm": "epsilon_greedy", "budget": budget}}
    status, body, _ = api.call(
        admin_handler, "PUT", "/v1/policies/two-slots", spec, resource="/v1/policies/{policy}"
    )
    assert status == 200, body


def _traffic(
    api: Api, aws: dict[str, str], events: int, reward: Any, orphans: int = 0
) -> list[dict[str, Any]]:
    """Rank ``events`` times for cohort ``a``; reward every shown slot by ``reward(number,
    slot)``; the first ``orphans`` events also get a reward naming an item never shown."""

    def orphan(number: int, answer: dict[str, Any]) -> list[dict[str, Any]]:
        unshown = {"event_id": answer["event_id"], "item_id": "never-shown", "type": "click"}
        return [unshown] if number < orphans else []

    return run_traffic(
        api,
        aws,
        "two-slots",
        events,
        request=lambda _: {"context": {"user": {"cohort": "a"}}, "candidates": CANDIDATES},
        reward=reward,
        more_rewards=orphan,
    )


def _get(tenant: NewKey, policy: str, query: str = "") -> tuple[int, Any]:
    event = proxy_event(
        "GET",
        f"/v1/policies/{policy}/progress",
        resource=PROGRESS,
        headers={"x-api-key": tenant.api_key},
        query=query,
    )
    context: Any = FakeLambdaContext()
    response = admin_handler(event, context)
    return response["statusCode"], response_json(response)


def _progress(tenant: NewKey, query: str = "") -> dict[str, Any]:
    status, body = _get(tenant, "two-slots", query)
    assert status == 200, body
    return dict(body)


def test_a_policy_that_learns_the_rewarded_item_is_told_apart_from_random(
    aws: dict[str, str], api: Api, tenant: NewKey
) -> None:
    # Given a policy whose only rewarded item is item-3, and one reward naming no shown item
    _put_policy(api)
    answers = _traffic(api, aws, 150, lambda _, s: 1.0 if s["id"] == "item-3" else 0.0, orphans=1)
    # When its progress is read
    progress = _progress(tenant)
    total = progress["total"]
    # Then every event and slot was learned, into the policy's model versions
    assert total["events_learned"] == 150 and total["slots_learned"] == 300
    assert total["model_versions"] >= 6
    assert total["last_model_version"] == progress["model_version"]
    # And it earns what the traffic says: item-3 shown in half the slots at most
    shown = sum(s["id"] == "item-3" for a in answers for s in a["slate"])
    assert total["reward"]["served"]["value"] == pytest.approx(shown / 300)
    assert total["reward"]["served"]["n"] == 300
    # A random pick of the first slot finds item-3 one time in 6; the policy's first slot,
    # far more often
    first = total["reward"]["first"]
    assert first["n"] == 150
    assert first["value"] == pytest.approx(
        sum(a["slate"][0]["id"] == "item-3" for a in answers) / 150
    )
    uniform = total["reward"]["uniform"]
    assert uniform["value"] == pytest.approx(_uniform_snips(answers, "item-3"))
    assert uniform["low"] < uniform["value"] < uniform["high"]
    assert first["low"] > uniform["high"]
    # And the verdict says so, with the numbers behind it
    verdict = progress["verdict"]
    assert verdict["state"] == "learning", verdict
    assert verdict["sentence"].startswith("Yes, two-slots is learning in the last 24 h")
    assert f"{first['value']:.4g}" in verdict["sentence"]
    assert verdict["lift_over_uniform"]["low"] > 0
    # And the budget: a 20% target, its realised share in the same range
    assert total["budget"]["target"] == pytest.approx(0.2)
    explored = sum(s["explored"] for a in answers for s in a["slate"])
    assert total["budget"]["realised"] == pytest.approx(explored / 300)
    # And what became of the rewards: every slot's applied, one orphan
    assert total["rewards"]["applied"] == 300 and total["rewards"]["orphan"] == 1
    assert sum(w["events_learned"] for w in progress["windows"]) == 150


def test_a_policy_whose_rewards_do_not_depend_on_the_item_is_not_learning(
    aws: dict[str, str], api: Api, tenant: NewKey
) -> None:
    # Given rewards that do not depend on the item (the first slot of every other event earns
    # 1): nothing about items can be learned, and a random first pick earns as much. (A 50%
    # budget keeps the importance weights within 1:7, so that 150 events tell.)
    _put_policy(api, budget=0.5)
    answers = _traffic(api, aws, 150, lambda n, s: 1.0 if s["position"] == 1 and n % 2 else 0.0)
    progress = _progress(tenant)
    total = progress["total"]
    assert total["reward"]["served"]["value"] == pytest.approx(0.25)
    assert total["reward"]["first"]["value"] == pytest.approx(0.5)
    weights = [(1 / 6) / a["slate"][0]["probability"] for a in answers]
    earned = sum(w for n, w in enumerate(weights) if n % 2)
    assert total["reward"]["uniform"]["value"] == pytest.approx(earned / sum(weights))
    verdict = progress["verdict"]
    assert verdict["state"] == "not_learning", verdict
    assert verdict["sentence"].startswith("Not yet: two-slots is no better than a random pick")


def test_progress_before_any_learning_and_with_too_few_events(
    aws: dict[str, str], api: Api, tenant: NewKey
) -> None:
    _put_policy(api)
    assert _progress(tenant)["verdict"]["state"] == "no_rewards"
    _traffic(api, aws, 20, lambda _, s: 1.0 if s["position"] == 1 else 0.0)
    progress = _progress(tenant)
    assert progress["total"]["events_learned"] == 20
    assert progress["verdict"]["state"] == "too_early"
    assert "from only 20 events (40 slots)" in progress["verdict"]["sentence"]


def test_progress_windows_and_bad_queries(aws: dict[str, str], api: Api, tenant: NewKey) -> None:
    _put_policy(api)
    windowed = _progress(tenant, "window=3600")
    assert progress_windows_cover(windowed, 24 * 3600, 3600)
    for query, field in [
        ("window=61", "window"),
        ("window=-60", "window"),
        ("window=60", "window"),  # 1,440 windows over 24 h
        ("window=x", "window"),
        ("since=abc", "since"),
        ("since=200&until=100", "since"),
    ]:
        status, body = _get(tenant, "two-slots", query)
        assert (status, body["field"]) == (422, field), (query, body)
    assert _get(tenant, "nope")[0] == 404


def _uniform_snips(answers: list[dict[str, Any]], rewarded: str) -> float:
    """A random first pick's SNIPS value, from the first slots' logged probabilities."""
    weights = [(1 / len(CANDIDATES)) / a["slate"][0]["probability"] for a in answers]
    earned = [w for w, a in zip(weights, answers, strict=True) if a["slate"][0]["id"] == rewarded]
    return sum(earned) / sum(weights)


def progress_windows_cover(progress: dict[str, Any], span: int, width: int) -> bool:
    """Whether the windows are contiguous, ``width`` wide, and cover ``span``."""
    windows = progress["windows"]
    contiguous = all(a["end"] == b["start"] for a, b in itertools.pairwise(windows))
    return (
        progress["window_seconds"] == width
        and contiguous
        and all(w["end"] - w["start"] == width for w in windows)
        and windows[-1]["end"] >= progress["until"]
        and windows[0]["start"] <= progress["since"]
        and len(windows) <= span // width + 1
    )
