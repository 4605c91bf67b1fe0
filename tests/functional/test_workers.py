"""The local event sources on in-process moto: the SQS poller (partial batch failures, redrive to
the DLQ) and the scheduler. The template's own reward queue and DLQ are used (maxReceiveCount 5);
the handlers are fakes, so these tests are about delivery, not learning.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from local.workers import Scheduler, SqsPoller

Event = dict[str, Any]


class Recorder:
    """A fake SQS handler: records every record it gets, fails the ones ``fail`` says."""

    def __init__(self, fail: Callable[[Event], bool] = lambda record: False) -> None:
        self.fail = fail
        self.records: list[Event] = []
        self.called = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> Event:
        failures = []
        with self._lock:
            for record in event["Records"]:
                self.records.append(record)
                if self.fail(record):
                    failures.append({"itemIdentifier": record["messageId"]})
        self.called.set()
        return {"batchItemFailures": failures}

    def bodies(self) -> list[str]:
        with self._lock:
            return [record["body"] for record in self.records]


@pytest.fixture
def sqs(aws: dict[str, str]) -> Any:
    return boto3.client("sqs", region_name="us-east-1")


@pytest.fixture
def queue(aws: dict[str, str]) -> str:
    return aws["REWARD_QUEUE_URL"]


@pytest.fixture
def pollers() -> Iterator[list[SqsPoller]]:
    """Pollers a test started; stopped at the end whatever happens."""
    started: list[SqsPoller] = []
    yield started
    for poller in started:
        poller.stop(timeout=5)


def send(sqs: Any, queue: str, *bodies: str) -> list[str]:
    return [sqs.send_message(QueueUrl=queue, MessageBody=body)["MessageId"] for body in bodies]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def depth(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def dlq_bodies(sqs: Any, dlq: str) -> list[str]:
    messages = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])
    return [m["Body"] for m in messages]


def test_poller_delivers_a_message_in_lambda_shape_and_deletes_it(
    sqs: Any, queue: str, pollers: list[SqsPoller]
) -> None:
    handler = Recorder()
    poller = SqsPoller(queue, handler, client=sqs, visibility_timeout=1)
    pollers.append(poller)
    (message_id,) = send(sqs, queue, json.dumps({"hello": 1}))
    poller.start()
    assert handler.called.wait(5)
    wait_until(lambda: poller.queue_depth() == (0, 0) and poller.idle())
    (record,) = handler.records
    assert record["messageId"] == message_id
    assert json.loads(record["body"]) == {"hello": 1}
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == poller.queue_arn
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert (poller.stats.batches, poller.stats.deleted, poller.stats.failures) == (1, 1, 0)


def test_a_reported_batch_item_failure_stays_and_comes_back_alone(sqs: Any, queue: str) -> None:
    # Given three messages and a handler that fails "b" the first time only
    seen: set[str] = set()

    def fail_b_once(record: Event) -> bool:
        first = record["body"] == "b" and "b" not in seen
        seen.add(record["body"])
        return first

    handler = Recorder(fail_b_once)
    poller = SqsPoller(queue, handler, client=sqs, visibility_timeout=1)
    send(sqs, queue, "a", "b", "c")
    # When one batch is handled
    assert poller.poll_once() == 3
    # Then exactly "b" is left (waiting out its visibility timeout), "a" and "c" are deleted
    assert poller.queue_depth() == (0, 1)
    assert (poller.stats.deleted, poller.stats.failures) == (2, 1)
    # And "b" alone comes back after the visibility timeout, on its second receive
    time.sleep(1.1)
    assert poller.poll_once() == 1
    assert handler.bodies() == ["a", "b", "c", "b"]
    assert handler.records[-1]["attributes"]["ApproximateReceiveCount"] == "2"
    assert poller.queue_depth() == (0, 0)


def test_a_handler_that_raises_keeps_the_whole_batch(
    sqs: Any, queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def explode_once(event: Event) -> Event:
        calls.append(len(event["Records"]))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return {"batchItemFailures": []}

    poller = SqsPoller(queue, explode_once, client=sqs, visibility_timeout=0)
    ids = send(sqs, queue, "x", "y")
    with caplog.at_level(logging.ERROR, logger="serendip.workers"):
        assert poller.poll_once() == 2
    assert poller.stats.deleted == 0 and poller.stats.errors == 1
    assert "RuntimeError: boom" in caplog.text and all(i in caplog.text for i in ids)
    assert poller.poll_once() == 2  # both again, then deleted
    assert poller.queue_depth() == (0, 0)


def test_malformed_batch_item_failures_keep_the_batch(sqs: Any, queue: str) -> None:
    poller = SqsPoller(
        queue, lambda event: {"batchItemFailures": [{"itemIdentifier": "nope"}]}, client=sqs
    )
    send(sqs, queue, "m")
    assert poller.poll_once() == 1
    assert poller.stats.deleted == 0
    assert poller.queue_depth() == (0, 1)


def test_a_poison_message_reaches_the_dlq_after_five_receives(
    aws: dict[str, str], sqs: Any, queue: str, pollers: list[SqsPoller]
) -> None:
    handler = Recorder(fail=lambda record: record["body"] == "poison")
    # Visibility timeout 0: a failed message is visible again at once, so 5 receives take ms.
    poller = SqsPoller(queue, handler, client=sqs, visibility_timeout=0)
    pollers.append(poller)
    assert poller.max_receive_count == 5
    send(sqs, queue, "poison", "fine")
    poller.start()
    dlq = aws["REWARD_DLQ_URL"]
    wait_until(lambda: depth(sqs, dlq) == 1)
    wait_until(lambda: poller.queue_depth() == (0, 0) and poller.idle())
    assert handler.bodies().count("poison") == 5
    assert handler.bodies().count("fine") == 1
    counts = [
        r["attributes"]["ApproximateReceiveCount"] for r in handler.records if r["body"] == "poison"
    ]
    assert counts == ["1", "2", "3", "4", "5"]
    assert dlq_bodies(sqs, dlq) == ["poison"]


def test_poller_stops_promptly(sqs: Any, queue: str) -> None:
    poller = SqsPoller(queue, Recorder(), client=sqs, wait_seconds=1)
    poller.start()
    time.sleep(0.2)
    started = time.monotonic()
    poller.stop()
    # Within a long poll or so (1 s here), generous for a busy machine: not a timing target
    assert time.monotonic() - started < 10.0


def test_scheduler_calls_on_its_interval_and_survives_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events: list[Event] = []

    def sweep(event: Event) -> Event:
        events.append(event)
        if len(events) == 2:
            raise RuntimeError("sweep failed")
        return {"events_learned": 0}

    scheduler = Scheduler(0.1, sweep, name="sweep")
    with caplog.at_level(logging.ERROR, logger="serendip.workers"):
        scheduler.start()
        wait_until(lambda: len(events) >= 4, timeout=5)
        scheduler.stop()
    assert scheduler.errors == 1 and scheduler.runs >= 4
    assert "sweep: the scheduled call failed" in caplog.text
    assert events[0]["detail-type"] == "Scheduled Event"
    assert events[0]["source"] == "aws.events"
    count = len(events)
    time.sleep(0.25)
    assert len(events) == count  # nothing after stop()


def test_scheduler_waits_one_interval_and_stops_promptly() -> None:
    calls: list[Event] = []
    scheduler = Scheduler(60, calls.append)
    scheduler.start()
    time.sleep(0.1)
    started = time.monotonic()
    scheduler.stop()
    assert time.monotonic() - started < 10.0  # far from waiting out its 60 s interval
    assert calls == []
