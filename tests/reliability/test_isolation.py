"""Failure isolation in the learning loop: one bad reward, event, policy or tenant never stops
another from being learned. Data problems are handled on purpose (learned without the bad reward,
or set aside as ``failed`` with a reason, visible in the event's status); outages of one policy
are retried for the messages that touched it alone. In-process moto, real handlers.
"""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest

from functions.common import decision_store, model_store, open_events, policy_store
from functions.common.auth import NewKey
from functions.common.errors import StorageError
from functions.common.tables import DecisionItem, PolicyItem
from functions.learn.app import lambda_handler as learn_handler
from functions.rank.app import lambda_handler as rank_handler
from functions.rewards.app import lambda_handler as rewards_handler
from local.lambda_events import FakeLambdaContext
from tests import queues
from tests.queues import deliver_all, route_all
from tests.reliability.conftest import Api

CANDIDATES = [{"id": f"item-{i}", "category": f"c{i % 3}"} for i in range(10)]
RANK = "/v1/policies/{policy}/rank"


def rank(api: Api, policy: str = "for-you") -> dict[str, Any]:
    body = {"context": {"user": {"cohort": "a"}}, "candidates": CANDIDATES}
    status, payload, _ = api.call(
        rank_handler, "POST", f"/v1/policies/{policy}/rank", body, resource=RANK
    )
    assert status == 200, payload
    return dict(payload)


def post(api: Api, rewards: list[dict[str, Any]]) -> None:
    status, payload, _ = api.call(
        rewards_handler, "POST", "/v1/rewards", json.dumps({"rewards": rewards}), sign_body=True
    )
    assert (status, payload) == (202, {"accepted": len(rewards)}), payload


def clicks(event: dict[str, Any], kind: str = "click", **extra: Any) -> list[dict[str, Any]]:
    return [
        {"event_id": event["event_id"], "item_id": slot["id"], "type": kind, **extra}
        for slot in event["slate"]
    ]


def receive_all(env: dict[str, str]) -> dict[str, Any]:
    """Route every posted reward, then every learn-queue message as one Lambda SQS event."""
    assert route_all(env) == []
    return queues.receive_all(env["LEARN_QUEUE_URL"])


def groups_of(delivery: dict[str, Any]) -> dict[tuple[str, str], str]:
    """The learn-queue message of each (tenant, policy) in ``delivery``."""
    out = {}
    for record in delivery["Records"]:
        body = json.loads(record["body"])
        out[(body["tenant"], body["policy"])] = record["messageId"]
    return out


def status_of(api: Api, event_id: str) -> dict[str, Any]:
    status, payload, _ = api.call(
        rewards_handler, "GET", f"/v1/events/{event_id}", resource="/v1/events/{event_id}"
    )
    assert status == 200, payload
    return dict(payload)


def learned_events(tenant: str, policy: str) -> int:
    versions = model_store.versions(tenant, policy)
    return versions[0].events_learned if versions else 0


def corrupt_record(tenant: str, event_id: str) -> None:
    DecisionItem(decision_store.event_key(tenant, event_id)).update(
        actions=[DecisionItem.record.set(b"not zlib at all")]
    )


def delete_policy(tenant: str, policy: str) -> None:
    PolicyItem(tenant, policy).delete()


def doomed_policy(tenant: str) -> None:
    spec = policy_store.get(tenant, "for-you").spec.model_copy(update={"name": "doomed"})
    policy_store.put(tenant, spec)


