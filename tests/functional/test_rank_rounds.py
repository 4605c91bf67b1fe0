"""The rank path's AWS round trips: two rounds when warm, whatever is due; revocation's delay."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient

from functions.common.auth import NewKey, hash_key, principals, revoke_key
from functions.common.rounds import current_round
from functions.common.settings import reset_settings
from local.aws_calls import AwsCall, AwsCallLog, record_aws_calls
from local.lambda_events import LocalFunction, proxy_event

RANK_RESOURCE = "/v1/policies/{policy}/rank"
CANDIDATES = [{"id": f"item-{i}", "category": "sports" if i % 2 else "music"} for i in range(10)]


class Clock:
    """A clock the test moves by hand, from the monotonic clock's present."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rank_function(tenant: NewKey, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalFunction]:
    """The rank handler as the template's RankFunction, with caches that keep (60 s)."""
    for name in ("MODEL_CACHE_SECONDS", "API_KEY_CACHE_SECONDS", "API_KEY_REVALIDATE_SECONDS"):
        monkeypatch.setenv(name, "60")
    reset_settings()
    yield LocalFunction("RankFunction", "functions/rank/app.lambda_handler")
    reset_settings()


def rank(function: LocalFunction, key: NewKey, user: str = "u-1") -> dict[str, Any]:
    body = {"context": {"user": {"cohort": "a"}}, "user_id": user, "candidates": CANDIDATES}
    event = proxy_event(
        "POST",
        "/v1/policies/for-you/rank",
        resource=RANK_RESOURCE,
        body=json.dumps(body),
        headers={"content-type": "application/json", "x-api-key": key.api_key},
    )
    return function.invoke(event)


def by_round(calls: AwsCallLog, aws: dict[str, str]) -> Counter[tuple[int | None, str, str]]:
    """(round, operation, table) of every call, tables by their template name."""
    names = {value: key.removesuffix("_TABLE").lower() for key, value in aws.items()}

    def table(call: AwsCall) -> str:
        return ",".join(sorted({names.get(t.resource, t.resource) for t in call.touches}))

    return Counter((call.round, call.operation, table(call)) for call in calls.calls())


def ledger_of(clock: Clock) -> Any:
    """The rank service's budget ledger of for-you, on ``clock``."""
    import functions.rank.app as rank_app

    ledgers = rank_app.service()._ledgers
    ledger = ledgers[next(key for key in ledgers if key[1] == "for-you")]
    ledger.clock = clock
    return ledger


def test_a_warm_rank_reads_the_user_then_writes_the_decision_and_nothing_else(
    rank_function: LocalFunction, tenant: NewKey, aws: dict[str, str]
) -> None:
    # Given a container that ranked once (policy, key, budget totals and popularity kept)
    assert rank(rank_function, tenant)["statusCode"] == 200
    ledger_of(Clock())  # no flush or refresh comes due while the test runs
    # When it ranks again
    with record_aws_calls() as calls:
        assert rank(rank_function, tenant, user="u-2")["statusCode"] == 200
    # Then it made two calls, one per round: the profile read, the decision write
    assert by_round(calls, aws) == {
        (1, "GetItem", "users"): 1,
        (2, "PutItem", "decisions"): 1,
    }


