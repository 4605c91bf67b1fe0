"""The health of the local stack's queues: depth and oldest message of each, for the dashboard.

``read_queues`` asks moto (``GetQueueAttributes``, no message is received or moved) for each
queue's visible and in-flight messages and the age of its oldest message (an attribute only the
local stack's moto answers, ``local.moto_queue_age``). ``judge`` colours a queue: a DLQ holding
anything is ``bad`` (messages the learner gave up on: ``serendip dlq list`` shows them), a work
queue whose oldest message waited over ``SLOW_SECONDS`` is ``slow`` (the learner falls behind),
otherwise ``ok``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from local.moto_queue_age import AGE_ATTRIBUTE

SLOW_SECONDS = 300
# (label, the function environment variable holding its URL, a dead-letter queue?)
QUEUES: tuple[tuple[str, str, bool], ...] = (
    ("reward queue", "REWARD_QUEUE_URL", False),
    ("learn queue", "LEARN_QUEUE_URL", False),
    ("reward DLQ", "REWARD_DLQ_URL", True),
    ("learn DLQ", "LEARN_DLQ_URL", True),
)
_ATTRIBUTES = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]


@dataclass(frozen=True, slots=True)
class QueueHealth:
    """One queue as moto has it now; ``error`` set (figures None) when it could not be read."""

    label: str
    dead_letter: bool
    visible: int | None
    in_flight: int | None
    oldest_seconds: int | None
    error: str = ""

    @property
    def depth(self) -> int | None:
        """Visible plus in-flight messages."""
        if self.visible is None or self.in_flight is None:
            return None
        return self.visible + self.in_flight

    @property
    def state(self) -> str:
        """``bad``, ``slow``, ``ok`` or ``unknown`` (see the module's docstring)."""
        return judge(self)

    def as_dict(self) -> dict[str, object]:
        """A JSON-able form."""
        return {
            "queue": self.label,
            "dead_letter": self.dead_letter,
            "visible": self.visible,
            "in_flight": self.in_flight,
            "oldest_seconds": self.oldest_seconds,
            "state": self.state,
            **({"error": self.error} if self.error else {}),
        }


def judge(queue: QueueHealth) -> str:
    """The queue's colour.

    >>> judge(QueueHealth("reward DLQ", True, 1, 0, 40)), judge(QueueHealth("q", False, 9, 2, 3))
    ('bad', 'ok')
    >>> judge(QueueHealth("q", False, 1, 0, 900)), judge(QueueHealth("q", False, None, None, None))
    ('slow', 'unknown')
    """
    depth = queue.depth
    if depth is None:
        return "unknown"
    if queue.dead_letter:
        return "bad" if depth > 0 else "ok"
    if depth > 0 and (queue.oldest_seconds or 0) > SLOW_SECONDS:
        return "slow"
    return "ok"


def read_queue(client: Any, label: str, url: str, dead_letter: bool) -> QueueHealth:
    """One queue's figures (``client``: a boto3 SQS client)."""
    try:
        attributes = client.get_queue_attributes(
            QueueUrl=url, AttributeNames=[*_ATTRIBUTES, AGE_ATTRIBUTE]
        ).get("Attributes", {})
    except (BotoCoreError, ClientError) as error:
        return QueueHealth(label, dead_letter, None, None, None, error=str(error))
    age = attributes.get(AGE_ATTRIBUTE)
    return QueueHealth(
        label,
        dead_letter,
        int(attributes.get("ApproximateNumberOfMessages", 0)),
        int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        None if age is None else int(age),
    )


def read_queues(client: Any, urls: dict[str, str]) -> list[QueueHealth]:
    """Every queue of ``QUEUES`` whose URL is in ``urls`` (the stack's resource environment)."""
    return [
        read_queue(client, label, urls[variable], dead_letter)
        for label, variable, dead_letter in QUEUES
        if urls.get(variable)
    ]


def age_text(seconds: int | None) -> str:
    """A queue message's age as a reader takes it in.

    >>> age_text(None), age_text(0), age_text(42), age_text(150), age_text(7300)
    ('n/a', '< 1 s', '42 s', '2.5 min', '2.0 h')
    """
    if seconds is None:
        return "n/a"
    if seconds == 0:
        return "< 1 s"
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def summary(queues: Sequence[QueueHealth]) -> str:
    """One line: what, if anything, needs a look."""
    bad = [q.label for q in queues if q.state == "bad"]
    slow = [q.label for q in queues if q.state == "slow"]
    if bad:
        return (
            f"Dead letters in {', '.join(bad)}: serendip dlq list shows them, serendip dlq "
            "redrive moves them back."
        )
    if slow:
        return f"Messages waiting over {SLOW_SECONDS // 60} min in {', '.join(slow)}."
    return "No dead letters; the learner keeps up."
