"""Off-policy evaluation: the value of a target policy estimated from logged bandit feedback.

Each logged example has the observed reward ``r_i`` of the logged action, the probability
``p_i`` the logging policy gave that action (the decision log's ``probability``) and the
probability ``q_i`` the target policy gives the same action in the same context. With the
importance weight ``w_i = q_i / p_i`` and ``n`` examples:

- ``ips``: ``V = mean(w_i * r_i)``. Unbiased when ``p_i > 0`` wherever ``q_i > 0``.
- ``clipped_ips``: ``V = mean(min(w_i, clip) * r_i)``. Less variance, biased towards the
  actions the logging policy favours (downwards for nonnegative rewards).
- ``snips``: ``V = sum(w_i * r_i) / sum(w_i)``, self-normalised. Slightly biased, consistent,
  and exactly the mean reward when target == logging.
- ``dr`` (doubly robust): ``V = mean(g_i + w_i * (r_i - f_i))`` where ``f_i`` is a reward
  model's prediction for the logged action (``reward_hat``) and ``g_i = sum_a q(a) * f(a)`` is
  its expected reward under the target policy (``reward_hat_target``). Unbiased if either the
  weights or the reward model are right; the better the model, the smaller the variance.
- ``dm`` (direct method): ``V = mean(g_i)``, the reward model's expected reward under the target
  policy alone. Low variance, biased by as much as the model is wrong. Replay fits a
  cross-fitted model for both (``bandit.evaluate.reward_model``).

Intervals are normal (CLT) intervals ``V +- z * s / sqrt(n)`` with ``z = Phi^-1(1 - alpha/2)``
and ``s`` the sample standard deviation (``n - 1`` denominator) of per-example terms:

- ips, clipped_ips, dm, dr: the terms whose mean is ``V`` (``w_i * r_i``, ...). For ips this is
  exactly vw-estimators' ``bandits.gaussian.Interval``.
- snips: the delta-method terms of the ratio estimator, ``psi_i = w_i * (r_i - V) / mean(w)``,
  which gives ``se = sqrt(n / (n - 1)) * sqrt(sum(w_i^2 * (r_i - V)^2)) / sum(w_i)``.

They are asymptotic: with heavy-tailed weights (rarely logged target actions) and few examples
they undercover; ``benchmarks/estimator_coverage.py`` measures how much. One example gives an
unbounded interval. Slate estimators are in ``bandit.evaluate.ope_slates``.

``estimate`` bounds its interval by the reward range (``reward_range``; [0, 1] when the rewards
lie in it, else their observed range) and computes it by ``interval``: ``normal`` (the above,
clipped, never narrower than the rule of three on the effective sample size; one example gets
the whole range), ``el`` (empirical likelihood; ips and snips only) or ``bootstrap``; by
default ``normal``, the choice the rare-reward simulation of ``benchmarks/interval_coverage.py``
supports. Each estimate carries the effective sample size, the share of the top weights and a
warning when it is unreliable: see ``bandit.evaluate.intervals``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from bandit.evaluate import intervals
from bandit.evaluate.intervals import IntervalMethod

Method = Literal["ips", "clipped_ips", "snips", "dm", "dr"]
METHODS: tuple[Method, ...] = ("ips", "clipped_ips", "snips", "dm", "dr")
# Chosen by the rare-reward simulation of benchmarks/interval_coverage.py: as honest as ``el``
# there and narrower, and it applies to every method.
DEFAULT_INTERVAL: IntervalMethod = "normal"
WEIGHTED: tuple[Method, ...] = ("ips", "snips")
Weights = np.ndarray | None


@dataclass(frozen=True, slots=True)
class Estimate:
    """A policy value with its ``1 - alpha`` confidence interval and the examples behind it.

    >>> Estimate(0.3, 0.2, 0.4, "ips", 100).overlaps(Estimate(0.45, 0.35, 0.55, "snips", 100))
    True
    """

    value: float
    low: float
    high: float
    method: str
    n: int
    interval: str = "normal"
    # Diagnostics (``bandit.evaluate.intervals.weight_diagnostics``); None where no weights apply.
    ess: float | None = None
    top_1pct_share: float | None = None
    top_10_share: float | None = None
    warning: str | None = None

    @property
    def width(self) -> float:
        """Width of the interval (``inf`` when it is unbounded)."""
        return self.high - self.low

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the closed interval."""
        return self.low <= value <= self.high

    def overlaps(self, other: Estimate) -> bool:
        """Whether the two intervals share a point: no evidence at this level that they differ."""
        return self.low <= other.high and other.low <= self.high


