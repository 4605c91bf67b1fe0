"""Off-policy estimators: agreement with vw-estimators, properties, unbiasedness by simulation."""

from __future__ import annotations

import itertools
from statistics import NormalDist
from typing import Any

import numpy as np
import pytest
from estimators.bandits import gaussian, ips, snips
from estimators.slates import gaussian as slates_gaussian
from estimators.slates import pseudo_inverse
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.evaluate.intervals import UNBOUNDED, reward_range
from bandit.evaluate.ope import Estimate, Method, estimate
from bandit.evaluate.ope_slates import slate_estimate

Z95 = NormalDist().inv_cdf(0.975)
METHODS: tuple[Method, ...] = ("ips", "clipped_ips", "snips", "dr")


def random_logs(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rewards in [-1, 2], logging probabilities in [0.02, 1], target ones in [0, 1] (some 0)."""
    rng = np.random.default_rng(seed)
    rewards = rng.uniform(-1.0, 2.0, n)
    logging_p = rng.uniform(0.02, 1.0, n)
    target_p = rng.uniform(0.0, 1.0, n) * (rng.random(n) < 0.7)
    return rewards, logging_p, target_p


def standard_error(result: Estimate) -> float:
    return (result.high - result.low) / (2 * Z95)


# --- Agreement with vw-estimators -------------------------------------------------------------

CASES = list(itertools.product([0, 1, 2, 3, 4], [2, 17, 1_000, 5_000]))


@pytest.mark.parametrize(("seed", "n"), CASES)
def test_ips_and_snips_match_vw_estimators(seed: int, n: int) -> None:
    # Given the same logs fed to vw-estimators one example at a time
    rewards, logging_p, target_p = random_logs(seed, n)
    vw_ips, vw_snips, vw_interval = ips.Estimator(), snips.Estimator(), gaussian.Interval()
    for r, p, q in zip(rewards.tolist(), logging_p.tolist(), target_p.tolist(), strict=True):
        vw_ips.add_example(p, r, q)
        vw_snips.add_example(p, r, q)
        vw_interval.add_example(p, r, q)
    # When serendip estimates from the arrays, with no reward bounds (the plain CLT interval)
    mine_ips = estimate(rewards, logging_p, target_p, "ips", reward_range=UNBOUNDED)
    mine_snips = estimate(rewards, logging_p, target_p, "snips")
    # Then the point estimates agree to 1e-9, and so does the IPS normal interval
    assert mine_ips.value == pytest.approx(vw_ips.get(), abs=1e-9)
    assert mine_snips.value == pytest.approx(vw_snips.get(), abs=1e-9)
    low, high = vw_interval.get(0.05)
    assert mine_ips.low == pytest.approx(low, abs=1e-9)
    assert mine_ips.high == pytest.approx(high, abs=1e-9)


@pytest.mark.parametrize(("seed", "n"), CASES)
def test_pseudo_inverse_matches_vw_estimators(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    slots = 3
    rewards = rng.uniform(0.0, 3.0, n)
    logging_p = rng.uniform(0.05, 1.0, (n, slots))
    target_p = rng.uniform(0.0, 1.0, (n, slots))
    vw, vw_interval = pseudo_inverse.Estimator(), slates_gaussian.Interval()
    for r, p, q in zip(rewards.tolist(), logging_p.tolist(), target_p.tolist(), strict=True):
        vw.add_example(p, r, q)
        vw_interval.add_example(p, r, q)
    mine = slate_estimate(rewards, logging_p, target_p, "pseudo_inverse")
    assert mine.value == pytest.approx(vw.get(), abs=1e-9)
    low, high = vw_interval.get(0.05)
    assert (mine.low, mine.high) == pytest.approx((low, high), abs=1e-9)


def test_vw_estimators_has_no_snips_interval_so_ours_is_the_delta_method() -> None:
    # The delta-method standard error of the ratio, checked against its closed form by hand.
    rewards = np.array([1.0, 0.0, 1.0, 1.0])
    logging_p = np.array([0.5, 0.5, 0.25, 1.0])
    target_p = np.array([1.0, 0.5, 0.5, 0.0])
    w = target_p / logging_p  # [2, 1, 2, 0]
    value = 4.0 / 5.0
    se = np.sqrt(4 / 3) * np.sqrt(np.sum(w**2 * (rewards - value) ** 2)) / w.sum()
    result = estimate(rewards, logging_p, target_p, "snips", reward_range=UNBOUNDED)
    assert result.value == pytest.approx(0.8, abs=1e-15)
    assert standard_error(result) == pytest.approx(se, rel=1e-12)
    assert se == pytest.approx(0.2262742, rel=1e-6)


# --- Properties -------------------------------------------------------------------------------


@st.composite
def logs(draw: Any, *, nonnegative: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(min_value=1, max_value=40))
    low = 0.0 if nonnegative else -10.0
    reward = st.floats(min_value=low, max_value=10.0, allow_nan=False)
    logging = st.floats(min_value=0.01, max_value=1.0)
    target = st.floats(min_value=0.0, max_value=1.0)
    return (
        np.array(draw(st.lists(reward, min_size=n, max_size=n))),
        np.array(draw(st.lists(logging, min_size=n, max_size=n))),
        np.array(draw(st.lists(target, min_size=n, max_size=n))),
    )


@given(logs())
def test_target_equal_to_logging_gives_the_mean_reward(data: tuple[np.ndarray, ...]) -> None:
    rewards, logging_p, _ = data
    mean = float(np.mean(rewards))
    assert estimate(rewards, logging_p, logging_p, "ips").value == pytest.approx(mean, abs=1e-12)
    assert estimate(rewards, logging_p, logging_p, "snips").value == mean


@given(logs(), st.floats(min_value=0.01, max_value=1.0))
def test_snips_is_invariant_to_scaling_every_weight(
    data: tuple[np.ndarray, ...], scale: float
) -> None:
    rewards, logging_p, target_p = data
    if target_p.sum() == 0.0:
        target_p = np.ones_like(target_p)
    base = estimate(rewards, logging_p, target_p, "snips")
    scaled = estimate(rewards, logging_p, target_p * scale, "snips")
    assert scaled.value == pytest.approx(base.value, rel=1e-9, abs=1e-9)
    assert scaled.width == pytest.approx(base.width, rel=1e-9, abs=1e-9)


@given(logs(nonnegative=True), st.floats(min_value=0.5, max_value=50.0))
def test_clipped_ips_never_exceeds_ips_for_nonnegative_rewards(
    data: tuple[np.ndarray, ...], clip: float
) -> None:
    rewards, logging_p, target_p = data
    clipped = estimate(rewards, logging_p, target_p, "clipped_ips", clip=clip)
    assert clipped.value <= estimate(rewards, logging_p, target_p, "ips").value


@given(logs())
def test_dr_with_a_perfect_reward_model_has_no_correction_term(
    data: tuple[np.ndarray, ...],
) -> None:
    # Given deterministic rewards that the model predicts exactly, in one context
    rewards, logging_p, target_p = data
    expected_under_target = np.full(len(rewards), 0.7)
    result = estimate(
        rewards,
        logging_p,
        target_p,
        "dr",
        reward_hat=rewards,
        reward_hat_target=expected_under_target,
        reward_range=UNBOUNDED,
    )
    # Then DR is the model's value, with a zero-width CLT interval
    assert result.value == pytest.approx(0.7, abs=1e-12)
    if result.n > 1:
        assert result.width == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=50)
@given(logs(), st.sampled_from(METHODS), st.floats(min_value=0.001, max_value=0.5))
def test_the_interval_contains_the_point_estimate(
    data: tuple[np.ndarray, ...], method: Method, alpha: float
) -> None:
    rewards, logging_p, target_p = data
    target_p = np.maximum(target_p, 0.01)  # SNIPS needs one nonzero weight
    result = estimate(
        rewards,
        logging_p,
        target_p,
        method,
        alpha,
        reward_hat=rewards * 0.5,
        reward_hat_target=np.full(len(rewards), 0.2),
    )
    # An IPS value can leave the reward range; the interval never does
    low, high = reward_range(rewards, None)
    if low <= result.value <= high:
        assert result.low <= result.value <= result.high
    assert low <= result.low <= result.high <= high
    assert result.n == len(rewards)
    assert result.method == method


GOOD = {"rewards": [1.0, 0.0], "logging_p": [0.5, 0.5], "target_p": [1.0, 0.0]}
BAD_INPUTS = [
    ({"rewards": [1.0, np.nan]}, "rewards"),
    ({"rewards": [1.0, np.inf]}, "rewards"),
    ({"rewards": []}, "rewards"),
    ({"rewards": [[1.0, 0.0]]}, "rewards"),
    ({"rewards": ["a", "b"]}, "rewards"),
    ({"logging_p": [0.5]}, "logging_p"),
    ({"logging_p": [0.0, 0.5]}, "logging_p"),
    ({"logging_p": [1.5, 0.5]}, "logging_p"),
    ({"target_p": [-0.1, 0.5]}, "target_p"),
    ({"target_p": [1.0, 0.0, 0.0]}, "target_p"),
    ({"target_p": [0.0, 0.0]}, "target_p"),  # SNIPS undefined
    ({"alpha": 0.0}, "alpha"),
    ({"alpha": 1.0}, "alpha"),
    ({"method": "magic"}, "method"),
    ({"method": "clipped_ips", "clip": 0.0}, "clip"),
    ({"method": "dr"}, "reward_hat"),
    ({"method": "dr", "reward_hat": [0.0, 0.0]}, "reward_hat_target"),
    ({"method": "dr", "reward_hat": [0.0], "reward_hat_target": [0.0, 0.0]}, "reward_hat"),
    (
        {"method": "dr", "reward_hat": [0.0, 0.0], "reward_hat_target": [0.0, np.nan]},
        "reward_hat_target",
    ),
]


@pytest.mark.parametrize(("change", "name"), BAD_INPUTS)
def test_invalid_input_raises_value_error_naming_the_argument(
    change: dict[str, Any], name: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{name}:"):
        estimate(**{**GOOD, **change})


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (([1.0], [0.5], [[1.0]]), "logging_slot_p"),
        (([1.0], [[0.0, 0.5]], [[1.0, 1.0]]), "logging_slot_p"),
        (([1.0], [[0.5, 0.5]], [[1.0]]), "target_slot_p"),
        (([1.0], [[0.5, 0.5]], [[1.0, 2.0]]), "target_slot_p"),
        (([1.0, 2.0], [[0.5, 0.5]], [[1.0, 1.0]]), "rewards"),
    ],
)
def test_invalid_slate_input_raises_value_error_naming_the_argument(
    args: tuple[Any, ...], name: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{name}:"):
        slate_estimate(*args)


def test_independent_ips_needs_per_slot_rewards() -> None:
    with pytest.raises(ValueError, match=r"^rewards:"):
        slate_estimate([1.0], [[0.5, 0.5]], [[1.0, 1.0]], "independent_ips")


def test_one_example_gives_the_whole_reward_range_or_an_unbounded_interval() -> None:
    result = estimate([1.0], [0.5], [1.0], "ips")
    assert (result.value, result.low, result.high) == (2.0, 0.0, 1.0)
    result = estimate([1.0], [0.5], [1.0], "ips", reward_range=UNBOUNDED)
    assert (result.value, result.low, result.high) == (2.0, -np.inf, np.inf)


def test_overlap_and_width() -> None:
    a = Estimate(0.30, 0.20, 0.40, "ips", 10)
    assert a.width == pytest.approx(0.2)
    assert a.overlaps(Estimate(0.45, 0.40, 0.50, "snips", 10))
    assert not a.overlaps(Estimate(0.50, 0.41, 0.60, "snips", 10))
    assert a.contains(0.2) and not a.contains(0.41)


# --- Unbiasedness by simulation ---------------------------------------------------------------

ARM_MEANS = np.array([[0.10, 0.30, 0.50, 0.20, 0.40], [0.60, 0.20, 0.10, 0.30, 0.35]])


def test_estimators_recover_a_deterministic_policy_from_uniform_logs() -> None:
    # Given 20,000 uniform-random decisions over 5 arms in 2 equally likely contexts
    rng = np.random.default_rng(11)
    n, arms = 20_000, 5
    contexts = rng.integers(0, 2, n)
    actions = rng.integers(0, arms, n)
    rewards = (rng.random(n) < ARM_MEANS[contexts, actions]).astype(float)
    logging_p = np.full(n, 1 / arms)
    # And a target that plays arm 2 in context 0 and arm 0 in context 1 (true value 0.55)
    best = np.array([2, 0])
    target_p = (actions == best[contexts]).astype(float)
    true_value = 0.5 * 0.50 + 0.5 * 0.60
    # And a reward model that is off by +0.05 everywhere
    model = ARM_MEANS + 0.05
    reward_hat = model[contexts, actions]
    reward_hat_target = model[contexts, best[contexts]]
    # Then each estimate is within 3 standard errors of the true value
    results = {
        method: estimate(
            rewards,
            logging_p,
            target_p,
            method,
            reward_hat=reward_hat,
            reward_hat_target=reward_hat_target,
        )
        for method in METHODS
    }
    for method in ("ips", "snips", "dr"):
        result = results[method]
        assert abs(result.value - true_value) < 3 * standard_error(result), method
    # And IPS's standard error is near its theoretical sqrt((25 * 0.2 * 0.55 - 0.55**2) / n)
    assert standard_error(results["ips"]) == pytest.approx(0.01106, rel=0.05)
    # And the reward model makes DR's interval narrower than IPS's
    assert results["dr"].width < results["ips"].width


# Two slots, each drawn independently from the same 3 items (a Cartesian product, as in
# Swaminathan et al.'s example 4); slot k's reward is Bernoulli(PHI[k, item]).
PHI = np.array([[0.50, 0.20, 0.10], [0.30, 0.25, 0.05]])
LOGGING = np.array([[0.2, 0.3, 0.5], [0.5, 0.3, 0.2]])
SLATES = list(itertools.product(range(3), range(3)))
# A target that is not a product distribution: it favours slate (0, 0) and (0, 1).
TARGET = np.array([0.45, 0.25, 0.02, 0.08, 0.05, 0.05, 0.04, 0.03, 0.03])


def test_pseudo_inverse_and_independent_ips_are_unbiased_on_additive_slates() -> None:
    # Given the exact value of the target by enumerating its 9 slates
    true_value = sum(t * (PHI[0, a] + PHI[1, b]) for t, (a, b) in zip(TARGET, SLATES, strict=True))
    marginals = np.zeros((2, 3))
    for t, (a, b) in zip(TARGET, SLATES, strict=True):
        marginals[0, a] += t
        marginals[1, b] += t
    # When 20,000 slates are logged from the product logging policy
    rng = np.random.default_rng(5)
    n = 20_000
    items = np.stack([rng.choice(3, size=n, p=LOGGING[k]) for k in range(2)], axis=1)
    slot_rewards = (rng.random((n, 2)) < PHI[[0, 1], items]).astype(float)
    logging_p = LOGGING[[0, 1], items]
    target_p = marginals[[0, 1], items]
    # Then both slate estimators are within 3 standard errors of the true value
    assert true_value == pytest.approx(0.6645, abs=1e-12)
    pi = slate_estimate(slot_rewards.sum(axis=1), logging_p, target_p, "pseudo_inverse")
    independent = slate_estimate(slot_rewards, logging_p, target_p, "independent_ips")
    for result in (pi, independent):
        assert abs(result.value - true_value) < 3 * standard_error(result), result.method
    # And per-slot rewards summed give the same pseudo-inverse estimate
    assert slate_estimate(slot_rewards, logging_p, target_p).value == pytest.approx(pi.value)
