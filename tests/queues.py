"""The stack's queues delivered to their handlers in Lambda's SQS event shape (moto in process).

The learning loop has two hops: the reward queue feeds the router, which forwards each policy's
rewards to the FIFO learn queue, which feeds the learner. ``deliver_all`` drives both until
nothing is left, as the event-source mappings would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3

from local.lambda_events import FakeLambdaContext, sqs_event

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def _sqs() -> Any:
    return boto3.client("sqs", region_name="us-east-1")


def queue_arn(url: str) -> str:
    """The ARN of the queue at ``url``."""
    attributes = _sqs().get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def receive_all(url: str, visibility: int = 30) -> dict[str, Any]:
    """Every message visible now, as one Lambda SQS event (not deleted)."""
    messages: list[dict[str, Any]] = []
    while (
        batch := _sqs()
        .receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=visibility,
            AttributeNames=["All"],
        )
        .get("Messages", [])
    ):
        messages += batch
        if visibility == 0:
            break
    return sqs_event(messages, queue_arn(url))


def deliver(url: str, handler: Handler) -> list[str]:
    """Hand every visible message to ``handler`` in batches of 10; delete what succeeded.

    Returns the ids the handler reported as failed (they stay on the queue).
    """
    sqs, arn, failures = _sqs(), queue_arn(url), []
    while messages := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30, AttributeNames=["All"]
    ).get("Messages", []):
        result = handler(sqs_event(messages, arn), FakeLambdaContext())
        failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
        failures += sorted(failed)
        for message in messages:
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        if failed:
            break
    return failures


def route_all(env: dict[str, str]) -> list[str]:
    """The reward queue through the router."""
    from functions.route.app import lambda_handler as route_handler

    return deliver(env["REWARD_QUEUE_URL"], route_handler)


def learn_all(env: dict[str, str]) -> list[str]:
    """The learn queue through the learner."""
    from functions.learn.app import lambda_handler as learn_handler

    return deliver(env["LEARN_QUEUE_URL"], learn_handler)


def deliver_all(env: dict[str, str]) -> list[str]:
    """Route and learn everything queued; the failures (empty when all went through)."""
    return route_all(env) + learn_all(env)
