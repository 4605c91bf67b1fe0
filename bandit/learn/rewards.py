"""Rewards: value posted outcomes per policy, aggregate them per slot, close events.

A policy maps reward types to weights (clicks for one surface, purchases or watch time for
another): a posted ``{type, value}`` is worth ``weight * value`` (value defaults to 1), capped
at ``max_reward``. Several rewards for one shown item aggregate as ``earliest``, ``sum`` or
``max``; shown items with none get the ``default`` reward.

One rule decides which posted rewards count, for closing, learning and metrics alike
(``counts``): a reward is late when its timestamp is past the event's reward window (which
starts when the event was shown: at rank, or at activation for deferred events) or when it came
after the event closed; a reward of a type the policy does not (or no longer) value is unknown.
Late and unknown rewards are counted and kept, never learned, and never close an event.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bandit.decision_log import DecisionRecord
from bandit.domain import Reward
from bandit.errors import FieldError
from bandit.spec import RewardSpec


def reward_value(spec: RewardSpec, reward_type: str, value: float | None = None) -> float:
    """What one posted reward is worth under ``spec``.

    >>> from bandit.spec import RewardSpec
    >>> reward_value(RewardSpec(types={"click": 1.0, "watch_seconds": 0.01}), "watch_seconds", 90)
    0.9
    """
    weight = spec.types.get(reward_type)
    if weight is None:
        known = ", ".join(sorted(spec.types))
        raise FieldError("type", f"unknown reward type {reward_type!r} (known: {known})")
    worth = weight * (1.0 if value is None else float(value))
    if spec.max_reward is not None:
        worth = min(worth, spec.max_reward)
    return worth


def is_late(reward_timestamp: float, decided_at: float, spec: RewardSpec) -> bool:
    """Whether a reward came after the event's reward wait (``decided_at`` starts the window)."""
    return reward_timestamp > decided_at + spec.wait_seconds


def counts(reward: Reward, window_start: float, spec: RewardSpec, *, flagged_late: bool) -> bool:
    """Whether a posted reward counts: not late (by time or flag) and of a type ``spec`` values.

    >>> from bandit.spec import RewardSpec
    >>> spec = RewardSpec(types={"click": 1.0}, wait_seconds=60)
    >>> counts(Reward("a", "click", 1.0, 30.0), 0.0, spec, flagged_late=False)
    True
    >>> counts(Reward("a", "click", 1.0, 1e12, final=True), 0.0, spec, flagged_late=False)
    False
    >>> counts(Reward("a", "like", 1.0, 30.0), 0.0, spec, flagged_late=False)
    False
    """
    if flagged_late or is_late(reward.timestamp, window_start, spec):
        return False
    return reward.type in spec.types


def aggregate(values: Sequence[tuple[float, float]], how: str) -> float:
    """Combine ``(timestamp, worth)`` pairs of one item: earliest, sum or max.

    >>> aggregate([(2.0, 1.0), (1.0, 5.0)], "earliest")
    5.0
    """
    if how == "earliest":
        return min(values)[1]
    if how == "max":
        return max(worth for _, worth in values)
    return sum(worth for _, worth in values)


@dataclass(frozen=True, slots=True)
class RewardOutcome:
    """Per-item rewards to learn, and how many posted rewards were late, off-slate or unknown."""

    per_item: dict[str, float]
    late: int
    orphan: int
    unknown: int = 0


def slot_rewards(
    shown: Sequence[str],
    rewards: Iterable[Reward],
    decided_at: float,
    spec: RewardSpec,
    late_ids: frozenset[int] = frozenset(),
) -> RewardOutcome:
    """The reward each shown item earns; ``late_ids`` are indices of rewards flagged late.

    ``decided_at`` starts the reward window. Rewards for items that were not shown are orphans,
    rewards of types ``spec`` does not value are unknown: both are counted, not learned.
    """
    collected: dict[str, list[tuple[float, float]]] = {}
    late = orphan = unknown = 0
    shown_set = set(shown)
    for index, reward in enumerate(rewards):
        if index in late_ids or is_late(reward.timestamp, decided_at, spec):
            late += 1
            continue
        if reward.item_id not in shown_set:
            orphan += 1
            continue
        if reward.type not in spec.types:
            unknown += 1
            continue
        worth = reward_value(spec, reward.type, reward.value)
        collected.setdefault(reward.item_id, []).append((reward.timestamp, worth))
    per_item = {
        item: aggregate(collected[item], spec.aggregation) if item in collected else spec.default
        for item in shown
    }
    return RewardOutcome(per_item, late, orphan, unknown)


