"""Learner throughput: core only, and through SQS on moto with the learn handler.

Through SQS: a setup process stores simulated decisions of policy ``for-you`` (50 candidates,
5 slots) on moto's server and queues one reward message per event, rewarding every shown slot
the way the webhook queues them (``reward_service.parse_rewards``), so every event closes. A fresh
process then imports ``functions.route.app`` and ``functions.learn.app`` and drains both queues
with the local stack's SQS pollers, batched as ``template.yaml`` sets (the router up to 500 posts,
the FIFO learner 10 messages): route each reward to its policy, join the rewards in bulk, learn
each closed event, save a model version per 90 events, update counters and user profiles,
delete the messages. The figures come from the saved head model's counters, so they count what
was stored.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from benchmarks.fresh_process import (
    ROOT,
    STACK,
    TENANT,
    child_environment,
    child_main,
    current_rss_mb,
    moto_server,
    peak_rss_mb,
    run_child,
)

POLICY = "for-you"
ROUTE_BATCH_SIZE = 500
LEARN_BATCH_SIZE = 10
_COUNTED = ("events_learned", "slot_examples_learned")  # checked against the setup, not reported


def _setup(args: list[str]) -> dict[str, Any]:
    """Child: resources, the shipped policies, ``events`` open decisions and their rewards."""
    events = int(args[0])
    from local.resources import create_resources

    resources = create_resources(STACK)
    os.environ.update(resources)
    import numpy as np

    from bandit.serve.ranker import Ranker
    from bandit.simulate.simulation import Population
    from benchmarks.core_speed import logged_events
    from functions.common import decision_store, policy_store
    from functions.common.aws import sqs
    from functions.common.reward_service import parse_rewards
    from functions.common.settings import settings

    policy_store.seed(TENANT, ROOT / "policies")
    spec = policy_store.get(TENANT, POLICY).spec
    population = Population(seed=11, candidates=50)
    ranker = Ranker(spec, clock=lambda: population.now)
    records = logged_events(population, ranker, events, np.random.default_rng(11), "q")
    messages: list[str] = []
    for record in records:
        clicked = {reward.item_id for reward in record.rewards}
        decision_store.put(
            TENANT,
            record.model_copy(update={"rewards": []}),
            wait_seconds=spec.rewards.wait_seconds,
        )
        body = {
            "rewards": [
                {
                    "event_id": record.event_id,
                    "item_id": item,
                    "type": "click",
                    "value": 1.0 if item in clicked else 0.0,
                    "timestamp": record.timestamp + 1.0,
                }
                for item in record.shown_ids()
            ]
        }
        rewards = parse_rewards(json.dumps(body).encode(), time.time())
        messages.append(
            json.dumps({"tenant": TENANT, "rewards": rewards, "received_at": time.time()})
        )
    queue = settings().reward_queue_url
    for start in range(0, len(messages), 10):
        chunk = messages[start : start + 10]
        sqs().send_message_batch(
            QueueUrl=queue,
            Entries=[{"Id": str(n), "MessageBody": body} for n, body in enumerate(chunk)],
        )
    return {
        "resources": resources,
        "events": events,
        "slot_examples": sum(len(record.slate) for record in records),
    }


def _drain(args: list[str]) -> dict[str, Any]:
    """Child: import the router and the learner and drain both queues through them."""
    from local.lambda_events import FakeLambdaContext

    phases = {"start": current_rss_mb()}
    started = time.perf_counter()
    from functions.learn import app as learn_app
    from functions.route import app as route_app

    imported = time.perf_counter()
    phases["imported"] = current_rss_mb()
    from functions.common import model_store
    from functions.common.settings import settings
    from local.workers import SqsPoller

    def route(event: dict[str, Any]) -> Any:
        return route_app.lambda_handler(event, FakeLambdaContext(timeout_ms=60_000))

    def learn(event: dict[str, Any]) -> Any:
        return learn_app.lambda_handler(event, FakeLambdaContext(timeout_ms=60_000))

    router = SqsPoller(
        settings().reward_queue_url,
        route,
        batch_size=ROUTE_BATCH_SIZE,
        batch_window=1.0,
        wait_seconds=0,
        visibility_timeout=300,
    )
    learner = SqsPoller(
        settings().learn_queue_url,
        learn,
        batch_size=LEARN_BATCH_SIZE,
        wait_seconds=0,
        visibility_timeout=300,
    )
    begun = time.perf_counter()
    while (router.poll_once() + learner.poll_once()) or (
        router.queue_depth(),
        learner.queue_depth(),
    ) != ((0, 0), (0, 0)):
        for poller in (router, learner):
            if poller.stats.failures or poller.stats.errors:
                raise RuntimeError(f"{poller.name} failed on some messages: {poller.stats}")
    elapsed = time.perf_counter() - begun
    phases["drained"] = current_rss_mb()
    head = model_store.versions(TENANT, POLICY)[0]
    return {
        "import_s": imported - started,
        "seconds": elapsed,
        "batches": router.stats.batches + learner.stats.batches,
        "messages": router.stats.messages,
        "learn_messages": learner.stats.messages,
        "events_learned": head.events_learned,
        "slot_examples_learned": head.examples_learned,
        "model_versions": head.version,
        "rss_mb": phases,
        "peak_rss_mb": peak_rss_mb(),
    }


def sqs_learning(
    events: int = 300, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Events and slot examples learned per second by a fresh learn process draining SQS."""
    with moto_server() as endpoint:
        if progress is not None:
            progress(f"storing {events:,} decisions and queueing their rewards")
        setup, _ = run_child(
            "benchmarks.learner_speed", "setup", [str(events)], child_environment(endpoint)
        )
        if progress is not None:
            progress(f"draining {events:,} reward messages through the learn handler")
        drained, _ = run_child(
            "benchmarks.learner_speed",
            "drain",
            [],
            child_environment(endpoint, setup["resources"]),
        )
    if (
        drained["events_learned"] != events
        or drained["slot_examples_learned"] != setup["slot_examples"]
    ):
        raise RuntimeError(
            f"learned {drained['events_learned']} events and "
            f"{drained['slot_examples_learned']} slot examples; expected {events} and "
            f"{setup['slot_examples']}"
        )
    seconds = drained["seconds"]
    return {
        "events": events,
        "slot_examples": setup["slot_examples"],
        "batch_size": ROUTE_BATCH_SIZE,
        "learn_batch_size": LEARN_BATCH_SIZE,
        "candidates": 50,
        "slots": 5,
        **{key: value for key, value in drained.items() if key not in _COUNTED},
        "events_per_second": events / seconds,
        "slot_examples_per_second": setup["slot_examples"] / seconds,
    }


def learner_bench(
    core: dict[str, Any], events: int = 300, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Both figures together: ``core`` (``core_speed.learning_throughput``) and through SQS."""
    return {"core": core, "sqs": sqs_learning(events, progress)}


if __name__ == "__main__":
    raise SystemExit(child_main({"setup": _setup, "drain": _drain}))
