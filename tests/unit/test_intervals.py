"""Intervals for bounded rewards: agreement with vw-estimators, bounds, coverage, diagnostics."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from estimators.bandits import clopper_pearson, cressieread, gaussian
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import f

from bandit.decision_log import write_jsonl
from bandit.evaluate.intervals import (
    INTERVALS,
    IntervalMethod,
    empirical_likelihood,
    f_quantile,
    weight_diagnostics,
)
from bandit.evaluate.ope import Method, estimate
from bandit.simulate.arena import simulated_logs
from bandit.spec import load_spec
from benchmarks.interval_coverage import rare_coverage
from local.cli import main

ROOT = Path(__file__).resolve().parents[2]


def sparse_logs(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rewards in [0, 1], 10% nonzero; logging in [0.02, 1]; target in [0, 1], 30% zero."""
    rng = np.random.default_rng(seed)
    rewards = (rng.random(n) < 0.1) * rng.uniform(0.0, 1.0, n)
    logging_p = rng.uniform(0.02, 1.0, n)
    target_p = rng.uniform(0.0, 1.0, n) * (rng.random(n) < 0.7)
    return rewards, logging_p, target_p


# --- Agreement with vw-estimators -------------------------------------------------------------


@pytest.mark.parametrize(("seed", "n"), [(0, 10), (1, 200), (2, 2_000), (3, 5_000)])
@pytest.mark.parametrize("max_weight", [np.inf, 60.0])
def test_empirical_likelihood_matches_vw_estimators_cressieread(
    seed: int, n: int, max_weight: float
) -> None:
    # Given logs fed to vw-estimators' Cressie-Read interval one example at a time
    rewards, logging_p, target_p = sparse_logs(seed, n)
    vw = cressieread.Interval(wmax=max_weight)
    for r, p, q in zip(rewards.tolist(), logging_p.tolist(), target_p.tolist(), strict=True):
        vw.add_example(p, r, q)
    # When serendip computes the empirical-likelihood interval from the arrays
    mine = empirical_likelihood(target_p / logging_p, rewards, 0.05, (0.0, 1.0), max_weight)
    # Then both bounds agree to 1e-9
    assert mine == pytest.approx(vw.get(0.05), abs=1e-9)


def test_on_policy_empirical_likelihood_is_near_clopper_pearson() -> None:
    # Given 30 clicks in 1,000 on-policy events (every weight 1)
    rewards = np.zeros(1_000)
    rewards[:30] = 1.0
    vw = clopper_pearson.Interval()
    for r in rewards.tolist():
        vw.add_example(0.5, r, 0.5)
    exact_low, exact_high = vw.get(0.05)  # 0.0203, 0.0426
    # When serendip's EL interval is computed
    result = estimate(rewards, np.full(1_000, 0.5), np.full(1_000, 0.5), "ips", interval="el")
    # Then it is within 0.002 of the exact binomial interval at both ends
    assert (result.low, result.high) == pytest.approx((0.019425, 0.040575), abs=1e-6)
    assert abs(result.low - exact_low) < 0.002 and abs(result.high - exact_high) < 0.002


def test_normal_interval_is_vw_gaussian_when_it_lies_inside_the_range() -> None:
    # Given logs whose CLT interval lies well inside [0, 1] and ess far above the floor's reach
    rewards, logging_p, target_p = sparse_logs(7, 5_000)
    vw = gaussian.Interval()
    for r, p, q in zip(rewards.tolist(), logging_p.tolist(), target_p.tolist(), strict=True):
        vw.add_example(p, r, q)
    result = estimate(rewards, logging_p, target_p, "ips", interval="normal")
    # Then the bounded normal interval is exactly vw-estimators' gaussian one
    assert (result.low, result.high) == pytest.approx(vw.get(0.05), abs=1e-12)
    assert 0.0 < result.low < result.high < 1.0


@pytest.mark.parametrize("dfd", [3.0, 10.0, 100.0, 2_000.0])
def test_f_quantile_matches_scipy(dfd: float) -> None:
    assert f_quantile(0.05, dfd) == pytest.approx(
        f.isf(0.05, 1, dfd), rel=3e-3 if dfd < 10 else 1e-5
    )


# --- Known cases ------------------------------------------------------------------------------


