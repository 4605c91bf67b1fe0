"""The rank handler on moto with a fixed delay per AWS call: round trips made visible here.

In process, moto answers in well under a millisecond, so the rank path's round trips do not
show; on AWS each is a few milliseconds in-region (``DELAYS``: 4 ms, a typical DynamoDB
latency, and 8 ms). Every AWS call here first sleeps the delay, then goes to moto. The same
traffic is ranked with each round's calls one after another (``sequential``: as the rank path
made them before it was budgeted in rounds) and side by side (``rounds``,
``functions.common.rounds``); each row gives p50/p95 and the calls per rank. Caches are as
deployed (``MODEL_CACHE_SECONDS`` 1, API keys revalidated after 1 s), so the due reads and
the budget's flushes and refreshes occur at their real rates.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from botocore.client import BaseClient

from benchmarks.core_speed import percentiles
from benchmarks.handler_speed import RANK_PATH, _in_moto

DELAYS = (0.004, 0.008)
MODES = ("sequential", "rounds")


@contextmanager
def delayed_calls(delay: float) -> Iterator[list[int]]:
    """Every AWS call of the process sleeps ``delay`` first; yields a one-item call counter."""
    original = BaseClient._make_api_call
    count = [0]

    def slow(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        count[0] += 1
        time.sleep(delay)
        return original(client, operation, params)

    BaseClient._make_api_call = slow
    try:
        yield count
    finally:
        BaseClient._make_api_call = original


def aws_latency(
    calls: int = 400,
    candidates: int = 100,
    slots: int = 10,
    delays: tuple[float, ...] = DELAYS,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Rank p50/p95 and calls per rank, per delay and mode (and the ratio, rounds / sequential)."""
    with _in_moto():
        rank, events = _setup(calls + 20, candidates, slots)
        out: dict[str, Any] = {"calls": calls, "candidates": candidates, "slots": slots}
        for delay in delays:
            row: dict[str, Any] = {}
            for mode in MODES:
                if progress:
                    progress(f"aws latency {delay * 1e3:.0f} ms per call, {mode}")
                row[mode] = _measure(rank, events, delay, concurrent=mode == "rounds")
            row["p50_ratio"] = row["rounds"]["rank"]["p50_ms"] / row["sequential"]["rank"]["p50_ms"]
            row["p95_ratio"] = row["rounds"]["rank"]["p95_ms"] / row["sequential"]["rank"]["p95_ms"]
            out[f"{delay * 1e3:.0f}ms"] = row
        return out


def _setup(count: int, candidates: int, slots: int) -> tuple[Any, list[dict[str, Any]]]:
    from bandit.simulate.simulation import Population
    from functions.common import policy_store
    from functions.common.auth import create_key
    from functions.common.aws import reset_clients
    from functions.common.settings import reset_settings
    from functions.common.tables import unbind
    from functions.rank import app as rank
    from local.demo import rank_body
    from local.lambda_events import proxy_event
    from local.resources import ROOT, create_resources

    os.environ.update(create_resources("serendip-bench"))
    os.environ.update({"MODEL_CACHE_SECONDS": "1", "API_KEY_REVALIDATE_SECONDS": "1"})
    reset_settings()
    unbind()
    reset_clients()
    key = create_key("bench", {"rank"})
    policy_store.seed("bench", ROOT / "policies")
    population = Population(seed=3, candidates=candidates)
    headers = {"content-type": "application/json", "x-api-key": key.api_key}
    events = [
        proxy_event(
            "POST",
            "/v1/policies/for-you/rank",
            resource=RANK_PATH,
            body=json.dumps(rank_body(population.next_request(), slots)),
            headers=headers,
        )
        for _ in range(count)
    ]
    return rank, events


def _measure(
    rank: Any, events: list[dict[str, Any]], delay: float, *, concurrent: bool
) -> dict[str, Any]:
    from functions.common import rounds
    from local.lambda_events import FakeLambdaContext

    rank._service = None  # a fresh container: the same cold start for both modes
    rounds.CONCURRENT = concurrent
    try:
        with delayed_calls(delay) as count:
            for event in events[:20]:  # warm: imports, caches, first model
                rank.lambda_handler(event, FakeLambdaContext())
            before = count[0]
            times = []
            for event in events[20:]:
                started = time.perf_counter()
                response = rank.lambda_handler(event, FakeLambdaContext())
                times.append(time.perf_counter() - started)
                if response["statusCode"] != 200:
                    raise RuntimeError(
                        f"rank answered {response['statusCode']}: {response['body']}"
                    )
            made = count[0] - before
    finally:
        rounds.CONCURRENT = True
    return {"rank": percentiles(times), "aws_calls_per_rank": made / len(times)}


def main() -> int:
    """Print the figures (``python -m benchmarks.aws_latency``)."""
    print(json.dumps(aws_latency(progress=print), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def markdown(data: dict[str, Any]) -> list[str]:
    """The section of docs/performance.md."""
    lines = [
        "## Rank handler with AWS's latency",
        "",
        f"`benchmarks/aws_latency.py`: the rank handler on in-process moto, {data['calls']:,} "
        f"ranks of {data['candidates']} candidates and {data['slots']} slots, every AWS call "
        "delayed by a fixed time first (a typical in-region DynamoDB latency), so that the round "
        "trips show on this machine. `sequential` makes each round's calls one after another, as "
        "the rank path did before it was budgeted in rounds; `rounds` makes them side by side "
        "(`functions/common/rounds.py`). Caches as deployed (`MODEL_CACHE_SECONDS` 1, keys "
        "revalidated after 1 s), so due reads, budget flushes and refreshes come at their real "
        "rates.",
        "",
        "| delay per call | mode | rank p50 | rank p95 | rank p99 | AWS calls per rank |",
        "|---|---|---|---|---|---|",
    ]
    for key, row in data.items():
        if not isinstance(row, dict) or "rounds" not in row:
            continue
        for mode in MODES:
            rank = row[mode]["rank"]
            lines.append(
                f"| {key} | {mode} | {rank['p50_ms']:.1f} ms | {rank['p95_ms']:.1f} ms | "
                f"{rank['p99_ms']:.1f} ms | {row[mode]['aws_calls_per_rank']:.2f} |"
            )
        lines.append(
            f"| {key} | rounds / sequential | {row['p50_ratio']:.2f}x | {row['p95_ratio']:.2f}x "
            "| | |"
        )
    return lines
