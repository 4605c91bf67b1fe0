"""Confidence intervals for off-policy estimates of rewards in a known range, and their diagnostics.

Three interval methods, each clipped to the reward range ``[r_min, r_max]`` (the true value of
any policy lies in it):

- ``normal``: the CLT interval ``V +- z * se`` (see ``bandit.evaluate.ope``), clipped to the
  range and never narrower than the rule of three on the effective sample size: at least
  ``(r_max - r_min) * ln(1 / alpha) / ess`` either side of ``V``, so a log in which no
  weighted reward was observed still gets an upper bound above ``r_min``.
- ``el``: the empirical-likelihood interval of Karampatziakis, Langford and Mineiro (2019),
  "Empirical Likelihood for Contextual Bandits", as vw-estimators computes it
  (``estimators.bandits.cressieread.Interval``, ``wmin = 0``, ``wmax`` infinite unless known):
  the range of values ``sum(q_i * w_i * r_i)`` over distributions ``q`` on the examples plus
  one unobserved example with weight 0 or ``wmax`` and any reward in the range, whose
  Cressie-Read (-2) divergence from the empirical one stays within the ``F(1, n)`` quantile,
  subject to the weights having mean 1. It needs importance weights (IPS and SNIPS), not DR's
  terms, and it gets the same rule-of-three floor (with weights all 1 and no reward it would
  otherwise collapse onto 0).
- ``bootstrap``: the percentile bootstrap of the estimator, resampling examples with a fixed
  seed, each resample's estimate clipped to the range, with the same rule-of-three floor as
  ``normal``.

Diagnostics beside every estimate: the effective sample size ``ess = (sum w)^2 / sum w^2``, the
share of the total weighted reward ``sum |w_i r_i|`` carried by the examples with the largest 1%
and the largest 10 weights, and a plain-language warning when the estimate is unreliable.
``benchmarks/interval_coverage.py`` measures each method's coverage on rare-reward logs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np

IntervalMethod = Literal["el", "normal", "bootstrap"]
INTERVALS: tuple[IntervalMethod, ...] = ("el", "normal", "bootstrap")
# A reward range for rewards with no known bounds: plain CLT or unclipped bootstrap intervals.
UNBOUNDED: tuple[float, float] = (-math.inf, math.inf)
MIN_ESS = 100.0
MAX_TOP_SHARE = 0.5
TOP_COUNT = 10
RESAMPLES = 1_000
# Resampling a log whose examples take few distinct values draws counts per distinct value.
_RESAMPLE_CHUNK = 100
_ATOL = 1e-9


@dataclass(frozen=True, slots=True)
class Diagnostics:
    """How much an estimate rests on a few heavily weighted examples.

    >>> weight_diagnostics(np.array([1.0, 1.0, 2.0]), np.array([1.0, 0.0, 1.0])).ess
    2.6666666666666665
    """

    ess: float
    top_1pct_share: float
    top_10_share: float
    warning: str | None


def reward_range(rewards: np.ndarray, given: tuple[float, float] | None) -> tuple[float, float]:
    """The reward range: ``given`` (checked), else [0, 1] when the rewards lie in it, else theirs.

    >>> reward_range(np.array([0.0, 1.0]), None), reward_range(np.array([-1.0, 3.0]), None)
    ((0.0, 1.0), (-1.0, 3.0))
    """
    if given is None:
        low, high = float(rewards.min()), float(rewards.max())
        return (0.0, 1.0) if low >= 0.0 and high <= 1.0 else (low, high)
    low, high = float(given[0]), float(given[1])
    if math.isnan(low) or math.isnan(high) or not low < high:
        raise ValueError(f"reward_range: must be (low, high) with low < high, got {given}")
    if rewards.min() < low or rewards.max() > high:
        raise ValueError(
            f"reward_range: rewards {rewards.min():g}..{rewards.max():g} lie outside "
            f"[{low:g}, {high:g}]"
        )
    return low, high


def weight_diagnostics(weights: np.ndarray, rewards: np.ndarray) -> Diagnostics:
    """Effective sample size, top-weight shares of ``sum |w r|`` and the warning, if any.

    The shares are of the events whose ``|w r|`` is largest (ties broken towards larger weights):
    how much of the estimate the fewest events decide, never understated.

    >>> d = weight_diagnostics(np.array([1.0] * 99 + [100.0]), np.array([1.0] * 100))
    >>> round(d.ess, 2), round(d.top_1pct_share, 4), d.warning is not None
    (3.92, 0.5025, True)
    """
    n = len(weights)
    square = float(np.sum(weights**2))
    ess = float(np.sum(weights)) ** 2 / square if square > 0.0 else 0.0
    carried = np.abs(weights * rewards)
    total = float(carried.sum())
    order = np.lexsort((weights, carried))[::-1]

    def share(count: int) -> float:
        return float(carried[order[:count]].sum()) / total if total > 0.0 else 0.0

    top_1pct, top_10 = share(max(1, math.ceil(0.01 * n))), share(min(TOP_COUNT, n))
    return Diagnostics(ess, top_1pct, top_10, _warning(n, ess, top_10, total))


def _warning(n: int, ess: float, top_10: float, total: float) -> str | None:
    reasons = []
    if ess < MIN_ESS:
        reasons.append(
            f"effective sample size {ess:.0f} of {n:,} events is below {MIN_ESS:.0f}: "
            "few logged events are ones this policy would have chosen"
        )
    if top_10 > MAX_TOP_SHARE:
        reasons.append(
            f"the {min(TOP_COUNT, n)} largest weighted rewards carry {top_10:.0%} of the estimate "
            f"(over {MAX_TOP_SHARE:.0%}): a handful of events decide it"
        )
    if total == 0.0:
        reasons.append(
            "no rewarded event has weight under this policy: the estimate is the lowest "
            "reward and only the upper bound says anything"
        )
    return "unreliable: " + "; ".join(reasons) if reasons else None


def clipped(
    value: float, low: float, high: float, bounds: tuple[float, float], floor: float
) -> tuple[float, float]:
    """``[low, high]`` widened to at least ``floor`` either side of ``value`` (taken within
    ``bounds``: an IPS value can leave the range, the policy's value cannot), within ``bounds``.

    >>> clipped(0.0, 0.0, 0.0, (0.0, 1.0), 0.03)
    (0.0, 0.03)
    >>> clipped(5.3, 4.1, 6.5, (0.0, 1.0), 0.2)
    (0.8, 1.0)
    """
    inside = min(max(value, bounds[0]), bounds[1])
    low, high = min(low, inside - floor), max(high, inside + floor)
    return min(max(low, bounds[0]), bounds[1]), max(min(high, bounds[1]), bounds[0])


def rule_of_three(bounds: tuple[float, float], ess: float, alpha: float) -> float:
    """The narrowest half-width: ``(r_max - r_min) * ln(1 / alpha) / ess``; 0 without bounds.

    >>> round(rule_of_three((0.0, 1.0), 100.0, 0.05), 6)
    0.029957
    """
    span = bounds[1] - bounds[0]
    if not math.isfinite(span):
        return 0.0
    return span if ess <= 0.0 else min(span, span * math.log(1.0 / alpha) / ess)


def f_quantile(alpha: float, dfd: float) -> float:
    """Upper ``alpha`` quantile of the F(1, dfd) distribution: the squared t quantile.

    The t quantile is exact for 1 and 2 degrees of freedom and Hill's (1970) expansion in
    ``1 / dfd`` beyond (relative error below 3e-3 from 3 degrees of freedom, 1e-5 from 10).

    >>> round(f_quantile(0.05, 1e9), 4)
    3.8415
    """
    p = 1.0 - alpha / 2.0
    if dfd <= 1.0:
        t = math.tan(math.pi * (p - 0.5))
    elif dfd <= 2.0:
        t = (2.0 * p - 1.0) / math.sqrt(2.0 * p * (1.0 - p))
    else:
        z = NormalDist().inv_cdf(p)
        terms = (
            (z**3 + z) / 4.0,
            (5 * z**5 + 16 * z**3 + 3 * z) / 96.0,
            (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384.0,
            (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160.0,
        )
        t = z + sum(term / dfd ** (k + 1) for k, term in enumerate(terms))
    return t * t


def empirical_likelihood(
    weights: np.ndarray,
    rewards: np.ndarray,
    alpha: float,
    bounds: tuple[float, float],
    max_weight: float = math.inf,
) -> tuple[float, float]:
    """The empirical-likelihood ``1 - alpha`` interval of the value (see the module docstring).

    ``max_weight`` is the largest weight the policies can produce (vw-estimators' ``wmax``);
    infinite when unknown, which is always valid and wider.

    >>> weights = np.array([0.5, 1.5] * 50)
    >>> low, high = empirical_likelihood(weights, np.zeros(100), 0.05, (0.0, 1.0))
    >>> low, round(high, 4)
    (0.0, 0.0852)
    """
    r_min, r_max = bounds
    if not (math.isfinite(r_min) and math.isfinite(r_max)):
        raise ValueError("reward_range: the 'el' interval needs finite reward bounds")
    w_max = max(max_weight, float(weights.max()))
    n = float(len(weights))
    sums = (
        float(weights.sum()),
        float(np.sum(weights**2)),
        float(np.sum(weights * rewards)),
        float(np.sum(weights**2 * rewards)),
        float(np.sum((weights * rewards) ** 2)),
    )
    unseen = w_max if sums[0] < n else 0.0  # the unobserved example's weight at the optimum
    if math.isinf(unseen):
        g_star = 1.0 + 1.0 / n
    else:
        a, b = (unseen + sums[0]) / (1.0 + n), (unseen**2 + sums[1]) / (1.0 + n)
        g_star = (1.0 + n) * (a - 1.0) ** 2 / (b - a * a)
    phi = (-g_star - f_quantile(alpha, n)) / (2.0 * (1.0 + n))
    result = []
    for r, sign in ((r_min, 1.0), (r_max, -1.0)):
        candidates = [_el_bound(n, sums, phi, unseen=w, r=r, sign=sign) for w in (0.0, w_max)]
        found = [c for c in candidates if c is not None]
        best = min(found) if found else r_min
        result.append(min(r_max, max(r_min, sign * best)))
    return result[0], result[1]


def _el_bound(
    n: float, sums: tuple[float, ...], phi: float, *, unseen: float, r: float, sign: float
) -> float | None:
    """One candidate bound: the unobserved example has weight ``unseen`` and reward ``r``."""
    sum_w, sum_w2, sum_wr, sum_w2r, sum_w2r2 = sums
    if math.isinf(unseen):
        x = sign * (r + (sum_wr - sum_w * r) / n)
        y = (r * sum_w - sum_wr) ** 2 / (n * (1.0 + n)) - (
            r * r * sum_w2 - 2.0 * r * sum_w2r + sum_w2r2
        ) / (1.0 + n)
        z = phi + 1.0 / (2.0 * n)
    else:
        bar_w, bar_w2 = (unseen + sum_w) / (1.0 + n), (unseen**2 + sum_w2) / (1.0 + n)
        bar_wr = sign * (unseen * r + sum_wr) / (1.0 + n)
        bar_w2r = sign * (unseen**2 * r + sum_w2r) / (1.0 + n)
        bar_w2r2 = (unseen**2 * r * r + sum_w2r2) / (1.0 + n)
        spread = bar_w2 - bar_w**2
        if spread <= 0.0:
            return None
        x = bar_wr + (1.0 - bar_w) * (bar_w2r - bar_w * bar_wr) / spread
        y = (bar_w2r - bar_w * bar_wr) ** 2 / spread - (bar_w2r2 - bar_wr**2)
        z = phi + 0.5 * (1.0 - bar_w) ** 2 / spread
    if math.isclose(y * z, 0.0, abs_tol=_ATOL * _ATOL):
        return x - math.sqrt(2.0) * _ATOL
    if z <= 0.0 and y * z >= 0.0:
        return x - math.sqrt(2.0 * y * z)
    return None


def bootstrap(
    numerators: np.ndarray,
    denominators: np.ndarray,
    alpha: float,
    bounds: tuple[float, float],
    *,
    seed: int = 0,
    resamples: int = RESAMPLES,
) -> tuple[float, float]:
    """Percentile interval of ``sum(a) / sum(b)`` over resampled examples, each clipped to bounds.

    IPS is ``a = w r, b = 1``, SNIPS ``a = w r, b = w``. A resample with ``sum(b) = 0`` (no
    weight at all) counts as the lowest reward (is left out when there is no lowest reward).

    >>> low, high = bootstrap(np.array([0.0, 1.0] * 50), np.ones(100), 0.05, (0.0, 1.0))
    >>> round(low, 2), round(high, 2)
    (0.4, 0.6)
    """
    n = len(numerators)
    rng = np.random.default_rng(seed)
    pairs = np.stack([numerators, denominators], axis=1)
    distinct, inverse = np.unique(pairs, axis=0, return_inverse=True)
    sizes = np.bincount(inverse.reshape(-1), minlength=len(distinct))
    values = np.empty(resamples)
    empty = bounds[0] if math.isfinite(bounds[0]) else math.nan
    for start in range(0, resamples, _RESAMPLE_CHUNK):
        count = min(_RESAMPLE_CHUNK, resamples - start)
        if 4 * len(distinct) < n:  # counts per distinct example: exact and fast
            counts = rng.multinomial(n, sizes / n, size=count).astype(np.float64)
            top, bottom = counts @ distinct[:, 0], counts @ distinct[:, 1]
        else:
            picks = rng.integers(0, n, (count, n))
            top, bottom = numerators[picks].sum(axis=1), denominators[picks].sum(axis=1)
        safe = np.where(bottom > 0.0, bottom, 1.0)
        values[start : start + count] = np.where(bottom > 0.0, top / safe, empty)
    values = np.clip(values, bounds[0], bounds[1])
    low, high = np.nanquantile(values, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)
