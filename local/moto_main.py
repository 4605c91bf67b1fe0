"""Entry point of the local stack's moto server: moto's own ``main`` with DynamoDB serialised.

moto's server is threaded, but its DynamoDB backend is not thread-safe: a transaction deep-copies
the tables it touches while other threads write to them, and fails with "dictionary changed size
during iteration" (HTTP 500). DynamoDB calls therefore run one at a time here; SQS and S3 stay
concurrent, so an SQS long poll never blocks a table write.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from moto.dynamodb.responses import DynamoHandler
from moto.server import main

_DYNAMODB_LOCK = threading.Lock()
_call_action = DynamoHandler.call_action


def serialised_call_action(self: DynamoHandler) -> Any:
    """moto's DynamoDB dispatch, one call at a time (its transactions race concurrent writes)."""
    with _DYNAMODB_LOCK:
        return _call_action(self)


def run(argv: list[str]) -> None:
    """Run moto's server with DynamoDB calls serialised."""
    DynamoHandler.call_action = serialised_call_action  # type: ignore[method-assign]
    main(argv)


if __name__ == "__main__":
    run(sys.argv[1:])
