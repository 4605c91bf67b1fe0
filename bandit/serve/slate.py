"""Slates drawn slot by slot, each slot with the exact probability it was drawn with.

Slot k's distribution is over the candidates still allowed: not chosen in an earlier slot, not
excluded, and under the per-category and per-creator caps. Within the allowed set, a slot mixes
the greedy choice (highest score, ties to the earliest candidate) with the exploration
distribution: ``p = (1 - rate) * greedy + rate * p_explore``. A discovery slot uses rate 1.
Whether the draw used the exploration component is recorded as ``explored``; the logged
probability is the marginal ``p`` of the chosen candidate, so the slate's probability is the
product of its slots' probabilities.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

ExploreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True, slots=True)
class SlotDraw:
    """One drawn slot: candidate index, 1-based position, exact probability, explored flag."""

    index: int
    position: int
    probability: float
    explored: bool


@dataclass(frozen=True)
class SlateConstraints:
    """What a slate must respect: exclusions, diversity caps and reserved discovery slots.

    ``excluded`` holds for every slot; ``excluded_at`` adds exclusions of one 1-based position
    (a multi-slot request that keeps some candidates out of some slots).
    """

    excluded: frozenset[int] = frozenset()
    excluded_at: Mapping[int, frozenset[int]] = field(default_factory=dict)
    categories: Sequence[str | None] = ()
    creators: Sequence[str | None] = ()
    max_per_category: int | None = None
    max_per_creator: int | None = None
    discovery_positions: Collection[int] = field(default_factory=frozenset)


def seed_for(event_id: str) -> int:
    """A 64-bit RNG seed derived from the event id, so any decision can be replayed.

    >>> seed_for("evt-1") == seed_for("evt-1")
    True
    """
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "big")


def allowed_mask(count: int, chosen: Sequence[int], constraints: SlateConstraints) -> np.ndarray:
    """Boolean mask of the candidates a slot may still draw, given earlier ``chosen`` slots."""
    mask = np.ones(count, dtype=bool)
    if constraints.excluded:
        mask[list(constraints.excluded)] = False
    here = constraints.excluded_at.get(len(chosen) + 1) if constraints.excluded_at else None
    if here:
        mask[list(here)] = False
    if chosen:
        mask[list(chosen)] = False
    _apply_cap(mask, chosen, constraints.categories, constraints.max_per_category)
    _apply_cap(mask, chosen, constraints.creators, constraints.max_per_creator)
    return mask


def _apply_cap(
    mask: np.ndarray, chosen: Sequence[int], groups: Sequence[str | None], cap: int | None
) -> None:
    if cap is None or not groups or not chosen:
        return
    used = Counter(groups[i] for i in chosen if groups[i] is not None)
    full = {group for group, n in used.items() if n >= cap}
    if full:
        for i, group in enumerate(groups):
            if group in full:
                mask[i] = False


def slot_distribution(
    scores: np.ndarray,
    weights: np.ndarray,
    allowed: np.ndarray,
    rate: float,
    explore: ExploreFn,
    *,
    lead: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """The slot's exploration and mixed distributions over all candidates, and the greedy index.

    Both vectors are zero outside ``allowed``. With ``lead`` (candidate indices in the app's
    order: apprentice mode), the slot's exploit choice is its first allowed index instead of
    the best score (the best score when none is allowed).
    """
    p_explore, greedy = _explore_and_greedy(scores, weights, allowed, rate, explore, lead=lead)
    mixed = rate * p_explore
    mixed[greedy] += 1.0 - rate
    return p_explore, mixed, greedy


def _explore_and_greedy(
    scores: np.ndarray,
    weights: np.ndarray,
    allowed: np.ndarray,
    rate: float,
    explore: ExploreFn,
    *,
    lead: Sequence[int] | None,
) -> tuple[np.ndarray, int]:
    indices = allowed.nonzero()[0]
    allowed_scores = scores[indices]
    greedy = _lead_choice(lead, allowed)
    if greedy is None:
        greedy = int(indices[allowed_scores.argmax()])
    p_explore = np.zeros(len(scores))
    if rate > 0.0:
        p_explore[indices] = explore(allowed_scores, weights[indices])
    return p_explore, greedy


def _lead_choice(lead: Sequence[int] | None, allowed: np.ndarray) -> int | None:
    if lead is None:
        return None
    return next((int(i) for i in lead if allowed[i]), None)


def best_allowed(scores: np.ndarray, allowed: np.ndarray) -> int | None:
    """The allowed index with the best score (None when nothing is allowed)."""
    indices = np.flatnonzero(allowed)
    return None if not len(indices) else int(indices[int(np.argmax(scores[indices]))])


def sample_slate(
    scores: np.ndarray,
    *,
    slate_size: int,
    rate: float,
    explore: ExploreFn,
    rng: np.random.Generator,
    constraints: SlateConstraints | None = None,
    weights: np.ndarray | None = None,
    distributions: list[np.ndarray] | None = None,
    scores_at: Callable[[int], np.ndarray] | None = None,
    lead: Sequence[int] | None = None,
) -> list[SlotDraw]:
    """Draw up to ``slate_size`` slots (fewer when the constraints run out of candidates).

    When ``distributions`` is given, each slot's whole mixed distribution over the candidates
    (the one its probability was drawn from) is appended to it, in position order. With
    ``scores_at``, position ``k`` draws from ``scores_at(k)`` instead of ``scores`` (slots
    with features of their own). With ``lead``, each slot exploits the first allowed candidate
    of that order instead of the best-scored one (``slot_distribution``).

    >>> rng = np.random.default_rng(0)
    >>> draws = sample_slate(np.array([0.1, 0.9, 0.5]), slate_size=2, rate=0.0,
    ...                      explore=lambda s, w: w / w.sum(), rng=rng)
    >>> [(d.index, d.probability, d.explored) for d in draws]
    [(1, 1.0, False), (2, 1.0, False)]
    """
    constraints = constraints or SlateConstraints()
    scores = np.asarray(scores, dtype=np.float64)
    weights = np.ones(len(scores)) if weights is None else np.asarray(weights, dtype=np.float64)
    chosen: list[int] = []
    draws: list[SlotDraw] = []
    # What ``allowed_mask`` gives, kept up to date pick by pick rather than rebuilt per slot.
    available = np.ones(len(scores), dtype=bool)
    if constraints.excluded:
        available[list(constraints.excluded)] = False
    caps = _Caps(constraints)
    for position in range(1, slate_size + 1):
        here = constraints.excluded_at.get(position) if constraints.excluded_at else None
        allowed = available
        if here:
            allowed = available.copy()
            allowed[list(here)] = False
        if not allowed.any():
            break
        slot_rate = 1.0 if position in constraints.discovery_positions else rate
        slot_scores = scores if scores_at is None else np.asarray(scores_at(position), float)
        if distributions is None:
            p_explore, greedy = _explore_and_greedy(
                slot_scores, weights, allowed, slot_rate, explore, lead=lead
            )
        else:
            p_explore, mixed, greedy = slot_distribution(
                slot_scores, weights, allowed, slot_rate, explore, lead=lead
            )
            distributions.append(mixed)
        explored = slot_rate > 0.0 and (slot_rate >= 1.0 or rng.random() < slot_rate)
        if explored:
            cumulative = np.cumsum(p_explore)
            pick = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
            pick = min(pick, len(scores) - 1)
            while not allowed[pick] or p_explore[pick] == 0.0:
                pick -= 1
        else:
            pick = greedy
        # ``mixed[pick]`` of ``slot_distribution``, the same operations without the vector.
        probability = slot_rate * p_explore[pick]
        if pick == greedy:
            probability += 1.0 - slot_rate
        chosen.append(pick)
        draws.append(SlotDraw(pick, position, float(probability), bool(explored)))
        available[pick] = False
        caps.take(pick, available)
    return draws


class _Caps:
    """Per-category and per-creator counts of a slate's picks: a group at its cap is masked."""

    def __init__(self, constraints: SlateConstraints) -> None:
        self._limits = [
            (groups, cap, Counter[str]())
            for groups, cap in (
                (constraints.categories, constraints.max_per_category),
                (constraints.creators, constraints.max_per_creator),
            )
            if cap is not None and groups
        ]
        self._arrays: dict[int, np.ndarray] = {}

    def take(self, pick: int, available: np.ndarray) -> None:
        """Count ``pick`` and clear ``available`` for every member of a group now full."""
        for which, (groups, cap, used) in enumerate(self._limits):
            group = groups[pick]
            if group is None:
                continue
            used[group] += 1
            if used[group] >= cap:
                array = self._arrays.get(which)
                if array is None:
                    array = self._arrays[which] = np.asarray(groups, dtype=object)
                available[: len(groups)] &= array != group


def slate_probability(draws: Sequence[SlotDraw]) -> float:
    """The probability of the whole ordered slate: the product of its slots' probabilities."""
    return float(np.prod([draw.probability for draw in draws])) if draws else 1.0
