"""Rewards: value posted outcomes per policy, aggregate them per slot, close events.

A policy maps reward types to weights (clicks for one surface, purchases or watch time for
another): a posted ``{type, value}`` is worth ``weight * value`` (value defaults to 1), capped
at ``max_reward``. Several rewards for one shown item aggregate as ``earliest``, ``sum`` or
``max``; shown items with none get the ``default`` reward. A reward that arrives after the
event's reward wait is late: counted and kept, never learned.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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
    """Whether a reward came after the event's reward wait."""
    return reward_timestamp > decided_at + spec.wait_seconds


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
    """Per-item rewards to learn, and how many posted rewards were late or off-slate."""

    per_item: dict[str, float]
    late: int
    orphan: int


def slot_rewards(
    shown: Sequence[str],
    rewards: Iterable[Reward],
    decided_at: float,
    spec: RewardSpec,
    late_ids: frozenset[int] = frozenset(),
) -> RewardOutcome:
    """The reward each shown item earns; ``late_ids`` are indices of rewards flagged late.

    Rewards for items that were not shown are orphans; they are counted, not learned.
    """
    collected: dict[str, list[tuple[float, float]]] = {}
    late = orphan = 0
    shown_set = set(shown)
    for index, reward in enumerate(rewards):
        if index in late_ids or is_late(reward.timestamp, decided_at, spec):
            late += 1
            continue
        if reward.item_id not in shown_set:
            orphan += 1
            continue
        worth = reward_value(spec, reward.type, reward.value)
        collected.setdefault(reward.item_id, []).append((reward.timestamp, worth))
    per_item = {
        item: aggregate(collected[item], spec.aggregation) if item in collected else spec.default
        for item in shown
    }
    return RewardOutcome(per_item, late, orphan)


def is_closed(
    shown: Sequence[str], rewards: Iterable[Reward], decided_at: float, now: float, spec: RewardSpec
) -> bool:
    """An event closes when a final reward came, every slot has a reward, or its wait is over."""
    if now >= decided_at + spec.wait_seconds:
        return True
    rewarded: set[str] = set()
    for reward in rewards:
        if is_late(reward.timestamp, decided_at, spec):
            continue
        if reward.final:
            return True
        rewarded.add(reward.item_id)
    return bool(shown) and rewarded.issuperset(shown)
