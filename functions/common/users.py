"""User profiles: interaction counts (maturity segments) and recent categories."""

from __future__ import annotations

from collections.abc import Sequence

from pynamodb.exceptions import DoesNotExist, PynamoDBException, UpdateError
from pynamodb.expressions.condition import Condition

from functions.common.errors import StorageError
from functions.common.tables import UserItem, bind

RECENT_CATEGORIES = 50


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


def record_interaction(tenant: str, user_id: str, categories: Sequence[str]) -> None:
    """Count one learned event for the user and keep the last categories that earned reward.

    Read-modify-write under an optimistic condition on the count, retried on a race.
    """
    bind()
    key = _key(tenant, user_id)
    for _ in range(8):
        try:
            try:
                current = UserItem.get(key, consistent_read=True)
                count, recent = int(current.interactions), list(current.recent_categories)
                condition: Condition = UserItem.interactions == count
            except DoesNotExist:
                count, recent = 0, []
                condition = UserItem.pk.does_not_exist()
            UserItem(key).update(
                actions=[
                    UserItem.interactions.set(count + 1),
                    UserItem.recent_categories.set(
                        (recent + list(categories))[-RECENT_CATEGORIES:]
                    ),
                ],
                condition=condition,
            )
            return
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise StorageError(f"user profiles unavailable: {exc.msg}") from exc
        except PynamoDBException as exc:
            raise StorageError(f"user profiles unavailable: {exc.msg}") from exc
    raise StorageError(f"user '{user_id}' is being updated concurrently; retry")
