"""Decision records in DynamoDB: written at rank, joined with rewards, closed, learned once.

An event's item holds the zlib-compressed decision record, its rewards, the ids of the rewards
already applied (so a redelivered reward is applied once), and its state: ``open`` until it is
learned (``learned``), expires unactivated (``expired``) or is set aside because it cannot be
learned (``failed``, with a reason: an undecodable record, a deleted policy, a record that
contradicts its own constraints). Open events sit in a sparse index by the time their reward
wait ends, sharded so the sweep has no hot key. Whether an open event has closed is the
learner's call (``bandit.learn.rewards.record_closed``), under the policy's reward spec.

DynamoDB refuses items over 400 KB, so an item is kept within budgets that add up to less: a
compressed record of up to ``INLINE_RECORD_BYTES`` is stored inline, a larger one (hundreds of
candidates with long features) as an S3 object under ``decisions/`` that the item names and
every reader resolves; an event stores at most ``MAX_STORED_REWARDS`` rewards taking at most
``MAX_REWARD_BYTES`` (with their ids). Rewards past that are counted in ``dropped_rewards``,
not stored, not learned (``reward_join``).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.exceptions import DoesNotExist, PutError, PynamoDBException, UpdateError
from pynamodb.expressions.update import Action

from bandit.decision_log import DecisionRecord, LoggedReward
from functions.common.aws import s3
from functions.common.errors import ConflictError, NotFoundError, StorageError
from functions.common.item_size import value_size
from functions.common.settings import settings
from functions.common.tables import DecisionItem, bind

OPEN_SHARDS = 16
RETENTION_SECONDS = 30 * 86400
# An item's budgets (DynamoDB's limit is 409,600 bytes; keys, counters, states and a failure
# reason take a few more KB at most).
INLINE_RECORD_BYTES = 200_000
MAX_STORED_REWARDS = 500
MAX_REWARD_BYTES = 180_000
RECORD_PREFIX = "decisions/"


class RewardOutcome(StrEnum):
    """What happened to one posted reward."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    LATE = "late"
    ORPHAN = "orphan"
    UNKNOWN_TYPE = "unknown_type"
    SET_ASIDE = "set_aside"  # its event cannot be learned (see ``fail``)
    DROPPED = "dropped"  # its event holds all the rewards it can: counted, not stored


class EventStatus(StrEnum):
    """The states of a stored event."""

    OPEN = "open"
    LEARNED = "learned"
    EXPIRED = "expired"
    FAILED = "failed"


class DuplicateEventError(ConflictError):
    """A new decision's event id is taken (only an app's own event ids can be)."""


class UndecodableRecordError(Exception):
    """A stored decision record cannot be read back (corrupt or of an unknown format)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


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


def record_object_key(tenant: str, record: DecisionRecord) -> str:
    """The S3 key of a record too large to inline (ids in keys have a strict syntax)."""
    return f"{RECORD_PREFIX}{tenant}/{record.policy}/{record.event_id}.json.z"


def put(tenant: str, record: DecisionRecord, *, wait_seconds: int) -> None:
    """Store a new open decision, due for the sweep after ``wait_seconds``.

    A compressed record over ``INLINE_RECORD_BYTES`` goes to the bucket first; the item names
    it (an object whose item was never written is harmless, and expires with the prefix).
    """
    bind()
    compressed = zlib.compress(record.model_dump_json().encode(), 3)
    item = DecisionItem(
        event_key(tenant, record.event_id),
        policy_key=policy_key(tenant, record.policy),
        ts=record.timestamp,
        slots=len(record.slate),
        deferred=record.deferred,
        activated=record.activated,
        model_version=record.model_version,
        expires_at=datetime.fromtimestamp(record.timestamp + RETENTION_SECONDS, UTC),
    )
    # Deferred events are due too: the sweep expires them if nobody activated them in time.
    item.open_shard = _shard()
    item.closes_at = record.timestamp + wait_seconds
    if len(compressed) <= INLINE_RECORD_BYTES:
        item.record = compressed
    else:
        key = record_object_key(tenant, record)
        try:
            s3().put_object(Bucket=settings().model_bucket, Key=key, Body=compressed)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"decision bucket unavailable: {exc}") from exc
        item.record_key = key
    try:
        item.save(condition=DecisionItem.pk.does_not_exist())
    except PutError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            raise DuplicateEventError(
                f"event id '{record.event_id}' was used before; event ids must be unique",
                field="eventId",
            ) from exc
        raise StorageError(f"decision store unavailable: {exc.msg}") from exc
    except PynamoDBException as exc:
        raise StorageError(f"decision store unavailable: {exc.msg}") from exc


def _record_bytes(item: DecisionItem) -> bytes:
    """The compressed record, inline or from its object (an outage raises ``StorageError``)."""
    if item.record is not None:
        return bytes(item.record)
    if not item.record_key:
        raise UndecodableRecordError(item.pk, "the event holds no record")
    try:
        response = s3().get_object(Bucket=settings().model_bucket, Key=item.record_key)
        return bytes(response["Body"].read())
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            raise UndecodableRecordError(item.pk, "its record object is gone") from exc
        raise StorageError(f"decision bucket unavailable: {exc}") from exc
    except BotoCoreError as exc:
        raise StorageError(f"decision bucket unavailable: {exc}") from exc


def reward_bytes(item: DecisionItem) -> int:
    """What an event's stored rewards and their ids take of the item (``MAX_REWARD_BYTES``)."""
    rewards = value_size({"L": DecisionItem.rewards.serialize(item.rewards or [])})
    return rewards + sum(len(rid.encode()) for rid in item.reward_ids or ())


