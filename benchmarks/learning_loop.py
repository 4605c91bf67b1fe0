"""The learning loop on the local stack: AWS requests per learned event, reward to changed
ranking, and closing a backlog at scale.

Each measure runs ``LocalStack`` in a fresh interpreter (``python -m benchmarks.learning_loop``),
with its state file in a temporary directory, and counts the AWS calls of that process per
function with ``local.aws_calls.record_aws_calls``:

- **requests**: rank N simulated requests over the stack's HTTP API, post one signed ``final``
  reward per event (a click on the first shown item or a 0), wait until the queues are drained
  and the policy's head model counts the N events learned. The calls of the functions without an
  API event (the learner and the sweep: ``local.gateway.api_routes`` tells them apart, so new
  functions count too) are divided by the events learned; the rank and rewards functions' by
  the ranks and posts. The SQS pollers' own receives and deletes (what Lambda's event-source
  mapping does, idle polls included) are reported apart. The sweep keeps its template schedule.
- **freshness**: rank, post a reward for every shown slot (the last one ``final``), then rank
  again until ``model_version`` is past the one that served; the sweep is held off.
- **closing**: ``benchmarks.sweep_backlog`` (20,000 open events whose reward wait has ended,
  closed by the scheduled sweep).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks import sweep_backlog
from benchmarks.fresh_process import child_environment, child_main, run_child
from benchmarks.loop_stack import (
    CANDIDATES,
    HELD_OFF_SECONDS,
    POLICY,
    api_function,
    background_functions,
    head,
    local_stack,
    per_unit,
    per_unit_operations,
    wait_learned,
)

if TYPE_CHECKING:
    from local.client import SerendipClient
    from local.stack import LocalStack

LEARN_TIMEOUT_SECONDS = 300.0
FRESHNESS_TIMEOUT_SECONDS = 30.0
FRESHNESS_POLL_SECONDS = 0.02
# Targets of the learning-loop issue.
DYNAMODB_PER_EVENT = 1.5
FRESHNESS_P95_S = 2.0


@dataclass(frozen=True)
class Sizes:
    """How much each measure does: events per requests run, freshness trials, backlog."""

    events: tuple[int, ...]
    trials: int
    backlog: int


FULL = Sizes(events=(100, 1_000), trials=30, backlog=20_000)
QUICK = Sizes(events=(10,), trials=3, backlog=100)


def _final_reward(event: Mapping[str, Any], clicks: list[bool]) -> dict[str, Any]:
    shown = [str(slot["id"]) for slot in event["slate"]]
    clicked = [item for item, click in zip(shown, clicks, strict=True) if click]
    item = clicked[0] if clicked else shown[0]
    return {"event_id": event["event_id"], "item_id": item, "value": float(bool(clicked))}


def _ranked(client: SerendipClient, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.rank(POLICY, body)
    if answer.status != 200:
        raise RuntimeError(f"rank answered {answer.status}: {answer.body}")
    result: dict[str, Any] = answer.body
    return result


def _posted(client: SerendipClient, rewards: list[dict[str, Any]]) -> None:
    answer = client.post_rewards(rewards)
    if answer.status != 202:
        raise RuntimeError(f"rewards answered {answer.status}: {answer.body}")


# ---------------------------------------------------------------- requests per learned event


def _child_requests(args: list[str]) -> dict[str, Any]:
    """Child: rank, reward and learn ``events`` events on a fresh stack, counting AWS calls."""
    with local_stack() as stack:
        return requests_on(stack, int(args[0]))


def requests_on(stack: LocalStack, events: int) -> dict[str, Any]:
    """Rank, reward and learn ``events`` events on ``stack``, counting this process's AWS calls.

    The head model's count must reach ``events``: ``stack`` has learned nothing for ``POLICY``
    before (a fresh stack).
    """
    from bandit.simulate.simulation import Population
    from local.aws_calls import record_aws_calls
    from local.client import SerendipClient
    from local.demo import rank_body

    population = Population(seed=5, candidates=CANDIDATES)
    rng = np.random.default_rng(5)
    with record_aws_calls() as calls:
        client = SerendipClient(stack.url, stack.api_key, stack.webhook_secret)
        started = time.perf_counter()
        served = []
        for _ in range(events):
            request = population.next_request()
            event = _ranked(client, rank_body(request))
            shown = [str(slot["id"]) for slot in event["slate"]]
            served.append((event, population.clicks(request.user_id, shown, rng)))
        ranked = time.perf_counter()
        for event, clicks in served:
            _posted(client, [{**_final_reward(event, clicks), "final": True}])
        posted = time.perf_counter()
        stack.drain(LEARN_TIMEOUT_SECONDS)
        learned = wait_learned(stack.tenant, POLICY, events, LEARN_TIMEOUT_SECONDS)
        done = time.perf_counter()
        background = background_functions(stack.functions)
        rank_function = api_function(stack.functions, "POST", "/v1/policies/{policy}/rank")
        rewards_function = api_function(stack.functions, "POST", "/v1/rewards")
        pollers = {poller.name for poller in stack.pollers}
        batches = sum(poller.stats.batches for poller in stack.pollers)
        messages = sum(poller.stats.messages for poller in stack.pollers)
        sweeps = sum(scheduler.runs for scheduler in stack.schedulers)
        versions = head(stack.tenant, POLICY)[0]
    learners = calls.of(background)
    event_source = calls.where(lambda call: call.function is None and call.thread in pollers)
    return {
        "events": events,
        "events_learned": learned,
        "candidates": CANDIDATES,
        "background_functions": background,
        "per_learned_event": per_unit(learners, learned),
        "per_learned_event_by_operation": per_unit_operations(learners, learned),
        "per_rank": per_unit(calls.of([rank_function]), events),
        "per_reward_post": per_unit(calls.of([rewards_function]), events),
        "event_source_per_event": per_unit(event_source, learned),
        "batches": batches,
        "messages": messages,
        "sweep_runs": sweeps,
        "model_versions": versions,
        "seconds": {"rank": ranked - started, "post": posted - ranked, "learn": done - posted},
        "calls": learners.summary(),
    }


def requests_per_event(events: int) -> dict[str, Any]:
    """AWS requests per learned event, rank and reward post, on a fresh local stack."""
    result, wall = run_child(
        "benchmarks.learning_loop", "requests", [str(events)], child_environment()
    )
    return {**result, "wall_s": wall}


# ---------------------------------------------------------------- reward to changed ranking


def _child_freshness(args: list[str]) -> dict[str, Any]:
    """Child: ``trials`` times, rank, reward every slot, rank until the model moved on."""
    with local_stack(sweep_interval=HELD_OFF_SECONDS) as stack:
        return freshness_on(stack, int(args[0]))


def freshness_on(stack: LocalStack, trials: int) -> dict[str, Any]:
    """``trials`` times on ``stack`` (its sweep held off): rank, reward every slot, rank until
    the model moved on."""
    from bandit.simulate.simulation import Population
    from local.client import SerendipClient
    from local.demo import rank_body

    population = Population(seed=7, candidates=CANDIDATES)
    rng = np.random.default_rng(7)
    seconds: list[float] = []
    polls: list[int] = []
    client = SerendipClient(stack.url, stack.api_key, stack.webhook_secret)
    _ranked(client, rank_body(population.next_request()))  # warm-up
    for _ in range(trials):
        request = population.next_request()
        body = rank_body(request)
        event = _ranked(client, body)
        shown = [str(slot["id"]) for slot in event["slate"]]
        clicks = population.clicks(request.user_id, shown, rng)
        rewards = [
            {"event_id": event["event_id"], "item_id": item, "value": float(click)}
            for item, click in zip(shown, clicks, strict=True)
        ]
        rewards[-1]["final"] = True
        began = time.perf_counter()
        _posted(client, rewards)
        count = 0
        while True:
            count += 1
            if _ranked(client, body)["model_version"] > event["model_version"]:
                break
            if time.perf_counter() - began > FRESHNESS_TIMEOUT_SECONDS:
                raise TimeoutError(f"no new model {FRESHNESS_TIMEOUT_SECONDS:.0f} s after")
            time.sleep(FRESHNESS_POLL_SECONDS)
        seconds.append(time.perf_counter() - began)
        polls.append(count)
    return {
        "trials": trials,
        "candidates": CANDIDATES,
        "poll_interval_s": FRESHNESS_POLL_SECONDS,
        "p50_s": float(np.percentile(seconds, 50)),
        "p95_s": float(np.percentile(seconds, 95)),
        "max_s": max(seconds),
        "min_s": min(seconds),
        "mean_polls": statistics.fmean(polls),
    }


def reward_to_ranking(trials: int = 30) -> dict[str, Any]:
    """Seconds from posting an event's rewards to a rank served by a newer model, p50/p95."""
    result, wall = run_child(
        "benchmarks.learning_loop", "freshness", [str(trials)], child_environment()
    )
    return {**result, "wall_s": wall}


