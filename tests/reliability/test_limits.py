"""AWS's size limits, which moto does not enforce, held at the edge (DESIGN section 5).

DynamoDB refuses an item over 400 KB and a transaction over 100 items or 4 MB; SQS refuses a
message over 256 KiB (the UTF-8 body plus its attributes) and a batch call over 256 KiB in all.
``aws_limits`` makes moto refuse them too, as AWS would, and records each refusal: a test fails
if any request of it broke a limit, or if any stored item is over 400 KB at its end.

Input that can never fit is a 4xx naming the field, with nothing stored; large valid input is
stored and learned within the limits (a decision record too large to inline goes to S3 by
reference; rewards past an event's cap are counted, not stored; reward posts are measured as
sent and split when they must be).
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Iterator, Mapping
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from functions.common import decision_store, reward_service
from functions.common.item_size import (
    MAX_ITEM_BYTES,
    MAX_TRANSACTION_BYTES,
    MAX_TRANSACTION_ITEMS,
    item_size,
    value_size,
)
from functions.rank.app import lambda_handler as rank_handler
from functions.rewards.app import lambda_handler as rewards_handler
from tests.functional.conftest import Api, queue_depth
from tests.queues import deliver_all
from tests.reliability.test_hostile_input import assert_refused, rank_body, send, snapshot

MAX_MESSAGE_BYTES = 262_144
CJK = "".join(chr(0x4E00 + n) for n in range(256))  # 3 UTF-8 bytes each, 6 as a JSON escape
ASTRAL = "".join(chr(0x1F600 + n % 80) for n in range(256))  # 4 UTF-8 bytes each
RANK = "/v1/policies/{policy}/rank"
EVENT = "/v1/events/{event_id}"
ACTIVATE = "/v1/events/{event_id}/activate"


class AwsLimits:
    """What the limits hook saw: the refusals, and the sizes of the SQS messages sent."""

    def __init__(self) -> None:
        self.violations: list[str] = []
        self.messages: list[int] = []

    def refuse(self, what: str) -> None:
        self.violations.append(what)
        raise ClientError({"Error": {"Code": "ValidationException", "Message": what}}, "limits")

    def item(self, operation: str, item: Mapping[str, Any]) -> int:
        size = item_size(item)
        if size > MAX_ITEM_BYTES:
            self.refuse(f"{operation}: item of {size} bytes")
        return size

    def message(self, entry: Mapping[str, Any]) -> int:
        size = len(entry["MessageBody"].encode())
        for name, value in (entry.get("MessageAttributes") or {}).items():
            size += len(name.encode()) + len(value["DataType"].encode())
            size += len(value.get("StringValue", "").encode()) + len(value.get("BinaryValue", b""))
        self.messages.append(size)
        if size > MAX_MESSAGE_BYTES:
            self.refuse(f"SendMessage: message of {size} bytes")
        return size

    def check(self, service: str, operation: str, params: Mapping[str, Any]) -> None:
        if service == "sqs" and operation == "SendMessage":
            self.message(params)
        elif service == "sqs" and operation == "SendMessageBatch":
            total = sum(self.message(entry) for entry in params["Entries"])
            if total > MAX_MESSAGE_BYTES:
                self.refuse(f"SendMessageBatch: {total} bytes in one call")
        elif service == "dynamodb" and operation == "PutItem":
            self.item(operation, params["Item"])
        elif service == "dynamodb" and operation == "BatchWriteItem":
            for requests in params["RequestItems"].values():
                for request in requests:
                    if "PutRequest" in request:
                        self.item(operation, request["PutRequest"]["Item"])
        elif service == "dynamodb" and operation == "TransactWriteItems":
            self.transaction(params["TransactItems"])

    def transaction(self, entries: list[dict[str, Any]]) -> None:
        if len(entries) > MAX_TRANSACTION_ITEMS:
            self.refuse(f"TransactWriteItems: {len(entries)} items")
        total = 0
        for entry in entries:
            ((action, request),) = entry.items()
            if action == "Put":
                total += self.item("TransactWriteItems", request["Item"])
            else:
                values = request.get("ExpressionAttributeValues") or {}
                total += item_size(request["Key"]) + sum(value_size(v) for v in values.values())
        if total > MAX_TRANSACTION_BYTES:
            self.refuse(f"TransactWriteItems: {total} bytes")


@pytest.fixture
def aws_limits(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsLimits]:
    """moto refusing what AWS refuses; at the end, no refusal and every item within 400 KB."""
    limits = AwsLimits()
    original = BaseClient._make_api_call

    def checked(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        limits.check(client.meta.service_model.service_name, operation, params)
        return original(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", checked)
    yield limits
    monkeypatch.setattr(BaseClient, "_make_api_call", original)
    assert limits.violations == []
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    for name, table in aws.items():
        if name.endswith("_TABLE"):
            for page in dynamodb.get_paginator("scan").paginate(TableName=table):
                for item in page["Items"]:
                    assert item_size(item) <= MAX_ITEM_BYTES, (name, item_size(item))


def _rank(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    status, ranked, _ = api.call(
        rank_handler, "POST", "/v1/policies/for-you/rank", body, resource=RANK
    )
    assert status == 200, ranked
    return dict(ranked)


def _post(api: Api, rewards: list[dict[str, Any]]) -> None:
    status, accepted, _ = api.call(
        rewards_handler, "POST", "/v1/rewards", {"rewards": rewards}, sign_body=True
    )
    assert status == 202 and accepted == {"accepted": len(rewards)}, (status, accepted)


def _event(api: Api, event_id: str) -> dict[str, Any]:
    status, event, _ = api.call(rewards_handler, "GET", f"/v1/events/{event_id}", resource=EVENT)
    assert status == 200, event
    return dict(event)


def _no_dead_letters(env: dict[str, str]) -> None:
    assert queue_depth(env["REWARD_DLQ_URL"]) == queue_depth(env["LEARN_DLQ_URL"]) == 0


def _noise(rng: random.Random, length: int) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits, k=length))


def test_a_decision_record_too_large_to_inline_is_kept_in_s3_and_learned(
    aws: dict[str, str], api: Api, aws_limits: AwsLimits
) -> None:
    # Given a valid rank body of about 1 MB: 800 candidates with long, incompressible features
    rng = random.Random(11)
    candidates = [
        {"id": f"item-{n}", "features": {"f": {f"k{k}": _noise(rng, 380) for k in range(3)}}}
        for n in range(800)
    ]
    body = rank_body(candidates, slate_size=3, defer_activation=True)
    assert 900_000 < len(json.dumps(body)) < 1_048_576
    # When it is ranked
    ranked = _rank(api, body)
    # Then the decision is logged, its record by reference under decisions/
    assert ranked["logged"] is True
    event_id = ranked["event_id"]
    key = decision_store.event_key("acme", event_id)
    item = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=aws["DECISIONS_TABLE"], Key={"pk": {"S": key}}
    )["Item"]
    assert "record" not in item
    assert item["record_key"]["S"] == f"decisions/acme/for-you/{event_id}.json.z"
    s3 = boto3.client("s3", region_name="us-east-1")
    assert s3.head_object(Bucket=aws["MODEL_BUCKET"], Key=item["record_key"]["S"])
    # And it is activated and read back: the event's state, the export, the learner
    status, activated, _ = api.call(
        rewards_handler, "POST", f"/v1/events/{event_id}/activate", resource=ACTIVATE
    )
    assert status == 202 and activated["activated"] is True, activated
    assert _event(api, event_id)["status"] == "open"
    (exported,) = decision_store.export("acme", "for-you")
    assert [c.id for c in exported.candidates] == [c["id"] for c in candidates]
    first = ranked["slate"][0]["id"]
    _post(api, [{"event_id": event_id, "item_id": first, "type": "click", "final": True}])
    assert deliver_all(aws) == []
    event = _event(api, event_id)
    assert event["status"] == "learned" and event["rewards"] == 1
    _no_dead_letters(aws)


def test_rewards_past_an_events_cap_are_counted_not_stored_and_never_dead_lettered(
    aws: dict[str, str], api: Api, aws_limits: AwsLimits
) -> None:
    # Given two events, the second already learned (so rewards for it are late)
    open_id = _rank(api, rank_body([{"id": "a"}, {"id": "b"}], slate_size=2))["event_id"]
    learned = _rank(api, rank_body([{"id": "a"}, {"id": "b"}], slate_size=2))
    shown = learned["slate"][0]["id"]
    _post(api, [{"event_id": learned["event_id"], "item_id": shown, "final": True}])
    assert deliver_all(aws) == []
    assert _event(api, learned["event_id"])["status"] == "learned"
    # When 13 posts of 100 rewards with long ids come for each
    for event_id in (open_id, learned["event_id"]):
        for post in range(13):
            _post(
                api,
                [
                    {
                        "event_id": event_id,
                        "item_id": f"{post:02d}{n:02d}" + CJK[4:],
                        "value": float(n),
                    }
                    for n in range(100)
                ],
            )
        # Then every post is routed and learned (nothing fails, nothing is dead-lettered)
        assert deliver_all(aws) == []
        event = _event(api, event_id)
        # And the event stores what fits its item, and counts the rest as dropped
        stored = event["rewards"] - (1 if event_id == learned["event_id"] else 0)
        assert 0 < stored <= decision_store.MAX_STORED_REWARDS
        assert stored + event["dropped_rewards"] == 1300
    assert (
        _event(api, learned["event_id"])["late_rewards"]
        == 1300 - _event(api, learned["event_id"])["dropped_rewards"]
    )
    _no_dead_letters(aws)
    # And both items grew to their budget, within DynamoDB's limit (checked again at the end)
    decisions = boto3.client("dynamodb", region_name="us-east-1").scan(
        TableName=aws["DECISIONS_TABLE"]
    )["Items"]
    sizes = sorted(item_size(item) for item in decisions)
    assert 150_000 < sizes[-2] <= sizes[-1] <= MAX_ITEM_BYTES


def _catalog_item(item_id: str, strings: int) -> dict[str, Any]:
    rng = random.Random(item_id)
    return {"id": item_id, "features": {f"k{n:03d}": _noise(rng, 512) for n in range(strings)}}


def test_a_catalog_item_over_400_kb_is_413_naming_it_and_no_item_is_written(
    aws: dict[str, str], api: Api, aws_limits: AwsLimits
) -> None:
    # Given an upsert whose second item is about 470 KB as stored (within every other cap)
    body = {"items": [_catalog_item("small", 2), _catalog_item("huge", 900)]}
    assert len(json.dumps(body)) < 1_048_576
    before = snapshot(aws)
    # When it is sent, then it is refused naming the item, and neither item is written
    status, error = send(api, "items", body)
    assert status == 413
    assert_refused(status, error, "items[1]")
    assert snapshot(aws) == before
    # And an item just under the limit is stored (the hook checks DynamoDB would take it)
    status, upserted = send(api, "items", {"items": [_catalog_item("large", 760)]})
    assert status == 200 and upserted == {"upserted": 1}, upserted


def test_a_policy_spec_over_400_kb_is_413_naming_spec_and_changes_nothing(
    aws: dict[str, str], api: Api, aws_limits: AwsLimits
) -> None:
    # Given a valid spec of about 720 KB (an allowlisted, repeatable flag that costs nothing)
    letters = string.ascii_letters
    args = ["--cb_type", "dm"]
    args += [token for n in range(42_000) for token in ("--ignore", letters[n % 52])]
    spec = {"name": "for-you", "vw": {"args": args}}
    assert 700_000 < len(json.dumps(spec)) < 1_048_576
    before = snapshot(aws)
    # When it is put, then it is refused naming the spec, and nothing changed
    status, error = send(api, "policy", spec)
    assert status == 413
    assert_refused(status, error, "spec")
    assert "'vw'" in error["detail"]
    assert snapshot(aws) == before
    # And the policy still ranks under its old spec
    _rank(api, rank_body([{"id": "a"}, {"id": "b"}], slate_size=1))


def _largest_rewards(event_id: str, ids: str, count: int = 100) -> list[dict[str, Any]]:
    """Rewards with every string field at its maximum and the widest numbers."""
    return [
        {
            "event_id": event_id,
            "item_id": f"{n:03d}" + ids[3:],
            "type": "t" * 64,
            "value": -123456789.12345679,
            "final": False,
            "timestamp": 253_402_300_798.12345 - n,
        }
        for n in range(count)
    ]


@pytest.mark.parametrize("ids", [CJK, ASTRAL], ids=["cjk", "astral"])
def test_the_largest_valid_reward_post_is_queued_within_256_kib_and_learned(
    aws: dict[str, str], api: Api, aws_limits: AwsLimits, ids: str
) -> None:
    # Given the largest valid posts: 100 rewards, every id 256 wide characters (orphans), and
    # 100 for a real event with every item id 256 wide characters
    event_id = _rank(api, rank_body([{"id": "a"}, {"id": "b"}], slate_size=2))["event_id"]
    orphans = _largest_rewards(ids, ids)
    for n, reward in enumerate(orphans):
        reward["event_id"] = f"{n:03d}" + ids[3:]
    # When they are posted, routed and learned
    _post(api, orphans)
    _post(api, _largest_rewards(event_id, ids))
    assert deliver_all(aws) == []
    # Then every message sent was within 256 KiB (the hook refuses any other), and the event
    # stored every reward
    assert 150_000 < max(aws_limits.messages) <= MAX_MESSAGE_BYTES
    assert _event(api, event_id)["rewards"] == 100
    _no_dead_letters(aws)


def test_a_post_that_needs_several_messages_is_split_and_every_reward_is_kept(
    aws: dict[str, str], api: Api, aws_limits: AwsLimits, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a message limit the largest post cannot fit in one message
    monkeypatch.setattr(reward_service, "MAX_MESSAGE_BYTES", 40_000)
    event_id = _rank(api, rank_body([{"id": "a"}, {"id": "b"}], slate_size=2))["event_id"]
    sent = len(aws_limits.messages)
    # When the post is accepted
    _post(api, _largest_rewards(event_id, CJK))
    # Then it went as several messages within the limit, and every reward was learned once
    split = aws_limits.messages[sent:]
    assert len(split) > 1 and max(split) <= 40_000
    assert deliver_all(aws) == []
    assert _event(api, event_id)["rewards"] == 100
