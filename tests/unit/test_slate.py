"""Slates: exact per-slot probabilities under caps and discovery slots, checked by sampling."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest
from scipy import stats

from bandit.serve.exploration import softmax
from bandit.serve.slate import (
    SlateConstraints,
    SlotDraw,
    sample_slate,
    seed_for,
    slate_probability,
)

SCORES = np.array([0.30, 0.25, 0.22, 0.40, 0.10, 0.35, 0.05, 0.28])
CATEGORIES = ["a", "a", "a", "b", "b", "c", "c", "d"]
CREATORS = ["x", "y", "z", "x", "y", "z", "x", "y"]
WEIGHTS = np.array([1.0, 1.0, 3.0, 1.0, 1.0, 1.0, 3.0, 1.0])  # items 2 and 6 are "new"
TEMPERATURE = 0.1
RATE = 0.3
SLATE_SIZE = 4
DISCOVERY = frozenset({3})
CONSTRAINTS = SlateConstraints(
    excluded=frozenset({4}),
    categories=CATEGORIES,
    creators=CREATORS,
    max_per_category=1,
    max_per_creator=2,
    discovery_positions=DISCOVERY,
)
DRAWS = 20_000


def explore(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return softmax(scores, weights, TEMPERATURE)


def reference_distribution(prefix: tuple[int, ...]) -> dict[int, float]:
    """Independent statement of the rules: the next slot's distribution after ``prefix``."""
    position = len(prefix) + 1
    used_categories = Counter(CATEGORIES[i] for i in prefix)
    used_creators = Counter(CREATORS[i] for i in prefix)
    allowed = [
        i
        for i in range(len(SCORES))
        if i not in prefix
        and i not in CONSTRAINTS.excluded
        and used_categories[CATEGORIES[i]] < 1
        and used_creators[CREATORS[i]] < 2
    ]
    greedy = max(allowed, key=lambda i: (SCORES[i], -i))
    rate = 1.0 if position in DISCOVERY else RATE
    logits = {i: WEIGHTS[i] * np.exp(SCORES[i] / TEMPERATURE) for i in allowed}
    total = sum(logits.values())
    return {i: rate * logits[i] / total + (1.0 - rate) * (i == greedy) for i in allowed}


def draw(event: int) -> list[SlotDraw]:
    return sample_slate(
        SCORES,
        slate_size=SLATE_SIZE,
        rate=RATE,
        explore=explore,
        rng=np.random.default_rng(seed_for(f"evt-{event}")),
        constraints=CONSTRAINTS,
        weights=WEIGHTS,
    )


@pytest.fixture(scope="module")
def slates() -> list[list[SlotDraw]]:
    return [draw(event) for event in range(DRAWS)]


def test_every_logged_probability_is_the_exact_conditional_probability(
    slates: list[list[SlotDraw]],
) -> None:
    # Given 20,000 slates drawn under caps, an exclusion, boosts and a discovery slot
    for slate in slates:
        prefix: tuple[int, ...] = ()
        for slot in slate:
            # Then each slot's logged probability is the reference probability of its item
            expected = reference_distribution(prefix)[slot.index]
            assert slot.probability == pytest.approx(expected, abs=1e-12)
            prefix = (*prefix, slot.index)


def test_empirical_slot_frequencies_match_logged_probabilities(
    slates: list[list[SlotDraw]],
) -> None:
    # Given the draws grouped by slot position and by the slots before it
    chi2 = 0.0
    dof = 0
    for position in range(1, SLATE_SIZE + 1):
        groups: dict[tuple[int, ...], Counter[int]] = defaultdict(Counter)
        logged: dict[tuple[tuple[int, ...], int], float] = {}
        for slate in slates:
            if len(slate) < position:
                continue  # the caps left no candidate: the slate legitimately stopped
            prefix = tuple(slot.index for slot in slate[: position - 1])
            slot = slate[position - 1]
            groups[prefix][slot.index] += 1
            logged[(prefix, slot.index)] = slot.probability
        for prefix, counts in groups.items():
            total = sum(counts.values())
            if total < 50:
                continue
            distribution = reference_distribution(prefix)
            # Logged probabilities over the items seen in this group agree with the reference
            for item in counts:
                assert logged[(prefix, item)] == pytest.approx(distribution[item], abs=1e-12)
            # When compared with chi-square (cells with expected count < 5 pooled)
            observed, expected = _pooled(counts, distribution, total)
            if len(observed) > 1:
                chi2 += float(((observed - expected) ** 2 / expected).sum())
                dof += len(observed) - 1
    # Then the frequencies are consistent with the logged probabilities
    assert dof > 20
    p_value = stats.chi2.sf(chi2, dof)
    assert p_value > 0.001, f"chi2={chi2:.1f} dof={dof} p={p_value:.2e}"


