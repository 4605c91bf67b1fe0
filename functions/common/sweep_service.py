"""The sweep: hand every event whose reward wait is over to its policy's learner.

It reads the sparse index of open events (no ceiling), groups the due events by (tenant, policy)
and sends each group's ids to the learn queue, where the policy's learner closes them: learns
activated ones, expires unactivated ones. A pass reads only what fell due since the last pass
(less ``INDEX_LAG_SECONDS``, as the index is eventually consistent), so a backlog the learners
are still working through is not sent to them again and again; every ``FULL_PASS_SECONDS`` a
pass reads every due event, which hands over whatever a failed forward or a dead-lettered batch
left open. The watermark only moves when every group's forward succeeded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from functions.common import learn_queue, open_events, sweep_state
from functions.common.errors import StorageError
from functions.common.observability import logger, metrics
from functions.common.settings import settings

PASS_SECONDS = 30.0  # two passes per scheduled minute: no event waits a whole minute
INDEX_LAG_SECONDS = 60.0
FULL_PASS_SECONDS = 300.0


@dataclass
class SweepReport:
    """What the passes of one sweep did."""

    passes: int = 0
    full_passes: int = 0
    due: int = 0
    groups: int = 0
    failed_groups: int = 0


def dispatch(now: float, report: SweepReport) -> None:
    """One pass: send the events that fell due to their policies' learners."""
    report.passes += 1
    state = sweep_state.read()
    full = state.full_pass_at is None or now - state.full_pass_at >= FULL_PASS_SECONDS
    since = None if full or state.watermark is None else state.watermark - INDEX_LAG_SECONDS
    failed_before = report.failed_groups
    for due in open_events.due_by_policy(now, since):
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
    if report.failed_groups == failed_before:
        sweep_state.advance(now, full_pass=full)
        report.full_passes += int(full)
    metrics.add_metric(name="EventsDue", unit="Count", value=report.due)


def sweep(
    remaining_seconds: Callable[[], float],
    *,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> SweepReport:
    """Dispatch now, and again every ``PASS_SECONDS`` (up to ``SWEEP_PASSES`` passes in all)
    while the invocation has time for it."""
    now = clock or time.time
    report = SweepReport()
    started = time.monotonic()
    dispatch(now(), report)
    while report.passes < settings().sweep_passes and remaining_seconds() > PASS_SECONDS + 10:
        next_pass = started + PASS_SECONDS * report.passes
        sleep(max(0.0, next_pass - time.monotonic()))
        dispatch(now(), report)
    return report
