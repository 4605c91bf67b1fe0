"""The item catalog of a tenant: upserts, reads (one item, or pages in id order), and
candidates sent as ids."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pynamodb.exceptions import DoesNotExist, PynamoDBException

from bandit.domain import Candidate
from functions.common.batches import put_all
from functions.common.errors import (
    NotFoundError,
    PayloadTooLargeError,
    StorageError,
    ValidationFailedError,
)
from functions.common.item_size import MAX_ITEM_BYTES, item_size
from functions.common.tables import CatalogItem, bind, storable_number

MAX_EMBEDDING_DIMS = 1024


def upsert(
    tenant: str,
    items: Sequence[Candidate],
    embeddings: Mapping[str, Sequence[float]] | None = None,
) -> int:
    """Create or replace items (batched writes); returns how many were written.

    ``embeddings`` gives items their own vectors (by item id), which the catalog index
    builder puts in the ``embedding`` space of recommend's retrieval.

    Every item is measured first: one that DynamoDB could never store (over 400 KB as it counts
    items) is refused with ``PayloadTooLargeError`` naming ``items[i]``, and then none is
    written. An id sent twice is written once, as sent last (a batch may not write one key
    twice).
    """
    bind()
    now = time.time()
    latest: dict[str, CatalogItem] = {}
    for index, item in enumerate(items):
        created = item.created_at
        stored = CatalogItem(
            tenant,
            item.id,
            features=json.dumps(dict(item.features), sort_keys=True),
            category=item.category,
            creator=item.creator,
            created_at=now if created is None else storable_number(created),
            updated_at=now,
        )
        vector = (embeddings or {}).get(item.id)
        if vector is not None:
            stored.embedding = np.asarray(vector, dtype="<f4").tobytes()
        size = item_size(stored.serialize())
        if size > MAX_ITEM_BYTES:
            raise PayloadTooLargeError(
                f"item '{item.id}' takes {size} bytes as stored; an item may take at most "
                f"{MAX_ITEM_BYTES} (send fewer or shorter features)",
                field=f"items[{index}]",
            )
        latest[item.id] = stored
    return put_all(list(latest.values()), what="catalog")


@dataclass(frozen=True)
class CatalogEntry:
    """One catalog item as the index builder reads it."""

    candidate: Candidate
    embedding: NDArray[np.float32] | None
    updated_at: float


def entries(tenant: str, deadline: Callable[[], float] | None = None) -> list[CatalogEntry]:
    """Every item of a tenant's catalog (a paged query), in id order.

    ``deadline`` gives the seconds left; the read stops with ``StorageError`` when it runs out.
    """
    bind()
    out: list[CatalogEntry] = []
    try:
        for item in CatalogItem.query(tenant, page_size=1000):
            if deadline is not None and deadline() <= 0:
                raise StorageError(f"catalog of tenant {tenant!r} not read in time")
            out.append(_entry(item))
    except PynamoDBException as exc:
        raise StorageError(f"catalog unavailable: {exc.msg}") from exc
    return out


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


def _entry(item: CatalogItem) -> CatalogEntry:
    vector = None
    if item.embedding is not None:
        vector = np.frombuffer(bytes(item.embedding), dtype="<f4").astype(np.float32)
    return CatalogEntry(
        Candidate(
            id=item.sk,
            features=json.loads(item.features),
            category=item.category,
            creator=item.creator,
            created_at=None if item.created_at is None else float(item.created_at),
        ),
        vector,
        float(item.updated_at or 0),
    )


def get(tenant: str, item_id: str) -> CatalogEntry:
    """One item of the tenant's catalog; ``NotFoundError`` naming ``item_id`` if it has none."""
    bind()
    try:
        return _entry(CatalogItem.get(tenant, item_id))
    except DoesNotExist as exc:
        raise NotFoundError(f"item '{item_id}' is not in the catalog", field="item_id") from exc
    except PynamoDBException as exc:
        raise StorageError(f"catalog unavailable: {exc.msg}") from exc


def items_after(tenant: str, after: str | None, limit: int) -> Iterator[CatalogEntry]:
    """At most ``limit`` items of the tenant's catalog in id order, from just after the id
    ``after`` (from the first with ``None``), read as they are consumed."""
    bind()
    condition = None if after is None else CatalogItem.sk > after
    try:
        for item in CatalogItem.query(tenant, condition, limit=limit, page_size=limit):
            yield _entry(item)
    except PynamoDBException as exc:
        raise StorageError(f"catalog unavailable: {exc.msg}") from exc
