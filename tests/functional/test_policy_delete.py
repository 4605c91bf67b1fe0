"""Deleting a policy on moto, and listing its model versions page by page.

``DELETE /v1/policies/{policy}`` removes the spec, every model version and their S3 objects; a
policy created again under the name starts fresh (no model, versions from 1) and meets no
leftover version, even when a save lands while the delete runs. Its logged events stay and the
learner sets the open ones aside. ``GET /v1/policies/{policy}/models`` pages newest first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest

from bandit.serve.ranker import build_model
from bandit.spec import load_spec
from functions.admin.app import lambda_handler as admin_handler
from functions.common import decision_store, model_store, page_tokens, policy_deletion, policy_store
from functions.common.auth import NewKey, create_key
from functions.common.model_cache import ModelCache
from functions.common.settings import reset_settings
from functions.learn.app import learner
from functions.rank.app import lambda_handler as rank_handler
from local.lambda_events import FakeLambdaContext, proxy_event, response_json
from tests.functional.conftest import Api

ROOT = Path(__file__).resolve().parents[2]
POLICY = "/v1/policies/{policy}"
MODELS = POLICY + "/models"
RANK_BODY = {"context": {"user": {"x": 1}}, "candidates": [{"id": "a"}, {"id": "b"}]}


def save_versions(policy: str, count: int) -> int:
    """``count`` more model versions of acme's ``policy``; returns the head."""
    stored = policy_store.get("acme", policy)
    head = stored.head_version
    for _ in range(count):
        head = model_store.save("acme", policy, build_model(stored.spec), expected_head=head)
    return head


def model_objects(aws: dict[str, str], policy: str) -> list[str]:
    listed = boto3.client("s3", region_name="us-east-1").list_objects_v2(
        Bucket=aws["MODEL_BUCKET"], Prefix=f"models/acme/{policy}/"
    )
    return [o["Key"] for o in listed.get("Contents", [])]


def stored_versions(policy: str) -> list[int]:
    return [v.version for v in model_store.versions("acme", policy)]


def rank(api: Api, policy: str) -> tuple[int, Any]:
    status, payload, _ = api.call(
        rank_handler, "POST", f"/v1/policies/{policy}/rank", RANK_BODY, resource=POLICY + "/rank"
    )
    return status, payload


