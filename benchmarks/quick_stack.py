"""``python -m benchmarks --quick``: the local-stack measures on one stack in one fresh process.

A full run gives each measure a fresh interpreter and a fresh ``LocalStack``, so that none of
them sees another's tables, models or CPU time. The quick run is a smoke test of the harness:
what it must show is that every measure runs and reports, so the learning loop (requests per
learned event first, while the stack has learned nothing, then reward to changed ranking and
closing a backlog), ranks over HTTP, the load run and the rank-only and mixed runs by API
workers share one stack, in the order below. Its own sweep is held off: the measures that want
it quiet ask for that, the quick requests run is over long before the template's schedule would
fire, and the backlog's closing runs the sweep itself. Each starting a stack of its own would
cost more than the measures themselves at quick sizes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from typing import Any

from benchmarks.fresh_process import child_environment, child_main, run_child

CLIENTS = 16  # the rank-only and mixed runs of ``benchmarks.api_workers``


def _child_all(args: list[str]) -> dict[str, Any]:
    """Child: one stack, every measure on it in turn; their results by benchmark."""
    sizes = json.loads(args[0])
    from benchmarks import learning_loop, load, sweep_backlog
    from benchmarks.api_workers import ranks_on
    from benchmarks.http_speed import ways_on
    from benchmarks.loop_stack import HELD_OFF_SECONDS, local_stack

    loop, closing = learning_loop.QUICK, sweep_backlog.QUICK
    seconds = sizes["compare_seconds"]
    with local_stack(sweep_interval=HELD_OFF_SECONDS) as stack:
        requests = {str(n): learning_loop.requests_on(stack, n) for n in loop.events}
        freshness = learning_loop.freshness_on(stack, loop.trials)
        closed = sweep_backlog.closing_on(
            stack,
            loop.backlog,
            interval=closing["interval"],
            deadline=closing["deadline"],
            poll=closing["poll"],
        )
        http = ways_on(stack, sizes["http_calls"], 100, 10, sizes["warmup"])
        quick_load = load.QUICK
        candidates = int(quick_load["candidates"])
        loaded = load.load_on(
            stack,
            seconds=quick_load["seconds"],
            clients=int(quick_load["clients"]),
            candidates=candidates,
        )
        rank_only = ranks_on(stack, seconds, CLIENTS)
        mixed = load.load_on(stack, seconds=seconds, clients=CLIENTS, candidates=candidates)
    return {
        "learning_loop": {
            "quick": True,
            "shared_stack": True,
            "requests": requests,
            "freshness": freshness,
            "closing": closed,
        },
        "http_speed": http,
        "load": loaded,
        "api_workers": {
            "shared_stack": True,
            "seconds": seconds,
            "clients": CLIENTS,
            "rank_only": [rank_only],
            "mixed": [mixed],
        },
    }


def on_one_stack(
    http_calls: int,
    warmup: int,
    compare_seconds: float,
    progress: Callable[[str], None] | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """The quick sizes of every local-stack measure, on one stack in a fresh interpreter.

    Returns the results by benchmark name (``learning_loop``, ``http_speed``, ``load``,
    ``api_workers``), each shaped as its own benchmark returns it. ``env``: the child's
    environment (default: ``child_environment()`` of this process now).
    """
    if progress is not None:
        progress(
            f"one local stack: learning loop, {http_calls} ranks a way over HTTP, load, "
            f"{CLIENTS} clients for {compare_seconds:g} s rank only and mixed"
        )
    sizes = {"http_calls": http_calls, "warmup": warmup, "compare_seconds": compare_seconds}
    result, wall = run_child(
        "benchmarks.quick_stack",
        "all",
        [json.dumps(sizes)],
        env if env is not None else child_environment(),
    )
    if progress is not None:
        progress(f"done in {wall:.1f} s")
    return result


if __name__ == "__main__":
    sys.exit(child_main({"all": _child_all}))
