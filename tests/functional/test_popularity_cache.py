"""The rank path's popularity cache: fresh enough, and far fewer reads than ranks."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import pytest

from bandit.serve.coldstart import ItemStats
from functions.common import counters
from functions.common.counters import PopularityCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every item list that reached DynamoDB through ``counters.popularity``."""
    seen: list[list[str]] = []
    real = counters.popularity

    def spy(tenant: str, policy: str, item_ids: Iterable[str]) -> Any:
        ids = sorted(item_ids)
        seen.append(ids)
        return real(tenant, policy, ids)

    monkeypatch.setattr(counters, "popularity", spy)
    return seen


def test_cached_counts_serve_until_they_are_max_age_old(
    aws: dict[str, str], reads: list[list[str]]
) -> None:
    counters.add_popularity("acme", "for-you", {"a": (4, 1.0), "b": (2, 0.0)})
    clock = Clock()
    cache = PopularityCache(max_age=5.0, clock=clock)
    stats, totals = cache.get("acme", "for-you", ["a", "b", "never-shown"])
    assert stats == {"a": ItemStats(4.0, 1.0), "b": ItemStats(2.0, 0.0)}
    assert totals == ItemStats(6.0, 1.0)
    assert reads == [["a", "b", "never-shown"]]

    counters.add_popularity("acme", "for-you", {"a": (1, 1.0)})
    clock.now += 2.4
    # Within max_age nothing is read, the unknown item included; a new item is read alone
    # while the others are less than half max_age old
    assert cache.get("acme", "for-you", ["a", "never-shown"])[0] == {"a": ItemStats(4.0, 1.0)}
    assert cache.get("acme", "for-you", ["a", "c"])[0] == {"a": ItemStats(4.0, 1.0)}
    assert reads == [["a", "b", "never-shown"], ["c"]]

    clock.now += 2.7  # a, b, never-shown and the totals are now 5.1 s old; c is 2.7 s old
    stats, totals = cache.get("acme", "for-you", ["a"])
    assert stats == {"a": ItemStats(5.0, 2.0)}
    assert totals == ItemStats(7.0, 2.0)
    # The read of "a" also refreshed the policy's items half max_age old or more, in one request
    assert reads[-1] == ["a", "b", "c", "never-shown"]
    assert cache.get("acme", "for-you", ["b", "never-shown", "c"])[0] == {"b": ItemStats(2.0, 0.0)}
    assert len(reads) == 3


def test_items_come_due_together_so_a_catalog_is_read_about_once_per_max_age(
    aws: dict[str, str], reads: list[list[str]]
) -> None:
    # Given a catalog of 60 items, and ranks of 10 random ones every 10 ms for 20 s
    catalog = [f"item-{i}" for i in range(60)]
    counters.add_popularity("acme", "for-you", {item: (1, 0.0) for item in catalog})
    clock = Clock()
    cache = PopularityCache(max_age=1.0, clock=clock)
    rng = random.Random(7)
    for step in range(2000):
        if step == 100:
            discovered = len(reads)  # the first second: the first sight of each item
        stats, _ = cache.get("acme", "for-you", rng.sample(catalog, 10))
        assert len(stats) == 10
        clock.now += 0.01
    # Then, once every item has been seen, reads come about once a second (19 s left), not on
    # every rank that meets an item just come due
    assert len(reads) - discovered <= 24
    assert max(len(r) for r in reads) <= 99


def test_max_age_zero_reads_every_time_and_tenants_stay_apart(
    aws: dict[str, str], reads: list[list[str]]
) -> None:
    counters.add_popularity("acme", "for-you", {"a": (3, 1.0)})
    counters.add_popularity("globex", "for-you", {"a": (7, 0.0)})
    cache = PopularityCache(max_age=0.0, clock=Clock())
    for _ in range(3):
        assert cache.get("acme", "for-you", ["a"])[0] == {"a": ItemStats(3.0, 1.0)}
    assert cache.get("globex", "for-you", ["a"])[0] == {"a": ItemStats(7.0, 0.0)}
    assert len(reads) == 4


def test_capacity_drops_the_oldest_items(aws: dict[str, str], reads: list[list[str]]) -> None:
    cache = PopularityCache(max_age=60.0, clock=Clock(), capacity=2)
    cache.get("acme", "for-you", ["a"])
    cache.get("acme", "for-you", ["b", "c"])
    cache.get("acme", "for-you", ["a"])  # "a" was dropped: read again
    assert reads == [["a"], ["b", "c"], ["a"]]
