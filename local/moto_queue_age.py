"""The age of a queue's oldest message, as a queue attribute of the local stack's moto server.

SQS gives the age of a queue's oldest message only as the CloudWatch metric
``ApproximateAgeOfOldestMessage``; ``GetQueueAttributes`` has no such attribute, and reading a
message's ``SentTimestamp`` through the API means receiving it, which counts against the
queue's redrive policy (five receives and it goes to the DLQ). The local stack's dashboard wants
the age without touching any message, so its moto server also answers ``GetQueueAttributes``
for ``ApproximateAgeOfOldestMessage``: whole seconds since the oldest message still in the
queue (visible, in flight or delayed) was first sent, 0 when the queue is empty. A message
moved to a DLQ keeps its first send time, as on SQS. Only a request naming it gets it (``All``
does not); SQS on AWS rejects the name, so only the local dashboard asks for it.
"""

from __future__ import annotations

import time
from typing import Any

AGE_ATTRIBUTE = "ApproximateAgeOfOldestMessage"


def oldest_age_seconds(sent_millis: list[int | None], now: float) -> int:
    """Seconds since the earliest of ``sent_millis`` (epoch ms), 0 without any.

    >>> oldest_age_seconds([5_000, 2_000, None], now=10.0), oldest_age_seconds([], now=10.0)
    (8, 0)
    """
    sent = [millis for millis in sent_millis if millis is not None]
    if not sent:
        return 0
    return max(0, int(now - min(sent) / 1000))


def install() -> None:
    """This process's moto answers ``ApproximateAgeOfOldestMessage`` on ``GetQueueAttributes``."""
    from moto.sqs.models import SQSBackend

    original = SQSBackend.get_queue_attributes

    def get_queue_attributes(
        self: SQSBackend, queue_name: str, attribute_names: list[str]
    ) -> dict[str, Any]:
        if AGE_ATTRIBUTE not in attribute_names:
            return original(self, queue_name, attribute_names)
        others = [name for name in attribute_names if name != AGE_ATTRIBUTE]
        attributes = dict(original(self, queue_name, others)) if others else {}
        queue = self.get_queue(queue_name)
        # ``queue.messages`` holds only the visible ones; ``_messages`` holds every message.
        messages = list(queue._messages)
        attributes[AGE_ATTRIBUTE] = oldest_age_seconds(
            [message.sent_timestamp for message in messages], time.time()
        )
        return attributes

    SQSBackend.get_queue_attributes = get_queue_attributes  # type: ignore[method-assign]
