"""Exactly once under SQS's at-least-once delivery: redelivered messages, reposted rewards, a
sweep racing a final reward, and a learner that crashes mid-batch. Each is checked against the
model's own counts (events and slot examples learned) and the events' status. In-process moto;
the race runs two threads with moto's DynamoDB calls serialised (see ``serialised_dynamodb``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from functions.common import decision_store, model_store
from functions.common.learn_service import Learner, LearnReport
from functions.common.reward_service import parse_rewards
from functions.learn.app import lambda_handler as learn_handler
from functions.rank.app import lambda_handler as rank_handler
from functions.rewards.app import lambda_handler as rewards_handler
from local.lambda_events import FakeLambdaContext
from tests import queues
from tests.queues import route_all
from tests.reliability.conftest import Api

POLICY = "for-you"
CANDIDATES = [{"id": f"item-{i}", "category": f"c{i % 3}"} for i in range(10)]


def rank(api: Api) -> dict[str, Any]:
    body = {"context": {"user": {"cohort": "a"}}, "candidates": CANDIDATES}
    path = f"/v1/policies/{POLICY}/rank"
    status, payload, _ = api.call(
        rank_handler, "POST", path, body, resource="/v1/policies/{policy}/rank"
    )
    assert status == 200, payload
    return dict(payload)


def clicks(event: dict[str, Any], final: bool = False) -> list[dict[str, Any]]:
    """A click on every shown slot (or one final click on the first), as the webhook queues it."""
    slots = event["slate"][:1] if final else event["slate"]
    body = [
        {"event_id": event["event_id"], "item_id": s["id"], "type": "click", "final": final}
        for s in slots
    ]
    return parse_rewards(json.dumps({"rewards": body}).encode(), time.time())


def post(api: Api, rewards: list[dict[str, Any]]) -> None:
    body = json.dumps(
        {"rewards": [{k: r[k] for k in ("event_id", "item_id", "type")} for r in rewards]}
    )
    status, payload, _ = api.call(rewards_handler, "POST", "/v1/rewards", body, sign_body=True)
    assert (status, payload) == (202, {"accepted": len(rewards)})


def receive_all(env: dict[str, str]) -> dict[str, Any]:
    """Route everything posted, then every learn-queue message as one Lambda SQS event (not
    deleted: left to redeliver)."""
    assert route_all(env) == []
    return queues.receive_all(env["LEARN_QUEUE_URL"], visibility=0)


def head() -> model_store.VersionInfo:
    return model_store.versions("acme", POLICY)[0]


def statuses(events: list[dict[str, Any]]) -> list[str]:
    return [decision_store.get("acme", e["event_id"]).status for e in events]


def test_the_same_sqs_message_delivered_twice_is_learned_once(
    aws: dict[str, str], api: Api
) -> None:
    # Given two events, every slot rewarded in one queued post
    events = [rank(api) for _ in range(2)]
    post(api, clicks(events[0]) + clicks(events[1]))
    delivery = receive_all(aws)
    # When the learner gets the same message twice
    first = learn_handler(delivery, FakeLambdaContext())
    second = learn_handler(delivery, FakeLambdaContext())
    # Then both succeed, the second changes nothing
    assert first == second == {"batchItemFailures": []}
    assert [v.version for v in model_store.versions("acme", POLICY)] == [1]
    assert (head().events_learned, head().examples_learned) == (2, 10)
    assert statuses(events) == ["learned", "learned"]
    assert [len(decision_store.get("acme", e["event_id"]).record.rewards) for e in events] == [5, 5]


def test_the_same_reward_posted_twice_is_learned_once(aws: dict[str, str], api: Api) -> None:
    # Given an event whose rewards are posted, delivered and learned
    event = rank(api)
    post(api, clicks(event))
    assert learn_handler(receive_all(aws), FakeLambdaContext()) == {"batchItemFailures": []}
    boto3.client("sqs", region_name="us-east-1").purge_queue(QueueUrl=aws["LEARN_QUEUE_URL"])
    # When the app retries the very same post and it is delivered too
    post(api, clicks(event))
    assert learn_handler(receive_all(aws), FakeLambdaContext()) == {"batchItemFailures": []}
    # Then nothing more is learned and the retried rewards are duplicates, not late rewards
    assert [v.version for v in model_store.versions("acme", POLICY)] == [1]
    assert (head().events_learned, head().examples_learned) == (1, 5)
    stored = decision_store.get("acme", event["event_id"])
    assert stored.status == "learned" and len(stored.record.rewards) == 5
    assert [r.late for r in stored.record.rewards] == [False] * 5


def test_sweep_and_final_reward_closing_the_same_event_learn_it_once(
    aws: dict[str, str], api: Api, serialised_dynamodb: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an activated event the sweep will find due, and a final reward for it
    event = rank(api)
    final = clicks(event, final=True)
    # And both learners held at the door of their first save until the other one is there too,
    # so both have learned the event on the same head and race for the same transaction
    save = model_store.save
    door = threading.Barrier(2, timeout=20)
    held: set[int] = set()

    def save_after_both_learned(*args: Any, **kwargs: Any) -> int:
        if threading.get_ident() not in held:
            held.add(threading.get_ident())
            door.wait()
        return save(*args, **kwargs)

    monkeypatch.setattr(model_store, "save", save_after_both_learned)
    reports: dict[str, LearnReport] = {}
    errors: list[BaseException] = []

    def run(name: str, work: Callable[[], LearnReport]) -> None:
        try:
            reports[name] = work()
        except BaseException as exc:  # reported below, with the thread's name
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=("sweep", lambda: Learner().sweep(now=10**10))),
        threading.Thread(
            target=run, args=("reward", lambda: Learner().apply_rewards("acme", final))
        ),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # Then exactly one of them learned it, into version 1
    assert errors == []
    assert sorted(r.events_learned for r in reports.values()) == [0, 1]
    # (the final reward is applied if its learner won, else kept as late: never both, never lost)
    outcomes = reports["reward"].outcomes
    assert outcomes["applied"] + outcomes["late"] == 1
    stored = decision_store.get("acme", event["event_id"]).record.rewards
    assert [(r.item_id, r.final) for r in stored] == [(event["slate"][0]["id"], True)]
    assert [v.version for v in model_store.versions("acme", POLICY)] == [1]
    assert (head().events_learned, head().examples_learned) == (1, 5)
    assert statuses([event]) == ["learned"]


def retried(result: dict[str, Any]) -> set[str]:
    return {failure["itemIdentifier"] for failure in result["batchItemFailures"]}


def message_ids(delivery: dict[str, Any]) -> set[str]:
    return {record["messageId"] for record in delivery["Records"]}


def test_a_learner_that_crashes_mid_batch_and_is_retried_learns_each_event_once(
    aws: dict[str, str], api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given three events, all rewarded, queued in one delivery
    events = [rank(api) for _ in range(3)]
    post(api, [r for e in events for r in clicks(e)])
    delivery = receive_all(aws)
    # When the save of the first attempt fails (the process dies after joining and learning)
    save = model_store.save
    calls: list[int] = []

    def crash_once(*args: Any, **kwargs: Any) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("learner killed mid-batch")
        return save(*args, **kwargs)

    monkeypatch.setattr(model_store, "save", crash_once)
    first = learn_handler(delivery, FakeLambdaContext())
    # Then every message that touched the policy is handed back for redelivery,
    # nothing was learned and the events are still open, rewards attached
    assert retried(first) == message_ids(delivery)
    assert model_store.versions("acme", POLICY) == []
    assert statuses(events) == ["open"] * 3
    # When SQS redelivers the batch
    assert learn_handler(delivery, FakeLambdaContext()) == {"batchItemFailures": []}
    # Then every event is learned once, nothing lost
    assert [v.version for v in model_store.versions("acme", POLICY)] == [1]
    assert (head().events_learned, head().examples_learned) == (3, 15)
    assert statuses(events) == ["learned"] * 3


def test_a_learner_that_crashes_after_saving_is_retried_without_learning_again(
    aws: dict[str, str], api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two rewarded events, and a learner that dies after its save (before SQS deletes)
    events = [rank(api) for _ in range(2)]
    post(api, [r for e in events for r in clicks(e)])
    delivery = receive_all(aws)
    after = Learner._after_learning
    calls: list[int] = []

    def crash_once(*args: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("learner killed after saving")
        after(*args)

    monkeypatch.setattr(Learner, "_after_learning", staticmethod(crash_once))
    assert retried(learn_handler(delivery, FakeLambdaContext())) == message_ids(delivery)
    # When the batch is redelivered
    assert learn_handler(delivery, FakeLambdaContext()) == {"batchItemFailures": []}
    # Then the saved version stands alone: nothing learned twice
    assert [v.version for v in model_store.versions("acme", POLICY)] == [1]
    assert (head().events_learned, head().examples_learned) == (2, 10)
    assert statuses(events) == ["learned"] * 2
