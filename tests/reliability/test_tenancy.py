"""Tenancy on moto: another tenant's key reaches nothing of ``acme``; scopes; keys at rest.

Tenant ``acme`` (A) owns a policy ``private`` that tenant ``globex`` (B) does not have, with a
learned model, an open event and a deferred event. Every endpoint called with B's key on A's
resources answers 404 (or, where the API creates B's own resource, leaves A's alone), and A's
stored state - spec version, model head and versions, decision records - is identical after.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from functions.admin.app import lambda_handler as admin_handler
from functions.common import auth, decision_store, model_store, policy_store
from functions.common.auth import NewKey, create_key, hash_key
from functions.common.errors import NotFoundError
from functions.learn.app import learner
from functions.rank.app import lambda_handler as rank_handler
from functions.rewards.app import lambda_handler as rewards_handler
from local.cli import main as serendip
from local.state import STATE_DIR_ENV
from tests.functional.conftest import Api, Handler, KeyClock, queue_depth
from tests.queues import deliver_all

PRIVATE = "private"
RANK = "/v1/policies/{policy}/rank"
POLICY = "/v1/policies/{policy}"
MODELS = "/v1/policies/{policy}/models"
ROLLBACK = "/v1/policies/{policy}/rollback"
METRICS = "/v1/policies/{policy}/metrics"
ACTIVATE = "/v1/events/{event_id}/activate"
CANDIDATES = [{"id": f"item-{i}", "category": "c", "features": {"n": i}} for i in range(6)]


@dataclass(frozen=True)
class AcmeWorld:
    """A's private policy with one learned model version, an open and a deferred event."""

    open_event: dict[str, Any]
    deferred_event: str

    @property
    def event_ids(self) -> tuple[str, str]:
        return self.open_event["event_id"], self.deferred_event


def reward_queue_depth(env: dict[str, str]) -> int:
    """Messages on the reward queue (visible or in flight)."""
    return queue_depth(env["REWARD_QUEUE_URL"])


def rank(api: Api, policy: str = PRIVATE, **extra: Any) -> tuple[int, Any]:
    body = {"context": {"user": {"cohort": "a"}}, "candidates": CANDIDATES, **extra}
    status, payload, _ = api.call(
        rank_handler, "POST", f"/v1/policies/{policy}/rank", body, resource=RANK
    )
    return status, payload


def acme_state(world: AcmeWorld) -> dict[str, Any]:
    """Everything of A's that B must not change, as plain data."""
    stored = policy_store.get("acme", PRIVATE)
    events = {}
    for event_id in world.event_ids:
        decision = decision_store.get("acme", event_id)
        events[event_id] = (decision.status, decision.record.model_dump(mode="json"))
    return {
        "spec_version": stored.spec_version,
        "spec": stored.spec.model_dump(mode="json"),
        "head": stored.head_version,
        "models": [v.as_dict() for v in model_store.versions("acme", PRIVATE)],
        "events": events,
    }


@pytest.fixture
def world(aws: dict[str, str], api: Api, other_tenant: NewKey) -> AcmeWorld:
    # A's "private" policy is a copy of the shipped for-you spec; B never had it
    status, for_you, _ = api.call(admin_handler, "GET", "/v1/policies/for-you", resource=POLICY)
    spec = {**for_you["spec"], "name": PRIVATE}
    status, _, _ = api.call(admin_handler, "PUT", f"/v1/policies/{PRIVATE}", spec, resource=POLICY)
    assert status == 200
    status, _ = rank(api)
    assert status == 200
    learner().sweep(now=10**10)
    assert policy_store.get("acme", PRIVATE).head_version == 1
    status, open_event = rank(api)
    assert status == 200
    status, deferred = rank(api, defer_activation=True)
    assert status == 200
    return AcmeWorld(open_event, deferred["event_id"])