def _decode(item: DecisionItem) -> DecisionRecord:
    compressed = _record_bytes(item)
    try:
        record = DecisionRecord.model_validate_json(zlib.decompress(compressed))
        rewards = [LoggedReward.model_validate(dict(reward)) for reward in item.rewards or []]
    except (zlib.error, ValueError, TypeError) as exc:
        raise UndecodableRecordError(item.pk, f"undecodable record: {exc}"[:500]) from exc
    learned = None if item.learned_version is None else int(item.learned_version)
    activated_at = None if item.activated_at is None else float(item.activated_at)
    return record.model_copy(
        update={
            "rewards": rewards,
            "activated": bool(item.activated),
            "activated_at": activated_at,
            "learned_version": learned,
            "seen": sorted(int(p) for p in item.seen) if item.seen else None,
        }
    )


@dataclass(frozen=True, slots=True)
class StoredDecision:
    """A decision record with its storage state."""

    key: str
    record: DecisionRecord
    status: str
    failure_reason: str | None = None
    closed_at: float | None = None
    rev: int = 0  # bumped by every reward write: the learner's optimistic check
    reward_ids: frozenset[str] = frozenset()
    reward_bytes: int = 0  # of the item's ``MAX_REWARD_BYTES``

    @property
    def open(self) -> bool:
        """Not yet learned, expired or set aside."""
        return self.status == EventStatus.OPEN


def _stored(item: DecisionItem) -> StoredDecision:
    return StoredDecision(
        item.pk,
        _decode(item),
        str(item.status),
        item.failure_reason,
        None if item.closed_at is None else float(item.closed_at),
        int(item.rev or 0),
        frozenset(item.reward_ids or ()),
        reward_bytes(item),
    )


def get(tenant: str, event_id: str) -> StoredDecision:
    """One event of the tenant, or ``NotFoundError``."""
    bind()
    try:
        return _stored(DecisionItem.get(event_key(tenant, event_id), consistent_read=True))
    except DoesNotExist as exc:
        raise NotFoundError(f"event '{event_id}' not found") from exc
    except PynamoDBException as exc:
        raise StorageError(f"decision store unavailable: {exc.msg}") from exc


def status(tenant: str, event_id: str) -> dict[str, Any]:
    """What the tenant may see of one event's state (also when its record is undecodable)."""
    return status_and_record(tenant, event_id)[0]


def status_and_record(tenant: str, event_id: str) -> tuple[dict[str, Any], DecisionRecord | None]:
    """``status``, and the event's record with its stored rewards (None if undecodable)."""
    bind()
    try:
        item = DecisionItem.get(event_key(tenant, event_id), consistent_read=True)
    except DoesNotExist as exc:
        raise NotFoundError(f"event '{event_id}' not found") from exc
    except PynamoDBException as exc:
        raise StorageError(f"decision store unavailable: {exc.msg}") from exc
    try:
        record: DecisionRecord | None = _stored(item).record
    except UndecodableRecordError:
        record = None
    return _status_of(item, event_id), record


def _status_of(item: DecisionItem, event_id: str) -> dict[str, Any]:
    policy = str(item.policy_key).split("#", 1)[1] if "#" in str(item.policy_key) else None
    return {
        "event_id": event_id,
        "policy": policy,
        "status": str(item.status),
        "reason": item.failure_reason,
        "decided_at": float(item.ts),
        "activated": bool(item.activated),
        "closes_at": None if item.closes_at is None else float(item.closes_at),
        "closed_at": None if item.closed_at is None else float(item.closed_at),
        "model_version": int(item.model_version),
        "learned_version": None if item.learned_version is None else int(item.learned_version),
        "rewards": len(item.rewards or ()),
        "late_rewards": int(item.late_rewards or 0),
        "dropped_rewards": int(item.dropped_rewards or 0),
        "slots": int(item.slots),
        "seen": sorted(int(p) for p in item.seen) if item.seen else None,
        "late_impressions": int(item.late_impressions or 0),
    }


