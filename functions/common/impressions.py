"""Impressions: which slots of an event the user saw, as the app reports them.

They are kept on the event's item as a number set of 1-based positions. DynamoDB's ``ADD`` makes
every report a union with the ones before, so a repeated or retried report changes nothing. A
report also bumps the event's revision: a learner that read the event before the report cannot
mark it learned (its conditional save fails, and it reads the event again), so an impression
accepted while the event is open is always learned with it.

A report for an event that is no longer open (learned, expired or set aside) is too late: it is
counted on the event (``late_impressions``) and never learned, so no event is learned twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pynamodb.exceptions import PynamoDBException, UpdateError

from functions.common.decision_store import EventStatus, event_key
from functions.common.errors import NotFoundError, StorageError
from functions.common.tables import DecisionItem, bind


@dataclass(frozen=True, slots=True)
class ImpressionReport:
    """What a report did: the positions seen so far, or ``late`` (the event had closed)."""

    seen: list[int]
    late: bool


def record(tenant: str, event_id: str, positions: Iterable[int]) -> ImpressionReport:
    """Add ``positions`` (already checked against the event's slate) to the event's seen slots.

    The event must exist (the caller read it). If it closed meanwhile, the report is counted as
    late instead.
    """
    bind()
    item = DecisionItem(event_key(tenant, event_id))
    try:
        item.update(
            actions=[DecisionItem.seen.add(set(positions)), DecisionItem.rev.add(1)],
            condition=DecisionItem.status == EventStatus.OPEN.value,
        )
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return _count_late(item)
        raise StorageError(f"decision store unavailable: {exc.msg}") from exc
    except PynamoDBException as exc:
        raise StorageError(f"decision store unavailable: {exc.msg}") from exc
    return ImpressionReport(sorted(int(p) for p in item.seen or ()), late=False)


def _count_late(item: DecisionItem) -> ImpressionReport:
    try:
        item.update(
            actions=[DecisionItem.late_impressions.add(1)],
            condition=DecisionItem.pk.exists(),
        )
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            raise NotFoundError("event not found") from exc
        raise StorageError(f"decision store unavailable: {exc.msg}") from exc
    except PynamoDBException as exc:
        raise StorageError(f"decision store unavailable: {exc.msg}") from exc
    return ImpressionReport(sorted(int(p) for p in item.seen or ()), late=True)
