"""The local stack's moto server forgets deleted messages' receipt handles beyond a bound, so a
queue's memory does not grow with every message it ever carried; a repeated delete still works."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.sqs.models import Queue, sqs_backends

from local import moto_sqs

REGION = "us-east-1"


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setattr(Queue, "delete_message", moto_sqs.delete_message)
    monkeypatch.setattr(moto_sqs, "REMEMBERED_HANDLES", 10)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield boto3.client("sqs", region_name=REGION)


def moto_queue(name: str) -> Queue:
    return sqs_backends["123456789012"][REGION].queues[name]


def consume(client: Any, url: str) -> list[str]:
    """Receive every message and delete it; the receipt handles used."""
    handles = []
    while messages := client.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for message in messages:
            client.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            handles.append(message["ReceiptHandle"])
    return handles


def test_a_queue_remembers_only_the_latest_deleted_receipt_handles(sqs: Any) -> None:
    # Given a queue that carried 50 messages, each received and deleted
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    for n in range(50):
        sqs.send_message(QueueUrl=url, MessageBody=str(n))

    handles = consume(sqs, url)

    # Then it holds no message and remembers only the last 10 receipt handles
    queue = moto_queue("q")
    assert len(handles) == 50
    assert queue._messages == []
    assert set(queue.deleted_messages) == set(handles[-10:])


def test_deleting_a_message_again_still_succeeds(sqs: Any) -> None:
    # Given a message that was received and deleted
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="once")
    (handle,) = consume(sqs, url)

    # When it is deleted again with the same receipt handle, then SQS's answer is success
    sqs.delete_message(QueueUrl=url, ReceiptHandle=handle)
    assert handle in moto_queue("q").deleted_messages


def test_the_bounded_handles_survive_a_snapshot() -> None:
    # Given remembered handles beyond their limit
    receipts = moto_sqs.RecentReceipts(limit=3)
    receipts.update([f"h{n}" for n in range(5)], [None])  # type: ignore[list-item]

    # When pickled and restored (as local.moto_snapshot does), then the same handles, bound kept
    restored = pickle.loads(pickle.dumps(receipts))
    assert restored == receipts == {"h2", "h3", "h4"}
    restored.add("h5")
    assert restored == {"h3", "h4", "h5"}


def test_a_restored_queue_with_moto_s_plain_set_is_bounded_on_its_next_delete(sqs: Any) -> None:
    # Given a queue whose handles are moto's own unbounded set (a snapshot from before)
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    moto_queue("q").deleted_messages = {f"old{n}" for n in range(20)}
    sqs.send_message(QueueUrl=url, MessageBody="new")

    # When a message is deleted, then the queue remembers at most 10 handles, the newest among them
    (handle,) = consume(sqs, url)
    deleted = moto_queue("q").deleted_messages
    assert isinstance(deleted, moto_sqs.RecentReceipts)
    assert len(deleted) == 10
    assert handle in deleted
