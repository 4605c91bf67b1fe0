"""What the learning-loop benchmarks share: a local stack in this process, the template's
functions told apart by their events, AWS calls per unit of work, and the policy's head model.

Used inside the fresh child processes of ``benchmarks.learning_loop`` and
``benchmarks.sweep_backlog``; everything beyond the standard library is imported on use.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from local.aws_calls import AwsCallLog
    from local.lambda_events import LocalFunction
    from local.stack import LocalStack

POLICY = "for-you"
CANDIDATES = 30
SERVICES = ("dynamodb", "sqs", "s3")
HELD_OFF_SECONDS = 3600.0  # a sweep interval that keeps the stack's own scheduler quiet


@contextmanager
def local_stack(sweep_interval: float | None = None) -> Iterator[LocalStack]:
    """A ``LocalStack`` on a free port, its state file in a temporary directory."""
    from local.stack import LocalStack

    with tempfile.TemporaryDirectory(prefix="serendip-state-") as state:
        os.environ["SERENDIP_STATE_DIR"] = state
        stack = LocalStack(
            port=0, record_state=False, sweep_interval=sweep_interval, log_level="ERROR"
        )
        with stack:
            yield stack


def background_functions(functions: Mapping[str, LocalFunction]) -> list[str]:
    """The functions with no API event (queue consumers, schedules), by logical id."""
    from local.gateway import api_routes

    api = {route.function.name for route in api_routes(functions)}
    return sorted(name for name in functions if name not in api)


def api_function(functions: Mapping[str, LocalFunction], method: str, path: str) -> str:
    """The logical id of the function serving ``method path`` (a template path)."""
    from local.gateway import api_routes

    for route in api_routes(functions):
        if (route.method, route.path) == (method, path):
            return route.function.name
    raise LookupError(f"no function serves {method} {path}")


def per_unit(calls: AwsCallLog, units: int) -> dict[str, float]:
    """Calls per unit by service (every one of ``SERVICES``, others when they occur), and total."""
    counts = {service: calls.count(service) for service in SERVICES}
    for call in calls.calls():
        counts.setdefault(call.service, calls.count(call.service))
    figures = {service: count / units for service, count in counts.items()}
    figures["total"] = len(calls) / units
    return figures


def per_unit_operations(calls: AwsCallLog, units: int) -> dict[str, dict[str, float]]:
    """Calls per unit by service and operation."""
    figures: dict[str, dict[str, float]] = {}
    for (_, service, operation), count in sorted(calls.by_operation().items(), key=str):
        service_figures = figures.setdefault(service, {})
        service_figures[operation] = service_figures.get(operation, 0.0) + count / units
    return figures


def head(tenant: str, policy: str) -> tuple[int, int]:
    """The head model's version and count of events learned ((0, 0) before the first save)."""
    from functions.common import model_store

    versions = model_store.versions(tenant, policy)
    return (versions[0].version, versions[0].events_learned) if versions else (0, 0)


def wait_learned(tenant: str, policy: str, target: int, timeout: float) -> int:
    """Poll until the head has learned ``target`` events; returns the count (TimeoutError)."""
    deadline = time.monotonic() + timeout
    while (learned := head(tenant, policy)[1]) < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{learned} of {target} events learned after {timeout:.0f} s")
        time.sleep(0.1)
    return learned
