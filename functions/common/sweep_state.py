"""Where the sweep got to (one small item on the counters table)."""

from __future__ import annotations

from dataclasses import dataclass

from pynamodb.exceptions import DoesNotExist, PynamoDBException
from pynamodb.expressions.update import Action

from functions.common.errors import StorageError
from functions.common.tables import SweepStateItem, bind

KEY = ("sweep", "state")


@dataclass(frozen=True, slots=True)
class SweepState:
    """Due events up to ``watermark`` were handed over; ``full_pass_at``: the last full pass."""

    watermark: float | None = None
    full_pass_at: float | None = None


def read() -> SweepState:
    """The sweep's state (empty before its first pass)."""
    bind()
    try:
        item = SweepStateItem.get(*KEY, consistent_read=True)
    except DoesNotExist:
        return SweepState()
    except PynamoDBException as exc:
        raise StorageError(f"sweep state unavailable: {exc.msg}") from exc
    return SweepState(
        None if item.watermark is None else float(item.watermark),
        None if item.full_pass_at is None else float(item.full_pass_at),
    )


def advance(now: float, *, full_pass: bool) -> None:
    """Record a pass that handed over every event due by ``now``."""
    bind()
    actions: list[Action] = [SweepStateItem.watermark.set(now)]
    if full_pass:
        actions.append(SweepStateItem.full_pass_at.set(now))
    try:
        SweepStateItem(*KEY).update(actions=actions)
    except PynamoDBException as exc:
        raise StorageError(f"sweep state unavailable: {exc.msg}") from exc
