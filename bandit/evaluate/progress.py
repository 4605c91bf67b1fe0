"""Is the policy learning? The per-window sums behind the answer, and the answer.

Each learned event adds to sums that add up over events and time windows
(``bandit.evaluate.sums.Sums``). Over every slot the user saw (``DecisionRecord.seen_slots``):

- ``served``: the reward the policy earned per seen slot (every weight 1: a plain mean);
- ``explored``: the same over its exploratory slots only (its own exploration, *not* a uniform
  draw: an epsilon-greedy policy explores uniformly, SquareCB leans towards high scores).

Over the first slot, when it was seen (what the first slot earned is comparable with what
another policy would have put there; a later slot's alternatives depend on the slots before it):

- ``first``: what the policy earned in the first slot;
- ``uniform``: the value of a uniformly random pick among the candidates the first slot
  allowed, estimated from the logged probability (SNIPS, weight ``(1 / allowed) / p``);
- ``baseline``: the value of the app's own first choice (the request's ``baseline``: its first
  item the slot allowed), for events that logged one (weight ``1[logged item is it] / p``);
- ``model``: the value of the model's own best first choice when it decided
  (``DecisionRecord.model_choice``), whatever was served (weight ``1[logged item is it] / p``):
  for an apprentice policy, what the model would have earned had it ranked.

Where both the app's and the model's choices are known, ``compared`` and ``agreed`` count how
often they were the same item.

Beside them: events and slots learned, exploratory slots and the budget they were decided under
(target against realised share), and counts of what became of rewards and events.

``verdict`` turns the sums into one sentence: the policy is learning when what its first slot
earns is above a random pick's value by more than the estimates' uncertainty.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from statistics import NormalDist

from bandit.decision_log import DecisionRecord
from bandit.evaluate.sums import Sums, Z
from bandit.learn.learning import constraints_of
from bandit.learn.rewards import record_outcome
from bandit.serve.slate import allowed_mask
from bandit.spec import RewardSpec

ESTIMATES = ("served", "explored", "first", "uniform", "baseline", "model")
COUNTS = ("events", "slots", "explored_slots", "versions")
# First slots learned before a policy is said to be "learning" or "worse" (MIN_CLAIM), and
# before "not learning" rather than "too early" (MIN_VERDICT).
MIN_CLAIM = 30
MIN_VERDICT = 100
# The verdict's confidence: 99.9%, not the figures' 95%. A dashboard asks again at every
# refresh, and a policy that is no better than random must not be called "learning" one look
# in twenty.
VERDICT_Z = NormalDist().inv_cdf(1 - 0.0005)


@dataclass
class ProgressSums:
    """What one window (or one event) adds: estimate sums, counts and outcome counts."""

    estimates: dict[str, Sums] = field(default_factory=dict)
    counts: dict[str, float] = field(default_factory=dict)
    budget_target: float = 0.0  # sum over seen slots of the target share they were decided under
    last_version: int = 0

    def __add__(self, other: ProgressSums) -> ProgressSums:
        return ProgressSums(
            {
                name: self.estimates.get(name, Sums()) + other.estimates.get(name, Sums())
                for name in {*self.estimates, *other.estimates}
            },
            {
                name: self.counts.get(name, 0.0) + other.counts.get(name, 0.0)
                for name in {*self.counts, *other.counts}
            },
            self.budget_target + other.budget_target,
            max(self.last_version, other.last_version),
        )

    def count(self, name: str, times: float = 1) -> None:
        """Add ``times`` to the count ``name``."""
        if times:
            self.counts[name] = self.counts.get(name, 0.0) + times

    def add(self, name: str, sums: Sums) -> None:
        """Add ``sums`` to the estimate ``name``."""
        self.estimates[name] = self.estimates.get(name, Sums()) + sums

    def as_dict(self) -> dict[str, object]:
        """A JSON-able form (what storage keeps)."""
        return {
            "estimates": {name: s.as_dict() for name, s in sorted(self.estimates.items())},
            "counts": dict(sorted(self.counts.items())),
            "budget_target": self.budget_target,
            "last_version": self.last_version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ProgressSums:
        """The sums ``as_dict`` gave."""
        estimates = data.get("estimates") or {}
        counts = data.get("counts") or {}
        assert isinstance(estimates, dict) and isinstance(counts, dict)
        return cls(
            {name: Sums.from_dict(value) for name, value in estimates.items()},
            {name: float(value) for name, value in counts.items()},
            float(data.get("budget_target") or 0.0),  # type: ignore[arg-type]
            int(data.get("last_version") or 0),  # type: ignore[call-overload]
        )

    def estimate(self, name: str) -> tuple[float, float, float] | None:
        """The estimate ``name`` with its 95% interval, None without data."""
        sums = self.estimates.get(name)
        return None if sums is None else sums.estimate()

    @property
    def realised_share(self) -> float | None:
        """The share of seen slots that were exploratory."""
        slots = self.counts.get("slots", 0.0)
        return None if not slots else self.counts.get("explored_slots", 0.0) / slots

    @property
    def agreement(self) -> float | None:
        """The share of first slots where the model's choice was the app's."""
        compared = self.counts.get("compared", 0.0)
        return None if not compared else self.counts.get("agreed", 0.0) / compared

    @property
    def target_share(self) -> float | None:
        """The exploratory share the seen slots were decided under (their budgets' mean)."""
        slots = self.counts.get("slots", 0.0)
        return None if not slots else self.budget_target / slots


def event_progress(record: DecisionRecord, spec: RewardSpec) -> ProgressSums:
    """What one learned event adds (its seen slots, in position order)."""
    progress = ProgressSums()
    progress.count("events")
    rewards = record_outcome(record, spec).per_item
    index = {c.id: i for i, c in enumerate(record.candidates)}
    constraints = constraints_of(record)
    seen = {slot.position for slot in record.seen_slots()}
    baseline = record.baseline or []
    first = min(record.slate, key=lambda s: s.position) if record.slate else None
    for slot in sorted(record.slate, key=lambda s: s.position):
        if slot.position not in seen:
            continue
        reward = rewards.get(slot.item_id, spec.default)
        progress.count("slots")
        progress.add("served", Sums.one(1.0, reward))
        progress.budget_target += record.exploration.budget
        if slot.explored:
            progress.count("explored_slots")
            progress.add("explored", Sums.one(1.0, reward))
        if slot is not first:
            continue
        progress.add("first", Sums.one(1.0, reward))
        allowed = allowed_mask(len(record.candidates), [], constraints)
        choices = int(allowed.sum())
        if choices:
            progress.add("uniform", Sums.one((1.0 / choices) / slot.probability, reward))
        app_pick = None
        if baseline:
            app_pick = next((b for b in baseline if b in index and allowed[index[b]]), None)
            weight = 1.0 / slot.probability if app_pick == slot.item_id else 0.0
            progress.add("baseline", Sums.one(weight, reward))
        if record.model_choice is not None:
            weight = 1.0 / slot.probability if record.model_choice == slot.item_id else 0.0
            progress.add("model", Sums.one(weight, reward))
            if app_pick is not None:
                progress.count("compared")
                progress.count("agreed", app_pick == record.model_choice)
    return progress


def total(windows: Iterable[ProgressSums]) -> ProgressSums:
    """The sum of ``windows``."""
    result = ProgressSums()
    for window in windows:
        result = result + window
    return result


@dataclass(frozen=True)
class Verdict:
    """The answer to "is it learning?": a state, one sentence, and the lift behind it."""

    state: str  # learning | not_learning | worse | too_early | no_rewards
    sentence: str
    lift: tuple[float, float, float] | None  # first - uniform, with a 99.9% interval


def _half(estimate: tuple[float, float, float]) -> float:
    value, low, high = estimate
    return max(value - low, high - value) if math.isfinite(low) and math.isfinite(high) else 0.0


Interval = tuple[float, float, float]


def lift(a: Interval, b: Interval, z: float = Z) -> Interval:
    """``a - b`` with an interval of ``z`` standard errors (95% intervals ``a`` and ``b`` in,
    their errors taken as independent)."""
    half = math.hypot(_half(a), _half(b)) * z / Z
    return a[0] - b[0], a[0] - b[0] - half, a[0] - b[0] + half


def _figure(estimate: tuple[float, float, float]) -> str:
    value, low, high = estimate
    return f"{value:.4g} [{low:.4g}, {high:.4g}]"


def verdict(policy: str, sums: ProgressSums, window: str) -> Verdict:
    """Whether ``policy`` learned over ``window`` (for example "the last 24 h"), in a sentence.

    Learning: what its first slot earned beats a random pick's value with 99.9% confidence
    (``VERDICT_Z``). Worse: a random pick beats it as clearly. Not learning: enough slots and
    neither is clearly ahead. The lift returned is at that confidence.
    """
    slots = int(sums.counts.get("slots", 0))
    events = int(sums.counts.get("events", 0))
    versions = int(sums.counts.get("versions", 0))
    every = sums.estimate("served")
    served = sums.estimate("first")
    uniform = sums.estimate("uniform")
    learned = f"{events:,} events ({slots:,} slots) learned into {versions:,} model versions"
    if every is None or served is None or uniform is None:
        return Verdict("no_rewards", f"No events learned in {window}: {learned}.", None)
    if every[0] == 0.0 and every[2] <= 0.0:
        return Verdict(
            "no_rewards",
            f"No rewards in {window}: every learned slot earned 0 ({learned}); check that the "
            "app posts rewards for the events it ranks.",
            None,
        )
    firsts = int(sums.estimates["first"].n)
    difference = lift(served, uniform, VERDICT_Z)
    figures = (
        f"its first slot earned {_figure(served)} against {_figure(uniform)} for a random pick"
    )
    if firsts >= MIN_CLAIM and difference[1] > 0.0:
        share = f" (+{difference[0] / uniform[0]:.0%})" if uniform[0] > 0 else ""
        return Verdict(
            "learning",
            f"Yes, {policy} is learning in {window}: {figures}{share}; {learned}.",
            difference,
        )
    if firsts >= MIN_CLAIM and difference[2] < 0.0:
        return Verdict(
            "worse",
            f"No: {policy} does worse than a random pick in {window}: {figures}; {learned}.",
            difference,
        )
    if firsts < MIN_VERDICT:
        return Verdict(
            "too_early",
            f"Too early to say for {policy} in {window}: {figures}, from only {learned}.",
            difference,
        )
    return Verdict(
        "not_learning",
        f"Not yet: {policy} is no better than a random pick in {window}: {figures}; {learned}. "
        f"The gain, {_figure(difference)} at 99.9%, includes 0.",
        difference,
    )


def apprentice_verdict(policy: str, sums: ProgressSums, window: str) -> Verdict:
    """For an apprentice policy: would the model have done better than the app it follows?

    The model's first choice against the app's (``model`` against ``baseline``, both estimated
    from the logged probabilities), at the verdict's confidence: ``model_ahead``, ``app_ahead``,
    ``tied`` (enough events, neither clearly ahead), ``too_early`` or ``no_rewards``.
    """
    events = int(sums.counts.get("events", 0))
    every = sums.estimate("served")
    model = sums.estimate("model")
    app = sums.estimate("baseline")
    compared = int(sums.counts.get("compared", 0))
    if every is None or model is None or app is None or not compared:
        return Verdict(
            "no_rewards", f"No apprentice events learned in {window} ({events:,} events).", None
        )
    if every[0] == 0.0 and every[2] <= 0.0:
        return Verdict(
            "no_rewards",
            f"No rewards in {window}: every learned slot earned 0 ({events:,} events); check "
            "that the app posts rewards for the events it ranks.",
            None,
        )
    agreed = sums.agreement or 0.0
    difference = lift(model, app, VERDICT_Z)
    figures = (
        f"the model agreed with the app on {agreed:.0%} of {compared:,} first slots; it would "
        f"have earned {_figure(model)} there against the app's {_figure(app)}"
    )
    if compared >= MIN_CLAIM and difference[1] > 0.0:
        return Verdict(
            "model_ahead",
            f"Apprentice {policy} in {window}: {figures}. The model is ahead: set mode to live "
            "to let it rank.",
            difference,
        )
    if compared >= MIN_CLAIM and difference[2] < 0.0:
        return Verdict(
            "app_ahead",
            f"Apprentice {policy} in {window}: {figures}. The app's order is still better.",
            difference,
        )
    if compared < MIN_VERDICT:
        return Verdict(
            "too_early",
            f"Too early to say for apprentice {policy} in {window}: {figures}.",
            difference,
        )
    return Verdict(
        "tied",
        f"Apprentice {policy} in {window}: {figures}. Neither is ahead yet (the difference, "
        f"{_figure(difference)} at 99.9%, includes 0).",
        difference,
    )
