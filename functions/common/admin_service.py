"""Admin use cases: policies, model versions and rollback, the item catalog."""

from __future__ import annotations

import json
import re
from typing import Any

from bandit.domain import Candidate
from bandit.spec import parse_spec
from functions.common import catalog, model_store, page_tokens, policy_deletion, policy_store
from functions.common.api_models import ID_PATTERN, ItemsBody
from functions.common.auth import Principal
from functions.common.errors import ConflictError, NotFoundError, ValidationFailedError


def _policy_view(stored: policy_store.StoredPolicy) -> dict[str, Any]:
    return {
        "name": stored.spec.name,
        "spec": stored.spec.model_dump(mode="json"),
        "spec_version": stored.spec_version,
        "model_version": stored.head_version,
        "updated_at": stored.updated_at,
        "retrain": stored.retrain,
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


def model_change(value: str | None) -> policy_store.ModelChange:
    """The ``model`` query parameter of a PUT: ``retrain`` (the default) or ``fresh``."""
    if value is None:
        return policy_store.ModelChange.RETRAIN
    try:
        return policy_store.ModelChange(value)
    except ValueError as exc:
        raise ValidationFailedError(
            f"model must be 'retrain' or 'fresh', not {value[:64]!r}", field="model"
        ) from exc


def put_policy(
    principal: Principal, policy: str, body: dict[str, Any], model: str | None = None
) -> dict[str, Any]:
    """Create or replace a policy from a JSON spec (needs scope ``admin``).

    ``model`` says what a change of the VW arguments does (``model_change``). The answer adds
    ``model_reset`` (a fresh model version was started), ``changed`` (false: the spec equals
    the stored or the pending one, and nothing changed) and ``retrain`` (the latest retrain
    job's status); ``put_status`` is its HTTP status.
    """
    principal.require("admin")
    change = model_change(model)
    data = {**body, "name": body.get("name", policy)}
    if data["name"] != policy:
        raise ValidationFailedError(
            f"spec name '{data['name']}' differs from the path's '{policy}'", field="name"
        )
    spec = parse_spec(data)
    result = policy_store.put_spec(principal.tenant, spec, change)
    return {
        **_policy_view(result.stored),
        "model_reset": result.model_reset,
        "changed": result.changed,
    }


def put_status(answer: dict[str, Any]) -> int:
    """202 when a PUT's answer reports the retrain it started (still running), else 200."""
    retrain = answer.get("retrain") or {}
    return 202 if answer.get("changed") and retrain.get("state") == "running" else 200


def list_models(
    principal: Principal, policy: str, limit: int = 20, next_token: str | None = None
) -> dict[str, Any]:
    """One page of a policy's kept model versions, newest first: at most ``limit``, older than
    those of the page ``next_token`` ended (``next_token`` of the answer: null on the last)."""
    stored = policy_store.get(principal.tenant, policy)
    key = model_store.model_key(principal.tenant, policy)
    before = None
    if next_token:
        token_key, position = page_tokens.decode_token(next_token, principal.tenant)
        if token_key != key or not re.fullmatch(r"[0-9]{1,16}", position):
            raise page_tokens.invalid_token()
        before = int(position)
    versions, more = model_store.versions_before(principal.tenant, policy, before, limit)
    return {
        "policy": policy,
        "head": stored.head_version,
        "versions": [v.as_dict() for v in versions],
        "next_token": page_tokens.encode_token(key, str(versions[-1].version)) if more else None,
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


def delete_policy(principal: Principal, policy: str) -> dict[str, Any]:
    """Delete a policy, its model versions and their objects (needs scope ``admin``); see
    ``policy_deletion`` for what stays."""
    principal.require("admin")
    deleted = policy_deletion.delete(principal.tenant, policy)
    return {
        "policy": policy,
        "deleted": {
            "spec_version": deleted.spec_version,
            "model_head": deleted.model_head,
            "model_versions": deleted.model_versions,
            "model_objects": deleted.model_objects,
        },
    }


# A page of items stays well inside Lambda's 6 MB response (counted as JSON, escapes included).
ITEMS_PAGE_BYTES = 4_000_000


def _item_view(entry: catalog.CatalogEntry) -> dict[str, Any]:
    item = entry.candidate
    return {
        "id": item.id,
        "features": dict(item.features),
        "category": item.category,
        "creator": item.creator,
        "created_at": item.created_at,
        "updated_at": entry.updated_at,
        # float32 as stored, written as the shortest decimal that reads back the same
        "embedding": None
        if entry.embedding is None
        else [float(str(value)) for value in entry.embedding],
    }


def get_item(principal: Principal, item_id: str) -> dict[str, Any]:
    """One catalog item (any scope; 404 naming ``item_id`` if unknown)."""
    return _item_view(catalog.get(principal.tenant, item_id))


def list_items(
    principal: Principal, limit: int = 100, next_token: str | None = None
) -> dict[str, Any]:
    """One page of the tenant's catalog in id order (any scope): at most ``limit`` items and
    ``ITEMS_PAGE_BYTES`` of them, after those of the page ``next_token`` ended."""
    after = None
    if next_token:
        key, position = page_tokens.decode_token(next_token, principal.tenant)
        if key != principal.tenant or not re.fullmatch(ID_PATTERN, position):
            raise page_tokens.invalid_token()
        after = position
    items: list[dict[str, Any]] = []
    size, more = 0, False
    for entry in catalog.items_after(principal.tenant, after, limit + 1):
        view = _item_view(entry)
        size += len(json.dumps(view))
        if len(items) == limit or (items and size > ITEMS_PAGE_BYTES):
            more = True
            break
        items.append(view)
    last = items[-1]["id"] if items and more else None
    return {
        "items": items,
        "next_token": None if last is None else page_tokens.encode_token(principal.tenant, last),
    }