@pytest.mark.parametrize("interval", INTERVALS)
@pytest.mark.parametrize("uniform_weights", [True, False])
def test_an_all_zero_reward_log_gets_a_positive_upper_bound(
    interval: IntervalMethod, uniform_weights: bool
) -> None:
    # Given 2,000 events without a single reward, weights all 1 or mixed 0 / 2
    n = 2_000
    target = np.full(n, 0.5) if uniform_weights else np.tile([0.0, 1.0], n // 2)
    result = estimate(np.zeros(n), np.full(n, 0.5), target, "snips", interval=interval)
    # Then the value is 0, the interval starts at 0 and its upper bound is above 0 and <= 1
    assert result.value == 0.0 and result.low == 0.0
    assert 0.0 < result.high <= 1.0
    # And at least the rule of three on the effective sample size (2,000 or 1,000)
    assert result.high >= np.log(20.0) / result.ess - 1e-12
    assert result.warning is not None and "no rewarded event" in result.warning


@pytest.mark.parametrize("interval", INTERVALS)
def test_constant_rewards_get_a_narrow_interval_reaching_the_constant(
    interval: IntervalMethod,
) -> None:
    # Given 1,000 on-policy events that were all rewarded
    n = 1_000
    result = estimate(np.ones(n), np.full(n, 0.5), np.full(n, 0.5), "snips", interval=interval)
    # Then the value is 1, the interval ends at 1 and is not zero-width but under 1%
    assert result.value == 1.0 and result.high == 1.0
    assert 0.0 < result.width < 0.01


def test_the_reward_range_defaults_to_the_observed_one_outside_zero_one() -> None:
    rewards = np.array([2.0, 5.0, 3.0, 4.0] * 10)
    result = estimate(rewards, np.full(40, 0.5), np.full(40, 0.5), "ips", interval="el")
    assert 2.0 <= result.low < result.value == 3.5 < result.high <= 5.0


@st.composite
def bounded_logs(draw: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(min_value=1, max_value=60))
    reward = st.one_of(st.just(0.0), st.just(1.0), st.floats(0.0, 1.0))
    logging = st.floats(min_value=0.01, max_value=1.0)
    target = st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=1.0))
    rewards, logging_p, target_p = (
        np.array(draw(st.lists(s, min_size=n, max_size=n))) for s in (reward, logging, target)
    )
    return rewards, logging_p, np.maximum(target_p, 0.001)  # SNIPS needs one nonzero weight


@settings(max_examples=60, deadline=None)
@given(
    bounded_logs(),
    st.sampled_from(["ips", "snips"]),
    st.sampled_from(INTERVALS),
    st.floats(0.01, 0.3),
)
def test_every_interval_lies_within_the_reward_range_and_is_never_empty(
    data: tuple[np.ndarray, ...], method: Method, interval: IntervalMethod, alpha: float
) -> None:
    rewards, logging_p, target_p = data
    result = estimate(rewards, logging_p, target_p, method, alpha, interval=interval, seed=3)
    assert 0.0 <= result.low < result.high <= 1.0
    if 0.0 <= result.value <= 1.0:
        assert result.contains(result.value)


def test_the_bootstrap_is_reproducible_by_seed() -> None:
    rewards, logging_p, target_p = sparse_logs(5, 500)
    runs = [
        estimate(rewards, logging_p, target_p, "snips", interval="bootstrap", seed=seed)
        for seed in (1, 1, 2)
    ]
    assert (runs[0].low, runs[0].high) == (runs[1].low, runs[1].high)
    assert (runs[0].low, runs[0].high) != (runs[2].low, runs[2].high)


# --- Coverage on rare rewards -----------------------------------------------------------------


def test_bounded_intervals_cover_rare_rewards_where_the_clt_one_does_not() -> None:
    # Given 100 logs of 2,000 events at CTR ~0.5% with weights up to 81
    result = rare_coverage(seeds=100, sizes=(2_000,))
    rows = result["sizes"]["2000"]
    for estimator in ("ips", "snips"):
        # Then EL, the bounded normal and the bootstrap intervals cover in >= 85% of seeds
        for interval in INTERVALS:
            assert rows[estimator][interval]["coverage"] >= 0.85, (estimator, interval)
        # While the plain CLT interval covers in well under half
        assert rows[estimator]["clt"]["coverage"] <= 0.4


# --- Diagnostics ------------------------------------------------------------------------------


def test_ess_and_top_shares_on_hand_made_weights() -> None:
    # Given 200 weights: 190 of 1, 10 of 20, with rewards 1 on the heavy ones and 10 light ones
    weights = np.array([1.0] * 190 + [20.0] * 10)
    rewards = np.array([1.0] * 10 + [0.0] * 180 + [1.0] * 10)
    found = weight_diagnostics(weights, rewards)
    # Then ess = (190 + 200)^2 / (190 + 4,000)
    assert found.ess == pytest.approx(390.0**2 / 4_190.0, rel=1e-12)
    # The top 1% (2 examples) carry 40 of the 210 weighted reward, the top 10 carry 200
    assert found.top_1pct_share == pytest.approx(40.0 / 210.0, rel=1e-12)
    assert found.top_10_share == pytest.approx(200.0 / 210.0, rel=1e-12)
    assert found.warning == (
        "unreliable: effective sample size 36 of 200 events is below 100: few logged events are "
        "ones this policy would have chosen; the 10 largest weighted rewards carry 95% of the "
        "estimate "
        "(over 50%): a handful of events decide it"
    )


