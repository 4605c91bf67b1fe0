"""Learning from logged decisions: one VW example per seen slot, learned once per event.

Slot k is learned over exactly the candidates it was drawn from (the allowed set rebuilt from
the record: candidates minus exclusions, earlier slots and capped categories or creators), with
cost = -reward and the logged probability. Every shown slot is seen unless the app reported
impressions (``DecisionRecord.seen_slots``); an unseen slot is not learned, and still counts as
an earlier slot of the ones after it: slot k's probability was drawn given every slot before it,
seen or not. Warm start is the same loop over historical logs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from bandit.decision_log import DecisionRecord, slot_context
from bandit.learn.history import history_namespace
from bandit.learn.rewards import record_outcome
from bandit.learn.taste_factors import taste_lines
from bandit.serve.cost import check_slot_work, slot_work
from bandit.serve.features import action_lines, shared_line
from bandit.serve.slate import SlateConstraints, allowed_mask
from bandit.serve.vw import VWModel
from bandit.spec import PolicySpec


@dataclass(frozen=True, slots=True)
class SlotExample:
    """One learnable slot: the actions it was drawn from, which was shown, and its outcome."""

    shared: str
    actions: list[str]
    chosen: int
    reward: float
    probability: float


def examples_work(args: Sequence[str], examples: Sequence[SlotExample]) -> int:
    """An upper bound of the work of learning ``examples`` (``bandit.serve.cost.slot_work``): the
    first slot has the most actions, so its work times the number of slots."""
    if not examples:
        return 0
    return slot_work(args, examples[0].shared, examples[0].actions) * len(examples)


def constraints_of(record: DecisionRecord) -> SlateConstraints:
    """The slate constraints a record was drawn under."""
    index = {candidate.id: i for i, candidate in enumerate(record.candidates)}
    excluded = frozenset(index[i] for i in record.constraints.exclude if i in index)
    return SlateConstraints(
        excluded=excluded,
        excluded_at=excluded_by_position(record, index),
        categories=[c.category for c in record.candidates],
        creators=[c.creator for c in record.candidates],
        max_per_category=record.constraints.max_per_category,
        max_per_creator=record.constraints.max_per_creator,
        discovery_positions=frozenset(record.exploration.discovery_positions),
    )


def excluded_by_position(
    record: DecisionRecord, index: dict[str, int]
) -> dict[int, frozenset[int]]:
    """The candidates (by index) a record kept out of single positions, by 1-based position."""
    by_slot = record.constraints.exclude_by_slot or []
    return {
        position: frozenset(index[i] for i in ids if i in index)
        for position, ids in enumerate(by_slot, start=1)
        if ids
    }


def slot_examples(record: DecisionRecord, spec: PolicySpec) -> list[SlotExample]:
    """The VW examples of a closed event, one per seen slot, in position order."""
    candidates = [c.to_candidate() for c in record.candidates]
    lines = taste_lines(action_lines(candidates), record.affinities)
    history = history_namespace(record.history)
    shared = shared_line(record.context, history)
    index = {candidate.id: i for i, candidate in enumerate(candidates)}
    constraints = constraints_of(record)
    outcome = record_outcome(record, spec.rewards)
    # The first slot has the most actions; a record ranked under a cheaper spec may be too costly.
    check_slot_work(spec.vw_args(), shared, lines)
    seen = {slot.position for slot in record.seen_slots()}
    examples: list[SlotExample] = []
    chosen: list[int] = []
    for slot in sorted(record.slate, key=lambda s: s.position):
        pick = index[slot.item_id]
        allowed = np.flatnonzero(allowed_mask(len(candidates), chosen, constraints))
        if pick not in allowed:
            # The record disagrees with its own constraints; learning it would bias the model.
            raise ValueError(f"event {record.event_id}: slot {slot.position} was not allowed")
        chosen.append(pick)
        if slot.position not in seen:
            continue
        if record.slot_features:
            slot_shared = shared_line(
                slot_context(record.context, record.slot_features, slot.position), history
            )
        else:
            slot_shared = shared
        examples.append(
            SlotExample(
                shared=slot_shared,
                actions=[lines[i] for i in allowed],
                chosen=int(np.searchsorted(allowed, pick)),
                reward=outcome.per_item[slot.item_id],
                probability=slot.probability,
            )
        )
    return examples


def learn_record(model: VWModel, record: DecisionRecord, spec: PolicySpec) -> int:
    """Learn every seen slot of one closed event; return the number of slot examples."""
    return learn_examples(model, slot_examples(record, spec))


def learn_examples(model: VWModel, examples: Iterable[SlotExample]) -> int:
    """Learn one event's slot examples (from ``slot_examples``) and count the event learned.

    Returns the number of slot examples.

    Building the examples can fail on a record that contradicts itself; building them first
    and learning after keeps such a record from leaving half an event in the model.
    """
    examples = list(examples)
    for example in examples:
        model.learn(
            example.shared,
            example.actions,
            chosen=example.chosen,
            reward=example.reward,
            probability=example.probability,
        )
    model.mark_event_learned()
    return len(examples)


def warm_start(model: VWModel, records: Iterable[DecisionRecord], spec: PolicySpec) -> int:
    """Train a new policy's model on historical decision logs; return events learned."""
    events = 0
    for record in records:
        if record.activated:
            learn_record(model, record, spec)
            events += 1
    return events
