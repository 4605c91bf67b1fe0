"""Admin use cases: policies, model versions and rollback, the item catalog."""

from __future__ import annotations

from typing import Any

from bandit.domain import Candidate
from bandit.spec import parse_spec
from functions.common import catalog, model_store, policy_store
from functions.common.api_models import ItemsBody
from functions.common.auth import Principal
from functions.common.errors import ConflictError, NotFoundError, ValidationFailedError


def _policy_view(stored: policy_store.StoredPolicy) -> dict[str, Any]:
    return {
        "name": stored.spec.name,
        "spec": stored.spec.model_dump(mode="json"),
        "spec_version": stored.spec_version,
        "model_version": stored.head_version,
        "updated_at": stored.updated_at,
    }


def _head_conflict(policy: str) -> ConflictError:
    return ConflictError(
        f"the model of '{policy}' changed while this request ran (a learner saved a new "
        "version); read the policy again and retry",
        field="version",
    )


def list_policies(principal: Principal) -> dict[str, Any]:
    """The tenant's policies."""
    return {"policies": [_policy_view(p) for p in policy_store.list_policies(principal.tenant)]}


def get_policy(principal: Principal, policy: str) -> dict[str, Any]:
    """One policy with its spec."""
    return _policy_view(policy_store.get(principal.tenant, policy))


def put_policy(principal: Principal, policy: str, body: dict[str, Any]) -> dict[str, Any]:
    """Create or replace a policy from a JSON spec (needs scope ``admin``)."""
    principal.require("admin")
    data = {**body, "name": body.get("name", policy)}
    if data["name"] != policy:
        raise ValidationFailedError(
            f"spec name '{data['name']}' differs from the path's '{policy}'", field="name"
        )
    spec = parse_spec(data)
    result = policy_store.put_spec(principal.tenant, spec)
    return {**_policy_view(result.stored), "model_reset": result.model_reset}


def list_models(principal: Principal, policy: str) -> dict[str, Any]:
    """Kept model versions of a policy, newest first."""
    stored = policy_store.get(principal.tenant, policy)
    return {
        "policy": policy,
        "head": stored.head_version,
        "versions": [v.as_dict() for v in model_store.versions(principal.tenant, policy)],
    }


def rollback(principal: Principal, policy: str, version: int) -> dict[str, Any]:
    """Make a copy of a kept version the head (needs scope ``admin``)."""
    principal.require("admin")
    stored = policy_store.get(principal.tenant, policy)
    kept = {v.version for v in model_store.versions(principal.tenant, policy)}
    if version not in kept:
        raise NotFoundError(f"model version {version} of '{policy}' is not kept")
    try:
        new_head = model_store.rollback(
            principal.tenant, policy, version, stored.head_version, stored.spec.vw_args()
        )
    except model_store.HeadMovedError as exc:
        raise _head_conflict(policy) from exc
    except model_store.IncompatibleModelError as exc:
        raise ValidationFailedError(f"{exc}; put that spec back first", field="version") from exc
    return {"policy": policy, "head": new_head, "rolled_back_from": version}


def upsert_items(principal: Principal, body: ItemsBody) -> dict[str, Any]:
    """Create or replace catalog items (needs scope ``admin``)."""
    principal.require("admin")
    items = [Candidate(i.id, i.features, i.category, i.creator, i.created_at) for i in body.items]
    embeddings = {i.id: i.embedding for i in body.items if i.embedding is not None}
    return {"upserted": catalog.upsert(principal.tenant, items, embeddings)}
