"""Every sample event in events/ runs through its function's handler on moto."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from bandit.domain import Candidate
from functions.admin.app import lambda_handler as admin_handler
from functions.common import catalog, decision_store, policy_store
from functions.common.auth import create_key, sign
from functions.index.app import lambda_handler as index_handler
from functions.learn.app import lambda_handler as learn_handler
from functions.personalizer.app import lambda_handler as personalizer_handler
from functions.rank.app import lambda_handler as rank_handler
from functions.rewards.app import lambda_handler as rewards_handler
from functions.route.app import lambda_handler as route_handler
from functions.sweep.app import lambda_handler as sweep_handler
from local.lambda_events import FakeLambdaContext, response_json

ROOT = Path(__file__).resolve().parents[2]
EVENTS = sorted((ROOT / "events").glob("*.json"))
SAMPLE_KEY = "sk_sample_0123456789abcdef"
SAMPLE_SECRET = "whsec_sample_0123456789abcdef"
HANDLERS = {
    "rank": rank_handler,
    "rewards": rewards_handler,
    "route": route_handler,
    "learn": learn_handler,
    "sweep": sweep_handler,
    "index": index_handler,
    "admin": admin_handler,
    "personalizer": personalizer_handler,
}


@pytest.fixture
def sample_tenant(aws: dict[str, str]) -> None:
    create_key(
        "sample", {"rank", "reward", "admin"}, api_key=SAMPLE_KEY, webhook_secret=SAMPLE_SECRET
    )
    policy_store.seed("sample", ROOT / "policies")


def load(name: str) -> dict[str, Any]:
    return json.loads((ROOT / "events" / f"{name}.json").read_text())


def run(name: str, timeout_seconds: float = 30.0) -> dict[str, Any]:
    event = load(name)
    handler = HANDLERS[name.split("-", 1)[0]]
    return handler(event, FakeLambdaContext(timeout_ms=int(timeout_seconds * 1000)))


def test_there_is_a_sample_event_for_every_function() -> None:
    assert {path.name.split("-", 1)[0] for path in EVENTS} == set(HANDLERS)


def test_rank_event_returns_a_logged_slate(sample_tenant: None) -> None:
    response = run("rank-for-you")
    body = response_json(response)
    assert response["statusCode"] == 200
    assert [slot["position"] for slot in body["slate"]] == [1, 2]
    assert body["logged"] is True
    assert decision_store.get("sample", body["event_id"]).record.user_id == "user-42"


def test_personalizer_rank_event_answers_personalizers_rank_response(sample_tenant: None) -> None:
    response = run("personalizer-rank")
    body = response_json(response)
    assert response["statusCode"] == 201, body
    ranking = body["ranking"]
    assert ranking[0]["id"] == body["rewardActionId"] != "SportsArticle"
    assert ranking[-1] == {"id": "SportsArticle", "probability": 0.0}
    assert abs(sum(action["probability"] for action in ranking) - 1.0) < 1e-9
    logged = decision_store.get("sample", body["eventId"]).record
    assert logged.policy == "personalizer"
    assert logged.slate[0].probability == ranking[0]["probability"]


def test_rewards_event_is_accepted_once_re_signed(sample_tenant: None) -> None:
    event = load("rewards-post")
    stale = rewards_handler(event, FakeLambdaContext())
    assert stale["statusCode"] == 401  # the committed signature is a placeholder
    event["headers"]["x-serendip-signature"] = sign(
        event["body"].encode(), SAMPLE_SECRET, int(time.time())
    )
    response = rewards_handler(event, FakeLambdaContext())
    assert (response["statusCode"], response_json(response)) == (202, {"accepted": 1})


def test_activate_event_answers_404_for_an_unknown_event(sample_tenant: None) -> None:
    response = run("rewards-activate")
    assert response["statusCode"] == 404
    assert response_json(response)["error"] == "not_found"


def test_route_event_counts_an_orphan_without_failing(sample_tenant: None) -> None:
    assert run("route-sqs") == {"batchItemFailures": []}


def test_learn_event_records_an_orphan_without_failing(sample_tenant: None) -> None:
    assert run("learn-sqs") == {"batchItemFailures": []}


def test_sweep_event_runs_a_sweep(sample_tenant: None) -> None:
    summary = run("sweep-schedule")
    assert (summary["passes"], summary["due"]) == (1, 0)


def test_index_event_builds_and_the_recommend_event_serves_from_it(sample_tenant: None) -> None:
    # Before the first build, recommend asks to retry later
    early = run("rank-recommend")
    assert early["statusCode"] == 503
    catalog.upsert(
        "sample",
        [Candidate(f"item-{n}", category=("shoes", "hats", "bags")[n % 3]) for n in range(12)],
    )
    summary = run("index-schedule", timeout_seconds=900)
    assert summary["built"] == ["sample"], summary
    served = run("rank-recommend")
    assert served["statusCode"] == 200, served
    answer = response_json(served)
    assert len(answer["slate"]) == 3
    assert not any(
        slot["id"] in {"item-1", "item-4", "item-7", "item-10"} for slot in answer["slate"]
    )


def test_admin_events(sample_tenant: None) -> None:
    health = run("admin-health")
    assert (health["statusCode"], response_json(health)) == (200, {"status": "ok"})
    listed = run("admin-list-policies")
    assert listed["statusCode"] == 200
    assert [p["name"] for p in response_json(listed)["policies"]] == [
        "explore",
        "for-you",
        "personalizer",
    ]
