"""The building blocks of ``bandit.evaluate.metrics``: what each shown slot earned, and who got
shown.

Per slot: was it clicked, did it convert, what reward does learning give it. Per scope: exposure
over items and creators (coverage counts, creator Gini, long-tail share) and per item the observed
click rate next to an exposure-corrected (inverse-propensity-weighted) reward, which separates an
item's own appeal from the popularity that being recommended gave it. Also the small formulas the
metrics share (ratio, nearest-rank p95, cosine, top categories, popularity so far).
``docs/metrics.md`` has every formula.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bandit.decision_log import DecisionRecord, LoggedSlot
from bandit.learn.rewards import aggregate, counts, reward_value, window_spec
from bandit.spec import RewardSpec

HEAD_SHARE = 0.2
CLICK = "click"


@dataclass(frozen=True, slots=True)
class SlotOutcome:
    """How one shown slot did: clicked, converted, rewarded at all, and the reward learned."""

    clicked: bool
    converted: bool
    success: bool
    reward: float


def slot_outcomes(
    record: DecisionRecord, spec: RewardSpec, conversion_types: frozenset[str]
) -> dict[str, SlotOutcome]:
    """The outcome of every shown item of ``record`` under the policy's reward spec.

    A click is a ``click`` reward with value > 0 or, if the policy has no ``click`` type, any
    reward worth > 0; a conversion is a reward of a ``conversion_types`` type with value > 0;
    a success is any reward worth > 0. The reward is the one learning uses.
    """
    valued: dict[str, list[tuple[str, float, float, float]]] = {
        item: [] for item in record.shown_ids()
    }
    window = window_spec(record, spec)
    for reward in record.rewards:
        if reward.item_id not in valued or not counts(
            reward.to_reward(), record.window_start, window, flagged_late=reward.late
        ):
            continue
        worth = reward_value(spec, reward.type, reward.value)
        value = 1.0 if reward.value is None else reward.value
        valued[reward.item_id].append((reward.type, value, reward.timestamp, worth))
    outcomes: dict[str, SlotOutcome] = {}
    for item, rewards in valued.items():
        success = any(worth > 0 for *_, worth in rewards)
        clicked = (
            any(kind == CLICK and value > 0 for kind, value, *_ in rewards)
            if CLICK in spec.types
            else success
        )
        converted = any(kind in conversion_types and value > 0 for kind, value, *_ in rewards)
        learned = [(at, worth) for *_, at, worth in rewards]
        worth = aggregate(learned, spec.aggregation) if learned else spec.default
        outcomes[item] = SlotOutcome(clicked, converted, success, worth)
    return outcomes


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, None when there is nothing to divide by.

    >>> ratio(3, 5), ratio(0, 0)
    (0.6, None)
    """
    return numerator / denominator if denominator else None


def p95(latencies_ms: Sequence[float]) -> float | None:
    """Nearest-rank 95th percentile: the smallest value at or above 95% of the values.

    >>> p95([float(v) for v in range(1, 101)]), p95([])
    (95.0, None)
    """
    if not latencies_ms:
        return None
    ordered = sorted(latencies_ms)
    return float(ordered[math.ceil(0.95 * len(ordered)) - 1])


def gini(values: Sequence[float]) -> float:
    """Gini coefficient of non-negative amounts: 0 = perfectly equal, ``1 - 1/n`` = one takes all.

    ``G = sum_i sum_j |x_i - x_j| / (2 n^2 mean)``, computed in sorted form; an empty or all-zero
    sequence is 0.

    >>> gini([1, 1, 1, 1]), gini([0, 0, 0, 4]), round(gini([1, 2, 3, 4]), 3)
    (0.0, 0.75, 0.25)
    """
    ordered = sorted(float(v) for v in values)
    n = len(ordered)
    total = math.fsum(ordered)
    if n == 0 or total <= 0.0:
        return 0.0
    weighted = math.fsum(rank * value for rank, value in enumerate(ordered, start=1))
    return max(0.0, 2.0 * weighted / (n * total) - (n + 1) / n)


def head_items(impressions: Mapping[str, int], head_share: float = HEAD_SHARE) -> set[str]:
    """The ``ceil(head_share * n)`` most-shown of the ``n`` shown items (ties: smaller id first).

    >>> sorted(head_items({"a": 5, "b": 1, "c": 1, "d": 1, "e": 1, "f": 1}))
    ['a', 'b']
    """
    shown = [item for item, count in impressions.items() if count > 0]
    size = math.ceil(head_share * len(shown))
    return set(sorted(shown, key=lambda item: (-impressions[item], item))[:size])


def long_tail_share(impressions: Mapping[str, int], head_share: float = HEAD_SHARE) -> float | None:
    """Share of impressions going to items outside the head (``head_items``); None if none.

    >>> long_tail_share({"a": 6, "b": 2, "c": 1, "d": 1, "e": 0})
    0.4
    """
    total = sum(impressions.values())
    if total == 0:
        return None
    head = head_items(impressions, head_share)
    return sum(count for item, count in impressions.items() if item not in head) / total


