"""Slate estimators for marginal-propensity logs: the pseudo-inverse for uniform rankings."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.evaluate.ope import Estimate
from bandit.evaluate.ope_slates import ranking_pseudo_inverse, slate_estimate

Z95 = 1.959964


def standard_error(result: Estimate) -> float:
    return (result.high - result.low) / (2 * Z95)


def target_terms(slates: np.ndarray, marginals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per logged slot: the target's probability of that item in that slot, and anywhere."""
    rows = np.arange(marginals.shape[0])
    slot_p = np.stack([marginals[k, slates[:, k]] for k in rows], axis=1)
    shown_p = np.stack([marginals[:, slates[:, k]].sum(axis=0) for k in rows], axis=1)
    return slot_p, shown_p


def one_hot(slate: tuple[int, ...], m: int) -> np.ndarray:
    vector = np.zeros(len(slate) * m)
    for k, item in enumerate(slate):
        vector[k * m + item] = 1.0
    return vector


# Hand-computed: 3 candidates, 2 slots, every ordered slate of distinct items logged once (uniform
# logging), the target always shows (0, 1), slot rewards additive with these exact means.
PHI = np.array([[0.6, 0.3, 0.0], [0.2, 0.4, 0.1]])
RANKINGS = list(itertools.permutations(range(3), 2))  # (0,1) (0,2) (1,0) (1,2) (2,0) (2,1)


