"""The learn queue: a FIFO queue whose message groups are (tenant, policy).

Everything a policy's learner must do arrives here: rewards (forwarded by the router), events
whose reward wait is over (forwarded by the sweep) and the chunks of retraining its model after a
spec change (``retrain_body``). SQS hands a group's messages out in order and one batch at a
time, so each policy learns without racing itself (nor its retrain), and different policies
learn in parallel. A message holds at most ``MAX_BODY_BYTES`` as sent (JSON escapes non-ASCII,
so the size is measured on the encoded body, never guessed from the input) and at most
``MAX_CLOSE_IDS`` event ids to close.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from functions.common.aws import sqs
from functions.common.errors import StorageError
from functions.common.settings import settings

MAX_BODY_BYTES = 200_000  # SQS takes 256 KiB per message and per batch call
MAX_BATCH_BYTES = 250_000
MAX_CLOSE_IDS = 100


def group_id(tenant: str, policy: str) -> str:
    """The message group of a policy's work (a digest: group ids allow 128 characters)."""
    return hashlib.sha256(f"{tenant}\x00{policy}".encode()).hexdigest()


def _body(tenant: str, policy: str, rewards: Sequence[Any], close: Sequence[str]) -> str:
    return json.dumps({"tenant": tenant, "policy": policy, "rewards": rewards, "close": close})


def retrain_body(tenant: str, policy: str, job: str, chunk: int) -> str:
    """The message of one retrain chunk (the same body for the same chunk: SQS drops a resent
    one within its deduplication window)."""
    return json.dumps({"tenant": tenant, "policy": policy, "retrain": {"job": job, "chunk": chunk}})


def bodies(
    tenant: str,
    policy: str,
    rewards: Sequence[dict[str, Any]] = (),
    close: Sequence[str] = (),
) -> Iterator[str]:
    """The messages that carry ``rewards`` and ``close`` for one policy, each within the caps."""
    empty = len(_body(tenant, policy, [], []))
    batch: list[dict[str, Any]] = []
    size = empty
    for reward in rewards:
        reward_size = len(json.dumps(reward)) + 2
        if empty + reward_size > MAX_BODY_BYTES:
            raise ValueError(f"one reward of event {reward.get('event_id')!r} is too large")
        if batch and size + reward_size > MAX_BODY_BYTES:
            yield _body(tenant, policy, batch, [])
            batch, size = [], empty
        batch.append(reward)
        size += reward_size
    if batch:
        yield _body(tenant, policy, batch, [])
    for start in range(0, len(close), MAX_CLOSE_IDS):
        yield _body(tenant, policy, [], list(close[start : start + MAX_CLOSE_IDS]))


def send(tenant: str, policy: str, messages: Sequence[str]) -> None:
    """Send one policy's messages in order; raise ``StorageError`` unless all were accepted.

    Deduplication ids are digests of the bodies: an identical message sent again within SQS's
    five-minute window (a retried forward) is dropped by the queue, and the learner applies
    each reward once anyway.
    """
    group = group_id(tenant, policy)
    for entries in _batches(messages):
        try:
            response = sqs().send_message_batch(
                QueueUrl=settings().learn_queue_url,
                Entries=[
                    {
                        "Id": str(n),
                        "MessageBody": body,
                        "MessageGroupId": group,
                        "MessageDeduplicationId": hashlib.sha256(body.encode()).hexdigest(),
                    }
                    for n, body in enumerate(entries)
                ],
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"learn queue unavailable: {exc}") from exc
        if response.get("Failed"):
            first = response["Failed"][0]
            raise StorageError(
                f"learn queue refused {len(response['Failed'])} messages: {first.get('Message')}"
            )


def _batches(messages: Sequence[str]) -> Iterator[list[str]]:
    """At most 10 messages and ``MAX_BATCH_BYTES`` per ``SendMessageBatch`` call, in order."""
    batch: list[str] = []
    size = 0
    for body in messages:
        length = len(body.encode())
        if batch and (len(batch) == 10 or size + length > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(body)
        size += length
    if batch:
        yield batch
