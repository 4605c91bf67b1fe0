"""Core speed: rank latency at (candidates, slots) and learning throughput, core only.

Each rank size also times raw VW predicting the same request on examples parsed beforehand
(the floor for ``Ranker.rank``'s overhead) and reports core rank over that floor.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from vowpalwabbit import Workspace

from bandit.decision_log import DecisionRecord, LoggedReward
from bandit.learn.learning import learn_record
from bandit.serve.features import action_lines, shared_line
from bandit.serve.ranker import Ranker, RankRequest
from bandit.serve.vw import VWModel, read_envelope
from bandit.simulate.simulation import Population
from bandit.spec import parse_spec

# Raw VW predicts each request's prebuilt examples this many times (every predict is a sample).
PREBUILT_REPEATS = 3


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50, p95, p99 and mean of durations in seconds, in milliseconds.

    >>> percentiles([0.001, 0.002, 0.003])["p50_ms"]
    2.0
    """
    ms = np.asarray(samples) * 1e3
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
    }


def logged_events(
    population: Population,
    ranker: Ranker,
    count: int,
    rng: np.random.Generator,
    prefix: str,
) -> list[DecisionRecord]:
    """Rank ``count`` simulated requests and return their closed records with click rewards."""
    records = []
    for t in range(count):
        request = population.next_request()
        result = ranker.rank(
            RankRequest(f"{prefix}{t}", request.context, request.candidates, request.user_id)
        )
        ids = [s.item_id for s in result.slots]
        clicks = population.clicks(request.user_id, ids, rng)
        rewards = [
            LoggedReward(item_id=i, type="click", timestamp=population.now + 1)
            for i, c in zip(ids, clicks, strict=True)
            if c
        ]
        records.append(result.record(ranker.spec, 0).model_copy(update={"rewards": rewards}))
    return records


class PrebuiltVW:
    """A bare VW workspace with a model's weights, timing predicts on examples parsed first."""

    def __init__(self, model: VWModel) -> None:
        _, blob = read_envelope(model.to_bytes())
        with tempfile.TemporaryDirectory(prefix="serendip-core-") as directory:
            path = os.path.join(directory, "model.vw")
            with open(path, "wb") as handle:
                handle.write(blob)
            self._vw = Workspace(arg_list=["--quiet", "-i", path])

    def predict_seconds(self, shared: str, actions: Sequence[str], repeats: int) -> list[float]:
        """Seconds of each of ``repeats`` predicts on one parse of the request (parse untimed)."""
        examples = self._vw.parse([shared, *actions])
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            self._vw.predict(examples)
            seconds.append(time.perf_counter() - started)
        self._vw.finish_example(examples)
        return seconds

    def close(self) -> None:
        """Release VW's native resources."""
        self._vw.finish()


# (candidates, slots) measured by ``rank_sizes``, with the warm-up events and calls of a full run:
# the largest size learns 20 slots over 500 candidates per event, so it warms up on fewer.
RANK_SIZES: tuple[tuple[int, int, int, int], ...] = (
    (20, 5, 1_000, 3_000),
    (100, 10, 1_000, 3_000),
    (500, 20, 200, 1_000),
)
QUICK_RANK_SIZES: tuple[tuple[int, int, int, int], ...] = (
    (20, 5, 100, 100),
    (100, 10, 100, 100),
    (500, 20, 10, 20),
)


def size_key(candidates: int, slots: int) -> str:
    """The result key of one (candidates, slots) size, e.g. ``"100x10"``."""
    return f"{candidates}x{slots}"


def rank_latency(
    candidates: int = 100, slots: int = 10, warmup: int = 1_000, calls: int = 3_000, seed: int = 5
) -> dict[str, Any]:
    """Latency of ``Ranker.rank`` on a model trained on ``warmup`` events.

    Also times building the decision record, which the stack does after ranking, and raw VW
    predicting the request on prebuilt examples with the same weights (``PrebuiltVW``). The
    catalog holds at least twice as many items as there are candidates.
    """
    population = Population(seed=seed, candidates=candidates, n_items=max(400, 2 * candidates))
    spec = parse_spec(
        {
            "name": "bench",
            "slate_size": slots,
            "exploration": {"budget": 0.1},
            "diversity": {"max_per_category": 3},
        }
    )
    ranker = Ranker(spec, clock=lambda: population.now)
    rng = np.random.default_rng(seed)
    for record in logged_events(population, ranker, warmup, rng, "w"):
        learn_record(ranker.model, record, spec)
    requests = [population.next_request() for _ in range(calls)]
    rank_times: list[float] = []
    record_times: list[float] = []
    for t, request in enumerate(requests):
        rank_request = RankRequest(f"b{t}", request.context, request.candidates, request.user_id)
        started = time.perf_counter()
        result = ranker.rank(rank_request)
        ranked = time.perf_counter()
        result.record(spec, 1)
        record_times.append(time.perf_counter() - ranked)
        rank_times.append(ranked - started)
    # The floor on the same requests, in a loop of its own so it leaves rank's timings alone.
    prebuilt_times: list[float] = []
    floor = PrebuiltVW(ranker.model)
    for request in requests:
        shared, actions = shared_line(request.context), action_lines(request.candidates)
        prebuilt_times.extend(floor.predict_seconds(shared, actions, PREBUILT_REPEATS))
    floor.close()
    rank, prebuilt = percentiles(rank_times), percentiles(prebuilt_times)
    return {
        "candidates": candidates,
        "slots": slots,
        "calls": calls,
        "warmup_events": warmup,
        "rank": rank,
        "record": percentiles(record_times),
        "vw_prebuilt": prebuilt,
        "rank_over_vw_prebuilt_p50": rank["p50_ms"] / prebuilt["p50_ms"],
    }


def rank_sizes(
    sizes: tuple[tuple[int, int, int, int], ...] = RANK_SIZES,
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """``rank_latency`` at each (candidates, slots, warm-up events, calls), keyed ``"CxS"``.

    >>> sorted(rank_sizes(((5, 2, 5, 5),)))
    ['5x2']
    """
    results: dict[str, dict[str, Any]] = {}
    for candidates, slots, warmup, calls in sizes:
        if progress is not None:
            progress(f"{candidates} candidates, {slots} slots: {calls:,} calls")
        results[size_key(candidates, slots)] = rank_latency(
            candidates, slots, warmup=warmup, calls=calls
        )
    return results


def learning_throughput(events: int = 3_000, seed: int = 9) -> dict[str, Any]:
    """Slot examples and events learned per second from closed decision records."""
    population = Population(seed=seed, candidates=50)
    spec = parse_spec({"name": "bench", "slate_size": 5, "exploration": {"budget": 0.1}})
    ranker = Ranker(spec, clock=lambda: population.now)
    rng = np.random.default_rng(seed)
    records = logged_events(population, ranker, events, rng, "l")
    model = ranker.model
    started = time.perf_counter()
    slot_examples = sum(learn_record(model, record, spec) for record in records)
    elapsed = time.perf_counter() - started
    return {
        "events": events,
        "slot_examples": slot_examples,
        "seconds": elapsed,
        "events_per_second": events / elapsed,
        "slot_examples_per_second": slot_examples / elapsed,
    }