def test_the_pseudo_inverse_is_exact_on_a_hand_computed_uniform_ranking() -> None:
    # Given each ranking once with its exact expected reward (slate totals 1.0, 0.7, 0.5, ...)
    slates = np.array(RANKINGS)
    rewards = PHI[0, slates[:, 0]] + PHI[1, slates[:, 1]]
    assert rewards.tolist() == pytest.approx([1.0, 0.7, 0.5, 0.4, 0.2, 0.4])
    marginals = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    slot_p, shown_p = target_terms(slates, marginals)
    # When the ranking pseudo-inverse estimates the target's value
    result = ranking_pseudo_inverse(rewards, [3] * 6, slot_p, shown_p)
    # Then its weights are 5, 1, 1, -1, -1, 1 and the value is exactly 0.6 + 0.4
    # ((5 * 1.0 + 0.7 + 0.5 - 0.4 - 0.2 + 0.4) / 6 = 1.0)
    assert result.value == pytest.approx(1.0, abs=1e-12)
    assert result.n == 6 and result.method == "ranking_pseudo_inverse"
    weights = [
        ranking_pseudo_inverse([1.0], [3], s[None], h[None]).value
        for s, h in zip(slot_p, shown_p, strict=True)
    ]
    assert weights == pytest.approx([5.0, 1.0, 1.0, -1.0, -1.0, 1.0])
    # And the independent-slot closed form is biased here: (5 + 1.4 - 0.5 - 0.4 - 0.2 + 0.8) / 6
    independent = slate_estimate(rewards, np.full((6, 2), 1 / 3), slot_p, "pseudo_inverse")
    assert independent.value == pytest.approx(6.1 / 6, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(3, 6),
    slots=st.integers(2, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_closed_form_is_the_general_pseudo_inverse_of_uniform_rankings(
    m: int, slots: int, seed: int
) -> None:
    # Given uniform logging over rankings of ``slots`` distinct items out of ``m``, and a random
    # target distribution over those rankings
    slots = min(slots, m - 1)
    rankings = list(itertools.permutations(range(m), slots))
    rng = np.random.default_rng(seed)
    target = rng.dirichlet(np.full(len(rankings), 0.3))
    hot = np.array([one_hot(s, m) for s in rankings])
    gamma = hot.T @ hot / len(rankings)  # E[1_s 1_s'] under the uniform logging policy
    q = target @ hot  # the target's marginals, position by item
    general = hot @ np.linalg.pinv(gamma) @ q  # Swaminathan et al.'s q' Gamma^+ 1_s, per ranking
    # When the closed form weighs each ranking (reward 1: the estimate is the weight)
    slot_p, shown_p = target_terms(np.array(rankings), q.reshape(slots, m))
    closed = [
        ranking_pseudo_inverse([1.0], [m], s[None], h[None]).value
        for s, h in zip(slot_p, shown_p, strict=True)
    ]
    # Then it matches the pseudo-inverse weight of every ranking
    assert closed == pytest.approx(general.tolist(), abs=1e-8)


def test_pseudo_inverse_and_position_ips_are_unbiased_on_uniform_rankings() -> None:
    # Given 5 candidates, 3 slots, uniform logging over the 60 rankings, a deterministic target
    # (4, 0, 2) and additive Bernoulli slot rewards with means phi[k, item]
    m, slots, n = 5, 3, 30_000
    phi = np.array(
        [
            [0.10, 0.30, 0.05, 0.20, 0.60],
            [0.40, 0.10, 0.20, 0.05, 0.15],
            [0.05, 0.10, 0.50, 0.30, 0.20],
        ]
    )
    best = (4, 0, 2)
    true_value = phi[0, 4] + phi[1, 0] + phi[2, 2]
    assert true_value == pytest.approx(1.5)
    rng = np.random.default_rng(11)
    slates = np.array([rng.permutation(m)[:slots] for _ in range(n)])
    slot_rewards = (rng.random((n, slots)) < phi[np.arange(slots), slates]).astype(float)
    marginals = np.zeros((slots, m))
    marginals[np.arange(slots), best] = 1.0
    slot_p, shown_p = target_terms(slates, marginals)
    # When both estimators for marginal-propensity logs are applied
    pi = ranking_pseudo_inverse(slot_rewards, np.full(n, m), slot_p, shown_p)
    position = slate_estimate(slot_rewards, np.full((n, slots), 1 / m), slot_p, "independent_ips")
    # Then both lie within 3 standard errors of the truth, with intervals of useful width
    for result in (pi, position):
        assert abs(result.value - true_value) < 3 * standard_error(result), result
        assert result.width < 0.25
    # And the same slates totalled give the same pseudo-inverse value
    totals = ranking_pseudo_inverse(slot_rewards.sum(axis=1), np.full(n, m), slot_p, shown_p)
    assert totals.value == pytest.approx(pi.value, abs=1e-12)


@pytest.mark.parametrize(
    ("candidates", "slot_p", "shown_p", "field"),
    [
        ([2], [[1.0, 0.0]], [[1.0, 0.0]], "candidates"),
        ([3.5], [[1.0, 0.0]], [[1.0, 0.0]], "candidates"),
        ([3], [[1.0, 0.5]], [[1.0, 0.2]], "target_shown_p"),
        ([3], [[1.2, 0.0]], [[1.0, 0.0]], "target_slot_p"),
        ([3], [1.0, 0.0], [[1.0, 0.0]], "target_slot_p"),
        ([3, 3], [[1.0, 0.0]], [[1.0, 0.0]], "candidates"),
    ],
)
def test_bad_input_names_the_argument(
    candidates: list[float], slot_p: object, shown_p: object, field: str
) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        ranking_pseudo_inverse([1.0], candidates, slot_p, shown_p)  # type: ignore[arg-type]


def plackett_luce(weights: list[float], slate: tuple[int, ...]) -> list[float]:
    """Each slot's probability, conditional on the earlier slots, of drawing ``slate``."""
    left = dict(enumerate(weights))
    conditional = []
    for item in slate:
        conditional.append(left[item] / sum(left.values()))
        del left[item]
    return conditional


def test_prefix_ips_fits_conditional_logs_and_plain_conditional_ips_does_not() -> None:
    # Given slates drawn without repetition, slot by slot, with conditional probabilities logged
    # (as Serendip logs them), a target drawn the same way with other weights, additive rewards
    logging_w, target_w = [0.5, 0.3, 0.2], [0.1, 0.2, 0.7]
    p = np.array([plackett_luce(logging_w, s) for s in RANKINGS])
    q = np.array([plackett_luce(target_w, s) for s in RANKINGS])
    means = np.array([[PHI[0, a], PHI[1, b]] for a, b in RANKINGS])
    true_value = float(q.prod(axis=1) @ means.sum(axis=1))
    logged = p.prod(axis=1)  # each ranking's probability under the logging policy

    def expected(logging_p: np.ndarray, target_p: np.ndarray) -> float:
        # Exact expectation over the logging policy (rewards enter linearly: use their means)
        terms = [
            slate_estimate(r[None], lp[None], tp[None], "independent_ips").value
            for r, lp, tp in zip(means, logging_p, target_p, strict=True)
        ]
        return float(logged @ np.array(terms))

    # When per-slot IPS is given the prefix products, or the bare conditionals
    prefix = expected(np.cumprod(p, axis=1), np.cumprod(q, axis=1))
    bare = expected(p, q)
    # Then the prefix products give the exact value, and the bare conditionals miss it
    # (slot 1: 0.1 * 0.6 + 0.2 * 0.3 = 0.12; slot 2: 0.2 * 0.2583 + 0.4 * 0.4889 + 0.1 * 0.2528)
    assert true_value == pytest.approx(0.3925, abs=1e-12)
    assert prefix == pytest.approx(true_value, abs=1e-12)
    assert bare == pytest.approx(0.30375, abs=1e-12)