def test_whatever_is_due_rides_along_in_the_same_two_rounds(
    rank_function: LocalFunction,
    tenant: NewKey,
    aws: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert rank(rank_function, tenant)["statusCode"] == 200
    clock = Clock()
    ledger = ledger_of(clock)
    # Given everything due at once: the policy and popularity (kept 0 s), the API key (trusted
    # 0 s before it is read again), and the budget totals (read 5 s ago or more)
    monkeypatch.setenv("MODEL_CACHE_SECONDS", "0")
    monkeypatch.setenv("API_KEY_REVALIDATE_SECONDS", "0")
    reset_settings()
    clock.now += ledger.refresh_seconds + 1
    # (each round-1 call waits until all four have started: made one after another, they
    # would never all start, and the barrier would break)
    barrier = threading.Barrier(4, timeout=120)
    original = BaseClient._make_api_call

    def side_by_side(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if current_round.get() == 1:
            barrier.wait()
        return original(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", side_by_side)
    with record_aws_calls() as calls:
        assert rank(rank_function, tenant, user="u-2")["statusCode"] == 200
    monkeypatch.setattr(BaseClient, "_make_api_call", original)
    rounds = by_round(calls, aws)
    # Then every call is in round 1 (reads, side by side) or round 2 (writes, the budget's read)
    assert rounds == {
        (1, "GetItem", "keys"): 1,
        (1, "GetItem", "users"): 1,
        (1, "GetItem", "policies"): 1,
        (1, "BatchGetItem", "counters"): 1,
        (2, "PutItem", "decisions"): 1,
        (2, "Query", "counters"): ledger.shards,
    }
    assert not barrier.broken
    # When the next rank finds the spend due to be flushed (a second later)
    clock.now += ledger.flush_seconds
    with record_aws_calls() as calls:
        assert rank(rank_function, tenant, user="u-3")["statusCode"] == 200
    flushed = {k: v for k, v in by_round(calls, aws).items() if k[0] == 2}
    # Then the adds go with the decision write, in round 2
    assert flushed[(2, "PutItem", "decisions")] == 1
    assert flushed[(2, "UpdateItem", "counters")] >= 1
    assert all(round_ in (1, 2) for round_, _, _ in by_round(calls, aws))


def test_deferred_budget_writes_and_reads_count_every_slot_once(
    rank_function: LocalFunction, tenant: NewKey, aws: dict[str, str]
) -> None:
    served = 0
    for user in range(3):
        served += len(json.loads(rank(rank_function, tenant, f"u-{user}")["body"])["slate"])
    clock = Clock()
    ledger = ledger_of(clock)
    # When ranks alternate between flushing and refreshing the totals
    for user in range(3, 12):
        clock.now += 3.0
        answer = rank(rank_function, tenant, f"u-{user}")
        served += len(json.loads(answer["body"])["slate"])
    ledger.flush()
    # Then the table holds every served slot once, and the ledger's own view agrees with it
    table = boto3.resource("dynamodb", region_name="us-east-1").Table(aws["COUNTERS_TABLE"])
    cells = [i for i in table.scan()["Items"] if "#budget#" in i["pk"]]
    assert sum(int(c["served"]) for c in cells) == served
    (segment,) = {c["pk"].split("#")[3] for c in cells}
    import functions.rank.app as rank_app

    budget = next(iter(rank_app.service()._budgets.values()))
    # (its last read totals, plus what it spent that the read could not have seen)
    assert ledger.total(segment, budget.window_buckets()).served == served


def test_a_revoked_key_is_refused_by_rank_within_the_revalidation_delay(
    rank_function: LocalFunction,
    tenant: NewKey,
    aws: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("API_KEY_CACHE_SECONDS", "3")
    monkeypatch.setenv("API_KEY_REVALIDATE_SECONDS", "1")
    reset_settings()
    clock = Clock()
    monkeypatch.setattr(principals, "clock", clock)
    principals.clear()
    assert rank(rank_function, tenant)["statusCode"] == 200  # the key is read and kept
    revoke_key(hash_key(tenant.api_key))
    decisions = boto3.resource("dynamodb", region_name="us-east-1").Table(aws["DECISIONS_TABLE"])
    before = decisions.scan(Select="COUNT")["Count"]
    # Within the revalidation delay the kept key still ranks (the documented staleness)
    clock.now += 0.5
    assert rank(rank_function, tenant)["statusCode"] == 200
    # Past it, the key is read again in the first round and the rank refused: nothing logged
    clock.now += 0.5
    with record_aws_calls() as calls:
        refused = rank(rank_function, tenant)
    assert refused["statusCode"] == 401
    assert "revoked" in refused["body"]
    assert (1, "GetItem", "keys") in by_round(calls, aws)
    assert decisions.scan(Select="COUNT")["Count"] == before + 1
    # And from then on every request is refused (a revoked key is never kept)
    clock.now += 5.0
    assert rank(rank_function, tenant)["statusCode"] == 401


def test_a_key_that_lost_the_rank_scope_is_refused_once_read_again(
    rank_function: LocalFunction, tenant: NewKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.common.auth import create_key

    monkeypatch.setenv("API_KEY_REVALIDATE_SECONDS", "0")
    reset_settings()
    assert rank(rank_function, tenant)["statusCode"] == 200
    # When the key's row is replaced by one without the rank scope (a re-created key)
    create_key("acme", {"reward"}, api_key=tenant.api_key)
    answer = rank(rank_function, tenant)
    assert answer["statusCode"] == 403
