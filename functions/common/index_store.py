"""A tenant's catalog index and taste factors in S3, and the per-container copy rank reads.

The builder (``functions.common.index_builder``) writes each build as two immutable objects
under ``indexes/<tenant>/<version>/`` (the catalog index, ``bandit.retrieve``, and the taste
factors, ``bandit.learn.taste_factors``), then moves the tenant's head item (counters table,
``tenant#index``) to them, only forward. S3 reads after a write are strongly consistent, so a
container that reads the new head reads the whole new build; the head lives in DynamoDB so that
a tenant with no build yet is a cheap, certain "not found" (a missing S3 object reads as
AccessDenied to a role that may not list the bucket). ``IndexCache`` checks the head at most
once every ``INDEX_CACHE_SECONDS`` per tenant and keeps the build it has while storage fails.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.exceptions import DoesNotExist, PutError, PynamoDBException

from bandit.learn.taste_factors import TasteFactors
from bandit.retrieve.blob import CatalogIndexError
from bandit.retrieve.index import CatalogIndex
from functions.common.aws import s3
from functions.common.errors import StorageError
from functions.common.observability import logger
from functions.common.settings import settings
from functions.common.tables import IndexHeadItem, bind

PREFIX = "indexes"
NOT_BUILT_SECONDS = 5.0  # how long "no build yet" is trusted (a head read per tenant)


@dataclass(frozen=True)
class Head:
    """What ``head.json`` says: the current build and what it was built from."""

    version: int
    catalog_key: str
    taste_key: str
    catalog_sha256: str
    taste_sha256: str
    built_at: float
    items: int
    users: int
    fingerprint: str

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return dict(self.__dict__)


@dataclass
class StoredIndex:
    """One loaded build: the catalog index, the taste factors and its head."""

    head: Head
    catalog: CatalogIndex
    factors: TasteFactors
    taste_rows: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.taste_rows:
            self.taste_rows = self.factors.rows()


def factors_to_bytes(factors: TasteFactors) -> bytes:
    """The taste factors as an ``.npz`` (no pickles)."""
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        tokens=np.asarray(factors.tokens, dtype=str),
        vectors=factors.vectors.astype(np.float32),
        kinds=np.asarray(factors.kinds, dtype=str),
    )
    return buffer.getvalue()


def factors_from_bytes(blob: bytes) -> TasteFactors:
    """Taste factors written by ``factors_to_bytes``."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        tokens = tuple(str(t) for t in data["tokens"].tolist())
        vectors = np.asarray(data["vectors"], dtype=np.float32)
        kinds = tuple(str(k) for k in data["kinds"].tolist())
    if vectors.ndim != 2 or len(vectors) != len(tokens):
        raise ValueError("taste factors: tokens and vectors disagree")
    return TasteFactors(tokens, vectors, kinds)


def _put(key: str, body: bytes) -> None:
    try:
        s3().put_object(Bucket=settings().model_bucket, Key=key, Body=body)
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"index bucket unavailable: {exc}") from exc


def _get(key: str) -> bytes:
    try:
        response = s3().get_object(Bucket=settings().model_bucket, Key=key)
        return bytes(response["Body"].read())
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"index object {key} unavailable: {exc}") from exc


def _delete(keys: list[str]) -> None:
    for key in keys:
        try:
            s3().delete_object(Bucket=settings().model_bucket, Key=key)
        except (BotoCoreError, ClientError):
            logger.warning("could not delete an old index object", extra={"key": key})


def _head_item(tenant: str) -> IndexHeadItem | None:
    bind()
    try:
        return IndexHeadItem.get(f"{tenant}#index", "head")
    except DoesNotExist:
        return None
    except PynamoDBException as exc:
        raise StorageError(f"index head unavailable: {exc.msg}") from exc


def _parse(raw: str) -> tuple[Head, list[str]]:
    document = json.loads(raw)
    head = Head(**{name: document[name] for name in Head.__dataclass_fields__})
    previous = [str(k) for k in document.get("previous", []) if isinstance(k, str)]
    return head, previous


