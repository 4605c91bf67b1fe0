"""GET /v1/policies/{policy}/metrics on moto: rank, reward, then read the numbers back."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest

from functions.admin.app import lambda_handler as admin_handler
from functions.common.auth import NewKey, create_key
from functions.common.learn_service import Learner
from functions.rank.app import lambda_handler as rank_handler
from local.lambda_events import FakeLambdaContext, proxy_event, response_json
from tests.functional.conftest import Api

RANK = "/v1/policies/{policy}/rank"
POLICY = "/v1/policies/{policy}"
METRICS = "/v1/policies/{policy}/metrics"
# item -> (category, creator); z is offered but always excluded, so never shown
ITEMS = {
    "a": ("x", "c1"),
    "b": ("y", "c1"),
    "c": ("x", "c2"),
    "d": ("x", "c2"),
    "e": ("y", "c3"),
    "z": ("y", "c4"),
}


def get_metrics(key: NewKey, policy: str = "for-you", query: str = "") -> tuple[int, Any]:
    event = proxy_event(
        "GET",
        f"/v1/policies/{policy}/metrics",
        resource=METRICS,
        headers={"x-api-key": key.api_key},
        query=query,
    )
    response = admin_handler(event, FakeLambdaContext())
    return response["statusCode"], response_json(response)


def rank(api: Api, items: list[str], exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    body = {
        "context": {},
        "user_id": "u1",
        "candidates": [{"id": i, "category": ITEMS[i][0], "creator": ITEMS[i][1]} for i in items],
        "exclude": list(exclude),
        "slate_size": 2,
    }
    status, payload, _ = api.call(
        rank_handler, "POST", "/v1/policies/for-you/rank", body, resource=RANK
    )
    assert status == 200, payload
    return payload


def probability(response: dict[str, Any], item: str) -> float:
    return float(next(s["probability"] for s in response["slate"] if s["id"] == item))


@pytest.fixture
def ranked(aws: dict[str, str], api: Api) -> list[dict[str, Any]]:
    """Given three events of user u1: a clicked in the first, c clicked and bought in the second."""
    events = [rank(api, ["a", "b"]), rank(api, ["c", "d"]), rank(api, ["a", "e", "z"], ("z",))]
    now = time.time()
    first, second = events[0]["event_id"], events[1]["event_id"]
    posted = [(first, "a", "click"), (second, "c", "click"), (second, "c", "purchase")]
    rewards = [  # as the rewards webhook queues them
        {"event_id": e, "item_id": i, "type": t, "value": None, "timestamp": now, "final": False}
        for e, i, t in posted
    ]
    report = Learner().apply_rewards("acme", rewards)
    assert report.outcomes["applied"] == 3
    return events


def test_metrics_of_ranked_and_rewarded_events(
    ranked: list[dict[str, Any]], tenant: NewKey
) -> None:
    # When the metrics of the last 24 hours are read
    status, body = get_metrics(tenant)
    # Then every number follows from what was shown and rewarded
    assert status == 200, body
    assert (body["policy"], body["n_events"], body["window"]["segment"]) == ("for-you", 3, None)
    assert body["window"]["until"] - body["window"]["since"] == 86_400
    assert body["records"] == {"read": 3, "cap": 50_000, "truncated": False}
    found = body["metrics"]
    assert found["n_slots"] == 6
    assert found["ctr"] == pytest.approx(2 / 6)
    assert found["conversion"] == pytest.approx(1 / 3)
    assert found["coverage"] == pytest.approx(5 / 6)  # z was offered, never shown
    assert found["diversity"] == pytest.approx(2 / 3)  # {x, y}: 1, {x, x}: 0, {x, y}: 1
    # a was new to u1 and never shown before; c is in x, u1's favourite category by then
    assert (found["successes"], found["serendipity"]) == (2, pytest.approx(0.5))
    assert found["filter_bubble"] == pytest.approx((1 + 1 / math.sqrt(2)) / 2)
    assert (found["cold_ctr"], found["warm_ctr"], found["cold_start_ratio"]) == (
        pytest.approx(1 / 3),
        None,
        None,
    )
    exposure = found["exposure"]
    assert (exposure["items_shown"], exposure["items_offered"], exposure["creators"]) == (5, 6, 4)
    assert exposure["creator_gini"] == pytest.approx(5 / 12)  # slots per creator: 3, 2, 1, 0
    assert exposure["long_tail_share"] == pytest.approx(4 / 6)  # the head is a (2 of 6 slots)
    items = {i["item_id"]: i for i in exposure["top_items"]}
    a_first = probability(ranked[0], "a")
    assert (items["a"]["impressions"], items["a"]["clicks"], items["a"]["observed_ctr"]) == (
        2,
        1,
        0.5,
    )
    assert items["a"]["corrected"] == pytest.approx((1 / a_first) / 2)
    assert items["c"]["corrected"] == pytest.approx(5 / probability(ranked[1], "c"))  # max(1, 5)
    assert found["p95_latency_ms"] is None
    assert body["benchmarks"]["ctr"] == {"min": 0.05, "max": 0.20}
    assert body["benchmarks"]["p95_latency_ms"] == {"max": 200.0}


def test_window_and_segment_narrow_the_events(ranked: list[dict[str, Any]], tenant: NewKey) -> None:
    start = math.floor(time.time()) - 600
    status, body = get_metrics(tenant, query=f"since={start - 600}&until={start}")
    assert (status, body["n_events"], body["metrics"]["ctr"]) == (200, 0, None)
    assert body["window"] == {"since": start - 600, "until": start, "segment": None}
    status, body = get_metrics(tenant, query=f"since={start}&segment=cold")
    assert (status, body["n_events"]) == (200, 3)
    status, body = get_metrics(tenant, query="segment=warm")
    assert (status, body["n_events"], body["window"]["segment"]) == (200, 0, "warm")


def test_any_scope_may_read_metrics(ranked: list[dict[str, Any]], tenant: NewKey) -> None:
    status, body = get_metrics(create_key("acme", {"rank"}))
    assert (status, body["n_events"]) == (200, 3)


def test_unknown_or_another_tenants_policy_is_not_found(
    aws: dict[str, str], api: Api, other_tenant: NewKey
) -> None:
    status, _, _ = api.call(
        admin_handler, "PUT", "/v1/policies/private", {"name": "private"}, resource=POLICY
    )
    assert status == 200
    assert get_metrics(api.key, "private")[0] == 200
    status, error = get_metrics(other_tenant, "private")
    assert (status, error["error"]) == (404, "not_found")
    assert get_metrics(api.key, "nope")[0] == 404


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=yesterday", "since"),
        ("since=-5", "since"),
        ("until=nan", "until"),
        ("since=2000&until=1000", "since"),
        ("segment=vip", "segment"),
    ],
)
def test_bad_query_is_422_naming_the_parameter(
    aws: dict[str, str], tenant: NewKey, query: str, field: str
) -> None:
    status, error = get_metrics(tenant, query=query)
    assert (status, error["error"], error["field"]) == (422, "validation_error", field)
    assert error["detail"].startswith(f"{field}: ")


def test_rank_reports_its_latency_in_milliseconds(
    aws: dict[str, str], api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    rank(api, ["a", "b"])
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    (blob,) = [b for b in emitted if "RankLatency" in b]
    definitions = blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    assert {"Name": "RankLatency", "Unit": "Milliseconds"} in definitions
    assert len(blob["RankLatency"]) == 1  # one value per rank call
