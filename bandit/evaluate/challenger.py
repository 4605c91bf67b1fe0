"""A challenger: a second spec that learns off-policy from the champion's logged decisions.

Each event the champion learned is first *evaluated* for the challenger, then learned by it
(progressive validation: the challenger is always judged on events it has not seen):

- the challenger's term: the first slot's reward, weighted by the probability the challenger's
  whole policy (scores, exploration, masks) gives the logged first item over the logged
  probability (SNIPS; ``bandit.evaluate.slot_draws.slot_probabilities``);
- the champion's term: the same reward, weight 1 (what the champion really earned there).

The challenger then learns the event's seen slots under its own spec, with the logged
probabilities. ``judge`` applies the promotion rule: promote only when the challenger's 95%
lower bound beats the champion's estimate by ``margin`` over at least ``min_events`` events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bandit.decision_log import DecisionRecord
from bandit.evaluate.slot_draws import slot_probabilities
from bandit.evaluate.sums import Sums
from bandit.learn.learning import learn_record
from bandit.learn.rewards import record_outcome
from bandit.serve.ranker import Ranker


@dataclass
class Standing:
    """The two estimates over the events evaluated so far."""

    challenger: Sums
    champion: Sums
    learned: int = 0  # events the challenger learned
    unsupported: int = 0  # events whose logged first item the challenger would never show

    def __add__(self, other: Standing) -> Standing:
        return Standing(
            self.challenger + other.challenger,
            self.champion + other.champion,
            self.learned + other.learned,
            self.unsupported + other.unsupported,
        )


def _first_reward(record: DecisionRecord, ranker: Ranker) -> float | None:
    first = min(record.slate, key=lambda s: s.position)
    if first.position not in {slot.position for slot in record.seen_slots()}:
        return None
    return record_outcome(record, ranker.spec.rewards).per_item[first.item_id]


def step(ranker: Ranker, records: Iterable[DecisionRecord]) -> Standing:
    """Evaluate, then learn, each of the champion's learned ``records`` (in learning order)
    with the challenger's ``ranker`` (its spec and model; the model learns in place)."""
    standing = Standing(Sums(), Sums())
    for record in records:
        if not record.slate:
            continue
        reward = _first_reward(record, ranker)
        if reward is not None:
            logged = min(record.slate, key=lambda s: s.position).probability
            target = slot_probabilities(ranker, record)[0]
            standing.challenger += Sums.one(target / logged, reward)
            standing.champion += Sums.one(1.0, reward)
            standing.unsupported += target == 0.0
        learn_record(ranker.model, record, ranker.spec)
        standing.learned += 1
    return standing


@dataclass(frozen=True)
class Judgement:
    """Whether to promote, and why, in a sentence with the numbers."""

    promote: bool
    reason: str


def judge(standing: Standing, *, margin: float, min_events: int) -> Judgement:
    """The promotion rule: at least ``min_events`` evaluated events and the challenger's lower
    bound above the champion's estimate plus ``margin``."""
    challenger = standing.challenger.estimate()
    champion = standing.champion.estimate()
    events = int(standing.champion.n)
    if challenger is None or champion is None:
        return Judgement(False, "no event evaluated yet")
    figures = (
        f"challenger {challenger[0]:.4g} [{challenger[1]:.4g}, {challenger[2]:.4g}] against the "
        f"champion's {champion[0]:.4g} over {events:,} events"
    )
    bar = champion[0] + margin
    if events < min_events:
        return Judgement(False, f"{figures}: waiting for {min_events:,} events")
    if challenger[1] > bar:
        return Judgement(
            True,
            f"{figures}: its lower bound {challenger[1]:.4g} beats {bar:.4g} (margin {margin:g})",
        )
    return Judgement(
        False,
        f"{figures}: its lower bound {challenger[1]:.4g} does not beat {bar:.4g} (margin "
        f"{margin:g})",
    )
