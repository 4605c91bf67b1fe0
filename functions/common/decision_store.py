"""Decision records in DynamoDB: written at rank, joined with rewards, closed, learned once.

An event's item holds the zlib-compressed decision record, its rewards, the ids of the rewards
already applied (so a redelivered reward is applied once), and its state: ``open`` until it is
learned (``learned``) or expires unactivated (``expired``). Open, activated events sit in a
sparse index by the time their reward wait ends, sharded so the sweep has no hot key.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pynamodb.exceptions import DoesNotExist, PynamoDBException, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from bandit.decision_log import DecisionRecord, LoggedReward
from functions.common.errors import NotFoundError, StorageError
from functions.common.tables import DecisionItem, bind, storable_number

OPEN_SHARDS = 16
RETENTION_SECONDS = 30 * 86400


class RewardOutcome(StrEnum):
    """What happened to one posted reward."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    LATE = "late"
    ORPHAN = "orphan"


def event_key(tenant: str, event_id: str) -> str:
    """Partition key of an event."""
    return f"{tenant}#{event_id}"


def policy_key(tenant: str, policy: str) -> str:
    """Index key of a policy's decisions."""
    return f"{tenant}#{policy}"


def reward_id(event_id: str, reward: dict[str, Any]) -> str:
    """A stable id of one posted reward: the same reward posted twice has the same id.

    It covers what the app sent (event, item, type, value and the app's own timestamp, if it
    gave one), never the time of receipt: a retried post is a duplicate, while a second click
    on the same item is told apart by the timestamp the app sends with it.
    """
    if reward.get("reward_id"):
        return str(reward["reward_id"])
    canonical = json.dumps(
        [
            event_id,
            reward["item_id"],
            reward["type"],
            reward.get("value"),
            reward.get("sent_timestamp"),
        ],
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _shard() -> str:
    return f"open#{random.randrange(OPEN_SHARDS)}"


def put(tenant: str, record: DecisionRecord, *, wait_seconds: int) -> None:
    """Store a new open decision, due for the sweep after ``wait_seconds``."""
    bind()
    item = DecisionItem(
        event_key(tenant, record.event_id),
        policy_key=policy_key(tenant, record.policy),
        ts=record.timestamp,
        record=zlib.compress(record.model_dump_json().encode(), 3),
        slots=len(record.slate),
        deferred=record.deferred,
        activated=record.activated,
        model_version=record.model_version,
        expires_at=datetime.fromtimestamp(record.timestamp + RETENTION_SECONDS, UTC),
    )
    # Deferred events are due too: the sweep expires them if nobody activated them in time.
    item.open_shard = _shard()
    item.closes_at = record.timestamp + wait_seconds
    try:
        item.save(condition=DecisionItem.pk.does_not_exist())
    except PynamoDBException as exc:
        raise StorageError(f"decision store unavailable: {exc.msg}") from exc


def _decode(item: DecisionItem) -> DecisionRecord:
    record = DecisionRecord.model_validate_json(zlib.decompress(bytes(item.record)))
    rewards = [LoggedReward.model_validate(dict(reward)) for reward in item.rewards or []]
    learned = None if item.learned_version is None else int(item.learned_version)
    return record.model_copy(
        update={
            "rewards": rewards,
            "activated": bool(item.activated),
            "learned_version": learned,
        }
    )


@dataclass(frozen=True, slots=True)
class StoredDecision:
    """A decision record with its storage state."""

    key: str
    record: DecisionRecord
    status: str
    closable: bool


def _stored(item: DecisionItem) -> StoredDecision:
    record = _decode(item)
    return StoredDecision(item.pk, record, str(item.status), _closable(item, record))


def _closable(item: DecisionItem, record: DecisionRecord) -> bool:
    if item.status != "open" or not item.activated:
        return False
    if item.final:
        return True
    shown = set(record.shown_ids())
    return bool(shown) and shown.issubset(set(item.rewarded_items or ()))


def get(tenant: str, event_id: str) -> StoredDecision:
    """One event of the tenant, or ``NotFoundError``."""
    bind()
    try:
        return _stored(DecisionItem.get(event_key(tenant, event_id), consistent_read=True))
    except DoesNotExist as exc:
        raise NotFoundError(f"event '{event_id}' not found") from exc
    except PynamoDBException as exc:
        raise StorageError(f"decision store unavailable: {exc.msg}") from exc


def get_many(keys: Iterable[str]) -> list[StoredDecision]:
    """Events by key (missing ones are skipped)."""
    bind()
    try:
        return [_stored(item) for item in DecisionItem.batch_get(list(keys))]
    except PynamoDBException as exc:
        raise StorageError(f"decision store unavailable: {exc.msg}") from exc


def add_rewards(
    tenant: str, event_id: str, rewards: Sequence[dict[str, Any]]
) -> tuple[list[RewardOutcome], StoredDecision | None]:
    """Attach rewards of one event, each at most once; return the outcomes and the event.

    The common case (an open event, new rewards) is one conditional update; anything else
    (duplicates, a learned event, a race) reads the event and decides from its state. Rewards
    for unknown events are orphans; rewards after the event was learned are late: counted and
    kept on the event, never learned.
    """
    bind()
    key = event_key(tenant, event_id)
    item = DecisionItem(key)
    outcomes, actions, new_ids = _reward_actions(item, event_id, rewards, assume_open=True)
    condition = DecisionItem.pk.exists() & (DecisionItem.status == "open")
    for rid in new_ids:
        condition &= ~DecisionItem.reward_ids.contains(rid)
    if _update_if(item, actions, condition):
        return outcomes, _stored(item)
    return _add_rewards_after_reading(key, event_id, rewards)


def _add_rewards_after_reading(
    key: str, event_id: str, rewards: Sequence[dict[str, Any]]
) -> tuple[list[RewardOutcome], StoredDecision | None]:
    for _attempt in range(8):
        try:
            item = DecisionItem.get(key, consistent_read=True)
        except DoesNotExist:
            return [RewardOutcome.ORPHAN] * len(rewards), None
        except PynamoDBException as exc:
            raise StorageError(f"decision store unavailable: {exc.msg}") from exc
        outcomes, actions, new_ids = _reward_actions(item, event_id, rewards)
        if not actions:
            return outcomes, _stored(item)
        condition = DecisionItem.status == item.status
        for rid in new_ids:
            condition &= ~DecisionItem.reward_ids.contains(rid)
        if _update_if(item, actions, condition):
            return outcomes, _stored(item)
        # A concurrent delivery or a close got there first: decide again from fresh state.
    raise StorageError(f"event '{event_id}' is being updated concurrently; retry")


def _update_if(item: DecisionItem, actions: list[Action], condition: Condition) -> bool:
    """Apply ``actions`` if ``condition`` holds; False when it does not."""
    try:
        item.update(actions=actions, condition=condition)
        return True
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise StorageError(f"decision store unavailable: {exc.msg}") from exc
    except PynamoDBException as exc:
        raise StorageError(f"decision store unavailable: {exc.msg}") from exc


def _reward_actions(
    item: DecisionItem,
    event_id: str,
    rewards: Sequence[dict[str, Any]],
    *,
    assume_open: bool = False,
) -> tuple[list[RewardOutcome], list[Action], list[str]]:
    """The outcome of each reward and the update that applies the new ones."""
    seen = set() if assume_open else set(item.reward_ids or ())
    open_event = assume_open or item.status == "open"
    outcomes: list[RewardOutcome] = []
    entries: list[dict[str, Any]] = []
    new_ids: list[str] = []
    items: set[str] = set()
    final = False
    for reward in rewards:
        rid = reward_id(event_id, reward)
        if rid in seen:
            outcomes.append(RewardOutcome.DUPLICATE)
            continue
        seen.add(rid)
        new_ids.append(rid)
        entry = {k: reward.get(k) for k in ("item_id", "type", "value", "timestamp")}
        entry["value"] = storable_number(entry["value"])
        entry["timestamp"] = storable_number(entry["timestamp"])
        entry["final"] = bool(reward.get("final", False))
        entries.append({**entry, "late": not open_event})
        items.add(str(reward["item_id"]))
        final = final or bool(reward.get("final"))
        outcomes.append(RewardOutcome.APPLIED if open_event else RewardOutcome.LATE)
    if not entries:
        return outcomes, [], []
    actions: list[Action] = [
        DecisionItem.rewards.set(DecisionItem.rewards.append(entries)),
        DecisionItem.reward_ids.add(set(new_ids)),
    ]
    if open_event:
        actions.append(DecisionItem.rewarded_items.add(items))
        if final:
            actions.append(DecisionItem.final.set(True))
    else:
        actions.append(DecisionItem.late_rewards.add(len(entries)))
    return outcomes, actions, new_ids


def activate(tenant: str, event_id: str, wait_seconds: int, now: float | None = None) -> bool:
    """Mark a deferred event as shown; its reward wait starts now. False if already active."""
    bind()
    moment = time.time() if now is None else now
    stored = get(tenant, event_id)
    if stored.record.activated:
        return False
    try:
        DecisionItem(stored.key).update(
            actions=[
                DecisionItem.activated.set(True),
                DecisionItem.open_shard.set(_shard()),
                DecisionItem.closes_at.set(moment + wait_seconds),
            ],
            condition=(DecisionItem.activated == False) & (DecisionItem.status == "open"),  # noqa: E712
        )
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise StorageError(f"decision store unavailable: {exc.msg}") from exc
    return True


def due(now: float, limit: int = 500) -> list[str]:
    """Keys of open, activated events whose reward wait has ended, over every shard."""
    bind()
    keys: list[str] = []
    try:
        for shard in range(OPEN_SHARDS):
            for item in DecisionItem.open_events.query(
                f"open#{shard}", DecisionItem.closes_at <= now, limit=limit
            ):
                keys.append(item.pk)
                if len(keys) >= limit:
                    return keys
    except PynamoDBException as exc:
        raise StorageError(f"decision store unavailable: {exc.msg}") from exc
    return keys


def expire(key: str) -> None:
    """Close a deferred event that was never activated, without learning it."""
    bind()
    try:
        DecisionItem(key).update(
            actions=[
                DecisionItem.status.set("expired"),
                DecisionItem.open_shard.remove(),
                DecisionItem.closes_at.remove(),
            ],
            condition=DecisionItem.status == "open",
        )
    except UpdateError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise StorageError(f"decision store unavailable: {exc.msg}") from exc


def export(tenant: str, policy: str, since: float = 0.0) -> Iterator[DecisionRecord]:
    """The policy's decision records from ``since`` on, oldest first."""
    bind()
    try:
        for item in DecisionItem.by_policy.query(
            policy_key(tenant, policy), DecisionItem.ts >= since
        ):
            yield _decode(item)
    except PynamoDBException as exc:
        raise StorageError(f"decision store unavailable: {exc.msg}") from exc
