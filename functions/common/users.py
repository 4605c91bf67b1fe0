"""User profiles: interaction counts (maturity segments) and recent categories."""

from __future__ import annotations

from collections.abc import Sequence

from pynamodb.exceptions import DoesNotExist, PynamoDBException, UpdateError
from pynamodb.expressions.update import Action

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
    """Count one learned event for the user and remember categories that earned reward.

    One atomic update in the common case; the category list is trimmed to the last
    ``RECENT_CATEGORIES`` when it grows past twice that.
    """
    bind()
    user = UserItem(_key(tenant, user_id))
    actions: list[Action] = [UserItem.interactions.add(1)]
    if categories:
        actions.append(
            UserItem.recent_categories.set(UserItem.recent_categories.append(list(categories)))
        )
    try:
        try:
            user.update(actions=actions)
        except UpdateError as exc:
            if exc.cause_response_code != "ValidationException" or not categories:
                raise
            # list_append needs the list: this is the user's first rewarded category.
            user.update(
                actions=[
                    UserItem.interactions.add(1),
                    UserItem.recent_categories.set(list(categories)[-RECENT_CATEGORIES:]),
                ]
            )
        if len(user.recent_categories or ()) > 2 * RECENT_CATEGORIES:
            user.update(
                actions=[
                    UserItem.recent_categories.set(
                        list(user.recent_categories)[-RECENT_CATEGORIES:]
                    )
                ]
            )
    except PynamoDBException as exc:
        raise StorageError(f"user profiles unavailable: {exc.msg}") from exc
