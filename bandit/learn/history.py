"""A user's history as features: what earned reward, in a namespace of its own (``H``).

The learner keeps, per user, the most recent rewarded items with their categories and creators
(``functions.common.users``). At rank time the policy's ``history`` settings turn that into a
:class:`History` snapshot: the last ``items`` rewarded item ids, and the ``categories`` and
``creators`` with the most recency-weighted reward, each weight ``decay ** age`` summed over the
rewarded events (age 0 the most recent). The snapshot is written as VW namespace ``H``:
``item=<id>`` features of weight 1 and ``category=<name>`` / ``creator=<name>`` features weighted
by their share of the weight, so a spec can cross it with the items (``-q HI``: "users who
liked this category like this item"). Namespace ``H`` cannot collide with a context namespace
(``C...``) or an item one (``I...``). The decision record logs the snapshot, so learning and
replay rebuild exactly the features the slate was drawn with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bandit.serve.features import Namespace, escape

HISTORY_NAMESPACE = "H"
MAX_ITEMS = 50  # what a profile keeps, and so the most a snapshot can use


class History(BaseModel):
    """The history snapshot one decision used (logged with it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    items: list[str] = Field(default_factory=list, max_length=MAX_ITEMS)
    categories: dict[str, float] = Field(default_factory=dict)
    creators: dict[str, float] = Field(default_factory=dict)

    @field_validator("categories", "creators")
    @classmethod
    def _weights_are_shares(cls, value: dict[str, float]) -> dict[str, float]:
        for name, weight in value.items():
            if not (math.isfinite(weight) and 0.0 <= weight <= 1.0):
                raise ValueError(f"weight of {name!r} must be a share between 0 and 1")
        return value

    @property
    def empty(self) -> bool:
        """True when the snapshot has no feature (a new user, or history off)."""
        return not (self.items or self.categories or self.creators)


@dataclass(frozen=True, slots=True)
class Rewarded:
    """One rewarded item in a user's profile, most recent last in a profile's list."""

    item_id: str
    category: str | None = None
    creator: str | None = None


def snapshot(
    rewarded: Sequence[Rewarded],
    *,
    items: int,
    categories: int,
    creators: int,
    decay: float,
) -> History:
    """The snapshot of a profile's rewarded items (oldest first), within the given sizes.

    >>> s = snapshot([Rewarded("a", "shoes"), Rewarded("b", "hats"), Rewarded("c", "hats")],
    ...              items=2, categories=1, creators=0, decay=0.5)
    >>> s.items, s.categories
    (['c', 'b'], {'hats': 1.0})
    """
    recent = list(reversed(rewarded[-MAX_ITEMS:]))
    seen: list[str] = []
    for entry in recent:
        if entry.item_id not in seen:
            seen.append(entry.item_id)
    return History(
        items=seen[:items],
        categories=_top(recent, "category", categories, decay),
        creators=_top(recent, "creator", creators, decay),
    )


def _top(recent: Sequence[Rewarded], field: str, size: int, decay: float) -> dict[str, float]:
    if size <= 0:
        return {}
    weights: dict[str, float] = {}
    for age, entry in enumerate(recent):
        value = getattr(entry, field)
        if value:
            weights[value] = weights.get(value, 0.0) + decay**age
    top = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:size]
    total = sum(weight for _, weight in top)
    return {name: round(weight / total, 4) for name, weight in top}


def history_namespace(history: History | None) -> Namespace | None:
    """The ``H`` namespace of a snapshot, or None when it has no feature.

    >>> history_namespace(History(items=["a b"], categories={"hats": 0.75}))
    ('H', ['item=a%20b', 'category=hats:0.75'])
    """
    if history is None or history.empty:
        return None
    tokens = [f"item={escape(item)}" for item in history.items]
    tokens += [f"category={escape(name)}:{weight!r}" for name, weight in history.categories.items()]
    tokens += [f"creator={escape(name)}:{weight!r}" for name, weight in history.creators.items()]
    return HISTORY_NAMESPACE, tokens
