"""Per-tenant rate limits on the /v1 API, through the handlers on moto, with a hand-moved clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from functions.admin.app import lambda_handler as admin_handler
from functions.common import rate_limit
from functions.common.auth import NewKey
from functions.common.settings import reset_settings, settings
from functions.rank.app import lambda_handler as rank_handler
from functions.rewards.app import lambda_handler as rewards_handler
from tests.functional.conftest import Api, queue_depth
from tests.functional.test_rank_metrics import emf_blobs

RANK = "/v1/policies/{policy}/rank"
BODY = {
    "context": {},
    "user_id": "u1",
    "candidates": [{"id": i, "category": "x"} for i in "abc"],
    "slate_size": 2,
}


class Clock:
    """The limiter's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


Limits = Callable[..., Clock]


@pytest.fixture
def limits(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Limits]:
    """Set the rate settings (env as the template passes them); returns the limiter's clock."""

    def configure(rate: str = "0", overrides: str = "") -> Clock:
        monkeypatch.setenv("TENANT_RATE_LIMIT", rate)
        monkeypatch.setenv("TENANT_RATE_OVERRIDES", overrides)
        reset_settings()
        clock = Clock()
        monkeypatch.setattr(rate_limit.limiter(), "clock", clock)
        return clock

    yield configure
    reset_settings()


def rank(api: Api, key: NewKey | None = None) -> tuple[int, Any, dict[str, str]]:
    api_key = key.api_key if key else None
    path = "/v1/policies/for-you/rank"
    return api.call(rank_handler, "POST", path, BODY, resource=RANK, api_key=api_key)


def decisions() -> int:
    client = boto3.client("dynamodb", region_name="us-east-1")
    return int(client.scan(TableName=settings().decisions_table, Select="COUNT")["Count"])


def test_a_tenant_over_its_rate_gets_429_with_retry_after_and_nothing_is_stored(
    api: Api, limits: Limits, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given 2 requests per second with a burst of 3
    clock = limits("2/3")
    capsys.readouterr()
    # When the tenant ranks 4 times at one instant
    answers = [rank(api) for _ in range(4)]
    # Then the burst is served and the fourth is refused, naming when to come back
    assert [status for status, _, _ in answers] == [200, 200, 200, 429]
    _, error, headers = answers[3]
    assert error["error"] == "rate_limited"
    assert "2 requests per second" in error["detail"]
    assert headers["Content-Type"] == "application/json"
    assert headers["Retry-After"] == "1"  # half a second to the next token, in whole seconds
    # And the refused request stored no decision, and was counted
    assert decisions() == 3
    blobs = emf_blobs(capsys.readouterr().out)
    assert sum(sum(b["RequestsRateLimited"]) for b in blobs if "RequestsRateLimited" in b) == 1
    # When half a second passes, one token is back: one more rank is served, the next is not
    clock.now += 0.5
    assert [rank(api)[0] for _ in range(2)] == [200, 429]
    assert decisions() == 4


def test_retry_after_is_the_whole_seconds_until_a_token(api: Api, limits: Limits) -> None:
    # Given one request every 10 seconds
    clock = limits("0.1/1")
    assert rank(api)[0] == 200
    # When the next comes 2.5 s later, it must wait 7.5 s more: Retry-After 8
    clock.now += 2.5
    status, _, headers = rank(api)
    assert (status, headers["Retry-After"]) == (429, "8")
    # And after those 8 s it is served
    clock.now += 8
    assert rank(api)[0] == 200


def test_each_tenant_has_its_own_bucket(api: Api, other_tenant: NewKey, limits: Limits) -> None:
    # Given one request per second, burst 1, and acme has spent its token
    limits("1")
    assert rank(api)[0] == 200
    assert rank(api)[0] == 429
    # Then globex still ranks
    assert rank(api, other_tenant)[0] == 200
    assert rank(api, other_tenant)[0] == 429


def test_overrides_give_a_tenant_its_own_rate_or_none(
    api: Api, other_tenant: NewKey, limits: Limits
) -> None:
    # Given a default of 1 per second, acme exempt and globex at a burst of 3
    limits("1", "acme=0, globex=1/3")
    # Then acme is never refused, globex after 3
    assert [rank(api)[0] for _ in range(6)] == [200] * 6
    assert [rank(api, other_tenant)[0] for _ in range(4)] == [200, 200, 200, 429]


def test_no_rate_is_no_limit(api: Api, limits: Limits) -> None:
    limits("0")
    assert {rank(api)[0] for _ in range(12)} == {200}


def test_requests_without_a_valid_key_take_no_token(api: Api, limits: Limits) -> None:
    # Given one request per second, burst 1
    limits("1")
    # When unknown keys call (401), the tenant's token is untouched
    for _ in range(3):
        status, error, _ = api.call(
            rank_handler,
            "POST",
            "/v1/policies/for-you/rank",
            BODY,
            resource=RANK,
            api_key="sk_unknown",
        )
        assert (status, error["error"]) == (401, "unauthorized")
    assert rank(api)[0] == 200
    # And the public health route is never limited
    for _ in range(3):
        status, _, _ = api.call(admin_handler, "GET", "/v1/health")
        assert status == 200


def test_a_limited_reward_post_queues_nothing(
    aws: dict[str, str], api: Api, limits: Limits
) -> None:
    # Given one request per second, burst 1, spent by a rank
    limits("1")
    status, served, _ = rank(api)
    assert status == 200
    reward = {"event_id": served["event_id"], "item_id": served["slate"][0]["id"], "type": "click"}
    # When a signed reward is posted in the same instant
    status, error, headers = api.call(
        rewards_handler, "POST", "/v1/rewards", {"rewards": [reward]}, sign_body=True
    )
    # Then it is refused before anything is queued
    assert (status, error["error"], headers["Retry-After"]) == (429, "rate_limited", "1")
    assert queue_depth(aws["REWARD_QUEUE_URL"]) == 0


def test_the_limiter_follows_the_settings(limits: Limits) -> None:
    limits("5/10", "acme=1")
    limiter = rate_limit.limiter()
    assert limiter.rate_of("globex") == (5.0, 10.0)
    assert limiter.rate_of("acme") == (1.0, 1.0)
    # New settings, new limiter
    limits("0")
    assert rate_limit.limiter() is not limiter
    assert rate_limit.limiter().rate_of("globex").per_second == 0.0
