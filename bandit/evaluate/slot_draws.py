"""How a candidate policy would have drawn each slot of a logged event.

``slot_distributions`` rebuilds, for one logged event, the candidate's scores, exploration
weights, masks, pacing rate and discovery slots (``_SlotDraws``), and returns the probability it
gives each logged slot: conditional on the logged earlier slots for Serendip's own logs,
marginal per position for logs of marginal propensities (``bandit.evaluate.marginals``).
"""

from __future__ import annotations

import numpy as np

from bandit.decision_log import DecisionRecord
from bandit.evaluate.marginals import DEFAULT_DRAWS, event_rng, position_marginals
from bandit.learn.learning import constraints_of
from bandit.serve.budget import ExplorationBudget
from bandit.serve.coldstart import exploration_weights
from bandit.serve.exploration import distribution
from bandit.serve.ranker import MAX_LEAD, Ranker, RankRequest
from bandit.serve.slate import SlateConstraints, allowed_mask, slot_distribution
from bandit.spec import PolicySpec


def segment_rate(spec: PolicySpec, segment: str, size: int) -> tuple[float, list[int]]:
    """The rate and discovery slots the candidate would use, at its target share."""
    target = spec.budget_for(segment)
    if target <= 0.0:
        return 0.0, []
    discovery = sorted(p for p in spec.exploration.discovery_positions if p <= size)
    budget = ExplorationBudget({segment: target}, clock=lambda: 0.0)
    return budget.rate(segment, slate_size=size, discovery_slots=len(discovery)), discovery


def slot_probabilities(ranker: Ranker, record: DecisionRecord) -> list[float]:
    """The probability the ranker's policy gives each logged slot, given the slots before it."""
    return slot_distributions(ranker, record)[0]


def slot_distributions(
    ranker: Ranker, record: DecisionRecord, draws: int = DEFAULT_DRAWS
) -> tuple[list[float], np.ndarray]:
    """``slot_probabilities`` and the policy's whole distribution over the record's candidates
    (in their order) at its first logged slot (all zeros when the record allows none there).

    For a record of conditional propensities (Serendip's own), each slot's probability is
    conditional on the logged earlier slots, as it was drawn. For one of marginal
    propensities, it is the policy's marginal probability of that item at that position
    (``bandit.evaluate.marginals``, ``draws`` Monte Carlo prefixes), and so is the distribution.
    """
    draw = _SlotDraws(ranker, record)
    slots = sorted(record.slate, key=lambda s: s.position)
    if record.propensities == "marginal":
        index = draw.index
        last = max(slot.position for slot in slots)
        rng = event_rng(record.event_id, ranker.spec.name)
        marginals = position_marginals(draw.conditional, last, len(index), draws, rng)
        probabilities = [float(marginals[s.position - 1, index[s.item_id]]) for s in slots]
        return probabilities, marginals[slots[0].position - 1]
    chosen: list[int] = []
    probabilities = []
    first = np.zeros(len(draw.index))
    for slot in slots:
        pick = draw.index[slot.item_id]
        mixed = draw.conditional(tuple(chosen), slot.position)
        if not chosen:
            first = mixed
        probabilities.append(float(mixed[pick]))
        chosen.append(pick)
    return probabilities, first


class _SlotDraws:
    """How the candidate policy would draw each slot of a logged event, given earlier slots."""

    def __init__(self, ranker: Ranker, record: DecisionRecord) -> None:
        spec = ranker.spec
        self.ranker, self.record = ranker, record
        self.candidates = [c.to_candidate() for c in record.candidates]
        self.index = {c.id: i for i, c in enumerate(self.candidates)}
        self.request = RankRequest(
            record.event_id,
            record.context,
            self.candidates,
            record.user_id,
            history=record.history,
            affinities=record.affinities,
            slot_features=record.slot_features,
        )
        self.scores = ranker.scores(self.request, record.segment)
        self.weights = exploration_weights(
            self.candidates, spec.cold_start.new_item, record.timestamp, ranker.prior
        )
        logged = constraints_of(record)
        self.constraints = SlateConstraints(
            excluded=logged.excluded,
            excluded_at=logged.excluded_at,
            categories=logged.categories,
            creators=logged.creators,
            max_per_category=spec.diversity.max_per_category,
            max_per_creator=spec.diversity.max_per_creator,
        )
        size = max(slot.position for slot in record.slate)
        if record.propensities == "conditional":
            size = len(record.slate)
        self.rate, self.discovery = segment_rate(spec, record.segment, size)
        if spec.budget_for(record.segment) == record.exploration.budget:
            # Same target: the pacing controller would have been in the logged state.
            self.rate = record.exploration.rate
        self.lead = _lead(spec, record, self.index)

    def conditional(self, chosen: tuple[int, ...], position: int | None = None) -> np.ndarray:
        """The mixed distribution of the slot at ``position`` (default: the next one) given
        the candidate indices ``chosen`` before it; all zeros where nothing is allowed.

        A conditional record's logged item that the constraints disallow gets 0 (unsupported).
        """
        position = len(chosen) + 1 if position is None else position
        allowed = allowed_mask(len(self.candidates), list(chosen), self.constraints)
        if not allowed.any():
            return np.zeros(len(self.candidates))
        slot_scores = (
            self.ranker.scores(self.request, self.record.segment, position)
            if self.record.slot_features
            else self.scores
        )
        _, mixed, _ = slot_distribution(
            slot_scores,
            self.weights,
            allowed,
            1.0 if position in self.discovery else self.rate,
            lambda s, w: distribution(self.ranker.spec.exploration, s, w),
            lead=self.lead,
        )
        return np.where(allowed, np.asarray(mixed, dtype=np.float64), 0.0)


def _lead(spec: PolicySpec, record: DecisionRecord, index: dict[str, int]) -> list[int] | None:
    """The app's order an apprentice ``spec`` would have followed on ``record``."""
    if spec.mode != "apprentice":
        return None
    order = record.baseline or [c.id for c in record.candidates]
    return [index[i] for i in dict.fromkeys(order) if i in index][:MAX_LEAD]
