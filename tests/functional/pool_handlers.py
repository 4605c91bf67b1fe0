"""Tiny handlers for ``test_function_pool``: they run in the pool's worker processes."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def _reply(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body),
    }


def whoami(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The worker's pid, the function it ran as and a variable of the environment it was given."""
    return _reply(
        {
            "pid": os.getpid(),
            "function": context.function_name,
            "marker": os.environ.get("POOL_TEST_MARKER"),
        }
    )


def rendezvous(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Arrive in the body's ``directory``, then wait (10 s at most) for ``expected`` arrivals.

    Only events handled at the same time can all see each other arrive.
    """
    body = json.loads(event["body"])
    directory = Path(body["directory"])
    (directory / str(os.getpid())).touch()
    deadline = time.monotonic() + 10.0
    while len(list(directory.iterdir())) < body["expected"] and time.monotonic() < deadline:
        time.sleep(0.01)
    return _reply({"pid": os.getpid(), "seen": len(list(directory.iterdir()))})


def crash(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Kill the worker, as a segfault in native code or an out-of-memory kill would."""
    os._exit(3)


def fail(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Raise, as a handler with a bug does."""
    raise ValueError("the handler failed on purpose")
