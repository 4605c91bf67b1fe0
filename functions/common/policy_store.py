"""Policies per tenant: validated specs, their versions and their model heads.

Lineage is truth: a spec change that makes the old weights unusable (its VW arguments, see
``resets_model``) saves a fresh model as a new head version in the same transaction as the
spec, so every rank and every decision record names the model that really served it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from pynamodb.exceptions import DoesNotExist, PutError, PynamoDBException, UpdateError

from bandit.serve.ranker import build_model
from bandit.spec import PolicySpec, load_spec, parse_spec
from functions.common import model_store
from functions.common.errors import (
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    StorageError,
)
from functions.common.item_size import MAX_ITEM_BYTES, item_size
from functions.common.tables import PolicyItem, bind

PUT_ATTEMPTS = 5


class PolicyNotFoundError(NotFoundError):
    """The tenant has no policy of that name."""

    def __init__(self, policy: str) -> None:
        super().__init__(f"policy '{policy}' not found")
        self.policy = policy


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    """A policy as stored: its spec, spec version and model head version."""

    spec: PolicySpec
    spec_version: int
    head_version: int
    updated_at: float


def _stored(item: PolicyItem) -> StoredPolicy:
    spec = parse_spec(json.loads(item.spec))
    return StoredPolicy(
        spec=spec,
        spec_version=int(item.spec_version),
        head_version=int(item.head_version),
        updated_at=float(item.updated_at),
    )


def get(tenant: str, policy: str) -> StoredPolicy:
    """The tenant's policy, or ``NotFoundError`` (also for another tenant's policy)."""
    bind()
    try:
        return _stored(PolicyItem.get(tenant, policy, consistent_read=True))
    except DoesNotExist as exc:
        raise PolicyNotFoundError(policy) from exc
    except PynamoDBException as exc:
        raise StorageError(f"policy store unavailable: {exc.msg}") from exc


def list_policies(tenant: str) -> list[StoredPolicy]:
    """Every policy of the tenant, by name."""
    bind()
    try:
        return [_stored(item) for item in PolicyItem.query(tenant)]
    except PynamoDBException as exc:
        raise StorageError(f"policy store unavailable: {exc.msg}") from exc


def tenants() -> set[str]:
    """Every tenant that has a policy (a scan of the small policies table, keys only)."""
    bind()
    try:
        return {item.pk for item in PolicyItem.scan(attributes_to_get=["pk", "sk"])}
    except PynamoDBException as exc:
        raise StorageError(f"policy store unavailable: {exc.msg}") from exc


@dataclass(frozen=True, slots=True)
class PutResult:
    """A stored policy and whether storing it started a fresh model version."""

    stored: StoredPolicy
    model_reset: bool


def resets_model(old: PolicySpec, new: PolicySpec) -> bool:
    """Whether ``new`` cannot use a model trained under ``old``: its VW arguments differ.

    VW's arguments (``vw.args`` and ``vw.explore_args``) fix the model's shape; every other
    setting (exploration, budget, cold start, rewards, diversity) applies around the weights.
    """
    return old.vw_args() != new.vw_args()


def put(tenant: str, spec: PolicySpec) -> StoredPolicy:
    """Create or replace a policy's spec (see ``put_spec``)."""
    return put_spec(tenant, spec).stored


def put_spec(tenant: str, spec: PolicySpec) -> PutResult:
    """Create or replace a policy's spec; the spec version goes up by one.

    The model head stays, unless the spec ``resets_model``: then a fresh model is saved as the
    next version with the spec, atomically. A learner racing the change is retried here.
    A spec whose item DynamoDB could never store is refused first (``check_size``).
    """
    bind()
    now = time.time()
    body = spec.model_dump_json()
    check_size(tenant, spec.name, body)
    for _ in range(PUT_ATTEMPTS):
        try:
            current = PolicyItem.get(tenant, spec.name, consistent_read=True)
        except DoesNotExist:
            item = PolicyItem(tenant, spec.name, spec=body, spec_version=1, updated_at=now)
            try:
                item.save(condition=PolicyItem.pk.does_not_exist())
                return PutResult(_stored(item), model_reset=False)
            except PutError:
                continue  # created concurrently: update it instead
        except PynamoDBException as exc:
            raise StorageError(f"policy store unavailable: {exc.msg}") from exc
        version = int(current.spec_version)
        if resets_model(_stored(current).spec, spec):
            try:
                model_store.save(
                    tenant,
                    spec.name,
                    build_model(spec),
                    expected_head=int(current.head_version),
                    spec_change=model_store.SpecChange(body, version),
                )
            except model_store.HeadMovedError:
                continue  # a learner saved meanwhile: start again from the new head
            return PutResult(get(tenant, spec.name), model_reset=True)
        try:
            current.update(
                actions=[
                    PolicyItem.spec.set(body),
                    PolicyItem.spec_version.set(version + 1),
                    PolicyItem.updated_at.set(now),
                ],
                condition=PolicyItem.spec_version == version,
            )
            return PutResult(_stored(current), model_reset=False)
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise StorageError(f"policy store unavailable: {exc.msg}") from exc
        except PynamoDBException as exc:
            raise StorageError(f"policy store unavailable: {exc.msg}") from exc
    raise ConflictError(f"policy '{spec.name}' is being changed concurrently; retry")


# The counters of a policy item at their widest, so the check holds for any version numbers.
_WIDEST_NUMBER = float(2**53 - 1)


def check_size(tenant: str, policy: str, body: str) -> None:
    """Refuse (``PayloadTooLargeError`` naming ``spec``) a spec whose item would be over 400 KB.

    The detail names the spec's largest part. Stored with a fresh model in one transaction the
    spec still fits the transaction's 4 MB: the model version takes at most 400 KB too.
    """
    widest = PolicyItem(
        tenant,
        policy,
        spec=body,
        spec_version=_WIDEST_NUMBER,
        head_version=_WIDEST_NUMBER,
        updated_at=time.time(),
    )
    size = item_size(widest.serialize())
    if size <= MAX_ITEM_BYTES:
        return
    parts = {
        key: len(json.dumps(value, ensure_ascii=False).encode())
        for key, value in json.loads(body).items()
    }
    largest = max(parts, key=parts.__getitem__)
    raise PayloadTooLargeError(
        f"the spec takes {size} bytes as stored; a policy may take at most {MAX_ITEM_BYTES} "
        f"(its largest part is '{largest}', {parts[largest]} bytes)",
        field="spec",
    )


def seed(tenant: str, directory: Path) -> list[str]:
    """Store every ``*.yaml`` spec of ``directory`` for ``tenant`` unless it already exists."""
    names: list[str] = []
    for path in sorted(directory.glob("*.yaml")):
        spec = load_spec(path)
        try:
            get(tenant, spec.name)
        except NotFoundError:
            put(tenant, spec)
        names.append(spec.name)
    return names
