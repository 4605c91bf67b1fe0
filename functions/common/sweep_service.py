"""The sweep: hand every event whose reward wait is over to its policy's learner.

It reads the sparse index of open events to the end (no ceiling), groups the due events by
(tenant, policy) and sends each group's ids to the learn queue, where the policy's learner
closes them: learns activated ones, expires unactivated ones. An event stays in the index until
its learner has closed it, so an event whose forward failed is simply sent again next pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from functions.common import learn_queue, open_events
from functions.common.errors import StorageError
from functions.common.observability import logger, metrics

PASS_SECONDS = 30.0  # two passes per scheduled minute: no event waits a whole minute


@dataclass
class SweepReport:
    """What the passes of one sweep did."""

    passes: int = 0
    due: int = 0
    groups: int = 0
    failed_groups: int = 0


def dispatch(now: float, report: SweepReport) -> None:
    """One pass: send every due event to its policy's learner."""
    report.passes += 1
    for due in open_events.due_by_policy(now):
        report.due += len(due.event_ids)
        bodies = list(learn_queue.bodies(due.tenant, due.policy, close=due.event_ids))
        try:
            learn_queue.send(due.tenant, due.policy, bodies)
        except StorageError as exc:
            logger.error(
                "could not hand due events to their learner; next pass retries",
                extra={"tenant": due.tenant, "policy": due.policy, "error": exc.detail},
            )
            report.failed_groups += 1
            continue
        report.groups += 1
    metrics.add_metric(name="EventsDue", unit="Count", value=report.due)


def sweep(
    remaining_seconds: Callable[[], float],
    *,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> SweepReport:
    """Dispatch now, and again every ``PASS_SECONDS`` while the invocation has time for it."""
    now = clock or time.time
    report = SweepReport()
    started = time.monotonic()
    dispatch(now(), report)
    while remaining_seconds() > PASS_SECONDS + 10:
        next_pass = started + PASS_SECONDS * report.passes
        sleep(max(0.0, next_pass - time.monotonic()))
        dispatch(now(), report)
    return report
