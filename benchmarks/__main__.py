"""``python -m benchmarks``: run every benchmark, write results, regenerate the docs summaries."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.ablation import (
    ABLATION_NEWS_ROUNDS,
    ABLATION_ROUNDS,
    ABLATION_SEEDS,
    ABLATION_USERS,
    ablation,
)
from benchmarks.api_workers import compare as compare_workers
from benchmarks.aws_latency import DELAYS, aws_latency
from benchmarks.bakeoff import ENCODINGS, bakeoff, run_count
from benchmarks.cold_start import MODEL_SIZES, cold_start, stored_models
from benchmarks.core_speed import QUICK_RANK_SIZES, RANK_SIZES, learning_throughput, rank_sizes
from benchmarks.estimator_coverage import coverage
from benchmarks.fresh_process import child_environment
from benchmarks.handler_speed import personalizer_rank_latency, rank_handler_latency
from benchmarks.http_speed import http_rank_latency
from benchmarks.learner_speed import learner_bench
from benchmarks.learning_loop import learning_loop_bench
from benchmarks.load import load_bench
from benchmarks.machine import describe
from benchmarks.memory import peak_memory
from benchmarks.news import news
from benchmarks.peers import peers, stream_decisions
from benchmarks.performance_doc import plugged_renderers, write_performance_doc
from benchmarks.quality import quality
from benchmarks.quick_stack import on_one_stack
from benchmarks.record_sizes import record_sizes
from benchmarks.report import write_report
from benchmarks.restart_survival import restart_survival
from benchmarks.retrieval import retrieval_bench
from benchmarks.stack_memory import QUICK_ROUNDS as QUICK_STACK_ROUNDS
from benchmarks.stack_memory import QUICK_WINDOW as QUICK_STACK_WINDOW
from benchmarks.stack_memory import ROUNDS as STACK_ROUNDS
from benchmarks.stack_memory import environment as stack_environment
from benchmarks.stack_memory import stack_memory
from benchmarks.taste import GRID_ROUNDS, taste_bench
from benchmarks.taste_collab import collaborative_rows
from local.function_pool import default_api_workers

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
PERFORMANCE_DOC = ROOT / "docs" / "performance.md"
QUICK_RESTART_EVENTS = 20


def _progress(label: str, total: int) -> Callable[[int], None]:
    step = max(1, total // 20)

    def report(done: int) -> None:
        if done % step == 0 or done == total:
            print(f"\r  {label}: {done:,}/{total:,}", end="", file=sys.stderr, flush=True)
            if done == total:
                print(file=sys.stderr)

    return report


def _note(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


class _Steps:
    """Times each step of the run, for the run-time table of the performance document."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self._current: tuple[str, float] | None = None

    def begin(self, name: str, message: str) -> None:
        self.end()
        print(message, file=sys.stderr, flush=True)
        self._current = (name, time.perf_counter())

    def end(self) -> None:
        if self._current is not None:
            name, began = self._current
            self.seconds[name] = time.perf_counter() - began
            self._current = None

    def total(self) -> float:
        return time.perf_counter() - self.started


