"""Exploration budget: the realised exploratory share tracks the target per segment."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from bandit.serve.budget import ExplorationBudget, InMemoryLedger


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def serve(
    budget: ExplorationBudget,
    clock: FakeClock,
    segment: str,
    slates: int,
    *,
    slate_size: int = 5,
    discovery: int = 0,
    seconds_per_slate: float = 1.0,
    seed: int = 0,
) -> tuple[int, int]:
    """Serve ``slates`` slates, exploring each open slot with the controller's rate."""
    rng = np.random.default_rng(seed)
    served = explored = 0
    for _ in range(slates):
        rate = budget.rate(segment, slate_size=slate_size, discovery_slots=discovery)
        slate_explored = discovery + int(rng.binomial(slate_size - discovery, rate))
        budget.record(segment, served=slate_size, explored=slate_explored)
        served += slate_size
        explored += slate_explored
        clock.now += seconds_per_slate
    return served, explored


def test_realised_share_tracks_target_within_a_point() -> None:
    # Given a 5% budget over a one-hour window
    clock = FakeClock()
    budget = ExplorationBudget({"mature": 0.05}, window_seconds=3600, clock=clock)
    # When 20,000 slates of 5 are served, one a second
    served, explored = serve(budget, clock, "mature", 20_000)
    # Then the realised share over the run and over the last window is within 1 point of 5%
    assert abs(explored / served - 0.05) < 0.01
    assert abs(budget.spend("mature").share - 0.05) < 0.01


def test_discovery_slots_count_against_the_budget() -> None:
    # Given a 30% budget and one of five slots reserved for discovery
    clock = FakeClock()
    budget = ExplorationBudget({"mature": 0.30}, clock=clock)
    # Then the open slots explore at (0.3 * 5 - 1) / 4 = 0.125 to start with
    assert budget.rate("mature", slate_size=5, discovery_slots=1) == pytest.approx(0.125)
    served, explored = serve(budget, clock, "mature", 10_000, discovery=1)
    assert abs(explored / served - 0.30) < 0.01


def test_discovery_share_above_target_leaves_open_slots_exploiting() -> None:
    clock = FakeClock()
    budget = ExplorationBudget({"mature": 0.10}, clock=clock)
    assert budget.rate("mature", slate_size=5, discovery_slots=1) == 0.0


def test_zero_budget_is_a_kill_switch() -> None:
    clock = FakeClock()
    budget = ExplorationBudget({"mature": 0.0, "cold": 0.2}, clock=clock)
    budget.record("mature", served=100, explored=0)
    assert budget.rate("mature", slate_size=5, discovery_slots=0) == 0.0
    assert budget.rate("unknown", slate_size=5, discovery_slots=0) == 0.0


def test_under_spending_raises_the_rate_and_over_spending_lowers_it() -> None:
    clock = FakeClock()
    budget = ExplorationBudget({"warm": 0.10}, clock=clock)
    budget.record("warm", served=1000, explored=50)  # realised 5%
    assert budget.rate("warm", slate_size=5, discovery_slots=0) == pytest.approx(0.15)
    budget.record("warm", served=1000, explored=250)  # realised 15% overall
    assert budget.rate("warm", slate_size=5, discovery_slots=0) == pytest.approx(0.05)


def test_window_rolls_so_old_spend_stops_counting() -> None:
    # Given a burst of exploration, then an hour and a minute without traffic
    clock = FakeClock()
    budget = ExplorationBudget({"cold": 0.2}, window_seconds=3600, bucket_seconds=60, clock=clock)
    budget.record("cold", served=100, explored=100)
    assert budget.spend("cold").served == 100
    clock.now += 3600 + 60
    # Then the burst has left the window
    assert budget.spend("cold").served == 0
    assert budget.rate("cold", slate_size=5, discovery_slots=0) == pytest.approx(0.2)


def test_segments_are_paced_independently() -> None:
    clock = FakeClock()
    budget = ExplorationBudget({"cold": 0.20, "mature": 0.05}, clock=clock)
    cold = serve(budget, clock, "cold", 4000, seed=1)
    mature = serve(budget, clock, "mature", 4000, seed=2)
    assert abs(cold[1] / cold[0] - 0.20) < 0.01
    assert abs(mature[1] / mature[0] - 0.05) < 0.01


def test_writes_spread_over_shards_so_no_key_is_hot() -> None:
    # Given 8 shards and 8,000 writes inside one bucket
    clock = FakeClock()
    ledger = InMemoryLedger()
    budget = ExplorationBudget(
        {"mature": 0.1}, shards=8, ledger=ledger, clock=clock, rng=random.Random(3)
    )
    for _ in range(8000):
        budget.record("mature", served=1, explored=0)
    # Then each of the 8 cells took about an eighth, none more than 15%
    per_cell = Counter({key: cell[0] for key, cell in ledger.cells.items()})
    assert len(per_cell) == 8
    assert max(per_cell.values()) < 0.15 * 8000
    assert budget.spend("mature").served == 8000
