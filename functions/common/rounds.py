"""Rounds of AWS calls: the calls of one round run concurrently, a round starts after the last.

The rank path is budgeted in rounds (docs/scaling.md): a warm rank makes its reads in round 1
(user profile; the policy, the API key, popularity, catalog items when due) and its writes in
round 2 (the decision; budget counters when due), so its latency is two round trips however many
calls it makes. Each call runs with ``current_round`` set, and in a copy of the caller's context
(so what is attributed per function, such as the IAM recorder's ``current_function``, follows it
into the worker thread).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from threading import Lock
from typing import Any

# The round an AWS call belongs to (None outside any round): read by the call recorder.
current_round: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "current_round", default=None
)
# botocore keeps 10 connections per client: more threads than that would wait for one anyway.
MAX_CONCURRENT_CALLS = 10
# The round of reads a container makes once, before it has anything to keep (a segment's first
# budget totals): not one of a warm rank's two rounds.
COLD_ROUND = 0
# False runs a round's calls one after another: the "before" of benchmarks/aws_latency.py.
CONCURRENT = True

_executor: ThreadPoolExecutor | None = None
_lock = Lock()


def _pool() -> ThreadPoolExecutor:
    global _executor  # noqa: PLW0603
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(MAX_CONCURRENT_CALLS, thread_name_prefix="aws-round")
        return _executor


def _in_round(number: int, call: Callable[[], Any]) -> Any:
    current_round.set(number)
    return call()


def run_round(number: int, calls: Mapping[str, Callable[[], Any]]) -> dict[str, Any]:
    """Run ``calls`` concurrently as round ``number``; their results by name.

    Every call is awaited; then the first exception raised (in ``calls``' order) is raised.
    A single call runs in the caller's thread.

    >>> run_round(1, {"a": lambda: current_round.get(), "b": lambda: 2})
    {'a': 1, 'b': 2}
    """
    if not calls:
        return {}
    if not CONCURRENT:
        return {
            name: contextvars.copy_context().run(_in_round, number, call)
            for name, call in calls.items()
        }
    if len(calls) == 1:
        ((name, call),) = calls.items()
        return {name: contextvars.copy_context().run(_in_round, number, call)}
    futures = {
        name: _pool().submit(contextvars.copy_context().run, _in_round, number, call)
        for name, call in calls.items()
    }
    results: dict[str, Any] = {}
    failure: BaseException | None = None
    for name, future in futures.items():
        error = future.exception()
        if error is None:
            results[name] = future.result()
        elif failure is None:
            failure = error
    if failure is not None:
        raise failure
    return results