# ---------------------------------------------------------------- all of it, and its section


def learning_loop_bench(
    quick: bool = False, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Every measure of the module (``--quick``: tiny counts), with its targets."""
    sizes = QUICK if quick else FULL
    note = progress or (lambda message: None)
    requests: dict[str, Any] = {}
    for events in sizes.events:
        note(f"AWS requests per learned event: {events:,} events ranked, rewarded, learned")
        requests[str(events)] = requests_per_event(events)
    note(f"reward -> changed ranking: {sizes.trials} trials")
    freshness = reward_to_ranking(sizes.trials)
    note(f"closing at scale: {sizes.backlog:,} open events whose reward wait has ended")
    closing = sweep_backlog.closing_at_scale(sizes.backlog, quick=quick)
    return {"quick": quick, "requests": requests, "freshness": freshness, "closing": closing}


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def target_rows(result: Mapping[str, Any]) -> list[str]:
    """The targets of the learning loop, their figures and verdicts, as table rows."""
    rows = []
    for size, run in result["requests"].items():
        dynamodb = run["per_learned_event"]["dynamodb"]
        rows.append(
            f"| <= {DYNAMODB_PER_EVENT:g} DynamoDB requests per learned event ({int(size):,} "
            f"events) | {dynamodb:.2f} | {_verdict(dynamodb <= DYNAMODB_PER_EVENT)} |"
        )
    fresh = result["freshness"]
    rows.append(
        f"| reward -> changed ranking p95 <= {FRESHNESS_P95_S:g} s ({fresh['trials']} trials) "
        f"| {fresh['p95_s']:.2f} s | {_verdict(fresh['p95_s'] <= FRESHNESS_P95_S)} |"
    )
    return rows + sweep_backlog.target_rows(result["closing"])


def _services(figures: Mapping[str, float]) -> str:
    """``DynamoDB / SQS / S3`` requests of a per-unit figure.

    >>> _services({"dynamodb": 7.482, "sqs": 0.0, "s3": 0.0, "total": 7.482})
    '7.48 / 0.00 / 0.00'
    """
    return " / ".join(f"{figures[service]:.2f}" for service in ("dynamodb", "sqs", "s3"))


def markdown(result: dict[str, Any]) -> list[str]:
    """The "Learning loop" section of the performance document, as lines."""
    runs = result["requests"]
    first = next(iter(runs.values()))
    background = ", ".join(f"`{name}`" for name in first["background_functions"])
    # A quick run (benchmarks.quick_stack) runs the measures one after another on one stack.
    fresh = "one stack for all, in turn" if result.get("shared_stack") else "a fresh process each"
    lines = [
        "## Learning loop",
        "",
        f"On the local stack (`LocalStack`, {fresh}), AWS calls counted per "
        'function by `local.aws_calls`. Command: `make bench` (step "learning loop").',
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        *target_rows(result),
        "",
        "### AWS requests per learned event",
        "",
        f"Rank N requests ({first['candidates']} candidates) over HTTP, post one signed final "
        f"reward per event, wait until the head model has learned them all. Per learned event: "
        f"the calls of the functions without an API event ({background}); per rank and per "
        "reward post: those functions' calls. Event source: the SQS pollers' own receives and "
        "deletes (Lambda's event-source mapping), idle polls included. Requests as "
        "DynamoDB / SQS / S3.",
        "",
        "| events | per learned event | per rank | per reward post | event source per event "
        "| batches delivered | model versions | sweep runs |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, run in runs.items():
        cells = [
            _services(run[key])
            for key in (
                "per_learned_event",
                "per_rank",
                "per_reward_post",
                "event_source_per_event",
            )
        ]
        lines.append(
            f"| {int(size):,} | {' | '.join(cells)} | {run['batches']:,} "
            f"| {run['model_versions']:,} | {run['sweep_runs']} |"
        )
    largest = runs[max(runs, key=int)]
    operations = largest["per_learned_event_by_operation"].get("dynamodb", {})
    shown = ", ".join(f"{name} {value:.2f}" for name, value in operations.items())
    lines += [
        "",
        f"DynamoDB per learned event by operation ({int(largest['events']):,} events): {shown}.",
        "",
        "### Reward to changed ranking",
        "",
        "Rank, post a reward for every shown slot (the last one `final`), then rank again every "
        f"{result['freshness']['poll_interval_s'] * 1e3:.0f} ms until the response's "
        "`model_version` is past the one that served.",
        "",
        "| trials | p50 | p95 | min | max |",
        "|---:|---:|---:|---:|---:|",
    ]
    fresh = result["freshness"]
    lines.append(
        f"| {fresh['trials']} | {fresh['p50_s']:.2f} s | {fresh['p95_s']:.2f} s "
        f"| {fresh['min_s']:.2f} s | {fresh['max_s']:.2f} s |"
    )
    return [*lines, "", *sweep_backlog.markdown(result["closing"])]


if __name__ == "__main__":
    sys.exit(child_main({"requests": _child_requests, "freshness": _child_freshness}))
