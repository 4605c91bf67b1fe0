"""Admin API on moto: policies, model versions and rollback, catalog, tenancy, scopes."""

from __future__ import annotations

import json
from typing import Any

from functions.admin.app import lambda_handler as admin_handler
from functions.common import decision_store, model_store
from functions.common.auth import NewKey, create_key
from functions.learn.app import learner
from functions.rank.app import lambda_handler as rank_handler
from tests.functional.conftest import Api

RANK = "/v1/policies/{policy}/rank"


def admin(
    api: Api, method: str, path: str, body: Any = None, resource: str | None = None
) -> tuple[int, Any]:
    status, payload, _ = api.call(admin_handler, method, path, body, resource=resource)
    return status, payload


def test_policies_list_get_and_put(aws: dict[str, str], api: Api) -> None:
    status, listed = admin(api, "GET", "/v1/policies")
    assert status == 200
    assert [p["name"] for p in listed["policies"]] == ["explore", "for-you", "personalizer"]
    status, policy = admin(api, "GET", "/v1/policies/for-you", resource="/v1/policies/{policy}")
    assert status == 200 and policy["spec"]["exploration"]["budget"] == 0.05
    spec = {**policy["spec"], "exploration": {**policy["spec"]["exploration"], "budget": 0.2}}
    status, updated = admin(
        api, "PUT", "/v1/policies/for-you", spec, resource="/v1/policies/{policy}"
    )
    assert status == 200
    assert (updated["spec_version"], updated["spec"]["exploration"]["budget"]) == (2, 0.2)


def test_invalid_spec_is_refused_naming_the_field_and_nothing_changes(
    aws: dict[str, str], api: Api
) -> None:
    bad = {"name": "for-you", "vw": {"args": ["--data", "/etc/passwd"]}}
    status, error = admin(api, "PUT", "/v1/policies/for-you", bad, resource="/v1/policies/{policy}")
    assert status == 422
    assert error["field"] == "vw.args[0]"
    _, policy = admin(api, "GET", "/v1/policies/for-you", resource="/v1/policies/{policy}")
    assert policy["spec_version"] == 1
    status, error = admin(
        api, "PUT", "/v1/policies/other", {"name": "for-you"}, resource="/v1/policies/{policy}"
    )
    assert (status, error["field"]) == (422, "name")


def test_models_listing_and_rollback(aws: dict[str, str], api: Api) -> None:
    # Given three model versions learned by the sweep
    for _ in range(3):
        body = {"context": {"user": {"x": 1}}, "candidates": [{"id": "a"}, {"id": "b"}]}
        status, _, _ = api.call(
            rank_handler, "POST", "/v1/policies/for-you/rank", body, resource=RANK
        )
        assert status == 200
        learner().sweep(now=10**10)
    status, models = admin(
        api, "GET", "/v1/policies/for-you/models", resource="/v1/policies/{policy}/models"
    )
    assert status == 200
    assert models["head"] == 3
    assert [v["version"] for v in models["versions"]] == [3, 2, 1]
    # When rolling back to version 1
    status, result = admin(
        api,
        "POST",
        "/v1/policies/for-you/rollback",
        {"version": 1},
        resource="/v1/policies/{policy}/rollback",
    )
    # Then a copy of version 1 is the new head
    assert (status, result) == (200, {"policy": "for-you", "head": 4, "rolled_back_from": 1})
    versions = model_store.versions("acme", "for-you")
    assert versions[0].rolled_back_from == 1
    assert versions[0].events_learned == versions[-1].events_learned == 1
    status, _ = admin(
        api,
        "POST",
        "/v1/policies/for-you/rollback",
        {"version": 99},
        resource="/v1/policies/{policy}/rollback",
    )
    assert status == 404


def test_catalog_upsert_lets_rank_take_candidate_ids(aws: dict[str, str], api: Api) -> None:
    items = {
        "items": [
            {"id": f"sku-{i}", "category": "shoes", "features": {"size": i}} for i in range(4)
        ]
    }
    status, result = admin(api, "PUT", "/v1/items", items)
    assert (status, result) == (200, {"upserted": 4})
    body = {"context": {}, "candidates": ["sku-0", "sku-1", "sku-2"], "slate_size": 2}
    status, ranked, _ = api.call(
        rank_handler, "POST", "/v1/policies/for-you/rank", body, resource=RANK
    )
    assert status == 200
    assert {s["id"] for s in ranked["slate"]} <= {"sku-0", "sku-1", "sku-2"}
    record = decision_store.get("acme", ranked["event_id"]).record
    assert record.candidates[0].features == {"size": 0}
    body = {"context": {}, "candidates": ["sku-0", "unknown-sku"]}
    status, error, _ = api.call(
        rank_handler, "POST", "/v1/policies/for-you/rank", body, resource=RANK
    )
    assert (status, error["field"]) == (422, "candidates[1]")


def test_another_tenants_policy_is_not_found(
    aws: dict[str, str], api: Api, other_tenant: NewKey
) -> None:
    admin(api, "PUT", "/v1/policies/private", {"name": "private"}, resource="/v1/policies/{policy}")
    other = Api(other_tenant)
    status, error = admin(other, "GET", "/v1/policies/private", resource="/v1/policies/{policy}")
    assert (status, error["error"]) == (404, "not_found")
    body = {"context": {}, "candidates": [{"id": "a"}]}
    status, _, _ = other.call(
        rank_handler, "POST", "/v1/policies/private/rank", body, resource=RANK
    )
    assert status == 404


def test_scopes_are_enforced(aws: dict[str, str], tenant: NewKey) -> None:
    rank_only = Api(create_key("acme", {"rank"}))
    status, error = admin(
        rank_only,
        "PUT",
        "/v1/policies/for-you",
        {"name": "for-you"},
        resource="/v1/policies/{policy}",
    )
    assert (status, error["error"]) == (403, "forbidden")
    status, error = admin(rank_only, "PUT", "/v1/items", {"items": [{"id": "x"}]})
    assert status == 403


def test_missing_or_unknown_key_is_401(aws: dict[str, str], api: Api) -> None:
    status, error, _ = api.call(admin_handler, "GET", "/v1/policies", api_key="sk_nope")
    assert (status, error["error"]) == (401, "unauthorized")


def test_bad_rank_bodies_get_clear_errors_and_log_nothing(aws: dict[str, str], api: Api) -> None:
    cases: list[tuple[Any, int, str]] = [
        ("{not json", 400, "body"),
        ({"candidates": [{"id": "a"}]}, 422, "context"),
        ({"context": {}, "candidates": []}, 422, "candidates"),
        ({"context": {}, "candidates": [{"id": "a"}], "slate_size": 0}, 422, "slate_size"),
        (
            {"context": {"u": {"age": float("nan")}}, "candidates": [{"id": "a"}]},
            422,
            "context.u.age",
        ),
        ({"context": {}, "candidates": [{"id": "a", "colour": "red"}]}, 422, "candidates[0]"),
        ({"context": {}, "candidates": [{"id": "a"}, {"id": "a"}]}, 422, "candidates"),
    ]
    for body, status_expected, field in cases:
        raw = body if isinstance(body, str) else json.dumps(body)
        status, error, _ = api.call(
            rank_handler, "POST", "/v1/policies/for-you/rank", raw, resource=RANK
        )
        assert status == status_expected, (body, error)
        assert error["field"].startswith(field), (body, error)
    assert list(decision_store.export("acme", "for-you")) == []
