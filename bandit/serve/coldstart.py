"""Cold start on purpose: a popularity prior, new-item boosts and the model/prior blend.

- New policy: while the model has learned few examples, scores lean on a popularity prior
  (reward per impression, smoothed toward the global rate); the model's weight ramps from 0 to 1
  over ``prior_examples`` learned slot examples.
- New user: the cold segment keeps a share ``cold_user_prior_weight`` of the prior in its scores
  and has its own exploration budget (see ``PolicySpec.budget_for``).
- New item: young or rarely shown items get ``boost`` weight in exploratory draws, so they reach
  a minimum exposure; their features (category, creator) let the model generalise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bandit.domain import Candidate
from bandit.spec import ColdStartSpec, NewItemSpec


@dataclass(frozen=True, slots=True)
class ItemStats:
    """Counters of one item: times shown and reward received (from the popularity counters)."""

    impressions: float = 0.0
    reward: float = 0.0


class PopularityPrior:
    """Smoothed reward-per-impression of each item, from reward counters.

    >>> prior = PopularityPrior({"a": ItemStats(100, 30), "b": ItemStats(100, 5)}, smoothing=20)
    >>> [round(x, 3) for x in prior.scores(["a", "b", "new"]).tolist()]
    [0.279, 0.071, 0.175]
    """

    def __init__(
        self,
        stats: Mapping[str, ItemStats],
        smoothing: float = 20.0,
        totals: ItemStats | None = None,
    ) -> None:
        self.stats = dict(stats)
        self.smoothing = smoothing
        # ``totals`` covers every item; without it the global rate is that of ``stats`` alone.
        self._impressions = (
            totals.impressions if totals else sum(s.impressions for s in self.stats.values())
        )
        self._rewards = totals.reward if totals else sum(s.reward for s in self.stats.values())

    @property
    def global_rate(self) -> float:
        """Reward per impression over all items (0 before any impression)."""
        return self._rewards / self._impressions if self._impressions > 0 else 0.0

    def observe(self, item_id: str, impressions: float, reward: float) -> None:
        """Add counts for one item (what the stack's popularity counters accumulate)."""
        old = self.stats.get(item_id, ItemStats())
        self.stats[item_id] = ItemStats(old.impressions + impressions, old.reward + reward)
        self._impressions += impressions
        self._rewards += reward

    def score(self, item_id: str) -> float:
        """Smoothed reward rate: ``(reward + m * global) / (impressions + m)``."""
        stats = self.stats.get(item_id)
        global_rate = self.global_rate
        if stats is None:
            return global_rate
        return (stats.reward + self.smoothing * global_rate) / (stats.impressions + self.smoothing)

    def scores(self, item_ids: Sequence[str]) -> np.ndarray:
        """Prior scores of ``item_ids`` in order (``score`` of each, in one pass)."""
        known = self.stats.get
        rate, m = self.global_rate, self.smoothing
        values = [
            rate
            if (stats := known(i)) is None
            else (stats.reward + m * rate) / (stats.impressions + m)
            for i in item_ids
        ]
        return np.array(values, dtype=np.float64)

    def impressions(self, item_id: str) -> float:
        """How often ``item_id`` has been shown (0 when unknown)."""
        stats = self.stats.get(item_id)
        return stats.impressions if stats else 0.0


def model_weight(spec: ColdStartSpec, examples_learned: int, segment: str) -> float:
    """Weight of the model's scores against the popularity prior, in [0, 1].

    >>> from bandit.spec import ColdStartSpec
    >>> model_weight(ColdStartSpec(prior_examples=100), 50, "mature")
    0.5
    >>> model_weight(ColdStartSpec(prior_examples=100, cold_user_prior_weight=0.5), 500, "cold")
    0.5
    """
    ramp = 1.0 if spec.prior_examples == 0 else min(1.0, examples_learned / spec.prior_examples)
    if segment == spec.segments[0].name and len(spec.segments) > 1:
        ramp *= 1.0 - spec.cold_user_prior_weight
    return ramp


def blend(model_scores: np.ndarray, prior_scores: np.ndarray, weight: float) -> np.ndarray:
    """``weight * model + (1 - weight) * prior`` (both estimate expected reward)."""
    if weight >= 1.0:
        return model_scores
    return weight * model_scores + (1.0 - weight) * prior_scores


def is_new_item(candidate: Candidate, spec: NewItemSpec, now: float, impressions: float) -> bool:
    """Whether ``candidate`` counts as new: young enough or shown too rarely."""
    young = (
        spec.max_age_hours is not None
        and candidate.created_at is not None
        and now - candidate.created_at <= spec.max_age_hours * 3600.0
    )
    if young:
        return True
    return spec.max_impressions is not None and impressions < spec.max_impressions


def exploration_weights(
    candidates: Sequence[Candidate], spec: NewItemSpec, now: float, prior: PopularityPrior | None
) -> np.ndarray:
    """Per-candidate weights for exploratory draws: ``boost`` for new items, 1 otherwise."""
    weights = np.ones(len(candidates))
    if spec.boost == 1.0:
        return weights
    for i, candidate in enumerate(candidates):
        seen = prior.impressions(candidate.id) if prior else 0.0
        if is_new_item(candidate, spec, now, seen):
            weights[i] = spec.boost
    return weights
