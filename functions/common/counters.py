"""Counters in DynamoDB without hot keys: exploration-budget spend and item popularity.

Budget cells are keyed ``tenant#policy#budget#segment#shard`` with the time bucket as sort key;
a writer adds to one random shard, a reader queries every shard over the window's buckets.
Writers batch their adds for a second; readers cache the window's totals for a few seconds and
add their own writes on top, so the rank path neither writes nor queries on every request.
Popularity cells are keyed by item (``tenant#policy#pop#<shard of item>``, sort key the item
id), updated by the learner.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

from pynamodb.exceptions import PynamoDBException

from bandit.serve.budget import BudgetKey, Spend
from bandit.serve.coldstart import ItemStats
from functions.common.batches import put_all
from functions.common.errors import StorageError
from functions.common.observability import logger, metrics
from functions.common.rounds import COLD_ROUND, run_round
from functions.common.settings import settings
from functions.common.tables import CounterItem, bind

POPULARITY_SHARDS = 16
BUCKET_DIGITS = 12
COUNTER_RETENTION_SECONDS = 7 * 86400


def _bucket(bucket: int) -> str:
    return str(bucket).zfill(BUCKET_DIGITS)


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
            CounterItem(self._pk(key.segment, key.shard), _bucket(key.bucket)).update(
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
        low, high = _bucket(window[0]), _bucket(window[-1])
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


def _popularity_pk(tenant: str, policy: str, item_id: str) -> str:
    shard = int(hashlib.blake2b(item_id.encode(), digest_size=2).hexdigest(), 16)
    return f"{tenant}#{policy}#pop#{shard % POPULARITY_SHARDS}"


def _totals_key(tenant: str, policy: str) -> tuple[str, str]:
    return f"{tenant}#{policy}#pop#totals", "all"


def add_popularity(tenant: str, policy: str, outcomes: Mapping[str, tuple[int, float]]) -> None:
    """Add (impressions, reward) per item, and once to the policy totals, in bulk.

    Cells are read 100 per request and written back 25 per request: the learner of a policy is
    the only writer of its popularity (the learn queue serialises a policy's work), so a read
    and a write make an exact add at a few requests per batch instead of one per item. The
    values written are totals, so writing them again changes nothing; throttled cells are
    resent with backoff (``batches.put_all``), and if some still fail the error names
    which cells were written.
    """
    if not outcomes:
        return
    bind()
    keys = [(_popularity_pk(tenant, policy, item_id), item_id) for item_id in outcomes]
    totals_key = _totals_key(tenant, policy)
    try:
        current = {(c.pk, c.sk): c for c in CounterItem.batch_get([*keys, totals_key])}
    except PynamoDBException as exc:
        raise StorageError(f"popularity counters unavailable: {exc.msg}") from exc
    cells = [
        _added(current.get(key), key, impressions, reward)
        for key, (impressions, reward) in zip(keys, outcomes.values(), strict=True)
    ]
    impressions = sum(i for i, _ in outcomes.values())
    rewards = sum(r for _, r in outcomes.values())
    cells.append(_added(current.get(totals_key), totals_key, impressions, rewards))
    put_all(cells, what="popularity counters")


def _added(
    cell: CounterItem | None, key: tuple[str, str], impressions: int, reward: float
) -> CounterItem:
    base_impressions = 0.0 if cell is None else float(cell.impressions)
    base_reward = 0.0 if cell is None else float(cell.reward)
    return CounterItem(
        key[0], key[1], impressions=base_impressions + impressions, reward=base_reward + reward
    )


def popularity(
    tenant: str, policy: str, item_ids: Iterable[str]
) -> tuple[dict[str, ItemStats], ItemStats | None]:
    """Impressions and reward of the given items (unknown ones left out), and the totals."""
    bind()
    totals_key = _totals_key(tenant, policy)
    keys = [(_popularity_pk(tenant, policy, item_id), item_id) for item_id in set(item_ids)]
    try:
        cells = list(CounterItem.batch_get([*keys, totals_key]))
    except PynamoDBException as exc:
        raise StorageError(f"popularity counters unavailable: {exc.msg}") from exc
    stats: dict[str, ItemStats] = {}
    totals: ItemStats | None = None
    for cell in cells:
        value = ItemStats(float(cell.impressions), float(cell.reward))
        if (cell.pk, cell.sk) == totals_key:
            totals = value
        else:
            stats[cell.sk] = value
    return stats, totals


# Keys per BatchGetItem request: a refresh fills one request with the policy's other stale items.
BATCH_GET_KEYS = 100


@dataclass
class PopularityCache:
    """``popularity`` through a per-process cache: each item and the totals are read at most
    once every ``max_age`` seconds (default: the settings' ``model_cache_seconds``; 0 reads on
    every call).

    Popularity moves only when the learner saves a batch, so a second-old count changes nothing
    a cold user would see, and a busy container stops reading every candidate's cell on every
    cold rank. Items with no cell yet are cached as unknown too. A read for stale or missing
    candidates also refreshes the policy's other items that are half ``max_age`` old or more,
    oldest first, up to one ``BatchGetItem`` of ``BATCH_GET_KEYS`` keys: items read at
    different times come due together, so a container serving a catalog of up to about 100 hot
    items reads popularity about once per ``max_age``, not on every rank that meets one item
    just come due. At most ``capacity`` items are kept, the oldest read dropped first.
    """

    max_age: float | None = None
    clock: Callable[[], float] = time.monotonic
    capacity: int = 100_000
    # Per (tenant, policy): item id -> (read at, stats), oldest read first.
    _items: dict[tuple[str, str], dict[str, tuple[float, ItemStats | None]]] = field(
        default_factory=dict
    )
    _totals: dict[tuple[str, str], tuple[float, ItemStats | None]] = field(default_factory=dict)
    _count: int = 0

    def _age_limit(self) -> float:
        return settings().model_cache_seconds if self.max_age is None else self.max_age

    def get(
        self, tenant: str, policy: str, item_ids: Iterable[str]
    ) -> tuple[dict[str, ItemStats], ItemStats | None]:
        """What ``popularity`` returns, reading only the cells that are missing or too old."""
        now, max_age = self.clock(), self._age_limit()
        key = (tenant, policy)
        items = self._items.setdefault(key, {})
        wanted = set(item_ids)
        stale = [i for i in wanted if i not in items or now - items[i][0] >= max_age]
        totals = self._totals.get(key)
        if stale or totals is None or now - totals[0] >= max_age:
            read = stale + self._due_besides(items, wanted, now, max_age, len(stale))
            stats, read_totals = popularity(tenant, policy, read)
            for item_id in read:
                if items.pop(item_id, None) is None:
                    self._count += 1
                items[item_id] = (now, stats.get(item_id))  # last: the newest read
            self._totals[key] = (now, read_totals)
            self._drop_beyond_capacity(key)
        found = {i: items[i][1] for i in wanted if i in items}
        return {i: s for i, s in found.items() if s is not None}, self._totals[key][1]

    @staticmethod
    def _due_besides(
        items: dict[str, tuple[float, ItemStats | None]],
        wanted: set[str],
        now: float,
        max_age: float,
        reading: int,
    ) -> list[str]:
        """The policy's items not asked for and at least half ``max_age`` old, oldest first, to
        fill the request (half: items read a little apart are read together from then on)."""
        room = BATCH_GET_KEYS - 1 - reading  # the totals cell takes a key too
        due: list[str] = []
        for item_id, (read_at, _) in items.items():
            if len(due) >= room or now - read_at < max_age / 2:
                break
            if item_id not in wanted:
                due.append(item_id)
        return due

    def _drop_beyond_capacity(self, current: tuple[str, str]) -> None:
        for key in [current, *(k for k in self._items if k != current)]:
            items = self._items[key]
            while self._count > self.capacity and items:
                del items[next(iter(items))]
                self._count -= 1
            if self._count <= self.capacity:
                return
