"""Azure Personalizer's exported logs (VW's decision-service JSON, "DSJSON") as decision records.

One line per event: the context in ``c`` (every key not starting with ``_`` is a namespace) with
the actions in ``c._multi``, the ranking ``a`` (1-based action indices) with its probabilities
``p``, the chosen action ``_label_Action`` (1-based) logged with ``_label_probability``, its cost
``_label_cost`` (Personalizer wrote minus the reward), ``EventId`` and ``Timestamp``; ``_skipLearn``
marks an event never activated. An action's id is its ``_tag`` when the app set one, else
``action-<index>``. Multi-slot lines (``c._slots``) and lines without a chosen action are
skipped with a reason; a line that is not DSJSON raises ``ValueError`` naming its number.

A converted record is a one-slot event with the logged probability and the reward of type
``reward``, so it can be evaluated offline (``serendip evaluate``) and learned as a warm start.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bandit.decision_log import (
    DecisionRecord,
    ExplorationLog,
    LoggedCandidate,
    LoggedReward,
    LoggedSlot,
)
from bandit.domain import Candidate
from bandit.serve.slate import seed_for

REWARD_TYPE = "reward"


@dataclass
class Conversion:
    """What a conversion read: records made and lines skipped, by reason."""

    converted: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


def _features(value: dict[str, Any]) -> dict[str, Any]:
    return {key: inner for key, inner in value.items() if not key.startswith("_")}


def _timestamp(text: Any, number: int) -> float:
    if not isinstance(text, str):
        raise ValueError(f"DSJSON line {number}: Timestamp is missing")
    # .NET writes seven fractional digits; Python reads at most six.
    head, dot, tail = text.removesuffix("Z").partition(".")
    fraction = tail[:6] if dot else ""
    cleaned = head + (f".{fraction}" if fraction else "") + "+00:00"
    try:
        return datetime.fromisoformat(cleaned).timestamp()
    except ValueError as exc:
        raise ValueError(f"DSJSON line {number}: Timestamp {text!r} is no date-time") from exc


def _action_id(action: dict[str, Any], index: int) -> str:
    tag = action.get("_tag")
    return str(tag) if isinstance(tag, str | int) and str(tag) else f"action-{index}"


def record_of(line: dict[str, Any], policy: str, segment: str, number: int) -> DecisionRecord | str:
    """The decision record of one DSJSON event, or why it is skipped."""
    context = line.get("c")
    if not isinstance(context, dict):
        raise ValueError(f"DSJSON line {number}: no context object 'c'")
    if context.get("_slots"):
        return "multi-slot event"
    actions = context.get("_multi")
    if not isinstance(actions, list) or not actions:
        return "no actions"
    chosen = line.get("_label_Action")
    if not isinstance(chosen, int) or not 1 <= chosen <= len(actions):
        return "no chosen action"
    probability = line.get("_label_probability")
    if not isinstance(probability, int | float) or not 0.0 < float(probability) <= 1.0:
        return "no logged probability"
    ids: list[str] = []
    candidates: list[LoggedCandidate] = []
    for index, action in enumerate(actions, start=1):
        if not isinstance(action, dict):
            raise ValueError(f"DSJSON line {number}: c._multi[{index - 1}] is no object")
        action_id = _action_id(action, index)
        if action_id in ids:
            action_id = f"{action_id}-{index}"
        ids.append(action_id)
        candidates.append(LoggedCandidate.of(Candidate(action_id, _features(action))))
    event_id = str(line.get("EventId") or f"dsjson-{number}")
    timestamp = _timestamp(line.get("Timestamp"), number)
    cost = line.get("_label_cost")
    rewards = []
    if isinstance(cost, int | float):
        rewards.append(
            LoggedReward(
                item_id=ids[chosen - 1],
                type=REWARD_TYPE,
                value=-float(cost),
                timestamp=timestamp,
                final=True,
            )
        )
    skipped = bool(line.get("_skipLearn"))
    return DecisionRecord(
        event_id=event_id,
        policy=policy,
        timestamp=timestamp,
        context=_features(context),
        segment=segment,
        candidates=candidates,
        slate=[
            LoggedSlot(
                item_id=ids[chosen - 1],
                position=1,
                probability=float(probability),
                explored=float(probability) < 1.0,
            )
        ],
        rewards=rewards,
        seed=seed_for(event_id),
        exploration=ExplorationLog(budget=0.0, rate=0.0),
        deferred=skipped,
        activated=not skipped,
    )


def read_dsjson(
    lines: Iterable[str], policy: str, segment: str, report: Conversion | None = None
) -> Iterator[DecisionRecord]:
    """Decision records of a DSJSON log, in file order; blank lines are skipped."""
    tally = report if report is not None else Conversion()
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"DSJSON line {number}: not JSON ({exc})") from exc
        if not isinstance(line, dict):
            raise ValueError(f"DSJSON line {number}: not a JSON object")
        if "_label_Action" not in line and "c" not in line:
            tally.skipped["not an event (a dangling reward or a header)"] += 1
            continue
        made = record_of(line, policy, segment, number)
        if isinstance(made, str):
            tally.skipped[made] += 1
            continue
        tally.converted += 1
        yield made