def test_whole_slate_frequencies_match_product_of_slot_probabilities(
    slates: list[list[SlotDraw]],
) -> None:
    # Given the frequency of each complete ordered slate
    counts = Counter(tuple(slot.index for slot in slate) for slate in slates)
    probability = {
        tuple(slot.index for slot in slate): slate_probability(slate) for slate in slates
    }
    assert sum(probability.values()) <= 1.0 + 1e-9
    # When compared with N times the product of the logged slot probabilities
    observed, expected = _pooled(counts, probability, DRAWS)
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    # Then they agree (p > 0.001)
    p_value = stats.chi2.sf(chi2, len(observed) - 1)
    assert p_value > 0.001, f"chi2={chi2:.1f} cells={len(observed)} p={p_value:.2e}"


def test_constraints_hold_and_discovery_slot_always_explores(
    slates: list[list[SlotDraw]],
) -> None:
    lengths = Counter(len(slate) for slate in slates)
    assert lengths[SLATE_SIZE] > DRAWS // 2  # most slates fill; some stop when caps bind
    for slate in slates:
        items = [slot.index for slot in slate]
        assert 4 not in items
        assert len({CATEGORIES[i] for i in items}) == len(items)
        assert max(Counter(CREATORS[i] for i in items).values()) <= 2
        assert all(slot.explored for slot in slate if slot.position in DISCOVERY)
    # Open slots explore at the requested rate (binomial tolerance, 5 sigma)
    open_slots = [slot for slate in slates for slot in slate if slot.position not in DISCOVERY]
    share = sum(slot.explored for slot in open_slots) / len(open_slots)
    sigma = (RATE * (1 - RATE) / len(open_slots)) ** 0.5
    assert abs(share - RATE) < 5 * sigma


def test_same_event_id_replays_the_same_slate() -> None:
    assert draw(42) == draw(42)
    assert any(draw(42) != draw(other) for other in range(43, 60))


def test_rate_zero_is_pure_exploitation_with_probability_one() -> None:
    slate = sample_slate(
        SCORES,
        slate_size=3,
        rate=0.0,
        explore=explore,
        rng=np.random.default_rng(1),
    )
    assert [slot.index for slot in slate] == [3, 5, 0]
    assert [slot.probability for slot in slate] == [1.0, 1.0, 1.0]
    assert not any(slot.explored for slot in slate)


def test_slate_stops_when_constraints_leave_no_candidate() -> None:
    constraints = SlateConstraints(categories=["a", "a", "b"], max_per_category=1)
    slate = sample_slate(
        np.array([0.5, 0.4, 0.1]),
        slate_size=3,
        rate=0.0,
        explore=explore,
        rng=np.random.default_rng(0),
        constraints=constraints,
    )
    assert [slot.index for slot in slate] == [0, 2]


def _pooled(
    counts: Counter[int] | Counter[tuple[int, ...]],
    probability: dict[int, float] | dict[tuple[int, ...], float],
    total: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Observed and expected counts, pooling cells whose expected count is below 5."""
    observed: list[float] = []
    expected: list[float] = []
    rest_observed = 0.0
    rest_expected = 0.0
    for key, p in probability.items():
        count = float(counts.get(key, 0))  # type: ignore[call-overload]
        if p * total >= 5:
            observed.append(count)
            expected.append(p * total)
        else:
            rest_observed += count
            rest_expected += p * total
    leftover = total - sum(observed) - rest_observed
    rest_expected = total - sum(expected)
    rest_observed += leftover
    if rest_expected >= 1e-9:
        observed.append(rest_observed)
        expected.append(rest_expected)
    return np.array(observed), np.array(expected)
