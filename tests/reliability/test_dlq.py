"""Poison reward messages: a partial batch failure each time, the DLQ after five receives, then
``serendip dlq list`` shows them and ``serendip dlq redrive`` sends them back (receive, send,
delete: moto lacks StartMessageMoveTask). In-process moto with the template's own queues.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from functions.common import dlq
from functions.common.errors import StorageError
from functions.rank.app import lambda_handler as rank_handler
from functions.rewards.app import lambda_handler as rewards_handler
from functions.route.app import lambda_handler as route_handler
from local.cli import main
from local.lambda_events import FakeLambdaContext, sqs_event
from tests.functional.conftest import Api, queue_depth

POISON = '{"tenant": "acme", "rewards": [{"event_id": "e-1"}]}'  # no item, type, timestamp


@pytest.fixture
def sqs(aws: dict[str, str]) -> Any:
    return boto3.client("sqs", region_name="us-east-1")


def deliver_until_empty(sqs: Any, url: str) -> list[list[str]]:
    """Lambda's event-source mapping by hand: receive (visibility 0, so a failed message is back
    at once), call the router, delete what succeeded. Returns the failed ids of each batch."""
    return deliver_until_empty_with(sqs, url, route_handler)


def poison_in_dlq(sqs: Any, aws: dict[str, str]) -> str:
    """A malformed message and a good one (an orphan reward) sent and delivered until drained."""
    queue = aws["REWARD_QUEUE_URL"]
    poison = sqs.send_message(QueueUrl=queue, MessageBody=POISON)["MessageId"]
    good = {
        "tenant": "acme",
        "rewards": [{"event_id": "unknown", "item_id": "i", "type": "click", "timestamp": 1.0}],
    }
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(good))
    failures = deliver_until_empty(sqs, queue)
    assert failures == [[poison]] * 5
    return str(poison)


def test_a_malformed_message_fails_alone_and_reaches_the_dlq_after_five_receives(
    aws: dict[str, str], sqs: Any
) -> None:
    poison = poison_in_dlq(sqs, aws)
    assert queue_depth(aws["REWARD_QUEUE_URL"]) == 0
    assert queue_depth(aws["REWARD_DLQ_URL"]) == 1
    # And listing shows it (same id, 5 receives + this look) and leaves it where it is
    (letter,) = dlq.peek(wait_seconds=0)
    assert (letter.message_id, letter.receive_count, letter.body) == (poison, 6, POISON)
    assert letter.excerpt(20) == POISON[:18] + "…"
    assert [d.receive_count for d in dlq.peek(wait_seconds=0)] == [7]
    assert queue_depth(aws["REWARD_DLQ_URL"]) == 1


def test_redrive_moves_dead_letters_back_in_bounded_batches(aws: dict[str, str], sqs: Any) -> None:
    # Given 12 dead letters (more than one SQS batch)
    bodies = [json.dumps({"n": n}) for n in range(12)]
    for body in bodies:
        sqs.send_message(QueueUrl=aws["REWARD_DLQ_URL"], MessageBody=body)
    # Then a listing pages through them, and a limit is honoured
    assert sorted(d.body for d in dlq.peek(wait_seconds=0)) == sorted(bodies)
    assert len(dlq.peek(limit=5, wait_seconds=0)) == 5
    # When 7 are redriven, then the rest
    first = dlq.redrive(limit=7, wait_seconds=0)
    assert (first.moved, first.failed) == (7, 0)
    assert (queue_depth(aws["REWARD_DLQ_URL"]), queue_depth(aws["REWARD_QUEUE_URL"])) == (5, 7)
    rest = dlq.redrive(wait_seconds=0)
    assert (rest.moved, rest.failed) == (5, 0)
    # Then every body is on the reward queue once and the DLQ is empty
    assert queue_depth(aws["REWARD_DLQ_URL"]) == 0
    moved: list[str] = []
    for _receive in range(5):
        messages = sqs.receive_message(
            QueueUrl=aws["REWARD_QUEUE_URL"], MaxNumberOfMessages=10, VisibilityTimeout=60
        ).get("Messages", [])
        moved.extend(m["Body"] for m in messages)
    assert sorted(moved) == sorted(bodies)


def test_cli_lists_and_redrives_the_poison_message(
    aws: dict[str, str],
    sqs: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # No local stack state: the CLI acts on the ambient configuration (this moto).
    monkeypatch.setenv("SERENDIP_STATE_DIR", str(tmp_path))
    poison = poison_in_dlq(sqs, aws)
    capsys.readouterr()
    # When listed
    assert main(["dlq", "list"]) == 0
    listed = capsys.readouterr()
    header, row = listed.out.splitlines()
    assert header.split()[:3] == ["message", "id", "receives"]
    assert row.split()[:2] == [poison, "6"]
    assert row.endswith(POISON)
    assert "1 messages in the reward DLQ of the ambient AWS configuration" in listed.err
    # When redriven
    assert main(["dlq", "redrive"]) == 0
    assert capsys.readouterr().out.startswith("moved 1 messages from the DLQ to the reward queue")
    # Then it is back on the reward queue (a fresh message, first receive) and the DLQ is empty
    assert queue_depth(aws["REWARD_DLQ_URL"]) == 0
    (back,) = sqs.receive_message(QueueUrl=aws["REWARD_QUEUE_URL"], AttributeNames=["All"])[
        "Messages"
    ]
    assert (back["Body"], back["Attributes"]["ApproximateReceiveCount"]) == (POISON, "1")
    assert main(["dlq", "list"]) == 0
    assert capsys.readouterr().out == ""


def test_cli_without_a_dlq_says_what_to_set(
    aws: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERENDIP_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("REWARD_DLQ_URL")
    with pytest.raises(SystemExit, match="serendip dlq: no REWARD_DLQ_URL"):
        main(["dlq", "list"])


def test_a_policys_work_that_keeps_failing_reaches_the_learn_dlq_and_redrives_into_its_group(
    aws: dict[str, str], api: Api, sqs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.common import decision_store, model_store
    from functions.learn.app import lambda_handler as learn_handler
    from tests.queues import learn_all, route_all

    # Given a rewarded event whose policy's saves fail (an outage outlasting five deliveries)
    body = {"context": {}, "candidates": [{"id": "a"}, {"id": "b"}]}
    _, event, _ = api.call(
        rank_handler,
        "POST",
        "/v1/policies/for-you/rank",
        body,
        resource="/v1/policies/{policy}/rank",
    )
    rewards = [
        {"event_id": event["event_id"], "item_id": s["id"], "type": "click"} for s in event["slate"]
    ]
    status, _, _ = api.call(
        rewards_handler, "POST", "/v1/rewards", json.dumps({"rewards": rewards}), sign_body=True
    )
    assert status == 202 and route_all(aws) == []
    save = model_store.save

    def down(*args: Any, **kwargs: Any) -> int:
        raise StorageError("model save failed: InternalServerError")

    monkeypatch.setattr(model_store, "save", down)
    url = aws["LEARN_QUEUE_URL"]
    assert len(deliver_until_empty_with(sqs, url, learn_handler)) == 5
    # Then the work sits in the learn DLQ, and the CLI's library lists it with its receives
    (letter,) = dlq.peek(wait_seconds=0, queue="learn")
    assert letter.receive_count == 6
    assert json.loads(letter.body)["policy"] == "for-you"
    # When storage is back and the learn DLQ is redriven
    monkeypatch.setattr(model_store, "save", save)
    assert dlq.redrive(wait_seconds=0, queue="learn").moved == 1
    # Then the work is back in its policy's group and learned
    assert learn_all(aws) == []
    assert decision_store.get("acme", event["event_id"]).status == "learned"
    assert queue_depth(aws["LEARN_DLQ_URL"]) == 0


def deliver_until_empty_with(sqs: Any, url: str, handler: Any) -> list[list[str]]:
    """``deliver_until_empty`` with another handler (visibility 0: each failure is back at once)."""
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    failures: list[list[str]] = []
    for _receive in range(10):
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, AttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            return failures
        result = handler(sqs_event(messages, arn), FakeLambdaContext())
        failed = [f["itemIdentifier"] for f in result["batchItemFailures"]]
        failures.append(failed)
        for message in messages:
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    raise AssertionError("the queue did not drain in 10 receives")