def test_poison_for_one_tenant_never_holds_back_good_events_of_either_tenant(
    aws: dict[str, str], api: Api, tenant: NewKey, other_tenant: NewKey
) -> None:
    other = Api(other_tenant)
    doomed_policy("acme")
    # Given good events of acme and globex, and three poisoned events of acme
    good_acme = [rank(api) for _ in range(3)]
    good_globex = [rank(other) for _ in range(3)]
    unknown_type = rank(api)
    undecodable = rank(api)
    orphaned = rank(api, "doomed")
    # ... rewarded in one go (one delivery of every message)
    for event in good_acme:
        post(api, clicks(event))
    for event in good_globex:
        post(other, clicks(event))
    post(api, [*clicks(unknown_type), *clicks(unknown_type, "like")])
    post(api, clicks(undecodable))
    post(api, clicks(orphaned))
    corrupt_record("acme", undecodable["event_id"])
    delete_policy("acme", "doomed")
    delivery = receive_all(aws)
    # (the router made one message per policy of the nine posts)
    assert set(groups_of(delivery)) == {
        ("acme", "for-you"),
        ("acme", "doomed"),
        ("globex", "for-you"),
    }
    # When the learner gets the whole delivery once
    result = learn_handler(delivery, FakeLambdaContext())
    # Then nothing is handed back for redelivery, and every good event is learned now
    assert result == {"batchItemFailures": []}
    assert learned_events("acme", "for-you") == 4  # 3 good + the one with an unknown type
    assert learned_events("globex", "for-you") == 3
    for event in [*good_acme, unknown_type]:
        assert status_of(api, event["event_id"])["status"] == "learned"
    for event in good_globex:
        assert status_of(other, event["event_id"])["status"] == "learned"
    # And the unknown type was kept, not learned: five clicks worth 1, five likes ignored
    record = decision_store.get("acme", unknown_type["event_id"]).record
    assert [r.type for r in record.rewards].count("like") == 5
    # And the two events that cannot be learned are set aside with their reasons
    broken = status_of(api, undecodable["event_id"])
    assert broken["status"] == "failed"
    assert broken["reason"].startswith("undecodable record")
    gone = status_of(api, orphaned["event_id"])
    assert (gone["status"], gone["reason"]) == ("failed", "policy 'doomed' no longer exists")
    # (listed per policy, as `serendip events failed --policy` shows them)
    assert [e["event_id"] for e in decision_store.failed("acme", "for-you")] == [
        undecodable["event_id"]
    ]
    assert [e["event_id"] for e in decision_store.failed("acme", "doomed")] == [
        orphaned["event_id"]
    ]
    # And nothing went to the DLQ
    dlq = boto3.client("sqs", region_name="us-east-1")
    depth = dlq.get_queue_attributes(
        QueueUrl=aws["REWARD_DLQ_URL"], AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]["ApproximateNumberOfMessages"]
    assert depth == "0"


def test_the_sweep_sets_poison_aside_and_closes_everything_else(
    aws: dict[str, str], api: Api, tenant: NewKey, other_tenant: NewKey
) -> None:
    other = Api(other_tenant)
    doomed_policy("acme")
    # Given events that will time out: good ones of both tenants, and poison of acme
    good = [rank(api) for _ in range(2)]
    good_other = [rank(other) for _ in range(2)]
    undecodable, orphaned = rank(api), rank(api, "doomed")
    removed_type = rank(api)
    post(api, clicks(removed_type, "purchase")[:1])  # a type for-you values ... for now
    assert deliver_all(aws) == []
    corrupt_record("acme", undecodable["event_id"])
    delete_policy("acme", "doomed")
    # ... and a spec change that removes the reward type while the event is open
    spec = policy_store.get("acme", "for-you").spec
    types = {k: v for k, v in spec.rewards.types.items() if k != "purchase"}
    assert types != spec.rewards.types
    policy_store.put(
        "acme",
        spec.model_copy(update={"rewards": spec.rewards.model_copy(update={"types": types})}),
    )
    # When the sweep runs after every reward wait
    later = time.time() + 7 * 86400 + 60
    summary = _sweep(later)
    # Then every good event is learned, the poison is set aside, and a second sweep has nothing
    assert (summary["events_learned"], summary["failed"], summary["policies_failed"]) == (5, 2, 0)
    assert learned_events("acme", "for-you") == 3
    assert learned_events("globex", "for-you") == 2
    for event in [*good, removed_type]:
        assert status_of(api, event["event_id"])["status"] == "learned"
    for event in good_other:
        assert status_of(other, event["event_id"])["status"] == "learned"
    assert [status_of(api, e["event_id"])["status"] for e in (undecodable, orphaned)] == [
        "failed",
        "failed",
    ]
    again = _sweep(later)
    assert (again["events_learned"], again["failed"]) == (0, 0)
    assert list(open_events.due_keys(later)) == []


