"""Batch reads and writes under throttling: backoff, a cap, and an exact account of what was done.

DynamoDB may serve part of a ``BatchGetItem`` or ``BatchWriteItem`` and hand the rest back as
``UnprocessedKeys`` / ``UnprocessedItems``. moto never does, so these tests do it on the wire:
the throttles below send only part of each request to moto and return the rest as unprocessed,
as DynamoDB would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient

from functions.admin.app import lambda_handler as admin_handler
from functions.common import batches, counters
from functions.common.batches import PartialWriteError, put_all
from functions.common.errors import StorageError
from functions.common.tables import CatalogItem, bind
from tests.functional.conftest import Api


class Throttle:
    """Keeps back the last ``keep_back`` puts of each BatchWriteItem, ``times`` times."""

    def __init__(self) -> None:
        self.keep_back = 0
        self.times = 0
        self.requests: list[int] = []  # puts per BatchWriteItem request sent to moto

    def __call__(self, original: Any, client: BaseClient, operation: str, params: Any) -> Any:
        if operation != "BatchWriteItem":
            return original(client, operation, params)
        (table, requests), *_ = params["RequestItems"].items()
        held = requests[len(requests) - self.keep_back :] if self.times and self.keep_back else []
        sent = requests[: len(requests) - len(held)]
        self.requests.append(len(sent))
        if held:
            self.times -= 1
        response = original(client, operation, {**params, "RequestItems": {table: sent}})
        response["UnprocessedItems"] = {table: held} if held else {}
        return response


class ReadThrottle:
    """Keeps back the last ``keep_back`` keys of each BatchGetItem, ``times`` times."""

    def __init__(self) -> None:
        self.keep_back = 0
        self.times = 0
        self.requests: list[int] = []  # keys per BatchGetItem request sent to moto

    def __call__(self, original: Any, client: BaseClient, operation: str, params: Any) -> Any:
        if operation != "BatchGetItem":
            return original(client, operation, params)
        (table, request), *_ = params["RequestItems"].items()
        keys = request["Keys"]
        held = keys[len(keys) - self.keep_back :] if self.times and self.keep_back else []
        sent = keys[: len(keys) - len(held)]
        self.requests.append(len(sent))
        if held:
            self.times -= 1
        if sent:
            asked = {**params, "RequestItems": {table: {**request, "Keys": sent}}}
            response = original(client, operation, asked)
        else:
            response = {"Responses": {table: []}}
        response["UnprocessedKeys"] = {table: {**request, "Keys": held}} if held else {}
        return response


@pytest.fixture
def read_throttle(monkeypatch: pytest.MonkeyPatch, aws: dict[str, str]) -> Iterator[ReadThrottle]:
    throttled = ReadThrottle()
    original = BaseClient._make_api_call
    monkeypatch.setattr(
        BaseClient,
        "_make_api_call",
        lambda client, operation, params: throttled(original, client, operation, params),
    )
    yield throttled


@pytest.fixture
def throttle(monkeypatch: pytest.MonkeyPatch, aws: dict[str, str]) -> Iterator[Throttle]:
    throttled = Throttle()
    original = BaseClient._make_api_call
    monkeypatch.setattr(
        BaseClient,
        "_make_api_call",
        lambda client, operation, params: throttled(original, client, operation, params),
    )
    yield throttled


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backoffs taken (not slept)."""
    taken: list[float] = []
    monkeypatch.setattr(batches, "sleep", taken.append)
    return taken


def catalog_ids(aws: dict[str, str]) -> list[str]:
    table = boto3.resource("dynamodb", region_name="us-east-1").Table(aws["ITEMS_TABLE"])
    return sorted(item["sk"] for item in table.scan()["Items"])


def items(count: int) -> list[CatalogItem]:
    bind()
    return [
        CatalogItem("acme", f"item-{n:03d}", features="{}", created_at=1.0, updated_at=1.0)
        for n in range(count)
    ]


