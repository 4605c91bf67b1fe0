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

from pynamodb.exceptions import PynamoDBException

from bandit.serve.coldstart import ItemStats
from functions.common.batches import put_all
from functions.common.errors import StorageError
from functions.common.settings import settings
from functions.common.tables import CounterItem, bind

POPULARITY_SHARDS = 16
BUCKET_DIGITS = 12
COUNTER_RETENTION_SECONDS = 7 * 86400


def bucket_key(bucket: int) -> str:
    """A time bucket's number as the cells' sort key (fixed width, so keys sort by time)."""
    return str(bucket).zfill(BUCKET_DIGITS)


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