def failed(tenant: str, policy: str, since: float = 0.0) -> Iterator[dict[str, Any]]:
    """The policy's events set aside as ``failed`` from ``since`` on: event id and reason."""
    bind()
    prefix = f"{tenant}#"
    try:
        for item in DecisionItem.by_policy.query(
            policy_key(tenant, policy),
            DecisionItem.ts >= since,
            filter_condition=DecisionItem.status == EventStatus.FAILED.value,
        ):
            yield {
                "event_id": str(item.pk).removeprefix(prefix),
                "decided_at": float(item.ts),
                "closed_at": None if item.closed_at is None else float(item.closed_at),
                "reason": item.failure_reason,
            }
    except PynamoDBException as exc:
        raise StorageError(f"decision store unavailable: {exc.msg}") from exc


def get_many(keys: Iterable[str]) -> tuple[list[StoredDecision], list[UndecodableRecordError]]:
    """Events by key, read consistently, 100 per request (missing ones are skipped), and the
    ones whose records cannot be read."""
    bind()
    decoded: list[StoredDecision] = []
    broken: list[UndecodableRecordError] = []
    try:
        for item in DecisionItem.batch_get(list(dict.fromkeys(keys)), consistent_read=True):
            try:
                decoded.append(_stored(item))
            except UndecodableRecordError as exc:
                broken.append(exc)
    except PynamoDBException as exc:
        raise StorageError(f"decision store unavailable: {exc.msg}") from exc
    return decoded, broken


def policies_of(tenant: str, event_ids: Iterable[str]) -> dict[str, str]:
    """The policy of each of the tenant's events that exists, by event id (100 per request)."""
    bind()
    by_key = {event_key(tenant, event_id): event_id for event_id in event_ids}
    prefix = f"{tenant}#"
    found: dict[str, str] = {}
    try:
        for item in DecisionItem.batch_get(list(by_key), attributes_to_get=["pk", "policy_key"]):
            found[by_key[item.pk]] = str(item.policy_key).removeprefix(prefix)
    except PynamoDBException as exc:
        raise StorageError(f"decision store unavailable: {exc.msg}") from exc
    return found


def activate(tenant: str, event_id: str, wait_seconds: int, now: float | None = None) -> bool:
    """Mark a deferred event as shown; its reward wait starts now. False if already active."""
    bind()
    moment = time.time() if now is None else now
    if status(tenant, event_id)["activated"]:  # the item's own flag: no record to read
        return False
    try:
        DecisionItem(event_key(tenant, event_id)).update(
            actions=[
                DecisionItem.activated.set(True),
                DecisionItem.activated_at.set(moment),
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


def closing_actions(status: EventStatus, now: float) -> list[Action]:
    """The update that takes an open event out of the open index into ``status``."""
    return [
        DecisionItem.status.set(status.value),
        DecisionItem.closed_at.set(now),
        DecisionItem.open_shard.remove(),
        DecisionItem.closes_at.remove(),
    ]


def _close(key: str, actions: list[Action]) -> bool:
    """Apply a closing update if the event is still open; False if it was not."""
    bind()
    try:
        DecisionItem(key).update(actions=actions, condition=DecisionItem.status == "open")
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise StorageError(f"decision store unavailable: {exc.msg}") from exc
    except PynamoDBException as exc:
        raise StorageError(f"decision store unavailable: {exc.msg}") from exc
    return True


def expire(key: str, now: float | None = None) -> bool:
    """Close a deferred event that was never activated, without learning it."""
    moment = time.time() if now is None else now
    return _close(key, closing_actions(EventStatus.EXPIRED, moment))


def fail(key: str, reason: str, now: float | None = None) -> bool:
    """Set an open event aside as ``failed`` with ``reason``: it will never be learned.

    For data problems only (the event itself cannot be learned); never for outages.
    """
    moment = time.time() if now is None else now
    actions = closing_actions(EventStatus.FAILED, moment)
    return _close(key, [*actions, DecisionItem.failure_reason.set(reason)])


def log_range(tenant: str, policy: str) -> tuple[float, float] | None:
    """When the policy's oldest and newest kept decisions were made; None when it has none."""
    bind()
    ends: list[float] = []
    try:
        for forward in (True, False):
            for item in DecisionItem.by_policy.query(
                policy_key(tenant, policy), scan_index_forward=forward, limit=1
            ):
                ends.append(float(item.ts))
    except PynamoDBException as exc:
        raise StorageError(f"decision store unavailable: {exc.msg}") from exc
    return (ends[0], ends[-1]) if ends else None


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
