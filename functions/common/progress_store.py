"""A policy's learning progress, kept per time bucket on the counters table.

The learner adds what each learned event, reward outcome and model save contributes
(``bandit.evaluate.progress.ProgressSums``) to two cells: the minute it belongs to (kept
``MINUTE_RETENTION_SECONDS``) and the hour (kept ``HOUR_RETENTION_SECONDS``), keyed
``tenant#policy#progress#<granularity>`` with the bucket's start as sort key. A reader asks for
the finest granularity that answers its window within ``MAX_CELLS`` cells.

A policy's learner is the only writer of its cells (the learn queue serialises a policy's
work), so an add is a read and a write of the few cells a batch touches. The adds are best
effort, after the model is saved: a learner that dies between the two loses that batch's
progress figures, never its learning.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from pynamodb.exceptions import PynamoDBException

from bandit.evaluate.progress import ProgressSums
from functions.common.batches import put_all
from functions.common.errors import StorageError
from functions.common.tables import ProgressItem, bind

MINUTE = 60
HOUR = 3600
GRANULARITIES = (MINUTE, HOUR)
MINUTE_RETENTION_SECONDS = 3 * 86400
HOUR_RETENTION_SECONDS = 90 * 86400
MAX_CELLS = 2400  # read per answer: 40 hours of minutes, 100 days of hours
BUCKET_DIGITS = 12


def _pk(tenant: str, policy: str, granularity: int) -> str:
    return f"{tenant}#{policy}#progress#{granularity}"


def _sk(start: int) -> str:
    return str(start).zfill(BUCKET_DIGITS)


def bucket_of(timestamp: float, granularity: int) -> int:
    """The start of the bucket ``timestamp`` falls in."""
    return int(math.floor(timestamp / granularity) * granularity)


def add(tenant: str, policy: str, by_minute: Mapping[int, ProgressSums]) -> None:
    """Add ``by_minute`` (sums keyed by any timestamp of their minute) to the policy's cells."""
    if not by_minute:
        return
    bind()
    cells: dict[tuple[str, str], ProgressSums] = {}
    for moment, sums in by_minute.items():
        for granularity in GRANULARITIES:
            key = (_pk(tenant, policy, granularity), _sk(bucket_of(moment, granularity)))
            cells[key] = cells[key] + sums if key in cells else sums
    try:
        stored = {(c.pk, c.sk): c for c in ProgressItem.batch_get(list(cells))}
    except PynamoDBException as exc:
        raise StorageError(f"progress counters unavailable: {exc.msg}") from exc
    now = time.time()
    items = []
    for (pk, sk), added in cells.items():
        current = stored.get((pk, sk))
        sums = (
            added if current is None else ProgressSums.from_dict(json.loads(current.sums)) + added
        )
        retention = HOUR_RETENTION_SECONDS if pk.endswith(f"#{HOUR}") else MINUTE_RETENTION_SECONDS
        items.append(
            ProgressItem(
                pk,
                sk,
                sums=json.dumps(sums.as_dict(), separators=(",", ":")),
                expires_at=datetime.fromtimestamp(now + retention, UTC),
            )
        )
    put_all(items, what="progress counters")


def granularity_for(since: float, until: float) -> int:
    """The finest granularity whose cells over ``[since, until)`` number at most ``MAX_CELLS``."""
    for granularity in GRANULARITIES:
        if (until - since) / granularity <= MAX_CELLS:
            return granularity
    return GRANULARITIES[-1]


def read(
    tenant: str, policy: str, since: float, until: float, granularity: int
) -> list[tuple[int, ProgressSums]]:
    """The policy's cells of ``granularity`` whose bucket starts in ``[since, until)``, oldest
    first."""
    bind()
    low = _sk(bucket_of(since, granularity))
    high = _sk(max(bucket_of(math.nextafter(until, -math.inf), granularity), 0))
    try:
        return [
            (int(cell.sk), ProgressSums.from_dict(json.loads(cell.sums)))
            for cell in ProgressItem.query(
                _pk(tenant, policy, granularity), ProgressItem.sk.between(low, high)
            )
        ]
    except PynamoDBException as exc:
        raise StorageError(f"progress counters unavailable: {exc.msg}") from exc