@pytest.fixture
def in_s3(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every model version kept as an S3 object (a tiny inline limit)."""
    monkeypatch.setenv("INLINE_MODEL_BYTES", "100")
    reset_settings()


def test_delete_removes_the_spec_every_version_and_their_objects(
    aws: dict[str, str], api: Api, in_s3: None
) -> None:
    # Given explore with three model versions in S3, and for-you with one
    save_versions("explore", 3)
    save_versions("for-you", 1)
    assert len(model_objects(aws, "explore")) == 3
    # When explore is deleted
    status, answer, _ = api.call(admin_handler, "DELETE", "/v1/policies/explore", resource=POLICY)
    # Then the answer says what went, and none of it is left
    assert status == 200, answer
    assert answer == {
        "policy": "explore",
        "deleted": {"spec_version": 1, "model_head": 3, "model_versions": 3, "model_objects": 3},
    }
    assert stored_versions("explore") == [] and model_objects(aws, "explore") == []
    for method, path, resource in [
        ("GET", "/v1/policies/explore", POLICY),
        ("GET", "/v1/policies/explore/models", MODELS),
        ("DELETE", "/v1/policies/explore", POLICY),
    ]:
        status, error, _ = api.call(admin_handler, method, path, resource=resource)
        assert (status, error["error"]) == (404, "not_found"), (method, path)
    assert rank(api, "explore")[0] == 404
    status, error, _ = api.call(
        rank_handler,
        "POST",
        "/v1/policies/explore/recommend",
        {"context": {}},
        resource=POLICY + "/recommend",
    )
    assert status == 404, error
    # And the other policies are as they were
    status, listed, _ = api.call(admin_handler, "GET", "/v1/policies")
    assert [p["name"] for p in listed["policies"]] == ["for-you", "personalizer"]
    assert stored_versions("for-you") == [1] and len(model_objects(aws, "for-you")) == 1


def test_logged_events_stay_and_the_learner_sets_them_aside(aws: dict[str, str], api: Api) -> None:
    # Given an event ranked on explore, still open
    status, ranked = rank(api, "explore")
    assert status == 200, ranked
    # When explore is deleted and the event's reward wait passes
    assert api.call(admin_handler, "DELETE", "/v1/policies/explore", resource=POLICY)[0] == 200
    learner().sweep(now=10**10)
    # Then the event is kept, set aside with its reason, and nothing was learned
    event = decision_store.status("acme", ranked["event_id"])
    assert (event["status"], event["reason"]) == ("failed", "policy 'explore' no longer exists")
    assert stored_versions("explore") == []


def test_a_policy_created_again_starts_fresh(aws: dict[str, str], api: Api, in_s3: None) -> None:
    # Given explore deleted after five versions
    save_versions("explore", 5)
    assert api.call(admin_handler, "DELETE", "/v1/policies/explore", resource=POLICY)[0] == 200
    # When it is created again under the same name
    spec = load_spec(ROOT / "policies" / "explore.yaml").model_dump(mode="json")
    status, created, _ = api.call(
        admin_handler, "PUT", "/v1/policies/explore", spec, resource=POLICY
    )
    # Then it has a spec of version 1 and no model
    assert status == 200, created
    assert (created["spec_version"], created["model_version"]) == (1, 0)
    status, models, _ = api.call(
        admin_handler, "GET", "/v1/policies/explore/models", resource=MODELS
    )
    assert (models["head"], models["versions"]) == (0, [])
    # And it serves the fresh model and learns into version 1, the only one there is
    status, ranked = rank(api, "explore")
    assert (status, ranked["model_version"]) == (200, 0)
    learner().sweep(now=10**10)
    assert stored_versions("explore") == [1]
    assert model_store.versions("acme", "explore")[0].events_learned == 1
    assert decision_store.status("acme", ranked["event_id"])["learned_version"] == 1


def test_a_model_cached_for_a_deleted_policy_is_never_served_for_its_successor(
    aws: dict[str, str], api: Api
) -> None:
    # Given a container that cached version 1 of explore
    save_versions("explore", 1)
    old = policy_store.get("acme", "explore")
    cache = ModelCache()
    first, _ = cache.get("acme", "explore", old.spec, 1, old.lineage)
    # When explore is deleted, created again, and reaches a version 1 of its own
    assert api.call(admin_handler, "DELETE", "/v1/policies/explore", resource=POLICY)[0] == 200
    spec = load_spec(ROOT / "policies" / "explore.yaml").model_dump(mode="json")
    assert api.call(admin_handler, "PUT", "/v1/policies/explore", spec, resource=POLICY)[0] == 200
    save_versions("explore", 1)
    new = policy_store.get("acme", "explore")
    # Then the same version number loads the new policy's model, not the cached one
    again, degraded = cache.get("acme", "explore", new.spec, 1, new.lineage)
    assert new.lineage is not None and new.lineage != old.lineage
    assert again.model is not first.model and again.lineage == new.lineage and not degraded


def test_a_save_landing_during_the_delete_does_not_outlive_it(
    aws: dict[str, str], api: Api, in_s3: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given explore with two versions, and a learner that saves a third just after the
    # delete removed the versions (before the policy item goes)
    save_versions("explore", 2)
    real = policy_deletion.delete_versions
    landed: list[int] = []

    def racing(tenant: str, policy: str) -> policy_deletion.Deleted:
        deleted = real(tenant, policy)
        if not landed:
            landed.append(save_versions(policy, 1))
        return deleted

    monkeypatch.setattr(policy_deletion, "delete_versions", racing)
    # When explore is deleted
    status, answer, _ = api.call(admin_handler, "DELETE", "/v1/policies/explore", resource=POLICY)
    # Then the third version was deleted too: nothing of explore is left
    assert landed == [3]
    assert status == 200, answer
    assert answer["deleted"] == {
        "spec_version": 1,
        "model_head": 3,
        "model_versions": 3,
        "model_objects": 3,
    }
    assert stored_versions("explore") == [] and model_objects(aws, "explore") == []
    # And explore created again saves its version 1 without meeting an old one
    policy_store.put("acme", load_spec(ROOT / "policies" / "explore.yaml"))
    assert save_versions("explore", 1) == 1


def test_delete_needs_admin_and_only_reaches_the_tenants_own(
    aws: dict[str, str], api: Api, other_tenant: NewKey
) -> None:
    rank_only = Api(create_key("acme", {"rank", "reward"}))
    status, error, _ = rank_only.call(
        admin_handler, "DELETE", "/v1/policies/explore", resource=POLICY
    )
    assert (status, error["error"]) == (403, "forbidden")
    status, error, _ = api.call(admin_handler, "DELETE", "/v1/policies/nope", resource=POLICY)
    assert (status, error["error"]) == (404, "not_found")
    status, error, _ = api.call(admin_handler, "DELETE", "/v1/policies/Bad_Name", resource=POLICY)
    assert (status, error["field"]) == (404, "policy")
    # globex deletes its own explore: acme's stays
    other = Api(other_tenant)
    assert other.call(admin_handler, "DELETE", "/v1/policies/explore", resource=POLICY)[0] == 200
    assert policy_store.get("acme", "explore").spec.name == "explore"


# --------------------------------------------------------------------------------------------
# GET /v1/policies/{policy}/models, page by page
# --------------------------------------------------------------------------------------------


def models(key: NewKey, policy: str = "explore", **query: Any) -> tuple[int, Any]:
    event = proxy_event(
        "GET",
        f"/v1/policies/{policy}/models",
        resource=MODELS,
        headers={"x-api-key": key.api_key},
        query=urlencode(query),
    )
    response = admin_handler(event, FakeLambdaContext())
    return response["statusCode"], response_json(response)


def test_model_versions_come_newest_first_page_by_page(aws: dict[str, str], tenant: NewKey) -> None:
    save_versions("explore", 5)
    pages: list[list[int]] = []
    token: str | None = None
    while True:
        query: dict[str, Any] = {"limit": 2, **({"next_token": token} if token else {})}
        status, page = models(tenant, **query)
        assert status == 200, page
        assert page["head"] == 5
        pages.append([v["version"] for v in page["versions"]])
        token = page["next_token"]
        if token is None:
            break
    assert pages == [[5, 4], [3, 2], [1]]
    status, whole = models(tenant)
    assert [v["version"] for v in whole["versions"]] == [5, 4, 3, 2, 1]
    assert whole["next_token"] is None
    # A page that ends exactly at the last version says so
    status, exact = models(tenant, limit=5)
    assert len(exact["versions"]) == 5 and exact["next_token"] is None


def test_the_default_page_is_twenty_versions(aws: dict[str, str], tenant: NewKey) -> None:
    save_versions("explore", 23)
    status, page = models(tenant)
    kept = stored_versions("explore")
    assert status == 200 and len(kept) > 20
    assert [v["version"] for v in page["versions"]] == kept[:20]
    status, rest = models(tenant, next_token=page["next_token"])
    assert [v["version"] for v in rest["versions"]] == kept[20:]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"next_token": page_tokens.encode_token("acme#for-you", "3")}, "next_token"),
        ({"next_token": page_tokens.encode_token("globex#explore", "3")}, "next_token"),
        ({"next_token": page_tokens.encode_token("acme", "3")}, "next_token"),
        ({"next_token": page_tokens.encode_token("acme#explore", "3.5")}, "next_token"),
        ({"next_token": page_tokens.encode_token("acme#explore", "٣")}, "next_token"),
    ],
)
def test_a_bad_limit_or_token_is_422_naming_it(
    aws: dict[str, str], tenant: NewKey, query: dict[str, Any], field: str
) -> None:
    status, error = models(tenant, **query)
    assert (status, error["error"], error["field"]) == (422, "validation_error", field), error