def test_throttled_puts_are_resent_with_growing_backoff_until_all_are_written(
    aws: dict[str, str], throttle: Throttle, waits: list[float]
) -> None:
    # Given DynamoDB that keeps back 5 puts of a request three times running
    throttle.keep_back, throttle.times = 5, 3
    # When 30 items are put
    written = put_all(items(30), what="catalog")
    # Then all 30 are in the table: 20 of the first 25 at once, the other 5 held back twice
    # more and written on the fourth request, then the last 5
    assert written == 30
    assert catalog_ids(aws) == [f"item-{n:03d}" for n in range(30)]
    assert throttle.requests == [20, 0, 0, 5, 5]
    # And each resend waited first, with a jittered bound that doubles (0.05 s, 0.1 s, 0.2 s)
    assert len(waits) == 3
    assert all(0 <= wait <= 0.05 * 2**n for n, wait in enumerate(waits))


def test_puts_still_throttled_after_the_cap_are_named_exactly(
    aws: dict[str, str], throttle: Throttle, waits: list[float]
) -> None:
    # Given DynamoDB that keeps back 3 puts of every request
    throttle.keep_back, throttle.times = 3, 10_000
    # When 60 items are put (three requests)
    with pytest.raises(PartialWriteError) as raised:
        put_all(items(60), what="catalog")
    # Then the error names the 22 written and the 38 not written (the first chunk's 3, and the
    # two chunks never sent), exactly as the table holds them
    error = raised.value
    stored = catalog_ids(aws)
    assert [key[1] for key in error.written] == stored == [f"item-{n:03d}" for n in range(22)]
    assert sorted(key[1] for key in error.unwritten) == [f"item-{n:03d}" for n in range(22, 60)]
    # And it gave up after the cap: 8 requests for the first chunk, 7 waits of at most 2 s
    assert throttle.requests == [22] + [0] * (batches.ATTEMPTS - 1)
    assert len(waits) == batches.ATTEMPTS - 1 and max(waits) <= batches.MAX_WAIT_SECONDS


def test_a_catalog_upsert_that_cannot_be_written_whole_answers_503_saying_how_much(
    aws: dict[str, str], api: Api, throttle: Throttle, waits: list[float]
) -> None:
    throttle.keep_back, throttle.times = 1, 10_000
    body = {"items": [{"id": f"item-{n}", "features": {"n": n}} for n in range(10)]}
    status, error, _ = api.call(admin_handler, "PUT", "/v1/items", json.dumps(body))
    assert status == 503, error
    assert "9 of 10 items written" in error["detail"]


def test_popularity_counts_survive_a_throttled_write_exactly(
    aws: dict[str, str], throttle: Throttle, waits: list[float]
) -> None:
    # Given a throttle that keeps back one cell twice
    throttle.keep_back, throttle.times = 1, 2
    # When the learner adds popularity for 40 items
    outcomes = {f"item-{n}": (2, 1.0) for n in range(40)}
    counters.add_popularity("acme", "for-you", outcomes)
    # Then every cell and the totals hold the exact sums, none doubled
    stats, totals = counters.popularity("acme", "for-you", list(outcomes))
    assert {item: (s.impressions, s.reward) for item, s in stats.items()} == {
        item: (2.0, 1.0) for item in outcomes
    }
    assert totals is not None and (totals.impressions, totals.reward) == (80.0, 40.0)


def test_throttled_reads_are_asked_again_with_backoff_and_every_item_comes_back_once(
    aws: dict[str, str], read_throttle: ReadThrottle, waits: list[float]
) -> None:
    # Given 30 catalog items, and DynamoDB that keeps back 4 keys of a read twice running
    put_all(items(30), what="catalog")
    read_throttle.keep_back, read_throttle.times = 4, 2
    # When they are read in one batch
    found = list(CatalogItem.batch_get([("acme", f"item-{n:03d}") for n in range(30)]))
    # Then each came back once, after two backoffs
    assert sorted(item.sk for item in found) == [f"item-{n:03d}" for n in range(30)]
    assert read_throttle.requests == [26, 0, 4]
    assert len(waits) == 2


def test_reads_still_throttled_at_the_cap_fail_as_an_outage_instead_of_looping(
    aws: dict[str, str], read_throttle: ReadThrottle, waits: list[float]
) -> None:
    read_throttle.keep_back, read_throttle.times = 1, 10_000
    with pytest.raises(StorageError, match="popularity counters unavailable"):
        counters.popularity("acme", "for-you", ["a", "b", "c"])
    assert len(read_throttle.requests) == batches.ATTEMPTS
    assert len(waits) == batches.ATTEMPTS - 1
