"""IAM that covers every call: what each function did in this session, against its role.

moto does not enforce the template's roles, so this test does: every AWS call made by a
function anywhere in the session (``tests/conftest.py`` records them all, through handlers run
directly, through ``LocalFunction`` and through the local stack over HTTP) must be allowed by
that function's role as ``samtranslator`` expands it from ``template.yaml``. It runs after every
other test; it first drives each function through its routes itself, so that it means something
when run alone. When the functional, reliability and e2e suites all ran (and passed), a grant no
call used fails it too: the template stays least-privilege.
"""

from __future__ import annotations

import json
import time
import types
from collections.abc import Callable
from typing import Any

import pytest

from functions.common import decision_store, retrain_service, sweep_service
from functions.common.auth import NewKey, create_key
from functions.common.personalizer import evaluations
from functions.common.settings import reset_settings
from functions.learn import app as learn_app
from local.iam import check, function_policies
from local.lambda_events import LocalFunction, schedule_event, template_functions
from local.resources import load_template, translated_template
from tests.functional.conftest import Api
from tests.functional.personalizer_api import V1, PersonalizerApi
from tests.iam_session import SESSION
from tests.queues import deliver

pytestmark = pytest.mark.after_all_suites
# Grants for paths no suite drives through a function, each with the path that needs it. The
# unused-grant check fails on any other unused grant (and on one of these once it is used, so
# the list stays true).
UNEXERCISED = {
    ("LearnFunction", "s3:DeleteObject", "ModelBucket/models/*"): "pruning; a failed save",
    ("PersonalizerFunction", "dynamodb:DeleteItem", "table/ModelsTable"): "pruning after a reset",
    ("PersonalizerFunction", "s3:DeleteObject", "ModelBucket/models/*"): "pruning; a failed save",
}
CANDIDATES = [{"id": f"item-{i}", "features": {"n": i}} for i in range(6)]


def as_handler(function: LocalFunction) -> Callable[[dict[str, Any], Any], Any]:
    """A handler-shaped call of ``function`` (it makes its own context, as Lambda does)."""
    return lambda event, _context: function.invoke(event)


class Routes:
    """Calls a function's API routes with proxy events, as API Gateway does."""

    def __init__(self, api: Api, function: LocalFunction) -> None:
        self.api, self.function = api, function

    def call(
        self, method: str, path: str, resource: str, body: Any = None, query: str = ""
    ) -> tuple[int, Any]:
        status, payload, _ = self.api.call(
            as_handler(self.function),
            method,
            path,
            None if body is None else json.dumps(body),
            resource=resource,
            sign_body=path == "/v1/rewards",
            query=query,
        )
        return status, payload


