"""Events whose reward wait is over, from the sparse ``open_events`` index, by policy.

The index is sharded (``decision_store.OPEN_SHARDS``) so writes have no hot key; reading it
walks every shard to the end, page by page, with no ceiling: the sweep hands every due event to
its policy's learner however many there are.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from pynamodb.exceptions import PynamoDBException

from functions.common.decision_store import OPEN_SHARDS
from functions.common.errors import StorageError
from functions.common.tables import DecisionItem, bind


@dataclass
class DueEvents:
    """Due event ids of one policy of one tenant."""

    tenant: str
    policy: str
    event_ids: list[str] = field(default_factory=list)


def due_keys(now: float, since: float | None = None) -> Iterator[tuple[str, str]]:
    """(event key, policy key) of every open event whose reward wait ended by ``now`` (and,
    with ``since``, not before it)."""
    bind()
    window = (
        DecisionItem.closes_at <= now
        if since is None
        else DecisionItem.closes_at.between(since, now)
    )
    try:
        for shard in range(OPEN_SHARDS):
            for item in DecisionItem.open_events.query(f"open#{shard}", window, page_size=1000):
                yield str(item.pk), str(item.policy_key)
    except PynamoDBException as exc:
        raise StorageError(f"decision store unavailable: {exc.msg}") from exc


def due_by_policy(now: float, since: float | None = None) -> list[DueEvents]:
    """Every due event (of ``[since, now]`` with ``since``), grouped by (tenant, policy).

    Keys are ``tenant#policy`` and ``tenant#event_id``; policy names never hold ``#``, so the
    last ``#`` of the policy key separates the tenant, whatever the tenant id holds.
    """
    groups: dict[tuple[str, str], DueEvents] = {}
    for key, policy_key in due_keys(now, since):
        tenant, policy = policy_key.rsplit("#", 1)
        group = groups.setdefault((tenant, policy), DueEvents(tenant, policy))
        group.event_ids.append(key[len(tenant) + 1 :])
    return list(groups.values())