def mean_estimate(terms: np.ndarray, method: str, alpha: float = 0.05) -> Estimate:
    """The mean of per-example terms with its normal (CLT) interval.

    >>> e = mean_estimate(np.array([0.0, 1.0, 2.0, 3.0]), "ips")
    >>> round(e.value, 6), round(e.high - e.value, 6)
    (1.5, 1.265151)
    """
    return centred_estimate(float(np.mean(terms)), terms, method, alpha)


def centred_estimate(value: float, terms: np.ndarray, method: str, alpha: float) -> Estimate:
    """``value`` with the normal interval whose standard error is that of ``terms``' mean.

    >>> round(centred_estimate(0.5, np.array([1.0, -1.0]), "snips", 0.05).low, 6)
    -1.459964
    """
    check_alpha(alpha)
    n = len(terms)
    if n < 2:
        half = math.inf
    else:
        z = NormalDist().inv_cdf(1.0 - alpha / 2.0)
        half = z * float(np.std(terms, ddof=1)) / math.sqrt(n)
    return Estimate(value, value - half, value + half, method, n)


def estimate(
    rewards: ArrayLike,
    logging_p: ArrayLike,
    target_p: ArrayLike,
    method: Method = "snips",
    alpha: float = 0.05,
    *,
    clip: float = 10.0,
    reward_hat: ArrayLike | None = None,
    reward_hat_target: ArrayLike | None = None,
    interval: IntervalMethod | None = None,
    reward_range: tuple[float, float] | None = None,
    seed: int = 0,
) -> Estimate:
    """Estimate the target policy's value from logged examples (see the module docstring).

    ``interval`` picks the interval method (default ``DEFAULT_INTERVAL``),
    ``reward_range`` the bounds every reward and the interval lie in (``UNBOUNDED`` for none),
    ``seed`` the bootstrap's resamples.

    >>> e = estimate([1.0, 0.0, 1.0, 0.0], [0.5, 0.5, 0.25, 0.25], [1.0, 0.0, 0.5, 0.0])
    >>> e.value, e.n
    (1.0, 4)
    >>> round(estimate([1.0, 0.0], [0.5, 0.5], [1.0, 0.0], "ips").value, 3)
    1.0
    """
    r = reals("rewards", rewards)
    n = len(r)
    p = probabilities("logging_p", logging_p, (n,), positive=True)
    q = probabilities("target_p", target_p, (n,), positive=False)
    check_alpha(alpha)
    w = q / p
    bounds = intervals.reward_range(r, reward_range)
    chosen = interval_for(method, interval)

    def finish(normal: Estimate, top: np.ndarray, bottom: np.ndarray, used: Weights) -> Estimate:
        return bounded(
            normal, chosen, bounds, alpha, ratio=(top, bottom), weights=used, rewards=r, seed=seed
        )

    def mean(terms: np.ndarray, used: Weights = w) -> Estimate:
        return finish(mean_estimate(terms, method, alpha), terms, np.ones(n), used)

    if method == "ips":
        return mean(w * r)
    if method == "clipped_ips":
        if not (math.isfinite(clip) and clip > 0.0):
            raise ValueError(f"clip: must be a finite number > 0, got {clip}")
        return mean(np.minimum(w, clip) * r, np.minimum(w, clip))
    if method == "snips":
        total = float(w.sum())
        if total <= 0.0:
            raise ValueError("target_p: zero on every logged action, so SNIPS is undefined")
        value = float((w * r).sum()) / total
        # Influence terms of the ratio mean(w r) / mean(w); they sum to zero by construction.
        normal = centred_estimate(value, w * (r - value) / (total / n), method, alpha)
        return finish(normal, w * r, w, w)
    if method == "dm":
        if reward_hat_target is None:
            raise ValueError("reward_hat_target: required by method 'dm'")
        return mean(reals("reward_hat_target", reward_hat_target, (n,)), None)
    if method == "dr":
        if reward_hat is None:
            raise ValueError("reward_hat: required by method 'dr'")
        if reward_hat_target is None:
            raise ValueError("reward_hat_target: required by method 'dr'")
        f = reals("reward_hat", reward_hat, (n,))
        g = reals("reward_hat_target", reward_hat_target, (n,))
        return mean(g + w * (r - f))
    raise ValueError(f"method: must be one of {', '.join(METHODS)}, got {method!r}")


