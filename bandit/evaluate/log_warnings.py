"""Traps in a decision log that replay works around, counted and reported instead of passed over.

Replay cannot always follow a log to the letter, and some logged probabilities cannot be what
the logging policy drew with. Each kind of trap is reported once, with the number of events it
touched and one example event:

- an event that shows an item missing from its own candidates, or logs a slot probability
  outside ``(0, 1]``, cannot be replayed: it is left out of the evaluation;
- a slot whose only allowed candidate (by the logged constraints) was logged with a probability
  below 1, or an exploited slot (``explored`` false) logged below ``1 - rate``, the least that
  epsilon-mixing with the logged rate leaves the greedy pick (0 on a discovery slot), is kept as
  logged, but its importance weights are suspect;
- a candidate that does not have the event's segment replays it at the policy-wide budget,
  without a segment's own budget or the cold-user prior;
- a candidate whose target for the segment equals the logged budget replays the event at the
  logged pacing rate (the controller would have been in the logged state); when its discovery
  slots differ from the logged ones, that rate was paced for other discovery slots, and the
  candidate's spend is not the one it would have had.
"""

from __future__ import annotations

from dataclasses import dataclass

from bandit.decision_log import DecisionRecord
from bandit.learn.learning import constraints_of
from bandit.serve.slate import allowed_mask
from bandit.spec import PolicySpec

TOLERANCE = 1e-9  # logged probabilities are floats: allow rounding, not a wrong value


@dataclass
class _Kind:
    text: str
    count: int
    example: str


class ReplayWarnings:
    """Each kind of trap with how many events it touched and its first example event.

    >>> warnings = ReplayWarnings()
    >>> warnings.add(("trap",), "with a trap: kept", "e-1")
    >>> warnings.add(("trap",), "with a trap: kept", "e-2")
    >>> warnings.messages()
    ["2 events with a trap: kept (e.g. event 'e-1')"]
    """

    def __init__(self) -> None:
        self._kinds: dict[tuple[str, ...], _Kind] = {}

    def add(self, key: tuple[str, ...], text: str, event_id: str, detail: str = "") -> None:
        """Count one event of the kind ``key``; ``text`` and the example come from its first."""
        kind = self._kinds.get(key)
        if kind is None:
            example = f"event {event_id!r}" + (f", {detail}" if detail else "")
            self._kinds[key] = _Kind(text, 1, example)
        else:
            kind.count += 1

    def messages(self) -> list[str]:
        """One line per kind, in the order the kinds were first met."""
        return [
            f"{kind.count} {'event' if kind.count == 1 else 'events'} {kind.text} "
            f"(e.g. {kind.example})"
            for kind in self._kinds.values()
        ]


def replayable(record: DecisionRecord, warnings: ReplayWarnings) -> bool:
    """Whether replay can use ``record``; why not, and doubts about its probabilities, go to
    ``warnings``."""
    ids = {candidate.id for candidate in record.candidates}
    missing = [slot.item_id for slot in record.slate if slot.item_id not in ids]
    if missing:
        warnings.add(
            ("missing candidate",),
            "showing an item that is not among their candidates: left out of the evaluation",
            record.event_id,
            f"item {missing[0]!r}",
        )
        return False
    invalid = [slot for slot in record.slate if not 0.0 < slot.probability <= 1.0]
    if invalid:
        warnings.add(
            ("probability out of range",),
            "with a slot probability outside (0, 1]: left out of the evaluation",
            record.event_id,
            f"slot {invalid[0].position} logged {invalid[0].probability!r}",
        )
        return False
    if record.propensities == "conditional":  # the checks below hold for conditional draws
        _check_probabilities(record, warnings)
    return True


def _check_probabilities(record: DecisionRecord, warnings: ReplayWarnings) -> None:
    index = {candidate.id: i for i, candidate in enumerate(record.candidates)}
    constraints = constraints_of(record)
    discovery = set(record.exploration.discovery_positions)
    chosen: list[int] = []
    for slot in sorted(record.slate, key=lambda s: s.position):
        allowed = allowed_mask(len(record.candidates), chosen, constraints)
        pick = index[slot.item_id]
        detail = f"slot {slot.position} logged {slot.probability:g}"
        if allowed[pick] and allowed.sum() == 1 and slot.probability < 1.0 - TOLERANCE:
            warnings.add(
                ("one allowed",),
                "with a slot whose only allowed candidate was logged with probability below 1: "
                "kept as logged",
                record.event_id,
                detail,
            )
        floor = 0.0 if slot.position in discovery else 1.0 - record.exploration.rate
        if not slot.explored and slot.probability < floor - TOLERANCE:
            warnings.add(
                ("below floor",),
                "with an exploited slot logged below 1 - rate, the least the logged exploration "
                "rate leaves the greedy pick: kept as logged",
                record.event_id,
                f"{detail} at rate {record.exploration.rate:g}",
            )
        chosen.append(pick)


def check_candidate(
    name: str,
    spec: PolicySpec,
    record: DecisionRecord,
    own: tuple[float, list[int]],
    warnings: ReplayWarnings,
) -> None:
    """Note where candidate ``name`` replays ``record`` otherwise than its spec alone says.

    ``own`` is the base rate and the discovery slots the candidate's own target gives the
    event's slate.
    """
    segment = record.segment
    if segment not in {s.name for s in spec.cold_start.segments}:
        warnings.add(
            ("unknown segment", name, segment),
            f"with segment {segment!r}, which the candidate {name!r} does not have: replayed "
            f"at its policy-wide budget {spec.budget_for(segment):g}, without a segment's own "
            "budget or the cold-user prior",
            record.event_id,
        )
    logged = record.exploration
    base_rate, discovery = own
    logged_discovery = sorted(p for p in logged.discovery_positions if p <= len(record.slate))
    if spec.budget_for(segment) == logged.budget and discovery != logged_discovery:
        warnings.add(
            ("logged pacing", name, segment),
            f"in segment {segment!r}, where the candidate {name!r} has the logged budget "
            f"{logged.budget:g} but discovery slots {discovery} instead of {logged_discovery}: "
            "replayed at the logged pacing rate, paced for the logged discovery slots, not at "
            f"its own base rate {base_rate:g}",
            record.event_id,
            f"logged rate {logged.rate:g}",
        )
