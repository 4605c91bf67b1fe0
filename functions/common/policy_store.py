"""Policies per tenant: validated specs, their versions and their model heads."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from pynamodb.exceptions import DoesNotExist, PutError, PynamoDBException

from bandit.spec import PolicySpec, load_spec, parse_spec
from functions.common.errors import NotFoundError, StorageError
from functions.common.tables import PolicyItem, bind


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
        raise NotFoundError(f"policy '{policy}' not found") from exc
    except PynamoDBException as exc:
        raise StorageError(f"policy store unavailable: {exc.msg}") from exc


def list_policies(tenant: str) -> list[StoredPolicy]:
    """Every policy of the tenant, by name."""
    bind()
    try:
        return [_stored(item) for item in PolicyItem.query(tenant)]
    except PynamoDBException as exc:
        raise StorageError(f"policy store unavailable: {exc.msg}") from exc


def put(tenant: str, spec: PolicySpec) -> StoredPolicy:
    """Create or replace a policy's spec; the spec version goes up by one, the head stays."""
    bind()
    now = time.time()
    body = spec.model_dump_json()
    for _ in range(5):
        try:
            current = PolicyItem.get(tenant, spec.name, consistent_read=True)
        except DoesNotExist:
            item = PolicyItem(tenant, spec.name, spec=body, spec_version=1, updated_at=now)
            try:
                item.save(condition=PolicyItem.pk.does_not_exist())
                return _stored(item)
            except PutError:
                continue  # created concurrently: update it instead
        except PynamoDBException as exc:
            raise StorageError(f"policy store unavailable: {exc.msg}") from exc
        version = int(current.spec_version)
        try:
            current.update(
                actions=[
                    PolicyItem.spec.set(body),
                    PolicyItem.spec_version.set(version + 1),
                    PolicyItem.updated_at.set(now),
                ],
                condition=PolicyItem.spec_version == version,
            )
            return _stored(current)
        except PynamoDBException:
            continue
    raise StorageError(f"policy '{spec.name}' is being changed concurrently; retry")


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
