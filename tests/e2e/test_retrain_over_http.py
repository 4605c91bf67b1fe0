"""A VW-argument change over HTTP, retrained by the local stack's own learner.

The PUT answers 202 and the policy keeps serving its model; the stack's SQS poller delivers the
retrain job's chunks to the learn function, as Lambda's event-source mapping would, until the
new spec and the retrained model are current together.
"""

from __future__ import annotations

import time

from functions.common import model_store, policy_store
from functions.common.auth import create_key
from local.stack import LocalStack
from tests.e2e.conftest import ROOT, Client

TENANT = "e2e-retrain"
POLICY = "/v1/policies/for-you"
CANDIDATES = [
    {"id": f"item-{i}", "category": "ab"[i % 2], "features": {"n": i % 3}} for i in range(6)
]
EVENTS = 10


def test_a_vw_change_is_retrained_by_the_stacks_learner_before_it_applies(
    stack: LocalStack,
) -> None:
    # Given a policy that learned 10 events through the stack
    key = create_key(TENANT, {"rank", "reward", "admin"})
    policy_store.seed(TENANT, ROOT / "policies")
    client = Client(stack.url, key.api_key, key.webhook_secret)
    for n in range(EVENTS):
        body = {"context": {"user": {"cohort": "ab"[n % 2]}}, "candidates": CANDIDATES}
        status, ranked, _ = client.call("POST", f"{POLICY}/rank", body)
        assert status == 200, ranked
        rewards = [
            {"event_id": ranked["event_id"], "item_id": slot["id"], "type": "click"}
            for slot in ranked["slate"]
        ]
        status, _, _ = client.call("POST", "/v1/rewards", {"rewards": rewards}, signed=True)
        assert status == 202
    stack.drain(timeout=120)
    status, before, _ = client.call("GET", POLICY)
    assert status == 200 and before["model_version"] >= 1, before
    learned = model_store.versions(TENANT, "for-you")[0].events_learned
    assert learned == EVENTS
    # When its VW arguments change over HTTP
    spec = {**before["spec"], "vw": {"args": ["--cb_type", "dm", "-q", "CI"]}}
    status, answer, _ = client.call("PUT", POLICY, spec)
    # Then it is accepted pending, and the old model still serves
    assert status == 202, answer
    assert answer["retrain"]["state"] == "running"
    body = {"context": {"user": {"cohort": "a"}}, "candidates": CANDIDATES}
    status, served, _ = client.call("POST", f"{POLICY}/rank", body)
    # (a worker may still hold the policy as it was before the events were learned, for up to
    # MODEL_CACHE_SECONDS: never a version past the head it had, never a blank new model)
    assert status == 200 and served["model_version"] <= before["model_version"], served
    # And the stack's learner retrains it: the new spec and model become current together
    deadline = time.monotonic() + 120
    while True:
        stack.drain(timeout=120)
        status, after, _ = client.call("GET", POLICY)
        if after["retrain"]["state"] != "running" or time.monotonic() > deadline:
            break
    retrain = after["retrain"]
    assert (retrain["state"], retrain["events_done"], retrain["events_total"]) == (
        "done",
        EVENTS,
        EVENTS,
    ), retrain
    assert (after["spec_version"], after["model_version"]) == (2, before["model_version"] + 1)
    assert after["spec"]["vw"]["args"] == ["--cb_type", "dm", "-q", "CI"]
    head = model_store.versions(TENANT, "for-you")[0]
    assert head.retrained is not None and head.retrained["events"] == EVENTS
    # And ranks report it once the rank path's copy of the policy expires (MODEL_CACHE_SECONDS:
    # on a fast machine everything above fits in that second, and the copy is the first one)
    deadline = time.monotonic() + 60
    versions = []
    while True:
        status, served, _ = client.call("POST", f"{POLICY}/rank", body)
        assert status == 200
        versions.append(served["model_version"])
        if served["model_version"] == retrain["model_version"] or time.monotonic() > deadline:
            break
    assert served["model_version"] == retrain["model_version"], versions
    # (never a version that was not the head at some point)
    assert set(versions) <= {0, before["model_version"], retrain["model_version"]}, versions