def head(tenant: str) -> Head | None:
    """The tenant's current head, or None before the first build."""
    item = _head_item(tenant)
    if item is None:
        return None
    try:
        return _parse(item.head)[0]
    except (TypeError, ValueError, KeyError) as exc:
        raise StorageError(f"index head of tenant {tenant!r} is unreadable: {exc}") from exc


def save(
    tenant: str,
    catalog: CatalogIndex,
    factors: TasteFactors,
    *,
    users: int,
    fingerprint: str,
    previous: Head | None,
) -> Head:
    """Write one build and move the head to it (only forward: a concurrent newer build wins).

    Containers may still be loading the build just replaced, so it is kept; the one before it
    is deleted.
    """
    version = max(int(time.time() * 1000), (previous.version + 1) if previous else 0)
    catalog_blob = catalog.to_bytes()
    taste_blob = factors_to_bytes(factors)
    base = f"{PREFIX}/{tenant}/{version}"
    new = Head(
        version=version,
        catalog_key=f"{base}/catalog.bin",
        taste_key=f"{base}/taste.npz",
        catalog_sha256=hashlib.sha256(catalog_blob).hexdigest(),
        taste_sha256=hashlib.sha256(taste_blob).hexdigest(),
        built_at=time.time(),
        items=len(catalog),
        users=users,
        fingerprint=fingerprint,
    )
    _put(new.catalog_key, catalog_blob)
    _put(new.taste_key, taste_blob)
    replaced = _head_item(tenant)
    older: list[str] = []
    if replaced is not None:
        try:
            older = _parse(replaced.head)[1]
        except (TypeError, ValueError, KeyError):
            older = []
    kept = [previous.catalog_key, previous.taste_key] if previous else []
    item = IndexHeadItem(
        f"{tenant}#index",
        "head",
        version=version,
        head=json.dumps({**new.as_dict(), "previous": kept}),
    )
    try:
        item.save(IndexHeadItem.version.does_not_exist() | (IndexHeadItem.version < version))
    except PutError as exc:
        _delete([new.catalog_key, new.taste_key])
        raise StorageError(f"index head not moved (a newer build won?): {exc.msg}") from exc
    _delete([key for key in older if key not in {*kept, new.catalog_key, new.taste_key}])
    return new


def load(current: Head) -> StoredIndex:
    """Read and check the build ``current`` points at."""
    catalog_blob = _get(current.catalog_key)
    taste_blob = _get(current.taste_key)
    if hashlib.sha256(catalog_blob).hexdigest() != current.catalog_sha256:
        raise StorageError(f"index build {current.version} failed its checksum")
    if hashlib.sha256(taste_blob).hexdigest() != current.taste_sha256:
        raise StorageError(f"index build {current.version} failed its checksum")
    try:
        catalog = CatalogIndex.from_bytes(catalog_blob)
        factors = factors_from_bytes(taste_blob)
    except (CatalogIndexError, ValueError, KeyError, OSError) as exc:
        raise StorageError(f"index build {current.version} is unreadable: {exc}") from exc
    return StoredIndex(current, catalog, factors)


class IndexCache:
    """Each tenant's loaded build, its head checked at most every ``INDEX_CACHE_SECONDS``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[str, tuple[float, StoredIndex | None]] = {}

    def get(self, tenant: str) -> StoredIndex | None:
        """The tenant's build (None before the first one); the last good one on S3 errors."""
        now = time.monotonic()
        with self._lock:
            cached = self._loaded.get(tenant)
        if cached is not None:
            trusted = settings().index_cache_seconds
            if cached[1] is None:
                # No build yet: look again soon, so the first build serves within seconds.
                trusted = min(trusted, NOT_BUILT_SECONDS)
            if now - cached[0] < trusted:
                return cached[1]
        current = cached[1] if cached else None
        try:
            latest = head(tenant)
            if latest is None:
                fresh: StoredIndex | None = None
            elif current is not None and current.head.version == latest.version:
                fresh = current
            else:
                fresh = load(latest)
        except StorageError as exc:
            logger.warning("catalog index unavailable", extra={"error": exc.detail})
            if cached is None:
                raise
            fresh = current
        with self._lock:
            self._loaded[tenant] = (now, fresh)
        return fresh
