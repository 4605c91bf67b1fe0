"""Concurrent learners: four threads, each with its own ``Learner``, apply overlapping batches of
rewards for many events of one policy. Every closed event is learned exactly once and no saved
update is lost (the head's cumulative counts cover every closed event; one version per save).

This runs on in-process moto (``mock_aws``) with moto's DynamoDB calls serialised by a lock, as
``local.moto_main`` does for the local stack: moto's transactions deep-copy the tables while other
threads write and fail with "dictionary changed size during iteration" otherwise. Only the
storage calls take turns; the learners' reads, VW learning and retries interleave freely.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from typing import Any

import pytest

from functions.common import decision_store, model_store
from functions.common.errors import StorageError
from functions.common.learn_service import Learner, LearnReport
from functions.common.reward_service import parse_rewards
from functions.rank.app import lambda_handler as rank_handler
from tests.reliability.conftest import Api

POLICY = "for-you"
THREADS = 4
BATCH = 10  # rewards per SQS message, as the webhook queues them
FULL, FINAL, PARTIAL = 24, 4, 4  # events rewarded on every slot, by one final click, on 2 slots
REDELIVERIES = 5  # a batch whose learning fails is redelivered, as SQS would


@pytest.fixture
def save_outcomes(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts each ``model_store.save`` by outcome: saved, head moved, already learned."""
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    save = model_store.save

    def counted(*args: Any, **kwargs: Any) -> int:
        try:
            version = save(*args, **kwargs)
        except (model_store.HeadMovedError, model_store.AlreadyLearnedError) as exc:
            with lock:
                outcomes[type(exc).__name__] += 1
            raise
        with lock:
            outcomes["saved"] += 1
        return version

    monkeypatch.setattr(model_store, "save", counted)
    return outcomes


def rank(api: Api) -> dict[str, Any]:
    body = {
        "context": {"user": {"cohort": "a"}},
        "candidates": [{"id": f"item-{i}", "category": f"c{i % 3}"} for i in range(10)],
    }
    status, payload, _ = api.call(
        rank_handler,
        "POST",
        f"/v1/policies/{POLICY}/rank",
        body,
        resource="/v1/policies/{policy}/rank",
    )
    assert status == 200, payload
    return dict(payload)


def rewards_for(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every slot of the first FULL events, a final click on the next FINAL, 2 slots of the rest."""
    posted = []
    for n, event in enumerate(events):
        slots = event["slate"] if n < FULL else event["slate"][: 1 if n < FULL + FINAL else 2]
        final = FULL <= n < FULL + FINAL
        body = [
            {"event_id": event["event_id"], "item_id": s["id"], "type": "click", "final": final}
            for s in slots
        ]
        posted += parse_rewards(json.dumps({"rewards": body}).encode(), time.time())
    return posted


def learner_thread(
    rewards: list[dict[str, Any]], reports: list[LearnReport], errors: list[BaseException]
) -> None:
    """One learner working through its batches; a failed batch is retried like a redelivery."""
    learner = Learner()
    try:
        for start in range(0, len(rewards), BATCH):
            batch = rewards[start : start + BATCH]
            for delivery in range(REDELIVERIES):
                report = learner.apply_rewards("acme", batch)
                reports.append(report)
                if not report.failed_groups:
                    break
                if delivery == REDELIVERIES - 1:
                    raise StorageError(f"still failing after {REDELIVERIES} deliveries")
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def test_four_learners_on_overlapping_batches_learn_every_closed_event_once(
    aws: dict[str, str], api: Api, serialised_dynamodb: None, save_outcomes: Counter[str]
) -> None:
    # Given 32 events of one policy and their rewards: 28 events close, 4 stay open
    events = [rank(api) for _ in range(FULL + FINAL + PARTIAL)]
    rewards = rewards_for(events)
    assert len(rewards) == FULL * 5 + FINAL + PARTIAL * 2 == 132
    # And four threads, each given half of all rewards (every reward goes to two of them),
    # shuffled so that their batches overlap differently
    shares: list[list[dict[str, Any]]] = [[] for _ in range(THREADS)]
    for n, reward in enumerate(rewards):
        shares[n % THREADS].append(reward)
        shares[(n + 1) % THREADS].append(reward)
    for seed, share in enumerate(shares):
        random.Random(seed).shuffle(share)
    reports: list[LearnReport] = []
    errors: list[BaseException] = []
    # When they all learn at once
    threads = [
        threading.Thread(target=learner_thread, args=(share, reports, errors)) for share in shares
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    # Then every closed event was learned once, by exactly one save
    closed, still_open = events[: FULL + FINAL], events[FULL + FINAL :]
    assert sum(r.events_learned for r in reports) == len(closed) == 28
    assert {decision_store.get("acme", e["event_id"]).status for e in closed} == {"learned"}
    assert {decision_store.get("acme", e["event_id"]).status for e in still_open} == {"open"}
    # And every reward was stored once: the second copies (and any redelivered batch's rewards)
    # were duplicates
    stored = sum(len(decision_store.get("acme", e["event_id"]).record.rewards) for e in events)
    assert stored == 132
    # (a reward stored by an attempt that was then retried counts as a duplicate: under this
    # contention, which the learn queue rules out, "applied" may count fewer than were stored)
    outcomes = sum((r.outcomes for r in reports), Counter[str]())
    assert outcomes["applied"] <= 132
    assert outcomes["applied"] + outcomes["duplicate"] == 264
    # And no update was lost: one version per successful save, numbered 1..N without gaps, and
    # the head's cumulative counts hold every closed event (5 slots each: silent slots too)
    saved = sorted(v for r in reports for v in r.versions)
    assert saved == list(range(1, save_outcomes["saved"] + 1))
    head = model_store.versions("acme", POLICY)[0]
    assert head.version == save_outcomes["saved"]
    assert (head.events_learned, head.examples_learned) == (28, 28 * 5)


def test_a_learner_that_cannot_load_the_new_head_loses_no_update(
    aws: dict[str, str], api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given learner A holding version 1 in its cache, and learner B saving version 2 after it
    events = [rank(api) for _ in range(3)]
    rewards = rewards_for(events)  # the first FULL events are rewarded on every slot
    first, second = Learner(), Learner()
    assert first.apply_rewards("acme", rewards[:5]).versions == [1]
    assert second.apply_rewards("acme", rewards[5:10]).versions == [2]
    # When A cannot load version 2 for a moment (a model object unavailable) and learns again
    load = model_store.load

    def unavailable_once(tenant: str, policy: str, version: int) -> Any:
        monkeypatch.setattr(model_store, "load", load)
        raise StorageError("model object unavailable")

    monkeypatch.setattr(model_store, "load", unavailable_once)
    # (refusing to learn is fine: SQS redelivers)
    first.apply_rewards("acme", rewards[10:15])
    # Then whatever A did, B's update is not lost: the head holds every learned event
    head = model_store.versions("acme", POLICY)[0]
    learned = sum(decision_store.get("acme", e["event_id"]).status == "learned" for e in events)
    assert head.events_learned == learned