def test_an_outage_of_one_policy_retries_only_the_messages_that_touched_it(
    aws: dict[str, str],
    api: Api,
    tenant: NewKey,
    other_tenant: NewKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = Api(other_tenant)
    # Given rewarded events of acme's two policies and of globex, one message each
    acme_for_you, acme_explore, globex = rank(api), rank(api, "explore"), rank(other)
    post(api, clicks(acme_for_you))
    post(api, clicks(acme_explore))
    post(other, clicks(globex))
    delivery = receive_all(aws)
    groups = groups_of(delivery)
    # When saving acme's explore model fails (DynamoDB throttles that policy's partition)
    save = model_store.save

    def throttled(tenant_id: str, policy: str, *args: Any, **kwargs: Any) -> int:
        if (tenant_id, policy) == ("acme", "explore"):
            raise StorageError("model save failed: ProvisionedThroughputExceededException")
        return save(tenant_id, policy, *args, **kwargs)

    monkeypatch.setattr(model_store, "save", throttled)
    result = learn_handler(delivery, FakeLambdaContext())
    # Then only explore's message comes back; the others are learned in this delivery
    assert result == {"batchItemFailures": [{"itemIdentifier": groups[("acme", "explore")]}]}
    assert learned_events("acme", "for-you") == 1
    assert learned_events("globex", "for-you") == 1
    assert status_of(api, acme_explore["event_id"])["status"] == "open"
    # And once storage answers again, the redelivery learns it
    monkeypatch.setattr(model_store, "save", save)
    assert learn_handler(delivery, FakeLambdaContext()) == {"batchItemFailures": []}
    assert learned_events("acme", "explore") == 1
    assert learned_events("acme", "for-you") == 1


def test_a_far_future_reward_neither_closes_the_event_nor_zeroes_its_rewards(
    aws: dict[str, str], api: Api, tenant: NewKey
) -> None:
    # Given an event with a click on its first slot and a far-future final reward on the second
    event = rank(api)
    first, second = event["slate"][0]["id"], event["slate"][1]["id"]
    post(
        api,
        [
            {"event_id": event["event_id"], "item_id": first, "type": "click"},
            {
                "event_id": event["event_id"],
                "item_id": second,
                "type": "click",
                "final": True,
                "timestamp": time.time() + 10 * 365 * 86400,
            },
        ],
    )
    assert deliver_all(aws) == []
    # Then the event stays open until its wait ends (the future reward is late by the rule)
    assert status_of(api, event["event_id"])["status"] == "open"
    assert model_store.versions("acme", "for-you") == []
    # When the sweep closes it after the wait
    summary = _sweep(time.time() + 7 * 86400 + 60)
    assert summary["events_learned"] == 1
    # Then the click counted and the far-future reward did not
    from bandit.learn.rewards import record_outcome

    stored = decision_store.get("acme", event["event_id"])
    outcome = record_outcome(stored.record, policy_store.get("acme", "for-you").spec.rewards)
    assert outcome.per_item[first] == 1.0
    assert outcome.per_item[second] == 0.0
    assert outcome.late == 1


def _sweep(now: float) -> dict[str, Any]:
    import functions.learn.app as learn_app

    report = learn_app.learner().sweep(now)
    summary = {
        "events_learned": report.events_learned,
        "failed": report.events_failed,
        "policies_failed": len(report.failed_groups),
    }
    return summary


def test_a_deferred_event_counts_rewards_from_its_activation(
    aws: dict[str, str], api: Api, tenant: NewKey
) -> None:
    # Given a deferred event activated 1,000 s after it was decided (for-you waits 600 s)
    body = {
        "context": {"user": {"cohort": "a"}},
        "candidates": CANDIDATES,
        "defer_activation": True,
    }
    status, event, _ = api.call(
        rank_handler, "POST", "/v1/policies/for-you/rank", body, resource=RANK
    )
    assert status == 200, event
    decided = decision_store.get("acme", event["event_id"]).record.timestamp
    assert decision_store.activate("acme", event["event_id"], 600, now=decided + 1_000)
    # When a click comes 1,200 s after the decision: 200 s into the window that activation opened
    first = event["slate"][0]["id"]
    post(
        api,
        [
            {
                "event_id": event["event_id"],
                "item_id": first,
                "type": "click",
                "timestamp": decided + 1_200,
            }
        ],
    )
    assert deliver_all(aws) == []
    assert _sweep(decided + 1_000 + 601)["events_learned"] == 1
    # Then it counted: the window starts at activation, for closing and learning alike
    from bandit.learn.rewards import record_outcome

    record = decision_store.get("acme", event["event_id"]).record
    assert record.activated_at == decided + 1_000
    outcome = record_outcome(record, policy_store.get("acme", "for-you").spec.rewards)
    assert (outcome.per_item[first], outcome.late) == (1.0, 0)
