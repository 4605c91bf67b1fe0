"""Additive sums behind a self-normalised importance-weighted (SNIPS) estimate.

A ``Sums`` holds what the estimate and its 95% interval need, so that sums of disjoint sets of
events (time buckets, batches) add up to the sums of their union: an estimate over any window
is the estimate of its buckets' sum, with no events kept. With every weight 1 it is a plain
mean with its normal interval.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

Z = NormalDist().inv_cdf(0.975)
MIN_WEIGHT = 1e-100


@dataclass(frozen=True)
class Sums:
    """What a SNIPS estimate and its interval need, added over events."""

    n: float = 0.0
    w: float = 0.0
    wr: float = 0.0
    w2: float = 0.0
    w2r: float = 0.0
    w2r2: float = 0.0

    def __add__(self, other: Sums) -> Sums:
        return Sums(
            self.n + other.n,
            self.w + other.w,
            self.wr + other.wr,
            self.w2 + other.w2,
            self.w2r + other.w2r,
            self.w2r2 + other.w2r2,
        )

    @classmethod
    def of(cls, weights: np.ndarray, rewards: np.ndarray) -> Sums:
        """The sums over events with importance ``weights`` and ``rewards``.

        A weight below ``MIN_WEIGHT`` counts as 0: its square would underflow, and a target
        probability that small is a policy that never takes the logged action.
        """
        weights = np.where(weights < MIN_WEIGHT, 0.0, weights)
        w2 = weights * weights
        return cls(
            float(len(weights)),
            float(weights.sum()),
            float((weights * rewards).sum()),
            float(w2.sum()),
            float((w2 * rewards).sum()),
            float((w2 * rewards * rewards).sum()),
        )

    def estimate(self) -> tuple[float, float, float] | None:
        """SNIPS value and 95% interval, as ``bandit.evaluate.ope.estimate`` computes them."""
        if self.n == 0 or self.w <= 0.0:
            return None
        value = self.wr / self.w
        if self.n < 2:
            return value, -math.inf, math.inf
        # (n / W)^2 * sum w^2 (r - v)^2, each part divided by W twice first: sum w^2 <= W^2,
        # so nothing overflows however small the weights are
        spread = (
            self.w2r2 / self.w / self.w
            - 2.0 * value * (self.w2r / self.w / self.w)
            + value * value * (self.w2 / self.w / self.w)
        )
        squares = self.n * self.n * spread
        half = Z * math.sqrt(max(squares, 0.0) / (self.n - 1)) / math.sqrt(self.n)
        return value, value - half, value + half

    @classmethod
    def one(cls, weight: float, reward: float) -> Sums:
        """The sums of a single event."""
        if weight < MIN_WEIGHT:
            weight = 0.0
        w2 = weight * weight
        return cls(1.0, weight, weight * reward, w2, w2 * reward, w2 * reward * reward)

    def as_dict(self) -> dict[str, float]:
        """The sums by name (what storage keeps)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, float] | None) -> Sums:
        """Sums stored by ``as_dict`` (missing names count as 0)."""
        data = data or {}
        return cls(**{name: float(data.get(name, 0.0)) for name in cls.__dataclass_fields__})