def drive_every_function(aws: dict[str, str], api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every route, queue and schedule of the template, once, through its function.

    Models and decision records are kept in S3 here (tiny inline limits), so that the bucket's
    grants are used too.
    """
    monkeypatch.setenv("INLINE_MODEL_BYTES", "100")
    monkeypatch.setattr(decision_store, "INLINE_RECORD_BYTES", 10)
    reset_settings()
    functions = template_functions(load_template())
    rank, rewards, admin = (
        Routes(api, functions[name])
        for name in ("RankFunction", "RewardsFunction", "AdminFunction")
    )
    policy = "/v1/policies/{policy}"
    body = {"context": {"user": {"cohort": "a"}}, "user_id": "u-1", "candidates": CANDIDATES}
    status, ranked = rank.call("POST", "/v1/policies/for-you/rank", policy + "/rank", body)
    assert status == 200, ranked
    event_id = ranked["event_id"]
    shown = [
        {"event_id": event_id, "item_id": s["id"], "type": "click", "value": 1}
        for s in ranked["slate"]
    ]
    assert rewards.call("POST", "/v1/rewards", "/v1/rewards", {"rewards": shown})[0] == 202
    status, _ = rewards.call("GET", f"/v1/events/{event_id}", "/v1/events/{event_id}")
    assert status == 200
    deferred = {**body, "defer_activation": True}
    status, later = rank.call("POST", "/v1/policies/for-you/rank", policy + "/rank", deferred)
    assert status == 200, later
    activate = f"/v1/events/{later['event_id']}/activate"
    assert rewards.call("POST", activate, "/v1/events/{event_id}/activate")[0] in (200, 202)
    assert deliver(aws["REWARD_QUEUE_URL"], as_handler(functions["RouteFunction"])) == []
    assert deliver(aws["LEARN_QUEUE_URL"], as_handler(functions["LearnFunction"])) == []
    # The sweep, a day later (so the deferred event falls due), in one pass
    monkeypatch.setenv("SWEEP_PASSES", "1")
    reset_settings()
    later_clock = types.SimpleNamespace(
        time=lambda: time.time() + 86_400, monotonic=time.monotonic, sleep=time.sleep
    )
    monkeypatch.setattr(sweep_service, "time", later_clock)
    functions["SweepFunction"].invoke(schedule_event())
    assert deliver(aws["LEARN_QUEUE_URL"], as_handler(functions["LearnFunction"])) == []
    # Rank again: the new head loads (from S3), with candidates sent as catalog ids too
    items = {"items": [{"id": f"item-{n}", "features": {"n": n}} for n in range(3)]}
    assert admin.call("PUT", "/v1/items", "/v1/items", items)[0] == 200
    by_id = {**body, "candidates": [*CANDIDATES[3:], "item-0", "item-1", "item-2"]}
    status, again = rank.call("POST", "/v1/policies/for-you/rank", policy + "/rank", by_id)
    assert status == 200 and again["model_version"] >= 1, again
    # The catalog index, built three times (the third deletes the first build's objects),
    # and recommend from it
    for extra in range(3):
        more = {"items": [{"id": f"extra-{extra}", "category": "c", "embedding": [1.0, 0.5]}]}
        assert admin.call("PUT", "/v1/items", "/v1/items", more)[0] == 200
        built = functions["IndexFunction"].invoke(schedule_event())
        assert built["built"], built
    wanted = {"user_id": "u-1", "context": {"user": {"cohort": "a"}}}
    status, recommended = rank.call(
        "POST", "/v1/policies/for-you/recommend", policy + "/recommend", wanted
    )
    assert status == 200, recommended
    # A cold learner learns it: it loads the head from S3
    learn_app._learner = None
    clicks = [
        {"event_id": again["event_id"], "item_id": slot["id"], "type": "click", "value": 1}
        for slot in again["slate"]
    ]
    assert rewards.call("POST", "/v1/rewards", "/v1/rewards", {"rewards": clicks})[0] == 202
    assert deliver(aws["REWARD_QUEUE_URL"], as_handler(functions["RouteFunction"])) == []
    assert deliver(aws["LEARN_QUEUE_URL"], as_handler(functions["LearnFunction"])) == []
    # Every admin route
    for method, path, resource, sent in [
        ("GET", "/v1/policies", "/v1/policies", None),
        ("GET", "/v1/policies/for-you", policy, None),
        ("GET", "/v1/policies/for-you/models", policy + "/models", None),
        ("GET", "/v1/policies/for-you/metrics", policy + "/metrics", None),
        ("GET", "/v1/policies/for-you/progress", policy + "/progress", None),
        ("PUT", "/v1/items", "/v1/items", {"items": [{"id": "item-0", "features": {"n": 0}}]}),
        ("GET", "/v1/items", "/v1/items", None),
        ("GET", "/v1/items/item-0", "/v1/items/{item_id}", None),
        ("GET", "/v1/health", "/v1/health", None),
        ("GET", "/v1/openapi.json", "/v1/openapi.json", None),
    ]:
        status, payload = admin.call(method, path, resource, sent)
        assert status == 200, (path, payload)
    status, spec = admin.call("GET", "/v1/policies/for-you", policy)
    # New VW arguments retrained from the log by the learner, in several chunks (so that each
    # stages its model and plan, and the next reads them)
    changed = {**spec["spec"], "vw": {**spec["spec"]["vw"], "args": ["--cb_type", "dm"]}}
    status, put = admin.call("PUT", "/v1/policies/for-you", policy, changed)
    assert status == 202 and put["retrain"]["state"] == "running", put
    monkeypatch.setattr(retrain_service, "CHUNK_WORK", 1)
    assert deliver(aws["LEARN_QUEUE_URL"], as_handler(functions["LearnFunction"])) == []
    status, retrained = admin.call("GET", "/v1/policies/for-you", policy)
    assert retrained["retrain"]["state"] == "done", retrained
    # And others, with a fresh model at once
    fresh = {**changed, "vw": {**changed["vw"], "args": ["--cb_type", "dm", "-q", "CI"]}}
    status, put = admin.call("PUT", "/v1/policies/for-you", policy, fresh, query="model=fresh")
    assert status == 200 and put["model_reset"], put
    status, rolled = admin.call(
        "POST", "/v1/policies/for-you/rollback", policy + "/rollback", {"version": 1}
    )
    assert status in (200, 422), rolled
    # A policy with a model version in S3 (a spec change reset it), deleted with its object
    gone = {**spec["spec"], "name": "iam-gone"}
    assert admin.call("PUT", "/v1/policies/iam-gone", policy, gone)[0] == 200
    reset = {**gone, "vw": {**gone["vw"], "args": ["--cb_type", "dm"]}}
    status, put = admin.call("PUT", "/v1/policies/iam-gone", policy, reset)
    assert status == 200 and put["model_reset"], put
    status, deleted = admin.call("DELETE", "/v1/policies/iam-gone", policy)
    assert status == 200, deleted
    assert (deleted["deleted"]["model_versions"], deleted["deleted"]["model_objects"]) == (1, 1)
    drive_personalizer(api, functions["PersonalizerFunction"], monkeypatch)


ACTIONS = [{"id": f"a-{i}", "features": [{"kind": {"n": i}}]} for i in range(4)]


def drive_personalizer(api: Api, function: LocalFunction, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every kind of Personalizer route: serving, configuration, model, logs, evaluations."""
    personalizer = PersonalizerApi(as_handler(function), api.key.api_key)
    config = {
        "rewardWaitTime": "PT5S",
        "defaultReward": 0.0,
        "rewardAggregation": "earliest",
        "explorationPercentage": 0.2,
        "modelExportFrequency": "PT1M",
        "logRetentionDays": 30,
    }
    # The resource's policy is created on first use, with its settings
    status, answer, _ = personalizer.call("PUT", f"{V1}/configurations/service", config)
    assert status == 200, answer
    rank = {"contextFeatures": [{"user": {"tier": "gold"}}], "actions": ACTIONS}
    status, ranked, _ = personalizer.call("POST", f"{V1}/rank", rank)
    assert status == 201, ranked
    reward = f"{V1}/events/{ranked['eventId']}/reward"
    assert personalizer.call("POST", reward, {"value": 1.0})[0] == 204
    status, deferred, _ = personalizer.call("POST", f"{V1}/rank", {**rank, "deferActivation": True})
    activate = f"{V1}/events/{deferred['eventId']}/activate"
    assert personalizer.call("POST", activate)[0] == 204
    slots = [{"id": "hero", "baselineAction": "a-0"}, {"id": "side", "baselineAction": "a-1"}]
    status, multi, _ = personalizer.call(
        "POST", "/personalizer/multislot/rank", {"actions": ACTIONS, "slots": slots}
    )
    assert status == 201, multi
    rewards = {"reward": [{"slotId": "hero", "value": 1.0}]}
    path = f"/personalizer/multislot/events/{multi['eventId']}/reward"
    assert personalizer.call("POST", path, rewards)[0] == 204
    for path in ("configurations/service", "configurations/policy", "model/properties"):
        assert personalizer.call("GET", f"{V1}/{path}")[0] == 200, path
    assert personalizer.call("GET", f"{V1}/logs/properties")[0] == 200
    arguments = {"name": "mine", "arguments": "--cb_explore_adf --epsilon 0.1 --cb_type mtr"}
    assert personalizer.call("PUT", f"{V1}/configurations/policy", arguments)[0] == 200
    status, blob, _ = personalizer.call("GET", f"{V1}/model")
    assert status == 200 and isinstance(blob, bytes)
    imported = personalizer.call(
        "PUT", "/personalizer/model", blob, content_type="application/octet-stream"
    )
    assert imported[0] == 204, imported
    assert personalizer.call("DELETE", f"{V1}/model")[0] == 204
    # An evaluation an hour later, when every event's reward wait is over
    later = types.SimpleNamespace(time=lambda: time.time() + 3_600)
    monkeypatch.setattr(evaluations, "time", later)
    contract = {
        "name": "iam",
        "startTime": "2000-01-01T00:00:00Z",
        "endTime": "2100-01-01T00:00:00Z",
        "policies": [{"name": "greedy", "arguments": "--cb_explore_adf --epsilon 0.0"}],
    }
    status, evaluation, _ = personalizer.call("POST", f"{V1}/evaluations", contract)
    assert status == 201, evaluation
    for method in ("GET", "DELETE"):
        path = f"{V1}/evaluations/{evaluation['id']}"
        assert personalizer.call(method, path)[0] in (200, 204)
    assert personalizer.call("GET", f"{V1}/evaluations")[0] == 200
    # A key bound to a policy whose model is new blends in popularity; one bound to a policy
    # the tenant does not have yet creates it
    for policy in ("for-you", "personalizer-iam"):
        bound = create_key(api.key.tenant, {"rank", "reward", "admin"}, policy=policy)
        status, ranked, _ = personalizer.call("POST", f"{V1}/rank", rank, api_key=bound.api_key)
        assert status == 201, ranked


def test_every_call_of_every_function_is_granted_by_its_role(
    aws: dict[str, str],
    tenant: NewKey,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    # Given every function driven once here, after whatever the session ran before
    drive_every_function(aws, Api(tenant), monkeypatch)
    usage = SESSION.usage
    assert usage is not None, "tests/conftest.py records the session's calls"
    # When the calls are checked against the roles samtranslator expands from template.yaml
    policies = function_policies(translated_template())
    report = check(policies, usage.counts)
    cache = request.config.cache
    if cache is not None:
        (cache.mkdir("iam") / "calls.md").write_text(report.table() + "\n")
    print("\n" + report.table())
    # Then every function made calls, and each call is allowed
    assert usage.functions() == set(policies)
    unused = {
        (function, grant.action, grant.resource.split(":", 5)[-1]): grant.policy
        for function, grant in report.unused
    }
    shown = [f"{f}: {action} on {resource}" for f, action, resource in sorted(unused)]
    print("grants no call used:\n" + "\n".join(shown or ["(none)"]))
    denied = [f"{key} (first in {usage.first_seen.get(key, '?')})" for key in report.denied]
    assert denied == [], "calls no grant allows:\n" + "\n".join(denied)
    # And when the whole functional, reliability and e2e suites ran and passed, every grant was
    # used but those listed as unexercised, with the path that needs them
    if SESSION.whole_suites and request.session.testsfailed == 0:
        assert set(unused) == set(UNEXERCISED)
