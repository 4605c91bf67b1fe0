"""User profiles: interaction counts (maturity segments) and what recently earned reward.

A profile keeps the user's learned-event count and the last ``MAX_ITEMS`` rewarded items with
their category and creator (``rewarded``, oldest first), from which rank builds the
history features of policies that use them (``bandit.learn.history``); ``recent_categories`` keeps
the last ``RECENT_CATEGORIES`` rewarded categories as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pynamodb.exceptions import DoesNotExist, PynamoDBException, TransactWriteError
from pynamodb.transactions import TransactWrite
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from bandit.learn.history import MAX_ITEMS, Rewarded
from functions.common.errors import StorageError
from functions.common.tables import UserItem, bind, transaction_connection

RECENT_CATEGORIES = 50
MAX_TRANSACTION_ITEMS = 100
WRITE_ATTEMPTS = 5


def _key(tenant: str, user_id: str) -> str:
    return f"{tenant}#{user_id}"


@dataclass(frozen=True, slots=True)
class Profile:
    """What rank reads of a user: the learned-event count and the rewarded items, oldest first."""

    interactions: int = 0
    rewarded: tuple[Rewarded, ...] = ()


def profile(tenant: str, user_id: str | None) -> Profile:
    """The user's profile (empty for unknown or anonymous users), in one read."""
    if not user_id:
        return Profile()
    bind()
    try:
        item = UserItem.get(_key(tenant, user_id))
    except DoesNotExist:
        return Profile()
    except PynamoDBException as exc:
        raise StorageError(f"user profiles unavailable: {exc.msg}") from exc
    return Profile(int(item.interactions), tuple(_rewarded(item)))


def interactions(tenant: str, user_id: str | None) -> int:
    """How many events of this user have been learned (0 for unknown or anonymous users)."""
    return profile(tenant, user_id).interactions


def record_interaction(
    tenant: str, user_id: str, rewarded: Sequence[Rewarded], events: int = 1
) -> None:
    """Count ``events`` learned events for one user (see ``record_interactions``)."""
    record_interactions(tenant, {user_id: (events, list(rewarded))})


def record_interactions(tenant: str, learned: Mapping[str, tuple[int, Sequence[Rewarded]]]) -> None:
    """Add learned events and rewarded items to many users' profiles at once.

    ``learned`` maps a user id to (events learned, the items that earned reward, oldest first).
    Profiles are read 100 per request and written 100 per transaction, each conditional on the
    version read (learners of different policies may write one user at once: the loser reads
    again), so the counts are exact at two requests per hundred users. A profile keeps the last
    ``MAX_ITEMS`` rewarded items and the last ``RECENT_CATEGORIES`` rewarded categories.
    """
    if not learned:
        return
    bind()
    keys = {_key(tenant, user_id): change for user_id, change in learned.items()}

    def write_pending() -> None:
        current = {item.pk: item for item in UserItem.batch_get(list(keys))}
        pending = list(keys.items())
        for start in range(0, len(pending), MAX_TRANSACTION_ITEMS):
            try:
                with TransactWrite(connection=transaction_connection()) as transaction:
                    for key, (events, rewarded) in pending[start : start + MAX_TRANSACTION_ITEMS]:
                        transaction.save(_updated(current.get(key), key, events, rewarded))
            except TransactWriteError as exc:
                if any(
                    reason is not None and reason.code == "ConditionalCheckFailed"
                    for reason in exc.cancellation_reasons or []
                ):
                    raise _ChangedMeanwhileError from exc
                raise
            for key, _ in pending[start : start + MAX_TRANSACTION_ITEMS]:
                keys.pop(key)  # written: a later attempt leaves it alone

    # Another learner wrote one of these users meanwhile: back off, read them again.
    retrying = Retrying(
        stop=stop_after_attempt(WRITE_ATTEMPTS),
        wait=wait_random_exponential(multiplier=0.02, max=0.5),
        retry=retry_if_exception_type(_ChangedMeanwhileError),
    )
    try:
        retrying(write_pending)
    except RetryError as exc:
        raise StorageError(
            f"user profiles changed concurrently {WRITE_ATTEMPTS} times; "
            f"{len(keys)} of {len(learned)} not updated"
        ) from exc
    except PynamoDBException as exc:
        raise StorageError(f"user profiles unavailable: {exc.msg}") from exc


class _ChangedMeanwhileError(Exception):
    """A profile changed between our read and our conditional write."""


def _updated(
    item: UserItem | None, key: str, events: int, rewarded: Sequence[Rewarded]
) -> UserItem:
    if item is None:
        item = UserItem(key, interactions=0, recent_categories=[])
    item.interactions = int(item.interactions or 0) + events
    categories = [entry.category for entry in rewarded if entry.category]
    item.recent_categories = [*(item.recent_categories or []), *categories][-RECENT_CATEGORIES:]
    kept = [*_rewarded(item), *rewarded][-MAX_ITEMS:]
    item.rewarded = json.dumps(
        [[r.item_id, r.category, r.creator] for r in kept], separators=(",", ":")
    )
    item.recent_rewarded = None  # moved into ``rewarded``
    return item


def _rewarded(item: UserItem) -> list[Rewarded]:
    """A profile's rewarded items, oldest first, from either stored form."""
    if item.rewarded:
        try:
            entries = json.loads(item.rewarded)
        except ValueError:
            return []
        return [
            Rewarded(str(entry[0]), entry[1], entry[2])
            for entry in entries
            if isinstance(entry, list) and len(entry) == 3 and entry[0]
        ]
    return [
        Rewarded(str(entry.get("i", "")), entry.get("c"), entry.get("r"))
        for entry in (item.recent_rewarded or [])
        if isinstance(entry, dict) and entry.get("i")
    ]


def histories(
    deadline: Callable[[], float] | None = None,
) -> dict[str, list[list[Rewarded]]]:
    """Every user's rewarded items, by tenant (one paged scan of the profiles table).

    What the catalog index builder fits taste factors from. ``deadline`` gives the seconds
    left; the scan stops with ``StorageError`` when it runs out (no partial fit).
    """
    bind()
    out: dict[str, list[list[Rewarded]]] = {}
    try:
        for item in UserItem.scan(
            page_size=1000, attributes_to_get=["pk", "rewarded", "recent_rewarded"]
        ):
            if deadline is not None and deadline() <= 0:
                raise StorageError("user profiles not read in time")
            tenant, _, _ = item.pk.partition("#")
            rewarded = _rewarded(item)
            if rewarded:
                out.setdefault(tenant, []).append(rewarded)
    except PynamoDBException as exc:
        raise StorageError(f"user profiles unavailable: {exc.msg}") from exc
    return out
