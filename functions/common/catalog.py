"""The item catalog of a tenant: upserts, and candidates sent as ids."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from pynamodb.exceptions import PynamoDBException

from bandit.domain import Candidate
from functions.common.errors import StorageError, ValidationFailedError
from functions.common.tables import CatalogItem, bind, storable_number


def upsert(tenant: str, items: Sequence[Candidate]) -> int:
    """Create or replace items (batched writes); returns how many were written.

    An id sent twice is written once, as sent last (a batch may not write one key twice).
    """
    bind()
    now = time.time()
    latest = {item.id: item for item in items}
    try:
        with CatalogItem.batch_write() as batch:
            for item in latest.values():
                created = item.created_at
                batch.save(
                    CatalogItem(
                        tenant,
                        item.id,
                        features=json.dumps(dict(item.features), sort_keys=True),
                        category=item.category,
                        creator=item.creator,
                        created_at=now if created is None else storable_number(created),
                        updated_at=now,
                    )
                )
    except PynamoDBException as exc:
        raise StorageError(f"catalog unavailable: {exc.msg}") from exc
    return len(latest)


def resolve(tenant: str, ids: Sequence[tuple[int, str]]) -> dict[str, Candidate]:
    """Candidates for ids sent by reference; ``(position, id)`` pairs name errors precisely."""
    if not ids:
        return {}
    bind()
    try:
        found = {
            item.sk: Candidate(
                id=item.sk,
                features=json.loads(item.features),
                category=item.category,
                creator=item.creator,
                created_at=None if item.created_at is None else float(item.created_at),
            )
            for item in CatalogItem.batch_get([(tenant, item_id) for _, item_id in ids])
        }
    except PynamoDBException as exc:
        raise StorageError(f"catalog unavailable: {exc.msg}") from exc
    for position, item_id in ids:
        if item_id not in found:
            raise ValidationFailedError(
                f"item '{item_id}' is not in the catalog", field=f"candidates[{position}]"
            )
    return found
