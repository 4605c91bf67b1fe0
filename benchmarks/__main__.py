"""``python -m benchmarks``: run every benchmark, write results, regenerate the docs summary."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.bakeoff import ENCODINGS, bakeoff, run_count
from benchmarks.core_speed import learning_throughput, rank_latency
from benchmarks.estimator_coverage import coverage
from benchmarks.handler_speed import rank_handler_latency
from benchmarks.machine import describe
from benchmarks.news import news
from benchmarks.quality import quality
from benchmarks.report import write_report

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "benchmarks.md"


def _progress(label: str, total: int) -> Callable[[int], None]:
    step = max(1, total // 20)

    def report(done: int) -> None:
        if done % step == 0 or done == total:
            print(f"\r  {label}: {done:,}/{total:,}", end="", file=sys.stderr, flush=True)
            if done == total:
                print(file=sys.stderr)

    return report


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; ``--quick`` runs tiny versions (a smoke test of the harness)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where JSON results go")
    parser.add_argument("--doc", type=Path, default=DOC, help="markdown summary to regenerate")
    args = parser.parse_args(argv)
    decisions = 400 if args.quick else 20_000
    rounds = 300 if args.quick else 5_000
    calls = 200 if args.quick else 3_000
    args.results.mkdir(parents=True, exist_ok=True)
    machine = describe()
    started = time.time()

    def save(name: str, payload: dict[str, Any]) -> None:
        payload = {"machine": machine, "command": "make bench", **payload}
        (args.results / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")

    print(f"quality: {decisions:,} decisions, 5 policies on one stream", file=sys.stderr)
    save("quality", quality(decisions=decisions, progress=_progress("decisions", decisions)))
    print(f"news scenario: {rounds:,} rounds", file=sys.stderr)
    save("news", news(rounds=rounds))
    print(f"core speed: {calls:,} rank calls, learning throughput", file=sys.stderr)
    save(
        "core_speed",
        {
            "rank_100x10": rank_latency(calls=calls, warmup=min(1_000, calls)),
            "learning": learning_throughput(events=min(3_000, calls * 2)),
        },
    )
    seeds = 20 if args.quick else 200
    print(f"estimator coverage: {seeds} seeds", file=sys.stderr)
    save("estimator_coverage", coverage(seeds=seeds, n=500 if args.quick else 2_000))
    datasets = ("wine",) if args.quick else ("digits", "wine", "breast_cancer")
    shuffles = 1 if args.quick else 10
    runs = run_count(datasets, shuffles, tuple(ENCODINGS))
    print(f"bake-off: {', '.join(datasets)}, {shuffles} shuffles", file=sys.stderr)
    save(
        "bakeoff",
        bakeoff(datasets, shuffles=shuffles, progress=_progress("learner runs", runs)),
    )
    print(f"rank handler on moto: {min(calls, 500):,} calls", file=sys.stderr)
    save("handler_speed", {"rank_handler_moto": rank_handler_latency(calls=min(calls, 500))})
    write_report(args.results, args.doc)
    print(f"done in {time.time() - started:.0f}s; summary in {args.doc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