def interval_for(method: str, interval: str | None) -> IntervalMethod:
    """The interval method to use: ``interval`` (checked) or the method's default.

    >>> interval_for("snips", None), interval_for("snips", "el"), interval_for("dr", "bootstrap")
    ('normal', 'el', 'bootstrap')
    """
    if interval is None:
        return DEFAULT_INTERVAL
    if interval not in intervals.INTERVALS:
        raise ValueError(
            f"interval: must be one of {', '.join(intervals.INTERVALS)}, got {interval!r}"
        )
    if interval == "el" and method not in WEIGHTED:
        raise ValueError(f"interval: 'el' applies to {' and '.join(WEIGHTED)}, not {method!r}")
    return interval


def bounded(
    normal: Estimate,
    interval: IntervalMethod,
    bounds: tuple[float, float],
    alpha: float,
    *,
    ratio: tuple[np.ndarray, np.ndarray],
    weights: Weights,
    rewards: np.ndarray,
    seed: int,
) -> Estimate:
    """``normal``'s value with the ``interval`` method's bounds and the weights' diagnostics.

    ``ratio`` holds the per-example numerators and denominators whose sums' ratio is the value
    (the bootstrap's statistic); ``weights`` are the importance weights behind it (None for dm).

    >>> e = estimate([0.0] * 200, [0.5] * 200, [0.5] * 200, "snips", interval="normal")
    >>> e.low, round(e.high, 4), e.warning
    (0.0, 0.015, 'unreliable: no rewarded event has weight under this policy: the estimate is \
the lowest reward and only the upper bound says anything')
    """
    found = None if weights is None else intervals.weight_diagnostics(weights, rewards)
    floor = intervals.rule_of_three(bounds, float(normal.n) if found is None else found.ess, alpha)
    if interval == "el" and weights is not None:
        low, high = intervals.empirical_likelihood(weights, rewards, alpha, bounds)
    elif interval == "bootstrap":
        low, high = intervals.bootstrap(*ratio, alpha, bounds, seed=seed)
    else:
        low, high = normal.low, normal.high
    low, high = intervals.clipped(normal.value, low, high, bounds, floor)
    return replace(
        normal,
        low=low,
        high=high,
        interval=interval,
        ess=None if found is None else found.ess,
        top_1pct_share=None if found is None else found.top_1pct_share,
        top_10_share=None if found is None else found.top_10_share,
        warning=None if found is None else found.warning,
    )


def reals(name: str, values: ArrayLike, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``values`` as a float array of finite numbers; ``ValueError`` naming ``name`` otherwise.

    Without ``shape`` it must be a non-empty 1-D array.

    >>> reals("rewards", [1, 2]).tolist()
    [1.0, 2.0]
    """
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: not an array of numbers") from error
    if shape is None:
        if array.ndim != 1 or len(array) == 0:
            raise ValueError(f"{name}: must be a non-empty 1-D array, got shape {array.shape}")
    elif array.shape != shape:
        raise ValueError(f"{name}: must have shape {shape}, got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: must be finite")
    return array


def probabilities(
    name: str, values: ArrayLike, shape: tuple[int, ...], *, positive: bool
) -> np.ndarray:
    """Probabilities of the given shape in (0, 1] (``positive``) or [0, 1].

    >>> probabilities("logging_p", [0.0], (1,), positive=True)
    Traceback (most recent call last):
    ValueError: logging_p: must be in (0, 1]
    """
    array = reals(name, values, shape)
    low_ok = array > 0.0 if positive else array >= 0.0
    if not (low_ok & (array <= 1.0)).all():
        raise ValueError(f"{name}: must be in {'(0' if positive else '[0'}, 1]")
    return array


def check_alpha(alpha: float) -> None:
    """``ValueError`` unless ``0 < alpha < 1``.

    >>> check_alpha(0.05)
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: must be in (0, 1), got {alpha}")
