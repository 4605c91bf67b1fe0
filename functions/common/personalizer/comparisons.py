"""The built-in comparisons of an evaluation: ``Baseline`` and ``Random``, as Personalizer
defined them, on the first slot of each logged event.

- ``Baseline``: always the app's own choice (the slot's ``baselineAction``, else the first
  action the first slot allowed);
- ``Random``: a uniform draw over the actions the first slot allowed.

Each is given as SNIPS needs it (its probability for the logged first item, ``baseline`` and
``random``) and as DR needs it (its whole distribution over the event's candidates, in their
order, ``baseline_distribution`` and ``random_distribution``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bandit.decision_log import DecisionRecord
from bandit.evaluate.replay import FirstSlotTerms


def baseline(records: Sequence[DecisionRecord], logged: FirstSlotTerms) -> FirstSlotTerms:
    """Always the app's own first choice: probability 1 for it, 0 for any other."""
    target = np.array(
        [1.0 if _first(r) == _baseline_item(r) else 0.0 for r in records], dtype=np.float64
    )
    return FirstSlotTerms(logged.timestamps, logged.rewards, logged.logged, target)


def random(records: Sequence[DecisionRecord], logged: FirstSlotTerms) -> FirstSlotTerms:
    """A uniform draw over the actions the first slot allowed."""
    target = np.array([1.0 / max(len(_allowed(r)), 1) for r in records], dtype=np.float64)
    return FirstSlotTerms(logged.timestamps, logged.rewards, logged.logged, target)


def baseline_distribution(record: DecisionRecord) -> np.ndarray:
    """``baseline`` over the record's candidates, in their order: one-hot on the app's choice
    (all zeros when the first slot allowed none)."""
    item = _baseline_item(record)
    return np.array([1.0 if c.id == item else 0.0 for c in record.candidates])


def random_distribution(record: DecisionRecord) -> np.ndarray:
    """``random`` over the record's candidates, in their order: uniform over the allowed."""
    allowed = set(_allowed(record))
    share = 1.0 / max(len(allowed), 1)
    return np.array([share if c.id in allowed else 0.0 for c in record.candidates])


def _first(record: DecisionRecord) -> str:
    return min(record.slate, key=lambda s: s.position).item_id


def _allowed(record: DecisionRecord) -> list[str]:
    excluded = set(record.constraints.exclude)
    if record.constraints.exclude_by_slot:
        excluded |= set(record.constraints.exclude_by_slot[0])
    return [c.id for c in record.candidates if c.id not in excluded]


def _baseline_item(record: DecisionRecord) -> str | None:
    if record.baseline:
        return record.baseline[0]
    allowed = _allowed(record)
    return allowed[0] if allowed else None
