"""User profiles: interaction counts (maturity segments) and recent categories."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pynamodb.exceptions import DoesNotExist, PynamoDBException, TransactWriteError
from pynamodb.transactions import TransactWrite
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from functions.common.errors import StorageError
from functions.common.tables import UserItem, bind, transaction_connection

RECENT_CATEGORIES = 50
MAX_TRANSACTION_ITEMS = 100
WRITE_ATTEMPTS = 5


def _key(tenant: str, user_id: str) -> str:
    return f"{tenant}#{user_id}"


def interactions(tenant: str, user_id: str | None) -> int:
    """How many events of this user have been learned (0 for unknown or anonymous users)."""
    if not user_id:
        return 0
    bind()
    try:
        return int(UserItem.get(_key(tenant, user_id)).interactions)
    except DoesNotExist:
        return 0
    except PynamoDBException as exc:
        raise StorageError(f"user profiles unavailable: {exc.msg}") from exc


def record_interaction(
    tenant: str, user_id: str, categories: Sequence[str], events: int = 1
) -> None:
    """Count ``events`` learned events for one user (see ``record_interactions``)."""
    record_interactions(tenant, {user_id: (events, list(categories))})


def record_interactions(tenant: str, learned: Mapping[str, tuple[int, Sequence[str]]]) -> None:
    """Add learned events and rewarded categories to many users' profiles at once.

    ``learned`` maps a user id to (events learned, categories that earned reward). Profiles are
    read 100 per request and written 100 per transaction, each conditional on the version read
    (learners of different policies may write one user at once: the loser reads again), so the
    counts are exact at two requests per hundred users. The category list keeps the last
    ``RECENT_CATEGORIES``.
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
                    for key, (events, categories) in pending[start : start + MAX_TRANSACTION_ITEMS]:
                        transaction.save(_updated(current.get(key), key, events, categories))
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


def _updated(item: UserItem | None, key: str, events: int, categories: Sequence[str]) -> UserItem:
    if item is None:
        item = UserItem(key, interactions=0, recent_categories=[])
    item.interactions = int(item.interactions or 0) + events
    item.recent_categories = [*(item.recent_categories or []), *categories][-RECENT_CATEGORIES:]
    return item