def test_no_warning_when_weight_is_spread_over_many_events() -> None:
    rng = np.random.default_rng(0)
    found = weight_diagnostics(rng.uniform(0.5, 1.5, 1_000), (rng.random(1_000) < 0.3) * 1.0)
    assert found.ess > 900 and found.top_10_share < 0.05 and found.warning is None


def test_estimates_carry_the_diagnostics_of_the_weights_they_use() -> None:
    rewards, logging_p, target_p = sparse_logs(1, 300)
    result = estimate(rewards, logging_p, target_p, "clipped_ips", clip=2.0)
    clipped = weight_diagnostics(np.minimum(target_p / logging_p, 2.0), rewards)
    assert (result.ess, result.top_10_share, result.warning) == (
        clipped.ess,
        clipped.top_10_share,
        clipped.warning,
    )
    assert result.interval == "normal"


# --- Bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"interval": "wilson"}, "interval"),
        ({"interval": "el", "method": "clipped_ips"}, "interval"),
        ({"reward_range": (1.0, 0.0)}, "reward_range"),
        ({"reward_range": (0.0, 0.5)}, "reward_range"),  # a reward of 1 lies outside
        ({"reward_range": (-np.inf, np.inf), "interval": "el"}, "reward_range"),
    ],
)
def test_invalid_interval_settings_raise_value_error_naming_the_argument(
    change: dict[str, Any], name: str
) -> None:
    good = {"rewards": [1.0, 0.0], "logging_p": [0.5, 0.5], "target_p": [1.0, 0.5]}
    with pytest.raises(ValueError, match=rf"^{name}:"):
        estimate(**{**good, **change})


# --- serendip evaluate ------------------------------------------------------------------------


def test_serendip_evaluate_prints_the_interval_ess_top_share_and_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a for-you log and a uniform candidate, which the log rarely agrees with
    path = tmp_path / "decisions.jsonl"
    with path.open("w", encoding="utf-8") as sink:
        write_jsonl(
            simulated_logs(load_spec(ROOT / "policies" / "for-you.yaml"), 600, seed=2), sink
        )
    spec_path = tmp_path / "uniform.yaml"
    uniform = {
        "name": "uniform",
        "slate_size": 5,
        "exploration": {"algorithm": "epsilon_greedy", "budget": 1.0},
        "cold_start": {"segments": [{"name": "all"}]},
    }
    spec_path.write_text(yaml.safe_dump(uniform), encoding="utf-8")
    # When ``serendip evaluate --interval el`` runs
    argv = ["evaluate", "--logs", str(path), "--policy", str(spec_path), "--interval", "el"]
    assert main(argv) == 0
    out = " ".join(capsys.readouterr().out.split())
    # Then it names the interval, the effective sample size and the top weights' share
    found = re.search(
        r"uniform: first-slot interval el, effective sample size (\d+) of 600 events, the 10 "
        r"largest weighted rewards carry (\d+)% of the estimate \(top 1%: (\d+)%\)",
        out,
    )
    assert found is not None, out
    assert int(found[1]) < 100
    # And warns in plain words that the estimate is unreliable
    assert f"unreliable: effective sample size {found[1]} of 600 events is below 100" in out
    # And an unknown interval is refused by the parser, naming the flag
    with pytest.raises(SystemExit):
        main(["evaluate", "--logs", str(path), "--policy", str(spec_path), "--interval", "t"])
    assert "--interval" in capsys.readouterr().err


def test_a_few_rewarded_events_deciding_the_estimate_are_warned_about_whatever_the_weights() -> (
    None
):
    # Given (as on the Open Bandit Dataset) heavy weights on unrewarded events, and two rewarded
    # events of weight 72 carrying nearly all of the weighted reward next to 3 light ones
    weights = np.array([100.0] * 20 + [72.0] * 2 + [1.0] * 2_000)
    rewards = np.array([0.0] * 20 + [1.0] * 2 + [1.0] * 3 + [0.0] * 1_997)
    found = weight_diagnostics(weights, rewards)
    # Then the share is of the largest weighted rewards (147 of 147), not of the largest weights
    # (which carry none of it), and the estimate is called unreliable
    assert found.top_10_share == pytest.approx(147.0 / 147.0)
    assert found.warning is not None and "largest weighted rewards carry 100%" in found.warning
