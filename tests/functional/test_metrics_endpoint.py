"""GET /v1/policies/{policy}/metrics on moto: rank, reward, then read the numbers back."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest

from functions.admin.app import lambda_handler as admin_handler
from functions.common import metrics_service
from functions.common.auth import NewKey, create_key
from functions.common.learn_service import Learner
from functions.rank import app as rank_app
from functions.rank.app import lambda_handler as rank_handler
from local.aws_calls import record_aws_calls
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
    context: Any = FakeLambdaContext()  # the handler reads only what it fakes
    response = admin_handler(event, context)
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
    return dict(payload)


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
    assert body["records"] == {
        "read": 3,
        "cap": 2_000,
        "complete": True,
        "truncated": False,
        "through": None,
        "next_token": None,
    }
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


def _pages(key: NewKey, query: str) -> list[tuple[dict[str, Any], int]]:
    """Every page of a metrics query, following ``next_token``, with the items each read."""
    pages: list[tuple[dict[str, Any], int]] = []
    token = ""
    while len(pages) < 50:
        with record_aws_calls() as calls:
            status, body = get_metrics(key, query=query + token)
        assert status == 200, body
        used = calls.by_resource()
        read = sum(use.get("Query", {}).get("items", 0) for use in used.values())
        pages.append((body, read))
        if body["records"]["complete"]:
            return pages
        token = f"&next_token={body['records']['next_token']}"
    raise AssertionError("the pages never completed")


def test_a_page_reads_at_most_the_cap_and_the_pages_cover_the_window_exactly(
    aws: dict[str, str], api: Api, tenant: NewKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given nine events, five of them sharing one timestamp, and a cap of 4 records a page
    rank_service = rank_app.service()
    for _ in range(2):
        rank(api, ["a", "b", "c"])
    shared = time.time() + 0.001
    monkeypatch.setattr(rank_service, "clock", lambda: shared)
    for _ in range(5):
        rank(api, ["a", "b", "c"])
    monkeypatch.setattr(rank_service, "clock", time.time)
    time.sleep(0.01)
    for _ in range(2):
        rank(api, ["a", "b", "c"])
    query = f"since={math.floor(time.time()) - 600}&until={math.ceil(time.time()) + 600}"
    monkeypatch.setattr(metrics_service, "MAX_RECORDS", 4)
    # When the metrics are read page by page
    pages = _pages(tenant, query)
    # Then each page read at most 4 decision items and said where the next starts
    assert [body["records"]["read"] for body, _ in pages] == [4, 4, 1]
    assert [read for _, read in pages] == [4, 4, 1]  # decision items DynamoDB returned
    assert [body["records"]["complete"] for body, _ in pages] == [False, False, True]
    assert pages[0][0]["records"]["through"] == shared  # it ended inside the tie
    assert "incomplete" in pages[0][0]["notes"][-1]
    # And the pages add up to the whole window, read in one page under a larger cap
    monkeypatch.setattr(metrics_service, "MAX_RECORDS", 100)
    ((whole, _),) = _pages(tenant, query)
    assert whole["n_events"] == 9 == sum(body["n_events"] for body, _ in pages)
    slots = sum(body["metrics"]["n_slots"] for body, _ in pages)
    assert slots == whole["metrics"]["n_slots"] == 9 * 2


def test_a_page_stops_at_its_time_budget_and_the_next_goes_on(
    aws: dict[str, str], api: Api, tenant: NewKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given three events and no time to read more than one record a page
    for _ in range(3):
        rank(api, ["a", "b"])
    monkeypatch.setattr(metrics_service, "READ_SECONDS", 0.0)
    # When the metrics are read page by page, then each page holds one event, and all are read
    pages = _pages(tenant, "")
    assert [body["records"]["read"] for body, _ in pages][:3] == [1, 1, 1]
    assert sum(body["n_events"] for body, _ in pages) == 3


@pytest.mark.parametrize(
    "token",
    ["x", "!!", "W10", "WyJvdGhlciNldnQiLCIxIl0", "WyJhY21lI2V2dCIsIjE7IGRyb3AiXQ", "A" * 3000],
)
def test_a_token_that_is_not_ours_is_422_naming_it(
    aws: dict[str, str], tenant: NewKey, token: str
) -> None:
    # [], ["other#evt", "1"] (another tenant's key), ["acme#evt", "1; drop"], too long
    status, error = get_metrics(tenant, query=f"next_token={token}")
    assert (status, error["error"], error["field"]) == (422, "validation_error", "next_token")