def _stack_steps(steps: _Steps, save: Callable[[str, dict[str, Any]], None]) -> None:
    """The local-stack measures of a full run, each on a fresh stack of its own."""
    http_calls = 200
    steps.begin("rank over HTTP", f"rank over HTTP on the local stack: {http_calls:,} calls a way")
    save("http_speed", http_rank_latency(http_calls, warmup=20, progress=_note))
    steps.begin("load", "load on the local stack: concurrent clients, rank and signed rewards")
    save("load", load_bench())
    worker_counts = sorted({1, default_api_workers()})
    compare_seconds = 30.0
    steps.begin(
        "concurrency by API workers",
        f"16 clients, {compare_seconds:g} s per run, rank only and mixed, API workers "
        + " and ".join(map(str, worker_counts)),
    )
    save("api_workers", compare_workers(worker_counts, compare_seconds))
    steps.begin(
        "learning loop",
        "learning loop on the local stack: AWS requests per learned event, reward -> changed "
        "ranking, closing a backlog with the sweep",
    )
    save("learning_loop", learning_loop_bench(progress=_note))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; ``--quick`` runs tiny versions (a smoke test of the harness)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where JSON results go")
    parser.add_argument("--doc", type=Path, default=DOC, help="markdown summary to regenerate")
    parser.add_argument(
        "--performance-doc",
        type=Path,
        default=PERFORMANCE_DOC,
        help="performance document to regenerate",
    )
    args = parser.parse_args(argv)
    quick: bool = args.quick
    args.results.mkdir(parents=True, exist_ok=True)
    machine = describe()
    steps = _Steps()

    def save(name: str, payload: dict[str, Any]) -> None:
        payload = {"machine": machine, "command": "make bench", **payload}
        (args.results / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="beside") as pool:
        # The environment is read here, before any step changes this process's.
        beside = pool.submit(_beside, child_environment(), stack_environment()) if quick else None
        _run(quick, steps, save)
        if beside is not None:
            steps.begin("waiting for the steps beside", "waiting for the local-stack steps")
            results, seconds = beside.result()
            for name, result in results.items():
                save(name, result)
            steps.seconds.update(seconds)
    steps.end()
    save("run", {"quick": quick, "total_seconds": steps.total(), "steps": steps.seconds})
    write_report(args.results, args.doc)
    write_performance_doc(args.results, args.performance_doc, **plugged_renderers())
    print(
        f"done in {steps.total():.0f}s; summaries in {args.doc} and {args.performance_doc}",
        file=sys.stderr,
    )
    return 0


def _beside(
    env: Mapping[str, str], stack_env: Mapping[str, str]
) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    """Quick only: the local-stack steps, on a thread beside the others; results and seconds.

    Their fresh processes wait on loopback and on moto's server much of the time, while the
    steps in this process keep one core busy: side by side, the smoke test uses both cores of
    a small machine. ``env``: the environment of their child processes; ``stack_env``: that
    of the long-lived stack's.
    """
    results: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    began = time.perf_counter()
    # A smoke test of the harness compares nothing: one worker count, briefly, and every
    # local-stack measure on one stack (benchmarks.quick_stack).
    results.update(on_one_stack(10, warmup=3, compare_seconds=1.5, env=env))
    seconds["local stack (beside)"] = time.perf_counter() - began
    began = time.perf_counter()
    results["restart_survival"] = restart_survival(QUICK_RESTART_EVENTS, env=env)
    seconds["restart survival (beside)"] = time.perf_counter() - began
    began = time.perf_counter()
    # One API worker process (the worker pools have tests of their own).
    results["stack_memory"] = stack_memory(
        QUICK_STACK_ROUNDS, window=QUICK_STACK_WINDOW, api_workers=1, env=stack_env
    )
    seconds["long-lived local stack (beside)"] = time.perf_counter() - began
    return results, seconds


