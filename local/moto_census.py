"""What the local stack's moto server holds: items per table, messages per queue, bucket objects.

A diagnosis aid for memory growth of a long-lived stack. With ``SERENDIP_MOTO_CENSUS`` set to a
file path, the moto server (``local.moto_main``) rewrites that file with a census every
``SERENDIP_MOTO_CENSUS_SECONDS`` (default 10); with ``SERENDIP_MOTO_TRACEMALLOC`` set to a number
it also traces allocations and adds the top that many allocation sites (slow: diagnosis only).
"""

from __future__ import annotations

import json
import os
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

CENSUS_ENV = "SERENDIP_MOTO_CENSUS"
SECONDS_ENV = "SERENDIP_MOTO_CENSUS_SECONDS"
TRACEMALLOC_ENV = "SERENDIP_MOTO_TRACEMALLOC"


def _backends(backends: Any) -> Iterator[Any]:
    """Every regional backend that exists (accounts and regions created so far)."""
    for regions in list(backends.values()):
        yield from list(regions.values())


def dynamodb_census() -> dict[str, dict[str, int]]:
    """Per table: items held (every item of every partition)."""
    from moto.dynamodb.models import dynamodb_backends

    census: dict[str, dict[str, int]] = {}
    for backend in _backends(dynamodb_backends):
        for name, table in list(backend.tables.items()):
            census[name] = {
                "items": len(table.all_items()),
                "stream_records": len(getattr(getattr(table, "stream_shard", None), "items", [])),
            }
        census["(backups)"] = {"items": len(getattr(backend, "backups", {}))}
    return census


def sqs_census() -> dict[str, dict[str, int]]:
    """Per queue: messages held, receipt handles of deleted messages remembered."""
    from moto.sqs.models import sqs_backends

    census: dict[str, dict[str, int]] = {}
    for backend in _backends(sqs_backends):
        for name, queue in list(backend.queues.items()):
            census[name] = {
                "messages": len(queue._messages),
                "deleted_receipt_handles": len(queue.deleted_messages),
                "pending": len(getattr(queue, "_pending_messages", ())),
            }
    return census


def s3_census() -> dict[str, dict[str, int]]:
    """Per bucket: keys, versions held and their bytes."""
    from moto.s3.models import s3_backends

    census: dict[str, dict[str, int]] = {}
    for backend in _backends(s3_backends):
        for name, bucket in list(backend.buckets.items()):
            versions = [version for _, kept in bucket.keys.lists() for version in kept]
            census[name] = {
                "keys": len(bucket.keys),
                "versions": len(versions),
                "bytes": sum(int(getattr(version, "size", 0) or 0) for version in versions),
            }
    return census


def patches() -> dict[str, str]:
    """Where the moto methods the local stack replaces come from (``module.name``)."""
    from moto.core.common_models import BaseModel
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.responses import DynamoHandler
    from moto.sqs.models import Queue

    methods = {
        "model_new": BaseModel.__new__,
        "dynamodb_call": DynamoHandler.call_action,
        "transact_write_items": DynamoDBBackend.transact_write_items,
        "table_query": Table.query,
        "sqs_delete_message": Queue.delete_message,
    }
    return {name: f"{method.__module__}.{method.__name__}" for name, method in methods.items()}


def census(lock: AbstractContextManager[Any] | None = None, top: int = 0) -> dict[str, Any]:
    """Counts of everything moto holds; DynamoDB is read under ``lock`` (its calls' lock)."""
    with lock if lock is not None else nullcontext():
        dynamodb = dynamodb_census()
    result: dict[str, Any] = {
        "time": time.time(),
        "patches": patches(),
        "dynamodb": dynamodb,
        "sqs": sqs_census(),
        "s3": s3_census(),
    }
    if top and tracemalloc.is_tracing():
        stats = tracemalloc.take_snapshot().statistics("lineno")[:top]
        result["tracemalloc"] = [
            {"site": str(stat.traceback), "kb": stat.size / 1024, "count": stat.count}
            for stat in stats
        ]
    return result


def start_from_environment(lock: AbstractContextManager[Any]) -> threading.Thread | None:
    """Start the census thread if ``SERENDIP_MOTO_CENSUS`` asks for one."""
    target = os.environ.get(CENSUS_ENV)
    if not target:
        return None
    seconds = float(os.environ.get(SECONDS_ENV, "10"))
    top = int(os.environ.get(TRACEMALLOC_ENV, "0") or 0)
    if top:
        tracemalloc.start(1)
    path = Path(target)

    def loop() -> None:
        while True:
            time.sleep(seconds)
            path.with_suffix(".tmp").write_text(json.dumps(census(lock, top), indent=1))
            os.replace(path.with_suffix(".tmp"), path)

    thread = threading.Thread(target=loop, name="moto-census", daemon=True)
    thread.start()
    return thread
