"""Batch reads and writes that back off, stop at a cap, and say exactly what was done.

DynamoDB's ``BatchGetItem`` and ``BatchWriteItem`` may serve part of a request and hand the
rest back (``UnprocessedKeys``, ``UnprocessedItems``) when a partition is throttled; pynamodb
asks again at once, with no backoff (and for reads, without end). ``get_page`` is the read
side, behind every model's ``batch_get`` (``tables.StoredModel``): unprocessed keys are asked
again with the backoff below, and after the cap the read fails (``GetError``, a storage
outage to the caller) rather than loop.

For writes, ``BatchWriteItem`` may accept part of a request and hand the rest back as
``UnprocessedItems`` (throttling, a partition at capacity). pynamodb's ``batch_write`` resends
them at once, with no backoff, and on giving up raises without saying which items were
written. ``put_all`` writes 25 items per request and resends only what came back unprocessed,
with capped exponential backoff and full jitter (tenacity), the same values each time (so a put
is never applied twice with different contents). If some items are still unwritten after the
cap, it raises ``PartialWriteError`` naming the keys written and the keys not written; whole
requests that fail (throttled, down) are retried by botocore's standard retry mode first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from pynamodb.exceptions import GetError, PynamoDBException
from pynamodb.models import Model
from tenacity import (
    RetryError,
    Retrying,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from functions.common.errors import StorageError

BATCH_LIMIT = 25  # items per BatchWriteItem request (DynamoDB's limit)
ATTEMPTS = 8  # requests per chunk, the first included
MAX_WAIT_SECONDS = 2.0  # the longest single backoff
MAX_TOTAL_SECONDS = 10.0  # the longest a chunk may keep resending
BACKOFF_SECONDS = 0.05  # the first backoff's upper bound (doubled per attempt, jittered)

Key = tuple[Any, ...]
sleep = time.sleep  # the backoff's wait (tests record it instead)


class PartialWriteError(StorageError):
    """Some items were written and some not, after every retry; ``unwritten`` says which."""

    def __init__(self, detail: str, *, written: list[Key], unwritten: list[Key]) -> None:
        super().__init__(detail)
        self.written = written
        self.unwritten = unwritten


def put_all(items: Sequence[Model], *, what: str) -> int:
    """Put ``items`` (all of one model) in batches; the number written.

    Raises ``PartialWriteError`` (a ``StorageError``, answered 503) when some could not be
    written after the retries, naming which were (``what`` names the data in the message).
    """
    if not items:
        return 0
    model = type(items[0])
    connection = model._get_connection()
    written: list[Key] = []
    for start in range(0, len(items), BATCH_LIMIT):
        chunk = items[start : start + BATCH_LIMIT]
        by_key = {_key(model, item.serialize()): item for item in chunk}
        try:
            left = _write_chunk(connection, [item.serialize() for item in chunk])
        except PynamoDBException as exc:
            unwritten = [_key(model, item.serialize()) for item in items[start:]]
            raise PartialWriteError(
                f"{what} unavailable after {len(written)} of {len(items)} items: {exc.msg}",
                written=written,
                unwritten=unwritten,
            ) from exc
        left_keys = [_key(model, item) for item in left]
        written += [key for key in by_key if key not in set(left_keys)]
        if left_keys:
            later = [_key(model, item.serialize()) for item in items[start + BATCH_LIMIT :]]
            raise PartialWriteError(
                f"{what}: {len(written)} of {len(items)} items written; the rest were "
                f"throttled after {ATTEMPTS} attempts",
                written=written,
                unwritten=left_keys + later,
            )
    return len(written)


def get_page(
    fetch: Callable[[list[Any]], tuple[list[dict[str, Any]], list[Any] | None]],
    keys: list[Any],
    *,
    table: str,
) -> list[dict[str, Any]]:
    """Every item of one ``BatchGetItem`` page: ``fetch`` (pynamodb's page read) asked again
    for its unprocessed keys with backoff; ``GetError`` if some are still unread at the cap."""
    found: list[dict[str, Any]] = []
    left = keys

    def attempt() -> list[Any]:
        nonlocal left
        items, unprocessed = fetch(left)
        found.extend(items or [])
        left = list(unprocessed or [])
        return left

    try:
        _retrying()(attempt)
    except RetryError:
        raise GetError(
            f"{table}: {len(left)} of {len(keys)} keys still unread after {ATTEMPTS} attempts"
        ) from None
    return found


def _retrying() -> Retrying:
    """Retry while the attempt hands something back: capped exponential backoff, jittered."""
    return Retrying(
        stop=stop_after_attempt(ATTEMPTS) | stop_after_delay(MAX_TOTAL_SECONDS),
        wait=wait_random_exponential(multiplier=BACKOFF_SECONDS, max=MAX_WAIT_SECONDS),
        retry=retry_if_result(bool),
        sleep=_backoff,
        reraise=True,
    )


def _write_chunk(connection: Any, pending: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Write one chunk, resending what comes back unprocessed; what is left after the cap."""
    left = pending

    def attempt() -> list[dict[str, Any]]:
        nonlocal left
        data = connection.batch_write_item(put_items=left) or {}
        unprocessed = data.get("UnprocessedItems", {}).get(connection.table_name, [])
        left = [request["PutRequest"]["Item"] for request in unprocessed]
        return left

    try:
        return list(_retrying()(attempt))
    except RetryError:
        return left


def _backoff(seconds: float) -> None:
    sleep(seconds)  # looked up when called, so a test may record the waits instead


def _key(model: type[Model], item: dict[str, Any]) -> Key:
    """The key attributes of a serialized item, in key-schema order (hash, range)."""
    names = [model._hash_keyname, model._range_keyname]
    return tuple(_plain(item[name]) for name in names if name is not None)


def _plain(value: dict[str, Any]) -> Any:
    (kind, raw), *_ = value.items()
    return float(raw) if kind == "N" else raw
