"""Lineage is truth: every rank and decision record names the model that really made it.

A spec change that makes the old weights unusable (VW arguments) with ``model=fresh`` saves a
fresh model as a new head version with the spec, atomically (the default retrains one from the
log first: ``test_retrain.py``); other changes keep the model. Rollback never pairs a
spec with a model built for other arguments, and a rollback that races the learner answers 409.
"""

from __future__ import annotations

from typing import Any

import pytest

from functions.admin.app import lambda_handler as admin_handler
from functions.common import decision_store, model_store, policy_store
from functions.learn.app import learner
from functions.rank.app import lambda_handler as rank_handler
from local.lambda_events import current_function
from tests.functional.conftest import Api

RANK = "/v1/policies/{policy}/rank"
POLICY_PATH = "/v1/policies/{policy}"
CANDIDATES = [{"id": f"item-{i}", "features": {"n": i}} for i in range(8)]


def rank(api: Api) -> dict[str, Any]:
    body = {"context": {"user": {"cohort": "a"}}, "candidates": CANDIDATES}
    status, payload, _ = api.call(
        rank_handler, "POST", "/v1/policies/for-you/rank", body, resource=RANK
    )
    assert status == 200, payload
    return dict(payload)


def put_spec(api: Api, spec: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Put ``spec``; a VW-argument change starts a fresh model at once (``model=fresh``)."""
    status, payload, _ = api.call(
        admin_handler,
        "PUT",
        "/v1/policies/for-you",
        spec,
        resource=POLICY_PATH,
        query="model=fresh",
    )
    return status, dict(payload)


def current_spec(api: Api) -> dict[str, Any]:
    status, payload, _ = api.call(
        admin_handler, "GET", "/v1/policies/for-you", resource=POLICY_PATH
    )
    assert status == 200
    return dict(payload["spec"])


def rollback(api: Api, version: int) -> tuple[int, dict[str, Any]]:
    status, payload, _ = api.call(
        admin_handler,
        "POST",
        "/v1/policies/for-you/rollback",
        {"version": version},
        resource="/v1/policies/{policy}/rollback",
    )
    return status, dict(payload)


def learn_some(api: Api, events: int) -> list[str]:
    """Rank ``events`` times and learn them all (the sweep after their wait)."""
    ids = [rank(api)["event_id"] for _ in range(events)]
    report = learner().sweep(now=decision_store.get("acme", ids[-1]).record.timestamp + 86_400)
    assert report.events_learned == events
    return ids


def test_new_vw_args_start_a_new_model_version_at_once(aws: dict[str, str], api: Api) -> None:
    # Given a policy whose head is version 2, learned from four events
    learn_some(api, 2)
    learn_some(api, 2)
    assert rank(api)["model_version"] == 2
    # When its VW arguments change
    spec = current_spec(api)
    spec["vw"] = {**spec["vw"], "args": ["--cb_type", "dm", "-q", "CI", "--learning_rate", "0.5"]}
    status, put = put_spec(api, spec)
    # Then the answer says the model was reset, and names the fresh version
    assert status == 200, put
    assert (put["model_reset"], put["model_version"], put["spec_version"]) == (True, 3, 2)
    versions = model_store.versions("acme", "for-you")
    assert [(v.version, v.events_learned) for v in versions[:2]] == [(3, 0), (2, 4)]
    # And the next rank is served by version 3, which the decision log records
    served = rank(api)
    assert served["model_version"] == 3
    assert decision_store.get("acme", served["event_id"]).record.model_version == 3
    # And version 3 really is the fresh model under the new arguments
    fresh = model_store.load("acme", "for-you", 3)
    assert list(fresh.args) == policy_store.get("acme", "for-you").spec.vw_args()
    assert fresh.events_learned == 0


def test_other_spec_changes_keep_the_model(aws: dict[str, str], api: Api) -> None:
    learn_some(api, 2)
    spec = current_spec(api)
    spec["exploration"] = {**spec["exploration"], "budget": 0.3}
    spec["rewards"] = {**spec["rewards"], "wait_seconds": 60}
    status, put = put_spec(api, spec)
    assert status == 200, put
    assert (put["model_reset"], put["model_version"]) == (False, 1)
    assert rank(api)["model_version"] == 1


def test_events_decided_before_a_reset_are_learned_into_the_fresh_model(
    aws: dict[str, str], api: Api
) -> None:
    # Given an open event decided by version 1, then a reset to version 2
    learn_some(api, 1)
    waiting = rank(api)
    spec = current_spec(api)
    spec["vw"] = {**spec["vw"], "args": ["--cb_type", "dm", "--learning_rate", "0.2"]}
    assert put_spec(api, spec)[1]["model_version"] == 2
    # When it closes
    stored = decision_store.get("acme", waiting["event_id"])
    assert learner().sweep(now=stored.record.timestamp + 86_400).events_learned == 1
    # Then it is learned into version 3 (on top of the fresh model), recorded as decided by v1
    head = model_store.versions("acme", "for-you")[0]
    assert (head.version, head.events_learned) == (3, 1)
    after = decision_store.get("acme", waiting["event_id"]).record
    assert (after.model_version, after.learned_version) == (1, 3)


def test_rollback_to_a_version_built_for_other_args_is_refused(
    aws: dict[str, str], api: Api
) -> None:
    learn_some(api, 1)
    spec = current_spec(api)
    spec["vw"] = {**spec["vw"], "args": ["--cb_type", "dm", "--learning_rate", "0.2"]}
    put_spec(api, spec)
    status, error = rollback(api, 1)
    assert status == 422
    assert error["field"] == "version"
    assert "other VW arguments" in error["detail"]
    assert policy_store.get("acme", "for-you").head_version == 2


def test_a_rollback_racing_the_learner_answers_409_and_changes_nothing(
    aws: dict[str, str], api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two versions, and a learner that saves version 3 while a rollback to 1 runs
    learn_some(api, 1)
    learn_some(api, 1)
    racing = rank(api)
    load = model_store.load

    def learner_saves_meanwhile(tenant: str, policy: str, version: int) -> Any:
        model = load(tenant, policy, version)
        stored = decision_store.get(tenant, racing["event_id"])
        learner().sweep(now=stored.record.timestamp + 86_400)
        return model

    monkeypatch.setattr(model_store, "load", learner_saves_meanwhile)
    status, error = rollback(api, 1)
    # Then the rollback answers 409 with a clear error, and the learner's version stands
    assert status == 409, error
    assert error["error"] == "conflict"
    assert "retry" in error["detail"]
    assert [v.version for v in model_store.versions("acme", "for-you")] == [3, 2, 1]
    assert model_store.versions("acme", "for-you")[0].rolled_back_from is None


def test_model_saves_keep_the_last_versions_and_prune_older_ones(api: Api) -> None:
    # Given a policy with a learned model
    learn_some(api, 1)
    (first,) = model_store.versions("acme", "for-you")
    model = model_store.load("acme", "for-you", first.version)
    # When the learner (as the LearnFunction: its role must allow pruning) saves more than
    # KEEP_VERSIONS versions
    saves = model_store.KEEP_VERSIONS + model_store.PRUNE_EVERY
    running = current_function.set("LearnFunction")
    try:
        for head in range(first.version, first.version + saves):
            model_store.save("acme", "for-you", model, expected_head=head)
    finally:
        current_function.reset(running)
    # Then the head and the versions just before it are kept, the oldest are gone, and the
    # head still loads
    kept = [info.version for info in model_store.versions("acme", "for-you")]
    head = kept[0]
    assert head == first.version + saves
    assert kept == list(range(head, head - len(kept), -1))
    assert (
        model_store.KEEP_VERSIONS <= len(kept) < model_store.KEEP_VERSIONS + model_store.PRUNE_EVERY
    )
    assert first.version not in kept
    assert model_store.load("acme", "for-you", head).examples_learned == model.examples_learned
