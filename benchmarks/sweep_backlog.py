"""Closing at scale: a backlog of open events whose reward wait has ended, closed by the sweep.

A fresh process (``python -m benchmarks.sweep_backlog``) starts ``LocalStack`` with its own
scheduler held off and stores N activated, open decisions of ``for-you`` through
``decision_store.put`` (simulated records, as ``benchmarks.learner_speed`` stores them, with
timestamps in the past: every reward wait ended a minute or two before the sweep starts). Then it
runs every schedule function of the template (``local.workers.schedule_sources``: the sweep) every
``interval`` seconds, as the stack's scheduler would with a short rate, and polls the decisions
table until none of the backlog is open, or until a deadline (1.5 times the target) has passed.

When an event closed: the item's ``closed_at`` (unix seconds, where the store writes one), else
the end of the first poll at which it was no longer ``open``. Its close delay counts from when
its wait ended or, as every wait here ended before the sweep could run (storing the backlog takes
a while), from the sweep's start.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.fresh_process import child_environment, child_main, run_child
from benchmarks.loop_stack import (
    CANDIDATES,
    HELD_OFF_SECONDS,
    POLICY,
    background_functions,
    local_stack,
    per_unit,
)

if TYPE_CHECKING:
    from local.aws_calls import AwsCall, AwsCallLog
    from local.stack import LocalStack

TOTAL_S = 120.0  # targets: all closed and learned within 2 minutes, close delay p99 <= 60 s
DELAY_P99_S = 60.0
FULL = {"interval": 5.0, "poll": 2.0, "deadline": 1.5 * TOTAL_S}
QUICK = {"interval": 0.5, "poll": 0.2, "deadline": 60.0}
TEMPLATE_RECORDS = 200  # simulated records, copied under new event ids up to the backlog's size
STORE_THREADS = 4
# Once the store stamps ``closed_at``, polls only need to see that none is open: every scan of the
# backlog takes moto's server (one process) from the sweep, so they come less often then.
STAMPED_POLL_FACTOR = 5


def _store_backlog(tenant: str, events: int) -> dict[str, float]:
    """Store ``events`` open decisions whose wait has ended; returns when each wait ended."""
    from bandit.serve.ranker import Ranker
    from bandit.simulate.simulation import Population
    from benchmarks.core_speed import logged_events
    from functions.common import decision_store, policy_store

    spec = policy_store.get(tenant, POLICY).spec
    wait = spec.rewards.wait_seconds
    population = Population(seed=13, candidates=CANDIDATES)
    ranker = Ranker(spec, clock=lambda: population.now)
    count = min(events, TEMPLATE_RECORDS)
    templates = logged_events(population, ranker, count, np.random.default_rng(13), "t")
    ended = time.time() - 60.0
    records = [
        templates[n % count].model_copy(
            update={
                "event_id": f"backlog-{n}",
                "timestamp": ended - wait - (n % 60),
                "rewards": [],
            }
        )
        for n in range(events)
    ]

    def store(record: Any) -> None:
        decision_store.put(tenant, record, wait_seconds=wait)

    with ThreadPoolExecutor(STORE_THREADS) as pool:
        list(pool.map(store, records))
    return {
        decision_store.event_key(tenant, record.event_id): record.timestamp + wait
        for record in records
    }


class _Closings:
    """What the polls saw of the backlog: when each event was first seen closed, its status,
    and its ``closed_at`` where the store writes one."""

    def __init__(self, waits: Mapping[str, float]) -> None:
        self.waits = waits
        self.seen: dict[str, float] = {}
        self.stamped: dict[str, float] = {}
        self.statuses: dict[str, str] = {}
        self.failed_polls = 0

    def poll(self) -> int:
        """Scan the decisions once; returns how many of the backlog are still open."""
        from pynamodb.exceptions import PynamoDBException

        from functions.common.tables import DecisionItem

        try:
            items = DecisionItem.scan(attributes_to_get=["pk", "status", "closed_at"])
            rows = [(item.pk, item.status, getattr(item, "closed_at", None)) for item in items]
        except PynamoDBException:
            # moto's server, busy with a long transaction, can time a scan out: poll again.
            self.failed_polls += 1
            return len(self.waits) - len(self.seen)
        polled = time.time()
        still_open = 0
        for key, status, closed_at in rows:
            if key not in self.waits:
                continue
            if status == "open":
                still_open += 1
                continue
            self.seen.setdefault(key, polled)
            self.statuses[key] = str(status)
            if closed_at is not None:
                self.stamped[key] = float(closed_at)
        return still_open

    def closed(self) -> tuple[dict[str, float], str]:
        """When each closed event closed, and where that comes from."""
        if self.stamped and len(self.stamped) == len(self.seen):
            return self.stamped, "closed_at"
        return self.seen, "polling"


def _call_seconds(calls: AwsCallLog) -> dict[str, dict[str, float]]:
    """Per operation: how many calls, how many failed, their median and slowest seconds."""
    by_operation: dict[str, list[AwsCall]] = {}
    for call in calls.calls():
        by_operation.setdefault(call.operation, []).append(call)
    return {
        operation: {
            "calls": len(made),
            "errors": sum(1 for call in made if call.error is not None),
            "median_s": float(np.median([call.seconds for call in made])),
            "max_s": max(call.seconds for call in made),
        }
        for operation, made in sorted(by_operation.items())
    }


def _child_closing(args: list[str]) -> dict[str, Any]:
    """Child: store the backlog on a fresh stack, run the sweep, poll until it is closed."""
    events, interval, deadline, poll = int(args[0]), *(float(a) for a in args[1:4])
    with local_stack(sweep_interval=HELD_OFF_SECONDS) as stack:
        return closing_on(stack, events, interval=interval, deadline=deadline, poll=poll)


def closing_on(
    stack: LocalStack, events: int, *, interval: float, deadline: float, poll: float
) -> dict[str, Any]:
    """Store the backlog on ``stack`` (its own sweep held off), run the sweep every
    ``interval`` s, poll every ``poll`` s until the backlog is closed or ``deadline`` s passed."""
    from local.aws_calls import record_aws_calls
    from local.workers import Scheduler, schedule_sources

    began = time.perf_counter()
    waits = _store_backlog(stack.tenant, events)
    stored = time.perf_counter() - began
    sources = schedule_sources(stack.functions)
    schedulers = [
        Scheduler(interval, source.function.invoke, name=f"{source.name}-bench")
        for source in sources
    ]
    closings = _Closings(waits)
    with record_aws_calls() as calls:
        started = time.time()
        for scheduler in schedulers:
            scheduler.start()
        try:
            while closings.poll() and time.time() - started < deadline:
                time.sleep(poll * STAMPED_POLL_FACTOR if closings.stamped else poll)
        finally:
            for scheduler in schedulers:
                # A sweep still running at the deadline is cut off when the stack stops.
                scheduler.stop(timeout=5.0)
        swept = time.time() - started
    functions = stack.functions
    closed, source = closings.closed()
    # Events still open count with the delay they had reached: a lower bound.
    delays = [closed.get(key, started + swept) - max(wait, started) for key, wait in waits.items()]
    # The sweep may close events itself or hand them to other functions (a learner behind a
    # queue): every function without an API event counts.
    background = calls.of(background_functions(functions))
    statuses = Counter(closings.statuses.values())
    return {
        "events": events,
        "closed": len(closed),
        "learned": statuses["learned"],
        "still_open": events - len(closed),
        "statuses": dict(statuses),
        "store_s": stored,
        "sweep_interval_s": interval,
        "poll_interval_s": poll,
        "failed_polls": closings.failed_polls,
        "deadline_s": deadline,
        "swept_s": swept,
        "total_s": max(closed.values()) - started if len(closed) == events else None,
        "delay_source": source,
        "delays_lower_bounds": events - len(closed),
        "close_delay_p50_s": float(np.percentile(delays, 50)),
        "close_delay_p99_s": float(np.percentile(delays, 99)),
        "close_delay_max_s": max(delays),
        "sweep_runs": sum(scheduler.runs for scheduler in schedulers),
        "background_functions": background_functions(functions),
        "requests_per_closed_event": per_unit(background, len(closed)) if closed else None,
        "call_seconds": _call_seconds(background),
    }


def closing_at_scale(events: int = 20_000, *, quick: bool = False) -> dict[str, Any]:
    """Time to close a backlog of ``events`` due events, and the close delay p50/p99."""
    config = QUICK if quick else FULL
    args = [str(events), *(str(config[k]) for k in ("interval", "deadline", "poll"))]
    result, wall = run_child("benchmarks.sweep_backlog", "closing", args, child_environment())
    return {**result, "wall_s": wall}


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _bounded(result: Mapping[str, Any], percentile: float) -> str:
    """``>= `` when the percentile falls among events still open (their delays are bounds).

    >>> _bounded({"events": 100, "delays_lower_bounds": 2}, 99), _bounded({"events": 100,
    ...     "delays_lower_bounds": 0}, 99)
    ('>= ', '')
    """
    share = result["delays_lower_bounds"] / result["events"]
    return ">= " if share > 1 - percentile / 100 else ""


def target_rows(result: Mapping[str, Any]) -> list[str]:
    """The closing targets, their figures and verdicts, as table rows."""
    events, total, p99 = result["events"], result["total_s"], result["close_delay_p99_s"]
    all_learned = total is not None and result["learned"] == events
    if all_learned:
        measured = f"{total:.0f} s"
    else:
        measured = (
            f"{result['closed']:,} closed, {result['learned']:,} learned after "
            f"{result['swept_s']:.0f} s"
        )
    return [
        f"| all of {events:,} due events closed and learned within {TOTAL_S:.0f} s | "
        f"{measured} | {_verdict(all_learned and total <= TOTAL_S)} |",
        f"| close delay p99 <= {DELAY_P99_S:.0f} s ({events:,} due events) | "
        f"{_bounded(result, 99)}{p99:.0f} s | {_verdict(all_learned and p99 <= DELAY_P99_S)} |",
    ]


def markdown(result: Mapping[str, Any]) -> list[str]:
    """The closing-at-scale part of the learning-loop section, as lines."""
    per_event = result["requests_per_closed_event"]
    dynamodb = "-" if per_event is None else f"{per_event['dynamodb']:.2f}"
    total = "-" if result["total_s"] is None else f"{result['total_s']:.1f} s"
    delays = [
        f"{_bounded(result, percentile)}{result[key]:.1f} s"
        for percentile, key in ((50, "close_delay_p50_s"), (99, "close_delay_p99_s"))
    ]
    delays.append(f"{'>= ' if result['still_open'] else ''}{result['close_delay_max_s']:.1f} s")
    lines = [
        "### Closing at scale",
        "",
        f"{result['events']:,} activated open events whose reward wait had ended, stored through "
        f"`decision_store.put`, then closed by the sweep run every "
        f"{result['sweep_interval_s']:g} s, until the first poll after "
        f"{result['deadline_s']:.0f} s at the latest. Close times from "
        f"{result['delay_source']} (every {result['poll_interval_s']:g} s when polled); "
        "delays count from the sweep's start, and events still open at the end count with the "
        "delay they had reached (`>=`). Requests: those of every function without an API "
        f"event ({', '.join(f'`{name}`' for name in result['background_functions'])}).",
        "",
        "| events | closed | learned | total | delay p50 | delay p99 | delay max "
        "| sweep runs done | DynamoDB per closed event |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {result['events']:,} | {result['closed']:,} | {result['learned']:,} | {total} "
        f"| {' | '.join(delays)} | {result['sweep_runs']} | {dynamodb} |",
    ]
    seconds = result.get("call_seconds") or {}
    if seconds:
        slowest, figures = max(seconds.items(), key=lambda entry: entry[1]["median_s"])
        lines += [
            "",
            f"The slowest call of those functions: {slowest}, median "
            f"{figures['median_s']:.2f} s, max {figures['max_s']:.2f} s ({figures['calls']:,} "
            f"made, {figures.get('errors', 0):,} failed).",
        ]
    return lines


if __name__ == "__main__":
    sys.exit(child_main({"closing": _child_closing}))