# (name, handler, method, path, resource, body): B's calls on A's resources, each must be 404.
FOREIGN_CALLS: list[tuple[str, Handler, str, str, str, Any]] = [
    ("rank", rank_handler, "POST", f"/v1/policies/{PRIVATE}/rank", RANK,
     {"context": {}, "candidates": CANDIDATES}),
    ("get policy", admin_handler, "GET", f"/v1/policies/{PRIVATE}", POLICY, None),
    ("list models", admin_handler, "GET", f"/v1/policies/{PRIVATE}/models", MODELS, None),
    ("rollback", admin_handler, "POST", f"/v1/policies/{PRIVATE}/rollback", ROLLBACK,
     {"version": 1}),
    ("metrics", admin_handler, "GET", f"/v1/policies/{PRIVATE}/metrics", METRICS, None),
    ("activate", rewards_handler, "POST", "/v1/events/{deferred}/activate", ACTIVATE, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("handler", "method", "path", "resource", "body"),
    [case[1:] for case in FOREIGN_CALLS],
    ids=[case[0] for case in FOREIGN_CALLS],
)
def test_other_tenants_key_gets_404_and_changes_nothing(
    world: AcmeWorld,
    other_tenant: NewKey,
    *,
    handler: Handler,
    method: str,
    path: str,
    resource: str,
    body: Any,
) -> None:
    # Given A's state
    before = acme_state(world)
    # When B calls the endpoint on A's policy or event
    status, error, _ = Api(other_tenant).call(
        handler, method, path.format(deferred=world.deferred_event), body, resource=resource
    )
    # Then B learns nothing and A's state is unchanged (the deferred event still not activated)
    assert (status, error["error"]) == (404, "not_found")
    assert acme_state(world) == before
    assert before["events"][world.deferred_event][1]["activated"] is False
    assert before["head"] == 1


def test_other_tenants_put_policy_creates_its_own_and_leaves_acmes_alone(
    world: AcmeWorld, api: Api, other_tenant: NewKey
) -> None:
    before = acme_state(world)
    other = Api(other_tenant)
    spec = {**before["spec"], "exploration": {**before["spec"]["exploration"], "budget": 0.5}}
    # When B puts a policy of the same name (create-or-replace within B's own tenancy)
    status, created, _ = other.call(
        admin_handler, "PUT", f"/v1/policies/{PRIVATE}", spec, resource=POLICY
    )
    # Then B got a new policy of its own, version 1, head 0; A's is untouched
    assert status == 200
    assert (created["spec_version"], created["model_version"]) == (1, 0)
    assert acme_state(world) == before
    assert before["spec"]["exploration"]["budget"] == 0.05
    _, mine, _ = api.call(admin_handler, "GET", f"/v1/policies/{PRIVATE}", resource=POLICY)
    assert (mine["spec_version"], mine["spec"]["exploration"]["budget"]) == (1, 0.05)
    _, listed, _ = other.call(admin_handler, "GET", "/v1/policies")
    assert [p["name"] for p in listed["policies"]] == [
        "explore",
        "for-you",
        "personalizer",
        "private",
    ]


def test_other_tenants_reward_for_acmes_event_is_an_orphan_and_learns_nothing(
    aws: dict[str, str], world: AcmeWorld, other_tenant: NewKey
) -> None:
    before = acme_state(world)
    event = world.open_event
    # Given B posts, signed with B's own secret, a final reward for every slot of A's event
    rewards = {
        "rewards": [
            {"event_id": event["event_id"], "item_id": s["id"], "type": "click", "final": True}
            for s in event["slate"]
        ]
    }
    status, accepted, _ = Api(other_tenant).call(
        rewards_handler, "POST", "/v1/rewards", json.dumps(rewards), sign_body=True
    )
    # Then it is accepted (as the API documents) and queued under B's tenancy
    assert (status, accepted) == (202, {"accepted": len(event["slate"])})
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = aws["REWARD_QUEUE_URL"]
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"])["tenant"] for m in messages] == ["globex"]
    # When the router and the learner consume it
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"], VisibilityTimeout=0
    )
    assert deliver_all(aws) == []
    # (B's rewards name no event of B: nothing reaches any learner)
    assert queue_depth(aws["LEARN_QUEUE_URL"]) == 0
    # Then A's event has no reward, is still open, and A's model head did not move
    after = acme_state(world)
    assert after == before
    status_, record = after["events"][event["event_id"]]
    assert (status_, record["rewards"], after["head"]) == ("open", [], 1)
    # And calling the learner directly as B counts every reward as an orphan
    report = learner().apply_rewards(
        "globex", [{**r, "timestamp": 1.0} for r in rewards["rewards"]]
    )
    assert dict(report.outcomes) == {"orphan": len(event["slate"])}
    assert report.events_learned == 0
    assert acme_state(world) == before


