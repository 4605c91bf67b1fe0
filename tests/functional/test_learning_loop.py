"""The learning loop on moto: rank -> signed rewards -> SQS -> learn, each event once."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest

from functions.common import counters, decision_store, model_store
from functions.common.auth import NewKey
from functions.common.learn_service import Learner
from functions.common.settings import reset_settings
from functions.rank.app import lambda_handler as rank_handler
from functions.rewards.app import lambda_handler as rewards_handler
from functions.sweep.app import lambda_handler as sweep_handler
from local.lambda_events import FakeLambdaContext, schedule_event
from tests.functional.conftest import Api
from tests.queues import deliver_all, learn_all

RANK = "/v1/policies/{policy}/rank"
CANDIDATES = [
    {"id": f"item-{i}", "category": "sports" if i % 2 else "music", "features": {"len": "short"}}
    for i in range(10)
]


def rank(api: Api, policy: str = "for-you", **extra: Any) -> dict[str, Any]:
    body = {"context": {"user": {"cohort": "a"}}, "candidates": CANDIDATES, **extra}
    status, payload, _ = api.call(
        rank_handler, "POST", f"/v1/policies/{policy}/rank", body, resource=RANK
    )
    assert status == 200, payload
    return payload


def deliver(env: dict[str, str]) -> dict[str, Any]:
    """Route and learn everything queued, as the two event-source mappings would."""
    return {"failures": deliver_all(env)}


def test_rank_reward_learn_loop_learns_each_event_once(
    aws: dict[str, str], api: Api, tenant: NewKey
) -> None:
    # Given a ranked event
    first = rank(api)
    assert first["logged"] is True
    assert first["model_version"] == 0
    assert len(first["slate"]) == 5
    # When a reward for every shown slot is posted, signed, twice
    rewards = {
        "rewards": [
            {"event_id": first["event_id"], "item_id": slot["id"], "type": "click", "value": 1}
            for slot in first["slate"]
        ]
    }
    for _ in range(2):
        status, body, _ = api.call(
            rewards_handler, "POST", "/v1/rewards", json.dumps(rewards), sign_body=True
        )
        assert (status, body) == (202, {"accepted": 5})
    assert deliver(aws)["failures"] == []
    # Then the event was learned exactly once into model version 1
    stored = decision_store.get("acme", first["event_id"])
    assert stored.status == "learned"
    versions = model_store.versions("acme", "for-you")
    assert [v.version for v in versions] == [1]
    assert versions[0].events_learned == 1
    assert versions[0].examples_learned == 5
    # And the popularity counters hold the shown items and the policy totals
    stats, totals = counters.popularity("acme", "for-you", [s["id"] for s in first["slate"]])
    assert sorted(stats) == sorted(s["id"] for s in first["slate"])
    assert totals is not None and (totals.impressions, totals.reward) == (5.0, 5.0)
    # And the next rank serves the new head
    assert rank(api)["model_version"] == 1


def test_probabilities_in_response_equal_the_stored_record(aws: dict[str, str], api: Api) -> None:
    response = rank(api, policy="explore")
    record = decision_store.get("acme", response["event_id"]).record
    assert [(s.item_id, s.probability, s.explored) for s in record.slate] == [
        (s["id"], s["probability"], s["explored"]) for s in response["slate"]
    ]


def test_sweep_learns_silent_events_with_the_default_reward(aws: dict[str, str], api: Api) -> None:
    # Given two events nobody rewarded, and a deferred one never activated
    events = [rank(api)["event_id"] for _ in range(2)]
    deferred = rank(api, defer_activation=True)["event_id"]
    # When the sweep runs after their reward wait
    report = Learner().sweep(now=10**10)
    # Then the silent events are learned (default reward) and the deferred one expires
    assert report.events_learned == 2
    assert report.outcomes["expired"] == 1
    assert {decision_store.get("acme", e).status for e in events} == {"learned"}
    assert decision_store.get("acme", deferred).status == "expired"
    # And a second sweep finds nothing left
    summary = sweep_handler(schedule_event(), FakeLambdaContext())
    assert (summary["passes"], summary["due"]) == (1, 0)


def test_the_scheduled_sweep_hands_due_events_to_their_learner_through_the_queue(
    aws: dict[str, str], api: Api, monkeypatch: Any
) -> None:
    # Given three silent events of two policies whose reward wait is over
    events = [rank(api)["event_id"] for _ in range(2)] + [rank(api, "explore")["event_id"]]
    later = decision_store.get("acme", events[-1]).record.timestamp + 3_600
    monkeypatch.setattr(time, "time", lambda: later)
    # When the scheduled sweep runs (one pass: the test context has too little time for two)
    summary = sweep_handler(schedule_event(), FakeLambdaContext())
    # Then each policy got one message on the learn queue, and nothing is learned yet
    assert {k: summary[k] for k in ("passes", "due", "groups", "failed_groups")} == {
        "passes": 1,
        "due": 3,
        "groups": 2,
        "failed_groups": 0,
    }
    assert {decision_store.get("acme", e).status for e in events} == {"open"}
    # When the learner takes the learn queue
    assert learn_all(aws) == []
    # Then every event is learned, into one new version per policy
    assert {decision_store.get("acme", e).status for e in events} == {"learned"}
    assert [v.version for v in model_store.versions("acme", "for-you")] == [1]
    assert [v.version for v in model_store.versions("acme", "explore")] == [1]


def test_unsigned_or_wrongly_signed_rewards_get_401_and_queue_nothing(
    aws: dict[str, str], api: Api
) -> None:
    event = rank(api)
    body = json.dumps({"event_id": event["event_id"], "item_id": event["slate"][0]["id"]})
    status, payload, _ = api.call(rewards_handler, "POST", "/v1/rewards", body)
    assert status == 401 and payload["error"] == "unauthorized"
    status, payload, _ = api.call(
        rewards_handler,
        "POST",
        "/v1/rewards",
        body,
        headers={"x-serendip-signature": "t=1700000000,v1=" + "0" * 64},
    )
    assert status == 401
    sqs = boto3.client("sqs", region_name="us-east-1")
    attributes = sqs.get_queue_attributes(
        QueueUrl=aws["REWARD_QUEUE_URL"], AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"


def test_the_save_cadence_setting_caps_the_events_per_model_version(
    aws: dict[str, str], api: Api, monkeypatch: Any
) -> None:
    # Given LEARN_EVENTS_PER_SAVE=2 and five silent events whose wait is over
    monkeypatch.setenv("LEARN_EVENTS_PER_SAVE", "2")
    reset_settings()
    events = [rank(api)["event_id"] for _ in range(5)]
    # When the sweep closes them in one go
    report = Learner().sweep(now=10**10)
    # Then they are learned in time order into three versions of 2, 2 and 1 events
    assert (report.events_learned, report.versions) == (5, [1, 2, 3])
    counts = [v.events_learned for v in reversed(model_store.versions("acme", "for-you"))]
    assert counts == [2, 4, 5]
    learned = [decision_store.get("acme", e).record.learned_version for e in events]
    assert learned == [1, 1, 2, 2, 3]


def test_sweep_passes_hand_over_each_due_event_once_until_a_full_pass(
    aws: dict[str, str], api: Api, monkeypatch: Any
) -> None:
    from functions.common import sweep_service
    from functions.common.tables import DecisionItem
    from tests.functional.conftest import queue_depth

    def sweep_at(now: float) -> int:
        report = sweep_service.SweepReport()
        sweep_service.dispatch(now, report)
        return report.due

    # Given two events, and a first pass once their wait is over
    first = [rank(api)["event_id"] for _ in range(2)]
    due_at = decision_store.get("acme", first[-1]).record.timestamp + 601
    assert sweep_at(due_at) == 2
    # When later passes run while the learner has not got to them yet
    later = due_at + sweep_service.INDEX_LAG_SECONDS + 1
    # Then the next pass hands them over once more (the index may lag by up to a minute) and
    # later passes do not (the backlog is not resent on every pass)
    assert sweep_at(later) == 2
    assert sweep_at(later + 30) == 0
    assert sweep_at(later + 60) == 0
    # But an event that fell due since the last pass is (decided after the passes above: its
    # wait ends at later + 70)
    third = rank(api)["event_id"]
    DecisionItem(decision_store.event_key("acme", third)).update(
        actions=[DecisionItem.closes_at.set(later + 70)]
    )
    assert sweep_at(later + 90) == 1
    # And a full pass, every FULL_PASS_SECONDS, hands over all that is still open
    full_pass = due_at + sweep_service.FULL_PASS_SECONDS + 1
    assert sweep_at(full_pass) == 3
    assert queue_depth(aws["LEARN_QUEUE_URL"]) >= 3
    # And the learner closes each event once, however often it was handed over
    monkeypatch.setattr(time, "time", lambda: full_pass)
    assert learn_all(aws) == []
    assert {decision_store.get("acme", e).status for e in [*first, third]} == {"learned"}
    assert model_store.versions("acme", "for-you")[0].events_learned == 3


def test_reward_outcomes_are_one_metric_value_per_batch_not_one_per_reward(
    aws: dict[str, str], api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given 30 ranked events and a click for every shown item (150 rewards), plus 3 orphans
    events = [rank(api) for _ in range(30)]
    clicks = [
        {"event_id": e["event_id"], "item_id": slot["id"], "type": "click", "value": 1}
        for e in events
        for slot in e["slate"]
    ]
    clicks += [
        {"event_id": f"nope-{n}", "item_id": "x", "type": "click", "value": 1} for n in range(3)
    ]
    for start in range(0, len(clicks), 100):
        body = json.dumps({"rewards": clicks[start : start + 100]})
        status, _, _ = api.call(rewards_handler, "POST", "/v1/rewards", body, sign_body=True)
        assert status == 202
    capsys.readouterr()
    # When the router and the learner take them
    assert deliver(aws)["failures"] == []
    # Then each outcome is published as one value per invocation, summing to the rewards
    documents = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line
    ]
    applied = [d["RewardsApplied"] for d in documents if "RewardsApplied" in d]
    orphans = [d["RewardsOrphan"] for d in documents if "RewardsOrphan" in d]
    assert (applied, orphans) == ([[150.0]], [[3.0]])
