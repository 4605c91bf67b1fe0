"""A policy given by its probabilities alone: evaluate another system's policy on a log.

A propensity table is a CSV with a header and the columns ``item_id``, ``position`` (1-based)
and ``probability``: the policy's marginal probability of showing the item at the position,
the same in every event (a context-free policy, such as the Open Bandit Dataset's Bernoulli
Thompson sampling with its production prior). An optional ``event_id`` column gives an event's
own probabilities, which take precedence over the context-free rows. An item or position the
table does not list has probability 0.

Its estimates (``table_value``) are importance-weighted like a replayed spec's: first logged
slot with the chosen method and interval, slate by per-slot IPS. The table's probabilities are
marginals, so against a conditional log (Serendip's own) only the first slot is exact.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bandit.decision_log import DecisionRecord

COLUMNS = ("item_id", "position", "probability")


@dataclass(frozen=True)
class PropensityTable:
    """Probabilities by ``(item, position)``, and by ``(event, item, position)`` where given."""

    context_free: Mapping[tuple[str, int], float]
    per_event: Mapping[tuple[str, str, int], float]

    def probability(self, event_id: str, item_id: str, position: int) -> float:
        """The table's probability of ``item_id`` at ``position`` in the event."""
        own = self.per_event.get((event_id, item_id, position))
        if own is not None:
            return own
        return self.context_free.get((item_id, position), 0.0)

    def slot_probabilities(self, record: DecisionRecord) -> list[float]:
        """The table's probability of each logged slot, in position order."""
        slots = sorted(record.slate, key=lambda s: s.position)
        return [self.probability(record.event_id, s.item_id, s.position) for s in slots]


def load_table(path: str | Path) -> PropensityTable:
    """Read a propensity table; a bad row raises ``ValueError`` naming its line.

    Each position's probabilities must sum to at most 1 (rounding allowed) over the
    context-free rows.
    """
    context_free: dict[tuple[str, int], float] = {}
    per_event: dict[tuple[str, str, int], float] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"propensity table {path}: no column {missing[0]!r}")
        for line, row in enumerate(reader, start=2):
            try:
                position = int(row["position"])
                probability = float(row["probability"])
            except ValueError as error:
                raise ValueError(f"propensity table {path} line {line}: {error}") from error
            if position < 1 or not 0.0 <= probability <= 1.0:
                raise ValueError(
                    f"propensity table {path} line {line}: position must be >= 1 and "
                    f"probability in [0, 1], got {position} and {probability}"
                )
            event = (row.get("event_id") or "").strip()
            if event:
                per_event[(event, row["item_id"], position)] = probability
            else:
                context_free[(row["item_id"], position)] = probability
    totals: dict[int, float] = {}
    for (_, position), probability in context_free.items():
        totals[position] = totals.get(position, 0.0) + probability
    over = {p: t for p, t in totals.items() if t > 1.0 + 1e-6}
    if over:
        position, total = next(iter(over.items()))
        raise ValueError(
            f"propensity table {path}: position {position}'s probabilities sum to {total:.6f} > 1"
        )
    return PropensityTable(context_free, per_event)


def table_targets(
    table: PropensityTable, records: Sequence[DecisionRecord], width: int
) -> np.ndarray:
    """The table's probability of every logged slot, shape ``(events, width)``, padded with 1
    (an absent slot adds nothing to per-slot IPS, whose logged side is padded with 1 too)."""
    out = np.ones((len(records), width))
    for i, record in enumerate(records):
        probabilities = table.slot_probabilities(record)
        out[i, : len(probabilities)] = probabilities
    return out
