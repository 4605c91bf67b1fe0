"""The exploration budget's spend in DynamoDB: batched writes, cached reads (``DynamoLedger``).

Cells are keyed ``tenant#policy#budget#segment#shard`` with the time bucket as sort key
(``functions.common.counters``); a writer adds to one random shard, a reader queries every
shard over the window's buckets.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

from pynamodb.exceptions import PynamoDBException

from bandit.serve.budget import BudgetKey, Spend
from functions.common.counters import COUNTER_RETENTION_SECONDS, bucket_key
from functions.common.errors import StorageError
from functions.common.observability import logger, metrics
from functions.common.rounds import COLD_ROUND, run_round
from functions.common.tables import CounterItem, bind


@dataclass
class DynamoLedger:
    """A ``bandit.serve.budget.BudgetLedger`` on the counters table: batched writes, cached reads.

    Spend not yet flushed is lost if the process dies; pacing tolerates that (a second of
    slates in one process), and it keeps the rank path to about one counter write per second.

    ``deferred`` (the rank path): no call is made inline once the segment's totals were read
    once. A due flush or refresh waits for ``due_calls``, which the rank service runs in the same
    round as the decision write (``functions.common.rounds``), and ``absorb`` takes their
    results; until then the totals are the last read ones plus this process's spend since.
    A round either refreshes or flushes, never both, so a refresh never races a flush.
    """

    tenant: str
    policy: str
    shards: int
    bucket_seconds: int
    refresh_seconds: float = 5.0
    flush_seconds: float = 1.0
    clock: Callable[[], float] = time.monotonic
    deferred: bool = False
    _cache: dict[tuple[str, tuple[int, ...]], tuple[float, Spend]] = field(default_factory=dict)
    _due: dict[str, tuple[int, ...]] = field(default_factory=dict)  # segment -> window to read
    _pending: dict[str, list[int]] = field(default_factory=dict)
    _unflushed: dict[BudgetKey, list[int]] = field(default_factory=dict)
    _last_flush: float = 0.0

    def _pk(self, segment: str, shard: int) -> str:
        return f"{self.tenant}#{self.policy}#budget#{segment}#{shard}"

    def add(self, key: BudgetKey, served: int, explored: int) -> None:
        """Count one slate's spend; cells are written in batches every ``flush_seconds``."""
        cell = self._unflushed.setdefault(key, [0, 0])
        cell[0] += served
        cell[1] += explored
        pending = self._pending.setdefault(key.segment, [0, 0])
        pending[0] += served
        pending[1] += explored
        if not self.deferred and self.clock() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the batched spend, one atomic add per cell; failed cells stay for next time."""
        self._last_flush = self.clock()
        if not self._unflushed:
            return
        for key, (served, explored) in list(self._unflushed.items()):
            if self._add_cell(key, served, explored):
                del self._unflushed[key]

    def _add_cell(self, key: BudgetKey, served: int, explored: int) -> bool:
        """One atomic add to a cell; False (logged, counted) when it could not be stored."""
        bind()
        bucket_start = key.bucket * self.bucket_seconds
        try:
            CounterItem(self._pk(key.segment, key.shard), bucket_key(key.bucket)).update(
                actions=[
                    CounterItem.served.add(served),
                    CounterItem.explored.add(explored),
                    CounterItem.expires_at.set(
                        datetime.fromtimestamp(bucket_start + COUNTER_RETENTION_SECONDS, UTC)
                    ),
                ]
            )
        except PynamoDBException as exc:
            # Pacing tolerates a late cell: keep it and try again on the next flush.
            logger.warning("budget spend not stored yet", extra={"error": exc.msg})
            metrics.add_metric(name="BudgetWritesFailed", unit="Count", value=1)
            return False
        return True

    def due_calls(self) -> dict[str, Callable[[], object]]:
        """What ``deferred`` left for later, as calls for one round: the due refreshes (a query
        per shard), else a due flush (an add per cell). Hand their results to ``absorb``."""
        calls: dict[str, Callable[[], object]] = {}
        if self._due:
            for segment, window in self._due.items():
                for shard in range(self.shards):
                    calls[f"budget read {segment} {shard}"] = _quiet(
                        partial(self._query_shard, segment, shard, window)
                    )
            return calls
        if self._unflushed and self.clock() - self._last_flush >= self.flush_seconds:
            for key, (served, explored) in self._unflushed.items():
                calls[f"budget add {key.segment} {key.bucket} {key.shard}"] = _quiet(
                    partial(self._add_cell, key, served, explored)
                )
        return calls

    def absorb(self, results: Mapping[str, object]) -> None:
        """Take the results of ``due_calls``' calls (run in one round, now done)."""
        if self._due:
            now = self.clock()
            for segment, window in self._due.items():
                parts = [results.get(f"budget read {segment} {s}") for s in range(self.shards)]
                if not all(isinstance(part, Spend) for part in parts):
                    continue  # one shard unavailable: keep the old totals, read again next time
                spends = [part for part in parts if isinstance(part, Spend)]
                total = Spend(sum(x.served for x in spends), sum(x.explored for x in spends))
                self._cache = {(segment, window[:1]): (now, total)} | {
                    k: v for k, v in self._cache.items() if k[0] != segment
                }
                # What the read cannot have seen: this process's spend not flushed yet.
                unflushed = [c for k, c in self._unflushed.items() if k.segment == segment]
                self._pending[segment] = [
                    sum(c[0] for c in unflushed),
                    sum(c[1] for c in unflushed),
                ]
            self._due.clear()
            return
        flushed = [name for name in results if name.startswith("budget add ")]
        if not flushed:
            return
        self._last_flush = self.clock()
        for key in list(self._unflushed):
            if results.get(f"budget add {key.segment} {key.bucket} {key.shard}") is True:
                del self._unflushed[key]

    def total(self, segment: str, buckets: Iterable[int]) -> Spend:
        """The segment's spend over ``buckets``: cached totals plus writes since the refresh."""
        window = tuple(buckets)
        now = self.clock()
        cached = self._cache.get((segment, window[:1]))
        kept = cached or next((v for k, v in self._cache.items() if k[0] == segment), None)
        if self.deferred and kept is not None:
            # Totals of an older window (it slid by a bucket) or older than the refresh serve
            # until the due read is done, alongside the decision write.
            if cached is None or now - kept[0] > self.refresh_seconds:
                self._due[segment] = window
            cached = kept
        elif cached is None or now - cached[0] > self.refresh_seconds:
            self.flush()
            try:
                cached = (now, self._query(segment, window))
            except StorageError as exc:
                logger.warning("budget spend unavailable", extra={"error": exc.detail})
                stale = cached[1] if cached else Spend()
                pending = self._pending.get(segment, [0, 0])
                return Spend(stale.served + pending[0], stale.explored + pending[1])
            self._cache = {(segment, window[:1]): cached} | {
                k: v for k, v in self._cache.items() if k[0] != segment
            }
            self._pending.pop(segment, None)
        pending = self._pending.get(segment, [0, 0])
        return Spend(cached[1].served + pending[0], cached[1].explored + pending[1])

    def _query(self, segment: str, window: tuple[int, ...]) -> Spend:
        """Every shard's cells over the window, the shards read side by side (``COLD_ROUND``)."""
        parts = run_round(
            COLD_ROUND,
            {
                str(shard): partial(self._query_shard, segment, shard, window)
                for shard in range(self.shards)
            },
        )
        spends = list(parts.values())
        return Spend(sum(p.served for p in spends), sum(p.explored for p in spends))

    def _query_shard(self, segment: str, shard: int, window: tuple[int, ...]) -> Spend:
        if not window:
            return Spend()
        bind()
        served = explored = 0
        low, high = bucket_key(window[0]), bucket_key(window[-1])
        try:
            for cell in CounterItem.query(
                self._pk(segment, shard), CounterItem.sk.between(low, high)
            ):
                served += int(cell.served)
                explored += int(cell.explored)
        except PynamoDBException as exc:
            raise StorageError(f"budget counters unavailable: {exc.msg}") from exc
        return Spend(served, explored)


def _quiet(call: Callable[[], object]) -> Callable[[], object]:
    """``call``, with a storage failure returned (and logged) instead of raised: deferred
    counter work must never fail the request it rides along with."""

    def run() -> object:
        try:
            return call()
        except StorageError as exc:
            logger.warning("budget spend unavailable", extra={"error": exc.detail})
            return exc

    return run
