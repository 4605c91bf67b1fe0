"""Counterfactual evaluation: what would another policy have earned on the logged traffic?

Each candidate policy replays the decision log in time order with a fresh model: for every
logged event it first computes the probability it would have given each logged slot (its own
scores, exploration rate, masks and discovery slots, conditional on the logged earlier slots),
then learns the event from the log, when the logging policy learned it (see
``_LearningSchedule``). Those probabilities against the logged ones give
importance weights for off-policy estimates:

- first slot: unbiased value of the first slot (SNIPS over events by default; DM and DR take
  the candidate's whole first-slot distribution and a cross-fitted reward model fitted on the
  log, ``bandit.evaluate.reward_model``);
- slate: value of the whole slate, the sum of per-slot IPS terms (``independent_ips`` of
  ``bandit.evaluate.ope_slates``). Slot k > 1 uses probabilities conditional on the logged earlier
  slots, so it values slot k as if the earlier slots had been the logged ones: approximate even
  when slot rewards do not depend on the rest of the slate (``docs/evaluation.md``); it trades
  that bias for far less variance than the exact slate weight (a product of K ratios).

Slots the user never saw (``DecisionRecord.seen_slots``) are skipped as learning skips them: they
add nothing to the slate value (padded with probability 1 and reward 0), an event whose first
slot was unseen is left out of the first-slot estimate, and the replaying model does not learn
them. They stay earlier slots of the slots after them, whose probabilities are conditional on them.

Traps met on the way (events that cannot be replayed, logged probabilities that cannot be right,
segments a candidate lacks, pacing borrowed from the log) are counted in ``Evaluation.warnings``
(``bandit.evaluate.log_warnings``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from bandit.decision_log import DecisionRecord, LoggedSlot
from bandit.evaluate.intervals import IntervalMethod, clipped, reward_range
from bandit.evaluate.log_warnings import ReplayWarnings, check_candidate, replayable
from bandit.evaluate.ope import METHODS, Estimate, Method, estimate, interval_for
from bandit.evaluate.ope_slates import slate_estimate
from bandit.evaluate.propensity_table import PropensityTable, table_targets
from bandit.evaluate.reward_model import DEFAULT_FOLDS, fit_reward_model
from bandit.evaluate.slot_draws import segment_rate, slot_distributions
from bandit.learn.learning import learn_record
from bandit.learn.rewards import record_outcome
from bandit.serve.ranker import Ranker
from bandit.spec import PolicySpec, RewardSpec


@dataclass(frozen=True)
class FirstSlotTerms:
    """The first-slot estimate's inputs, one entry per event whose first slot was seen.

    ``reward_hat`` and ``reward_hat_target`` (DR's ``f`` and ``g``) are set when the replay
    fitted a reward model (methods ``dm`` and ``dr``).
    """

    timestamps: np.ndarray
    rewards: np.ndarray
    logged: np.ndarray
    target: np.ndarray
    reward_hat: np.ndarray | None = None
    reward_hat_target: np.ndarray | None = None


@dataclass(frozen=True)
class PolicyValue:
    """A candidate's estimated value on the log, per first slot and per slate."""

    name: str
    first_slot: Estimate
    slate: Estimate
    events: int
    unsupported: int  # events where the candidate gives a logged slot probability 0
    terms: FirstSlotTerms | None = None


@dataclass(frozen=True)
class Evaluation:
    """Every candidate's value next to what the logging policy observed."""

    candidates: list[PolicyValue]
    logged_first_slot: float
    logged_slate: float
    events: int
    # Traps met in the log, one line per kind with its count (``bandit.evaluate.log_warnings``)
    warnings: list[str] = field(default_factory=list)
    # How the log's probabilities were logged: conditional, marginal, or mixed (both kinds)
    propensities: str = "conditional"

    def best(self, by: str = "first_slot") -> tuple[PolicyValue, bool]:
        """The candidate with the highest estimate, and whether its interval clears the rest."""

        def value(candidate: PolicyValue) -> Estimate:
            return candidate.slate if by == "slate" else candidate.first_slot

        ranked = sorted(self.candidates, key=lambda v: value(v).value, reverse=True)
        top = ranked[0]
        confident = all(value(top).low > value(other).high for other in ranked[1:])
        return top, confident


def evaluate(
    records: Iterable[DecisionRecord],
    candidates: Mapping[str, PolicySpec],
    alpha: float = 0.05,
    method: Method = "snips",
    folds: int = DEFAULT_FOLDS,
    *,
    interval: IntervalMethod | None = None,
    tables: Mapping[str, PropensityTable] | None = None,
    rewards_spec: RewardSpec | None = None,
) -> Evaluation:
    """Replay ``records`` through every candidate; estimate each one's value with intervals.

    ``tables`` are policies given by their probabilities alone
    (``bandit.evaluate.propensity_table``), estimated with ``snips`` or ``ips`` next to the
    specs; their rewards are valued by ``rewards_spec`` (default: the first spec's, else a
    click worth 1), as are the logged values.

    ``interval`` is the first-slot interval method (``bandit.evaluate.intervals``; default
    ``normal``), bounded by the rewards' range.

    ``method`` estimates the first slot (``bandit.evaluate.ope``); ``dm`` and ``dr`` fit a reward
    model per candidate on the log, cross-fitted over ``folds`` folds
    (``bandit.evaluate.reward_model``). The slate value is always ``independent_ips``.
    """
    if method not in METHODS:
        raise ValueError(f"method: must be one of {', '.join(METHODS)}, got {method!r}")
    interval_for(method, interval)
    ordered = sorted((r for r in records if r.activated and r.slate), key=lambda r: r.timestamp)
    if not ordered:
        raise ValueError("the log holds no activated event with a slate")
    warnings = ReplayWarnings()
    ordered = [record for record in ordered if replayable(record, warnings)]
    if not ordered:
        raise ValueError("the log holds no replayable event: " + "; ".join(warnings.messages()))
    values = [
        _replay(name, spec, ordered, alpha, warnings, method=method, folds=folds, interval=interval)
        for name, spec in candidates.items()
    ]
    if rewards_spec is None:
        rewards_spec = next(iter(candidates.values())).rewards if candidates else RewardSpec()
    rewards = [_slot_rewards(record, rewards_spec) for record in ordered]
    for name, table in (tables or {}).items():
        values.append(
            _table_value(
                name, table, ordered, rewards, alpha=alpha, method=method, interval=interval
            )
        )
    return Evaluation(
        candidates=values,
        logged_first_slot=float(np.mean([r[0] for r in rewards if r[0] is not None])),
        logged_slate=float(np.mean([sum(v for v in r if v is not None) for r in rewards])),
        events=len(ordered),
        warnings=warnings.messages(),
        propensities=_kind(ordered),
    )


def _kind(records: Sequence[DecisionRecord]) -> str:
    kinds = {record.propensities for record in records}
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _slot_rewards(record: DecisionRecord, spec: RewardSpec) -> list[float | None]:
    """Each shown slot's reward in position order; None for a slot the user never saw."""
    outcome = record_outcome(record, spec)
    seen = set(record.seen_ids())
    return [outcome.per_item[item] if item in seen else None for item in record.shown_ids()]


def logged_first_slots(
    records: Sequence[DecisionRecord], spec: PolicySpec
) -> tuple[list[DecisionRecord], FirstSlotTerms]:
    """The activated events whose first slot was seen, in time order, and their first slots'
    rewards and logged probabilities (``target`` is the logged probability: the logging policy
    itself)."""
    ordered = sorted((r for r in records if r.activated and r.slate), key=lambda r: r.timestamp)
    kept: list[DecisionRecord] = []
    rewards: list[float] = []
    for record in ordered:
        first = _slot_rewards(record, spec.rewards)[0]
        if first is not None:
            kept.append(record)
            rewards.append(first)
    logged = np.array([_ordered(record)[0].probability for record in kept])
    terms = FirstSlotTerms(
        timestamps=np.array([record.timestamp for record in kept]),
        rewards=np.array(rewards),
        logged=logged,
        target=logged.copy(),
    )
    return kept, terms


def observe(ranker: Ranker, record: DecisionRecord, rewards: Sequence[float | None]) -> None:
    """Let a replaying ranker learn a logged event's seen slots (model and popularity prior)."""
    learn_record(ranker.model, record, ranker.spec)
    for item, reward in zip(record.shown_ids(), rewards, strict=True):
        if reward is not None:
            ranker.prior.observe(item, 1.0, reward)


def _replay(
    name: str,
    spec: PolicySpec,
    records: Sequence[DecisionRecord],
    alpha: float,
    warnings: ReplayWarnings | None = None,
    *,
    method: Method = "snips",
    folds: int = DEFAULT_FOLDS,
    interval: IntervalMethod | None = None,
) -> PolicyValue:
    ranker = Ranker(spec, clock=lambda: 0.0)
    width = max(len(record.slate) for record in records)
    rewards = np.zeros((len(records), width))
    logged = np.ones((len(records), width))
    target = np.ones((len(records), width))
    values = [_slot_rewards(record, spec.rewards) for record in records]
    first_seen = np.array([v[0] is not None for v in values])
    if not first_seen.any():
        raise ValueError("the log holds no event whose first slot was seen")
    schedule = _LearningSchedule(records)
    unsupported = 0
    # DR's f (the logged first item's predicted reward) and g (expected under the candidate)
    hats = np.zeros((len(records), 2))
    model = fit_reward_model(records, spec, folds=folds) if method in ("dm", "dr") else None
    for i, record in enumerate(records):
        for j in schedule.due_before(record):
            observe(ranker, records[j], values[j])
        probabilities, first = slot_distributions(ranker, record)
        if model is not None and first_seen[i]:
            hats[i] = model.first_slot_terms(record, first)
        if warnings is not None:
            own = segment_rate(spec, record.segment, len(record.slate))
            check_candidate(name, spec, record, own, warnings)
        for k, (slot, reward) in enumerate(zip(_ordered(record), values[i], strict=True)):
            if reward is not None:  # an unseen slot stays padded: probability 1, reward 0
                target[i, k] = probabilities[k]
                logged[i, k] = slot.probability
                rewards[i, k] = reward
        seen = zip(probabilities, values[i], strict=True)
        unsupported += any(p == 0.0 for p, reward in seen if reward is not None)
        if schedule.progressive:
            observe(ranker, record, values[i])
    if model is not None:
        model.close()
    slots = _Slots(rewards, logged, target, first_seen)
    return _value(
        name,
        records,
        slots,
        unsupported,
        alpha=alpha,
        method=method,
        interval=interval,
        hats=hats if model is not None else None,
    )


def _table_value(
    name: str,
    table: PropensityTable,
    records: Sequence[DecisionRecord],
    values: Sequence[list[float | None]],
    *,
    alpha: float,
    method: Method,
    interval: IntervalMethod | None,
) -> PolicyValue:
    """A propensity table's value on the log, as ``_replay`` values a spec."""
    if method not in ("snips", "ips"):
        raise ValueError(f"method: a propensity table is estimated by snips or ips, not {method!r}")
    width = max(len(record.slate) for record in records)
    target = table_targets(table, records, width)
    rewards, logged = np.zeros((len(records), width)), np.ones((len(records), width))
    for i, record in enumerate(records):
        for k, (slot, reward) in enumerate(zip(_ordered(record), values[i], strict=True)):
            if reward is None:  # unseen: padded as in ``_replay``
                target[i, k] = 1.0
            else:
                logged[i, k], rewards[i, k] = slot.probability, reward
    seen = np.array([v[0] is not None for v in values])
    if not seen.any():
        raise ValueError("the log holds no event whose first slot was seen")
    unsupported = int(((target == 0.0) & (logged < 1.0)).any(axis=1).sum())
    slots = _Slots(rewards, logged, target, seen)
    return _value(name, records, slots, unsupported, alpha=alpha, method=method, interval=interval)


@dataclass(frozen=True)
class _Slots:
    """Every event's slots, ``(events, width)``: rewards, logged and target probabilities (an
    unseen or absent slot padded with reward 0 and probability 1 for both), and which events'
    first slot was seen."""

    rewards: np.ndarray
    logged: np.ndarray
    target: np.ndarray
    first_seen: np.ndarray


def _value(
    name: str,
    records: Sequence[DecisionRecord],
    slots: _Slots,
    unsupported: int,
    *,
    alpha: float,
    method: Method,
    interval: IntervalMethod | None,
    hats: np.ndarray | None = None,
) -> PolicyValue:
    """The estimates of a candidate's slots: first slot by ``method``, slate by per-slot IPS."""
    seen = slots.first_seen
    f = None if hats is None else hats[seen, 0]
    g = None if hats is None else hats[seen, 1]
    terms = FirstSlotTerms(
        timestamps=np.array([r.timestamp for r in records])[seen],
        rewards=slots.rewards[seen, 0],
        logged=slots.logged[seen, 0],
        target=slots.target[seen, 0],
        reward_hat=f,
        reward_hat_target=g,
    )
    first = estimate(
        terms.rewards,
        terms.logged,
        terms.target,
        method=method,
        alpha=alpha,
        reward_hat=f,
        reward_hat_target=g,
        interval=interval,
    )
    slate = slate_estimate(
        slots.rewards, slots.logged, slots.target, method="independent_ips", alpha=alpha
    )
    return PolicyValue(
        name=name,
        first_slot=first,
        slate=_within_range(slate, slots.rewards),
        events=len(records),
        unsupported=unsupported,
        terms=terms,
    )


def _within_range(value: Estimate, rewards: np.ndarray) -> Estimate:
    """A slate value's interval kept within what a slate can earn: per slot, the rewards' range
    (``bandit.evaluate.intervals.reward_range``), times the slots."""
    low, high = reward_range(rewards.ravel(), None)
    slots = rewards.shape[1]
    bounds = (slots * min(low, 0.0), slots * high)
    inside = clipped(value.value, value.low, value.high, bounds, 0.0)
    return replace(value, low=inside[0], high=inside[1])


def _ordered(record: DecisionRecord) -> list[LoggedSlot]:
    return sorted(record.slate, key=lambda s: s.position)


class _LearningSchedule:
    """When each logged event is learned during the replay.

    Logs from the stack carry, per event, the model version that first included it
    (``learned_version``) and the version that served it (``model_version``): an event is learned
    just before the first event served by a version that includes it, so a candidate sees the
    data the logging policy had, with the same delay. Logs without versions learn each event
    right after scoring it (progressive validation).
    """

    def __init__(self, records: Sequence[DecisionRecord]) -> None:
        self.progressive = all(record.learned_version is None for record in records)
        learned = [i for i, r in enumerate(records) if r.learned_version is not None]
        self._order = sorted(
            learned,
            key=lambda i: (records[i].learned_version, records[i].timestamp, records[i].event_id),
        )
        self._records = records
        self._next = 0

    def due_before(self, record: DecisionRecord) -> list[int]:
        """Indices of the events the model that served ``record`` had learned, not yet replayed."""
        if self.progressive:
            return []
        due = []
        while self._next < len(self._order):
            index = self._order[self._next]
            version = self._records[index].learned_version
            if version is None or version > record.model_version:
                break
            due.append(index)
            self._next += 1
        return due