def test_catalog_items_are_per_tenant(aws: dict[str, str], api: Api, other_tenant: NewKey) -> None:
    other = Api(other_tenant)
    # Given each tenant upserts its own items
    for client, prefix in ((api, "a"), (other, "b")):
        items = {"items": [{"id": f"sku-{prefix}{i}", "features": {"n": i}} for i in range(2)]}
        status, result, _ = client.call(admin_handler, "PUT", "/v1/items", items)
        assert (status, result) == (200, {"upserted": 2})
    # When each ranks by the other's item ids, then it is an unknown catalog item
    for client, own, foreign in ((api, "sku-a0", "sku-b1"), (other, "sku-b0", "sku-a1")):
        mixed = {"context": {}, "candidates": [own, foreign]}
        status, error, _ = client.call(
            rank_handler, "POST", "/v1/policies/for-you/rank", mixed, resource=RANK
        )
        assert (status, error["error"], error["field"]) == (
            422,
            "validation_error",
            "candidates[1]",
        )
    # And its own ids resolve to its own features
    body = {"context": {}, "candidates": ["sku-a0", "sku-a1"], "slate_size": 2}
    status, ranked, _ = api.call(
        rank_handler, "POST", "/v1/policies/for-you/rank", body, resource=RANK
    )
    assert status == 200
    record = decision_store.get("acme", ranked["event_id"]).record
    assert {c.id: c.features for c in record.candidates} == {
        "sku-a0": {"n": 0},
        "sku-a1": {"n": 1},
    }


# (name, method, path, resource, body): writes that need the admin scope.
ADMIN_WRITES: list[tuple[str, str, str, str, Any]] = [
    ("put policy", "PUT", f"/v1/policies/{PRIVATE}", POLICY, {"name": PRIVATE}),
    ("rollback", "POST", f"/v1/policies/{PRIVATE}/rollback", ROLLBACK, {"version": 1}),
    ("put items", "PUT", "/v1/items", "/v1/items", {"items": [{"id": "x"}]}),
]


@pytest.mark.parametrize(
    ("method", "path", "resource", "body"),
    [case[1:] for case in ADMIN_WRITES],
    ids=[case[0] for case in ADMIN_WRITES],
)
def test_admin_writes_need_the_admin_scope(
    world: AcmeWorld, method: str, path: str, resource: str, body: Any
) -> None:
    before = acme_state(world)
    rank_only = Api(create_key("acme", {"rank", "reward"}))
    status, error, _ = rank_only.call(admin_handler, method, path, body, resource=resource)
    assert (status, error["error"]) == (403, "forbidden")
    assert "'admin'" in error["detail"]
    assert acme_state(world) == before
    assert [v.version for v in model_store.versions("acme", PRIVATE)] == [1]


def test_reads_take_any_scope_and_rank_and_reward_need_theirs(
    aws: dict[str, str], world: AcmeWorld
) -> None:
    rank_only = Api(create_key("acme", {"rank"}))
    reward_only = Api(create_key("acme", {"reward"}))
    # Reads are documented as "any scope"
    for path, resource in (
        (f"/v1/policies/{PRIVATE}", POLICY),
        (f"/v1/policies/{PRIVATE}/models", MODELS),
        (f"/v1/policies/{PRIVATE}/metrics", METRICS),
    ):
        status, _, _ = reward_only.call(admin_handler, "GET", path, resource=resource)
        assert status == 200, path
    # Rank needs "rank"; rewards and activate need "reward" (nothing queued or changed)
    before = acme_state(world)
    status, _ = rank(reward_only)
    assert status == 403
    status, _, _ = rank_only.call(
        rewards_handler, "POST", "/v1/rewards", {"event_id": "e", "item_id": "i"}, sign_body=True
    )
    assert status == 403
    status, _, _ = rank_only.call(
        rewards_handler,
        "POST",
        f"/v1/events/{world.deferred_event}/activate",
        resource=ACTIVATE,
    )
    assert status == 403
    assert reward_queue_depth(aws) == 0
    assert acme_state(world) == before


