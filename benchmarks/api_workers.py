"""The load run (``benchmarks.load``) with the API in-process and in worker processes, compared.

``python -m benchmarks.api_workers`` runs 16 concurrent clients for 30 s against a fresh local
stack once per worker count (default 1 and 4: ``LocalStack(api_workers=N)``) and prints
requests/s, rank p50/p95, errors, lost rewards and the CPU seconds that moto, the stack's own
process and the API workers used during the run, as a markdown table; ``--json`` prints the whole
results instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from benchmarks.core_speed import percentiles
from benchmarks.fresh_process import child_environment, child_main, run_child
from benchmarks.load import FULL, cpu_split, load_bench

if TYPE_CHECKING:
    from local.stack import LocalStack

COLUMNS = (
    "| API workers | requests | requests/s | rank p50 | rank p95 | rewards p95 | errors | lost "
    "| CPU s: moto / stack process / API workers / learner |"
)


def row(result: dict[str, Any]) -> str:
    """One table row of a result ("-" where a figure was not measured)."""
    rank, rewards = result["operations"]["rank"], result["operations"]["rewards"]
    split = result.get("cpu_s") or {}
    cpu = " / ".join(
        f"{split[name]:.1f}"
        for name in ("moto", "stack", "api_workers", "learner")
        if name in split
    )
    cells = [
        str(result["api_workers"]),
        f"{result['requests']:,}",
        f"{result['throughput_rps']:.1f}",
        *(_ms(op, key) for op, key in ((rank, "p50_ms"), (rank, "p95_ms"), (rewards, "p95_ms"))),
        str(result["errors"]),
        str(result["rewards"].get("lost", "-")),
        cpu,
    ]
    return "| " + " | ".join(cells) + " |"


def compare(workers: list[int], seconds: float) -> dict[str, Any]:
    """Rank-only and mixed load runs on fresh stacks, once per worker count."""
    return {
        "seconds": seconds,
        "clients": FULL["clients"],
        "rank_only": [rank_bench(api_workers=n, seconds=seconds) for n in workers],
        "mixed": [load_bench(api_workers=n, seconds=seconds) for n in workers],
    }


def markdown(result: dict[str, Any]) -> list[str]:
    """The "Concurrency by API workers" section of the benchmarks document, as lines."""
    # A quick run (benchmarks.quick_stack) shares one stack, its learner on, between the rows.
    shared = result.get("shared_stack", False)
    where = "on the stack of the other quick measures" if shared else "on a fresh stack per row"
    learner = "idle" if shared else "off"
    lines = [
        "## Concurrency by API workers",
        "",
        f"{result['clients']} concurrent clients for {result['seconds']:g} s {where}, "
        "30 candidates per rank (`serendip serve --workers N`; with N > 1 the learner runs "
        f"in a process of its own too). Rank only: every client ranks in a loop, the learner "
        f"{learner}. "
        "Mixed: ranks and signed reward posts as in the load run above, learning as it goes. "
        "Targets (issue 12): >= 100 requests/s, rank p95 <= 200 ms, no errors.",
        "",
    ]
    for name, runs in (("Rank only", result["rank_only"]), ("Mixed", result["mixed"])):
        lines += [f"{name}:", "", COLUMNS, "|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        lines += [row(run) for run in runs]
        lines.append("")
    return lines


def _ms(operation: dict[str, Any], key: str) -> str:
    return f"{operation[key]:.0f} ms" if key in operation else "-"


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print it."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.api_workers")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--json", action="store_true", help="print the whole results")
    parser.add_argument(
        "--rank-only", action="store_true", help="only rank requests, with the learner off"
    )
    args = parser.parse_args(argv)
    run = rank_bench if args.rank_only else load_bench
    results = [run(api_workers=n, seconds=args.seconds) for n in args.workers]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"16 clients, {args.seconds:g} s per run, 30 candidates per rank")
    print(COLUMNS)
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for result in results:
        print(row(result))
    return 0


def rank_bench(api_workers: int, seconds: float) -> dict[str, Any]:
    """16 clients only ranking (no rewards, learner off) on a fresh stack in a fresh interpreter."""
    args = [str(seconds), str(FULL["clients"]), str(api_workers)]
    result, _ = run_child("benchmarks.api_workers", "rank", args, child_environment())
    return result


def _child_rank(args: list[str]) -> dict[str, Any]:
    seconds, clients, api_workers = float(args[0]), int(args[1]), int(args[2])
    from local.stack import LocalStack

    with tempfile.TemporaryDirectory(prefix="serendip-state-") as state:
        os.environ["SERENDIP_STATE_DIR"] = state
        stack = LocalStack(
            port=0, record_state=False, log_level="ERROR", api_workers=api_workers, learn=False
        )
        with stack:
            return ranks_on(stack, seconds, clients)


def ranks_on(stack: LocalStack, seconds: float, clients: int) -> dict[str, Any]:
    """``clients`` threads ranking on ``stack`` for ``seconds``; requests/s, p50/p95, CPU."""
    before = cpu_split(stack)
    started = time.monotonic()
    with ThreadPoolExecutor(clients) as threads:
        runs = list(
            threads.map(lambda seed: _ranks(stack, seed, started + seconds), range(clients))
        )
    elapsed = time.monotonic() - started
    after = cpu_split(stack)
    samples = [latency for run in runs for latency, _ in run]
    errors = sum(1 for run in runs for _, status in run if status != 200)
    figures = percentiles(samples)
    return {
        "api_workers": stack.api_workers,
        "requests": len(samples),
        "throughput_rps": len(samples) / elapsed,
        "operations": {"rank": {k: figures[k] for k in ("p50_ms", "p95_ms")}, "rewards": {}},
        "errors": errors,
        "rewards": {},
        "cpu_s": {name: after[name] - before[name] for name in before},
    }


def _ranks(stack: Any, seed: int, deadline: float) -> list[tuple[float, int]]:
    """Rank for simulated users until ``deadline``: (seconds, status) per request."""
    from bandit.simulate.simulation import Population
    from local.client import SerendipClient
    from local.demo import rank_body

    population = Population(seed=seed, candidates=30)
    client = SerendipClient(stack.url, stack.api_key, stack.webhook_secret)
    done = []
    while time.monotonic() < deadline:
        body = rank_body(population.next_request())
        started = time.perf_counter()
        try:
            status = client.rank("for-you", body).status
        except OSError:
            status = 0
        done.append((time.perf_counter() - started, status))
    return done


if __name__ == "__main__":
    if sys.argv[1:2] == ["rank"]:
        sys.exit(child_main({"rank": _child_rank}))
    sys.exit(main())