def _run(quick: bool, steps: _Steps, save: Callable[[str, dict[str, Any]], None]) -> None:
    """Every step but those ``_beside`` runs in a quick run."""
    decisions = 400 if quick else 20_000
    rounds = 300 if quick else 5_000
    calls = 200 if quick else 3_000
    steps.begin("quality", f"quality: {decisions:,} decisions, 5 policies on one stream")
    save("quality", quality(decisions=decisions, progress=_progress("decisions", decisions)))
    steps.begin("news", f"news scenario: {rounds:,} rounds")
    save("news", news(rounds=rounds))
    sizes = QUICK_RANK_SIZES if quick else RANK_SIZES
    shown = ", ".join(f"({c}, {s})" for c, s, _, _ in sizes)
    steps.begin("core speed", f"core speed: rank at {shown}, learning throughput")
    ranks = rank_sizes(sizes, progress=_note)
    learning = learning_throughput(events=min(3_000, calls * 2))
    save("core_speed", {"rank_100x10": ranks["100x10"], "rank_sizes": ranks, "learning": learning})
    steps.begin(
        "retrieval",
        "recommend in process: a catalog index, retrieve 100 then rank 10, against exact search",
    )
    save("retrieval", retrieval_bench(quick, progress=_note))
    steps.begin("peers", "peers: raw VW floor, MABWiser and numpy LinUCB on the same stream")
    save("peers", peers(quick, _progress("peer decisions", stream_decisions(quick))))
    seeds = 20 if quick else 200
    steps.begin("estimator coverage", f"estimator coverage: {seeds} seeds")
    save("estimator_coverage", coverage(seeds=seeds, n=500 if quick else 2_000))
    datasets = ("wine",) if quick else ("digits", "wine", "breast_cancer")
    shuffles = 1 if quick else 10
    runs = run_count(datasets, shuffles, tuple(ENCODINGS))
    steps.begin("bake-off", f"bake-off: {', '.join(datasets)}, {shuffles} shuffles")
    save(
        "bakeoff",
        bakeoff(datasets, shuffles=shuffles, progress=_progress("learner runs", runs)),
    )
    taste_rounds = 100 if quick else 20_000
    grid_rounds = 50 if quick else GRID_ROUNDS
    steps.begin(
        "taste world",
        f"taste world: every contender on one stream, {taste_rounds:,} rounds (plain VW grid "
        f"at {grid_rounds:,})",
    )
    save(
        "taste",
        taste_bench(
            taste_rounds, grid_rounds=grid_rounds, extra=collaborative_rows(), progress=_note
        ),
    )
    ablation_rounds = 50 if quick else ABLATION_ROUNDS
    ablation_seeds = (1,) if quick else ABLATION_SEEDS
    steps.begin(
        "for-you ablation",
        f"for-you ablation: taste world {ablation_rounds:,} rounds and news scenario, "
        f"{len(ablation_seeds)} seed(s)",
    )
    save(
        "ablation",
        ablation(
            ablation_rounds,
            50 if quick else ABLATION_NEWS_ROUNDS,
            ablation_seeds,
            users=100 if quick else ABLATION_USERS,
            progress=_note,
        ),
    )
    handler_calls = 20 if quick else min(calls, 500)
    steps.begin(
        "rank handler on moto",
        f"rank handler on moto: {handler_calls:,} calls; the Personalizer API's rank against "
        "/v1 rank",
    )
    save(
        "handler_speed",
        {
            "rank_handler_moto": rank_handler_latency(calls=handler_calls),
            "personalizer_vs_v1": personalizer_rank_latency(calls=min(handler_calls, 300)),
        },
    )
    latency_calls = 20 if quick else 400
    steps.begin(
        "rank handler with AWS latency",
        f"rank handler on moto with 4 and 8 ms per AWS call: {latency_calls:,} calls each",
    )
    save(
        "aws_latency",
        aws_latency(calls=latency_calls, delays=(0.004,) if quick else DELAYS, progress=_note),
    )
    steps.begin(
        "record sizes", "decision record bytes and write units at 20, 100, 1,000 candidates"
    )
    save("record_sizes", record_sizes())
    if not quick:
        _stack_steps(steps, save)
    events = 10 if quick else 1_000
    steps.begin("learner through SQS", f"learner through SQS on moto: {events:,} events")
    learner = learner_bench(learning, events=events, progress=_note)
    save("learner_speed", learner)
    repeats = 1 if quick else 5
    served = 20 if quick else 1_000
    steps.begin(
        "cold start and memory",
        f"cold start ({repeats} per model), model save/load by size, peak memory "
        f"({served:,} ranks)",
    )
    with stored_models(MODEL_SIZES, repeats) as stored:
        save("cold_start", cold_start(repeats, progress=_note, stored=stored))
        save("memory", peak_memory(served, learner=learner, progress=_note, stored=stored))
    if not quick:
        steps.begin(
            "long-lived local stack",
            f"long-lived local stack: {STACK_ROUNDS:,} rank + reward rounds, RSS and rank latency",
        )
        save("stack_memory", stack_memory(STACK_ROUNDS, window=1_000, progress=_note))
        accepted = 500
        steps.begin(
            "restart survival",
            f"restart survival: {accepted:,} rewards accepted, a clean stop, learned after restart",
        )
        save("restart_survival", restart_survival(accepted))


if __name__ == "__main__":
    raise SystemExit(main())