def cosine(a: Mapping[Any, float], b: Mapping[Any, float]) -> float:
    """Cosine similarity of two sparse count vectors (0 if either is empty).

    >>> round(cosine({"a": 1, "b": 1}, {"a": 2}), 3)
    0.707
    """
    dot = math.fsum(value * b.get(key, 0.0) for key, value in a.items())
    norms = math.hypot(*a.values()) * math.hypot(*b.values())
    return dot / norms if norms else 0.0


def top_categories(tastes: Mapping[str | None, int], n: int) -> set[str | None]:
    """The categories fewer than ``n`` others outrank by count (ties included).

    >>> sorted(top_categories({"a": 3, "b": 2, "c": 2, "d": 1}, 2))
    ['a', 'b', 'c']
    """
    if not tastes:
        return set()
    cutoff = sorted(tastes.values(), reverse=True)[min(n, len(tastes)) - 1]
    return {category for category, count in tastes.items() if count >= cutoff}


@dataclass(frozen=True, slots=True)
class ItemPopularity:
    """One item's observed popularity next to its exposure-corrected popularity.

    ``observed_ctr = clicks / impressions``; ``corrected = sum(reward / probability) /
    candidate_events``: the reward the item would earn per event if it were shown whenever it was
    a candidate, estimated by inverse propensity weighting over the slots that showed it.
    """

    item_id: str
    impressions: int
    clicks: int
    candidate_events: int
    observed_ctr: float
    corrected: float


@dataclass(frozen=True, slots=True)
class ExposureMetrics:
    """How exposure is spread: over the items offered, over creators, over the long tail."""

    items_shown: int
    items_offered: int
    creator_gini: float | None
    creators: int
    long_tail_share: float | None
    top_items: tuple[ItemPopularity, ...] = ()


@dataclass
class ExposureTally:
    """Accumulates exposure over events; ``result`` turns the counts into ``ExposureMetrics``."""

    impressions: Counter[str] = field(default_factory=Counter)
    clicks: Counter[str] = field(default_factory=Counter)
    weighted_reward: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    candidate_events: Counter[str] = field(default_factory=Counter)
    creator_slots: Counter[str] = field(default_factory=Counter)
    creators_offered: set[str] = field(default_factory=set)

    def add(
        self,
        offered: Iterable[tuple[str, str | None]],
        shown: Iterable[tuple[LoggedSlot, str | None, SlotOutcome]],
    ) -> None:
        """Count one event: its ``(item id, creator)`` candidates and its shown slots."""
        for item_id, creator in offered:
            self.candidate_events[item_id] += 1
            if creator is not None:
                self.creators_offered.add(creator)
        for slot, creator, outcome in shown:
            self.impressions[slot.item_id] += 1
            self.clicks[slot.item_id] += outcome.clicked
            self.weighted_reward[slot.item_id] += outcome.reward / slot.probability
            if creator is not None:
                self.creator_slots[creator] += 1
                self.creators_offered.add(creator)

    def result(self, top_n: int = 10) -> ExposureMetrics:
        """Items shown and offered, creator Gini (over creators offered), long tail, top items."""
        shown = set(self.impressions)
        offered = set(self.candidate_events) | shown
        creators = sorted(self.creators_offered)
        return ExposureMetrics(
            items_shown=len(shown),
            items_offered=len(offered),
            creator_gini=gini([self.creator_slots[c] for c in creators]) if creators else None,
            creators=len(creators),
            long_tail_share=long_tail_share(self.impressions),
            top_items=tuple(self.popularity()[:top_n]),
        )

    def popularity(self) -> list[ItemPopularity]:
        """Every shown item, most exposure-corrected popular first (then most shown, then id)."""
        rows = [
            ItemPopularity(
                item_id=item,
                impressions=count,
                clicks=self.clicks[item],
                candidate_events=self.candidate_events[item],
                observed_ctr=self.clicks[item] / count,
                corrected=self.weighted_reward[item] / max(self.candidate_events[item], 1),
            )
            for item, count in self.impressions.items()
        ]
        return sorted(rows, key=lambda r: (-r.corrected, -r.impressions, r.item_id))


class PopularitySoFar:
    """Impressions so far and the ``k`` most-shown items, kept up to date one impression at a time.

    An item is popular when fewer than ``k`` items have more impressions (ties included).

    >>> seen = PopularitySoFar(k=1)
    >>> for item in ["a", "a", "b"]:
    ...     seen.show(item)
    >>> seen.is_popular("a", seen.threshold()), seen.is_popular("b", seen.threshold())
    (True, False)
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self.impressions: Counter[str] = Counter()
        self._top: dict[str, int] = {}  # k items whose counts are the k largest

    def threshold(self) -> int:
        """The k-th largest impression count (0 while fewer than k items were shown)."""
        return min(self._top.values()) if len(self._top) >= self.k else 0

    def is_popular(self, item_id: str, threshold: int) -> bool:
        """Whether ``item_id`` is among the k most shown, given ``threshold()``."""
        count = self.impressions[item_id]
        return count > 0 and count >= threshold

    def show(self, item_id: str) -> None:
        """Count one impression."""
        self.impressions[item_id] += 1
        count = self.impressions[item_id]
        if item_id in self._top or len(self._top) < self.k:
            self._top[item_id] = count
            return
        lowest = min(self._top, key=self._top.__getitem__)
        if count > self._top[lowest]:  # counts grow by one, so only a tie can be passed
            del self._top[lowest]
            self._top[item_id] = count
