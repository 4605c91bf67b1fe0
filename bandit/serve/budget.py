"""The exploration budget: pace exploration so the realised exploratory share tracks a target.

Each policy has a target share of served slots that are exploratory, per user segment, over a
rolling window. The controller sets the exploration rate (lambda) of the open slots of a slate
from that target, the slots the slate reserves for discovery, and the error between target and
realised share in the window. A target of 0 is a kill switch: rate 0, no discovery slots.

The ledger is a set of counters keyed by (segment, time bucket, shard). Writers pick a shard at
random, so no single key is hot; readers sum the shards of the window's buckets. The in-memory
ledger here has the same shape as the DynamoDB one of the stack.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class BudgetKey:
    """One counter cell: a segment's slots in one time bucket, on one shard."""

    segment: str
    bucket: int
    shard: int


@dataclass(frozen=True, slots=True)
class Spend:
    """Slots served and slots explored (over a window or in one cell)."""

    served: int = 0
    explored: int = 0

    @property
    def share(self) -> float:
        """Realised exploratory share (0 when nothing was served)."""
        return self.explored / self.served if self.served else 0.0


class BudgetLedger(Protocol):
    """Storage of budget counters: add to one cell, sum a segment's cells over buckets."""

    def add(self, key: BudgetKey, served: int, explored: int) -> None:
        """Add to one cell's counters."""

    def total(self, segment: str, buckets: Iterable[int]) -> Spend:
        """Sum a segment's counters over ``buckets`` and every shard."""


class InMemoryLedger:
    """A ``BudgetLedger`` in a dict (tests, simulation, and the stack's local cache)."""

    def __init__(self) -> None:
        self.cells: dict[BudgetKey, list[int]] = defaultdict(lambda: [0, 0])
        self._buckets: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])

    def add(self, key: BudgetKey, served: int, explored: int) -> None:
        """Add to one cell's counters."""
        for cell in (self.cells[key], self._buckets[(key.segment, key.bucket)]):
            cell[0] += served
            cell[1] += explored

    def total(self, segment: str, buckets: Iterable[int]) -> Spend:
        """Sum a segment's counters over ``buckets`` and every shard."""
        served = explored = 0
        for bucket in buckets:
            cell = self._buckets.get((segment, bucket))
            if cell is not None:
                served += cell[0]
                explored += cell[1]
        return Spend(served, explored)


class ExplorationBudget:
    """Per-segment pacing of the exploration rate toward a target share.

    >>> budget = ExplorationBudget({"mature": 0.1}, clock=lambda: 0.0)
    >>> budget.rate("mature", slate_size=5, discovery_slots=0)
    0.1
    >>> budget.record("mature", served=10, explored=0)
    >>> round(budget.rate("mature", slate_size=5, discovery_slots=0), 3)
    0.2
    """

    def __init__(
        self,
        targets: Mapping[str, float],
        *,
        window_seconds: int = 3600,
        bucket_seconds: int = 60,
        shards: int = 8,
        gain: float = 1.0,
        ledger: BudgetLedger | None = None,
        clock: Clock = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.targets = dict(targets)
        self.window_seconds = window_seconds
        self.bucket_seconds = bucket_seconds
        self.shards = shards
        self.gain = gain
        self.ledger: BudgetLedger = ledger if ledger is not None else InMemoryLedger()
        self.clock = clock
        self._rng = rng or random.Random()

    def target(self, segment: str) -> float:
        """The target exploratory share of ``segment`` (0 for unknown segments)."""
        return self.targets.get(segment, 0.0)

    def window_buckets(self) -> range:
        """Bucket numbers inside the rolling window ending now."""
        current = int(self.clock() // self.bucket_seconds)
        count = self.window_seconds // self.bucket_seconds
        return range(current - count + 1, current + 1)

    def spend(self, segment: str) -> Spend:
        """Slots served and explored for ``segment`` in the current window."""
        return self.ledger.total(segment, self.window_buckets())

    def rate(self, segment: str, *, slate_size: int, discovery_slots: int) -> float:
        """Exploration rate for the open (non-discovery) slots of the next slate.

        The base rate spreads what the target leaves after the discovery slots over the open
        slots; the window's error (target - realised) corrects it, scaled by ``gain``.
        """
        target = self.target(segment)
        if target <= 0.0:
            return 0.0
        open_slots = slate_size - discovery_slots
        if open_slots <= 0:
            return 1.0
        base = (target * slate_size - discovery_slots) / open_slots
        spend = self.spend(segment)
        error = target - spend.share if spend.served else 0.0
        return min(1.0, max(0.0, base + self.gain * error * slate_size / open_slots))

    def record(self, segment: str, *, served: int, explored: int) -> None:
        """Count one slate's slots against the budget, on a random shard."""
        bucket = int(self.clock() // self.bucket_seconds)
        shard = self._rng.randrange(self.shards)
        self.ledger.add(BudgetKey(segment, bucket, shard), served, explored)
