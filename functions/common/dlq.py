"""The dead-letter queues: look at what is in them, and send it back to be learned.

``queue`` names which: ``reward`` (posts the router could not handle: malformed, or an outage that
outlasted five receives) or ``learn`` (a policy's work the learner could not do in five receives;
FIFO: sent back into its message group). A message that fails five receives is moved to its DLQ
by SQS. ``peek`` lists messages without consuming them: it receives with a short visibility
timeout and makes them visible again at once, so every look adds one to a message's receive
count. ``redrive`` moves messages back to the reward queue by receive, send, delete (what
``StartMessageMoveTask`` does on AWS; moto lacks it). A crash between send and delete leaves a
copy in both queues, which is harmless: the learner applies a reward once and learns an event
once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from functions.common.aws import sqs
from functions.common.errors import StorageError
from functions.common.observability import logger
from functions.common.settings import settings

BATCH = 10  # SQS receives, sends and deletes at most 10 messages per call
EXCERPT_CHARS = 120
PEEK_VISIBILITY_SECONDS = 30  # hidden while being listed, so one listing sees each message once
REDRIVE_VISIBILITY_SECONDS = 60  # time to send a batch on before another consumer sees it


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message of the dead-letter queue."""

    message_id: str
    receive_count: int  # includes the receives on the reward queue and every look at the DLQ
    sent_at: float  # when it was first sent to the reward queue (epoch seconds)
    body: str

    def excerpt(self, chars: int = EXCERPT_CHARS) -> str:
        """The body on one line, cut to ``chars`` characters.

        >>> DeadLetter("m", 5, 0.0, "a\\nb" * 3).excerpt(5)
        'a b…'
        """
        flat = " ".join(self.body.split())
        return flat if len(flat) <= chars else flat[: chars - 2] + "…"


@dataclass
class RedriveReport:
    """What ``redrive`` did."""

    moved: int = 0
    failed: int = 0  # could not be sent back: still in the DLQ, visible again later


QUEUES = ("reward", "learn")


def _queues(queue: str = "reward") -> tuple[str, str]:
    current = settings()
    if queue == "learn":
        urls = (current.learn_dlq_url, current.learn_queue_url, "LEARN_DLQ_URL and LEARN_QUEUE_URL")
    elif queue == "reward":
        urls = (
            current.reward_dlq_url,
            current.reward_queue_url,
            "REWARD_DLQ_URL and REWARD_QUEUE_URL",
        )
    else:
        raise ValueError(f"queue must be one of {', '.join(QUEUES)}, not {queue!r}")
    if not urls[0] or not urls[1]:
        raise StorageError(f"{urls[2]} must name the stack's queues")
    return urls[0], urls[1]


def _receive(url: str, count: int, visibility: int, wait_seconds: int) -> list[dict[str, Any]]:
    try:
        response = sqs().receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=min(BATCH, count),
            VisibilityTimeout=visibility,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"dead-letter queue unavailable: {exc}") from exc
    messages: list[dict[str, Any]] = response.get("Messages", [])
    return messages


def _dead_letter(message: dict[str, Any]) -> DeadLetter:
    attributes = message.get("Attributes", {})
    return DeadLetter(
        message_id=str(message["MessageId"]),
        receive_count=int(attributes.get("ApproximateReceiveCount", 0)),
        sent_at=int(attributes.get("SentTimestamp", 0)) / 1000,
        body=str(message.get("Body", "")),
    )


def _release(url: str, messages: Sequence[dict[str, Any]]) -> None:
    """Make listed messages visible again (best effort: they reappear after the timeout)."""
    for start in range(0, len(messages), BATCH):
        chunk = messages[start : start + BATCH]
        entries = [
            {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
            for n, m in enumerate(chunk)
        ]
        try:
            sqs().change_message_visibility_batch(QueueUrl=url, Entries=entries)
        except (BotoCoreError, ClientError) as exc:
            logger.warning("listed dead letters stay hidden a while", extra={"error": str(exc)})


def peek(limit: int = 50, *, wait_seconds: int = 1, queue: str = "reward") -> list[DeadLetter]:
    """Up to ``limit`` messages of the ``queue``'s DLQ, left in it.

    Example: ``[(d.message_id, d.receive_count) for d in peek()]`` -> ``[("0f9c...", 6)]``.
    """
    dlq, _ = _queues(queue)
    received: list[dict[str, Any]] = []
    seen: set[str] = set()
    try:
        for _round in range(-(-limit // BATCH)):
            batch = _receive(dlq, limit - len(received), PEEK_VISIBILITY_SECONDS, wait_seconds)
            fresh = [m for m in batch if m["MessageId"] not in seen]
            if not fresh:
                break
            seen.update(m["MessageId"] for m in fresh)
            received.extend(fresh)
    finally:
        _release(dlq, received)
    return [_dead_letter(m) for m in received]


def _send_back(queue: str, messages: Sequence[dict[str, Any]]) -> set[str]:
    """Send ``messages`` to ``queue``; return the ids of those that were sent."""
    entries = []
    for n, message in enumerate(messages):
        entry: dict[str, Any] = {"Id": str(n), "MessageBody": message["Body"]}
        if message.get("MessageAttributes"):
            entry["MessageAttributes"] = message["MessageAttributes"]
        group = message.get("Attributes", {}).get("MessageGroupId")
        if group:
            # Back into its FIFO group; a fresh deduplication id, or SQS would drop it as the
            # message it was within the five-minute window.
            entry["MessageGroupId"] = group
            entry["MessageDeduplicationId"] = f"redrive-{message['MessageId']}"
        entries.append(entry)
    try:
        response = sqs().send_message_batch(QueueUrl=queue, Entries=entries)
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"reward queue unavailable: {exc}") from exc
    for failure in response.get("Failed", []):
        logger.error("a dead letter could not be sent back", extra={"failure": failure})
    return {messages[int(ok["Id"])]["MessageId"] for ok in response.get("Successful", [])}


def _delete(url: str, messages: Sequence[dict[str, Any]]) -> None:
    entries = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)]
    try:
        response = sqs().delete_message_batch(QueueUrl=url, Entries=entries)
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"dead-letter queue unavailable: {exc}") from exc
    for failure in response.get("Failed", []):
        # The copy on the reward queue is harmless: rewards are applied once.
        logger.error("a redriven dead letter stays in the DLQ", extra={"failure": failure})


def redrive(limit: int = 1000, *, wait_seconds: int = 1, queue: str = "reward") -> RedriveReport:
    """Move up to ``limit`` messages from the ``queue``'s DLQ back to that queue.

    Example: ``redrive(limit=100)`` -> ``RedriveReport(moved=3, failed=0)``.
    """
    dlq, target = _queues(queue)
    report = RedriveReport()
    for _round in range(-(-limit // BATCH)):
        wanted = limit - report.moved - report.failed
        if wanted <= 0:
            break
        batch = _receive(dlq, wanted, REDRIVE_VISIBILITY_SECONDS, wait_seconds)
        if not batch:
            break
        sent = _send_back(target, batch)
        if sent:
            _delete(dlq, [m for m in batch if m["MessageId"] in sent])
        report.moved += len(sent)
        report.failed += len(batch) - len(sent)
    logger.info("dead letters redriven", extra={"moved": report.moved, "failed": report.failed})
    return report