def test_keys_are_stored_only_as_their_sha256(aws: dict[str, str], other_tenant: NewKey) -> None:
    keys = [other_tenant, create_key("acme", {"rank"}), create_key("acme", {"admin"})]
    table = boto3.client("dynamodb", region_name="us-east-1")
    items = table.scan(TableName=aws["KEYS_TABLE"], ConsistentRead=True)["Items"]
    dump = json.dumps(items, default=str)  # sealed secrets are binary
    assert len(items) == 3
    for key in keys:
        assert key.api_key.startswith("sk_") and len(key.api_key) > 40
        assert key.api_key not in dump
        assert key.api_key.removeprefix("sk_") not in dump
    digests = {hashlib.sha256(k.api_key.encode()).hexdigest() for k in keys}
    assert {item["pk"]["S"] for item in items} == digests
    assert {item["tenant"]["S"] for item in items} == {"acme", "globex"}


def test_two_keys_work_at_once_and_revocation_acts_within_the_key_cache_time(
    aws: dict[str, str], world: AcmeWorld, tenant: NewKey, key_clock: KeyClock
) -> None:
    # Given a second key for A (rotation): both work at the same time
    new = Api(create_key("acme", {"rank", "reward", "admin"}))
    old = Api(tenant)
    for client in (old, new):
        status, _, _ = client.call(admin_handler, "GET", "/v1/policies")
        assert status == 200
    # When the old one is revoked
    auth.revoke_key(hash_key(tenant.api_key))
    # Then a container that read it less than API_KEY_CACHE_SECONDS ago may still take it
    assert old.call(admin_handler, "GET", "/v1/policies")[0] == 200
    # And once that time has passed, its next request is 401, on every handler, and the new
    # one keeps working
    key_clock.pass_cache_time()
    status, error, _ = old.call(admin_handler, "GET", "/v1/policies")
    assert (status, error["error"], error["detail"]) == (
        401,
        "unauthorized",
        "this API key was revoked",
    )
    assert rank(old)[0] == 401
    status, _, _ = old.call(
        rewards_handler,
        "POST",
        "/v1/rewards",
        {"event_id": world.open_event["event_id"], "item_id": "item-0"},
        sign_body=True,
    )
    assert status == 401
    assert reward_queue_depth(aws) == 0
    assert rank(new)[0] == 200
    status, _, _ = new.call(admin_handler, "GET", "/v1/policies")
    assert status == 200


def test_revoking_an_unknown_hash_is_not_found_and_stores_nothing(
    aws: dict[str, str], tenant: NewKey
) -> None:
    table = boto3.client("dynamodb", region_name="us-east-1")
    with pytest.raises(NotFoundError):
        auth.revoke_key(hash_key("sk_never_issued"))
    assert table.scan(TableName=aws["KEYS_TABLE"])["Count"] == 1


def test_cli_revokes_by_key_or_by_hash(
    aws: dict[str, str],
    tenant: NewKey,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # No local stack state: the CLI acts on the ambient configuration (this moto)
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path))
    second = create_key("acme", {"rank"})
    assert serendip(["keys", "revoke", "--api-key", tenant.api_key]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "key_hash": hash_key(tenant.api_key),
        "revoked": True,
    }
    assert serendip(["keys", "revoke", "--key-hash", hash_key(second.api_key)]) == 0
    assert serendip(["keys", "revoke", "--key-hash", "0" * 64]) == 1
    for key in (tenant, second):
        status, _, _ = Api(key).call(admin_handler, "GET", "/v1/policies")
        assert status == 401