def is_closed(
    shown: Sequence[str],
    rewards: Iterable[Reward],
    decided_at: float,
    now: float,
    spec: RewardSpec,
    *,
    late_ids: frozenset[int] = frozenset(),
) -> bool:
    """An event closes when a final reward came, every slot has a reward (unless the spec
    does not ``close_early``), or its wait is over.

    Only rewards that ``counts`` close an event: a far-future timestamp or an unknown type
    closes nothing. ``late_ids`` are indices of rewards flagged late.
    """
    if now >= decided_at + spec.wait_seconds:
        return True
    rewarded: set[str] = set()
    for index, reward in enumerate(rewards):
        if not counts(reward, decided_at, spec, flagged_late=index in late_ids):
            continue
        if reward.final:
            return True
        rewarded.add(reward.item_id)
    return spec.close_early and bool(shown) and rewarded.issuperset(shown)


def window_spec(record: DecisionRecord, spec: RewardSpec) -> RewardSpec:
    """``spec`` with the reward wait the event was decided under (a later change of the wait
    applies to later events only, so an event's window never moves)."""
    if record.wait_seconds is None or record.wait_seconds == spec.wait_seconds:
        return spec
    return spec.model_copy(update={"wait_seconds": record.wait_seconds})


def record_outcome(record: DecisionRecord, spec: RewardSpec) -> RewardOutcome:
    """``slot_rewards`` of a logged event, under the one lateness rule."""
    return slot_rewards(
        record.shown_ids(),
        record.core_rewards(),
        record.window_start,
        window_spec(record, spec),
        record.late_reward_indices(),
    )


def record_closed(record: DecisionRecord, now: float, spec: RewardSpec) -> bool:
    """``is_closed`` of a logged event (whether it is open in storage is the caller's concern)."""
    return is_closed(
        record.shown_ids(),
        record.core_rewards(),
        record.window_start,
        now,
        window_spec(record, spec),
        late_ids=record.late_reward_indices(),
    )


# What became of one stored reward, by the event's state once it is no longer open.
CLOSED_OUTCOMES = {"learned": "learned", "expired": "not_learned", "failed": "set_aside"}


def reward_outcomes(record: DecisionRecord, spec: RewardSpec | None, status: str) -> list[str]:
    """The outcome of each of the record's stored rewards, under the one lateness rule.

    ``late`` (after the window or after the event closed), ``orphan`` (for an item the event
    did not show), ``unknown_type`` (a type ``spec`` does not value), else by the event's
    ``status``: ``pending`` while it is open, then ``learned``, ``not_learned`` (a deferred
    event never activated) or ``set_aside`` (an event that could not be learned). Without a
    spec (the policy is gone) a reward that is not late or orphan is ``set_aside``.
    """
    shown = {slot.item_id for slot in record.slate}
    window = None if spec is None else window_spec(record, spec)
    outcomes = []
    for reward in record.rewards:
        core = reward.to_reward()
        if reward.late or (
            window is not None and is_late(core.timestamp, record.window_start, window)
        ):
            outcomes.append("late")
        elif reward.item_id not in shown:
            outcomes.append("orphan")
        elif window is None:
            outcomes.append("set_aside")
        elif reward.type not in window.types:
            outcomes.append("unknown_type")
        elif status == "open":
            outcomes.append("pending")
        else:
            outcomes.append(CLOSED_OUTCOMES.get(status, status))
    return outcomes
