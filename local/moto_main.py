"""Entry point of the local stack's moto server: moto on waitress, with DynamoDB serialised.

moto's server is threaded, but its DynamoDB backend is not thread-safe: a transaction deep-copies
the tables it touches while other threads write to them, and fails with "dictionary changed size
during iteration" (HTTP 500). DynamoDB calls therefore run one at a time here; SQS and S3 stay
concurrent, so an SQS long poll never blocks a table write. SQS receives check retention
without recounting the queue for each message. Transactions take the lean path of
``local.moto_transactions`` (no copy of whole tables), so a save costs the same with a log of ten
events or of a million; queries read their partition without sorting the table first
(``local.moto_indexes``); item values are serialized directly (``local.moto_items``);
connections are kept alive (``local.moto_server``); queues forget old deleted messages
(``local.moto_sqs``) and tell the age of their oldest message (``local.moto_queue_age``);
and moto's register of every model instance it ever made holds them weakly
(``local.moto_instances``).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from moto.core.utils import unix_time
from moto.dynamodb.responses import DynamoHandler
from moto.sqs.models import Message, SQSBackend

_DYNAMODB_LOCK = threading.Lock()
_call_action = DynamoHandler.call_action


def serialised_call_action(self: DynamoHandler) -> Any:
    """moto's DynamoDB dispatch, one call at a time (its transactions race concurrent writes)."""
    with _DYNAMODB_LOCK:
        return _call_action(self)


def retention_check(self: SQSBackend, queue_name: str, message: Message) -> bool:
    """moto's retention check without computing every queue attribute for every message.

    moto reads the retention period through ``get_queue_attributes``, which counts the queue's
    messages: a receive then costs time quadratic in the queue's depth.
    """
    queue = self.get_queue(queue_name)
    # (set from the queue's attributes when it is created)
    period = int(queue.message_retention_period)  # type: ignore[attr-defined]
    retain_until = period + (message.sent_timestamp or 0) / 1000
    return bool(retain_until > unix_time())


def run(argv: list[str]) -> None:
    """Run moto's server (on waitress) with DynamoDB calls serialised and lean transactions.

    It ends with its parent (``local.moto_lifeline``) and keeps its state in
    ``$SERENDIP_MOTO_DATA`` when set (``local.moto_snapshot``).
    """
    from local import (
        moto_census,
        moto_indexes,
        moto_instances,
        moto_items,
        moto_lifeline,
        moto_queue_age,
        moto_server,
        moto_snapshot,
        moto_sqs,
        moto_transactions,
    )

    DynamoHandler.call_action = serialised_call_action  # type: ignore[method-assign]
    moto_instances.install()
    moto_transactions.install()
    moto_indexes.install()
    moto_items.install()
    SQSBackend.is_message_valid_based_on_retention_period = retention_check  # type: ignore[method-assign]
    moto_sqs.install()
    moto_queue_age.install()
    moto_lifeline.install()
    moto_snapshot.install(_DYNAMODB_LOCK)
    moto_census.start_from_environment(_DYNAMODB_LOCK)
    moto_server.main(argv)


if __name__ == "__main__":
    run(sys.argv[1:])
