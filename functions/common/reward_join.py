"""Joining rewards to their events in bulk: each reward's outcome, and the write that keeps it.

A policy's learner is the only writer of its events' rewards (the learn queue serialises each
policy's work), so it reads the events, decides here in memory, and stores every change in a
few transactions. Each change is conditional on the event's revision and status as read: a
safety net should two learners of one policy ever overlap. A reward is applied at most once
(its id is kept on the event); one posted after the event closed is kept as late.

An event keeps at most ``MAX_STORED_REWARDS`` rewards in at most ``MAX_REWARD_BYTES`` (with
their ids), so that its item stays within DynamoDB's 400 KB whatever the app posts, late rewards
included. A reward past either cap is ``dropped``: counted on the event, not stored, never
learned, and never a failure (a message that could only ever fail would end in the DLQ). Its id
is not kept either, so a redelivered dropped reward is counted again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from pynamodb.exceptions import PynamoDBException, TransactWriteError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from bandit.decision_log import DecisionRecord, LoggedReward
from bandit.learn.rewards import counts, window_spec
from bandit.spec import RewardSpec
from functions.common.decision_store import (
    MAX_REWARD_BYTES,
    MAX_STORED_REWARDS,
    RewardOutcome,
    StoredDecision,
    reward_id,
)
from functions.common.errors import StorageError
from functions.common.item_size import (
    MAX_TRANSACTION_BYTES,
    MAX_TRANSACTION_ITEMS,
    chunks,
    value_size,
)
from functions.common.tables import DecisionItem, bind, storable_number, transaction_connection

# Headroom under the transaction's 4 MB for keys, conditions and counters.
TRANSACTION_REWARD_BYTES = MAX_TRANSACTION_BYTES - 512 * 1024


class EventsChangedError(Exception):
    """Events changed since they were read (another writer overlapped): read them again."""


@dataclass
class EventChange:
    """New rewards of one event, as read at revision ``decision.rev``."""

    decision: StoredDecision
    entries: list[dict[str, Any]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    size: int = 0  # bytes the new entries and ids add to the item
    dropped: int = 0  # rewards past the event's caps

    @property
    def writes(self) -> bool:
        """Whether there is anything to store."""
        return bool(self.entries or self.dropped)

    @property
    def key(self) -> str:
        """The event's storage key."""
        return self.decision.key

    def record(self) -> DecisionRecord:
        """The event's record with the new rewards appended."""
        record = self.decision.record
        if not self.entries:
            return record
        added = [LoggedReward.model_validate(entry) for entry in self.entries]
        return record.model_copy(update={"rewards": [*record.rewards, *added]})

    def actions(self) -> list[Action]:
        """The update that stores the new rewards and bumps the revision."""
        late = sum(1 for entry in self.entries if entry["late"])
        actions: list[Action] = [DecisionItem.rev.set(self.decision.rev + 1)]
        if self.entries:
            actions += [
                DecisionItem.rewards.set(DecisionItem.rewards.append(self.entries)),
                DecisionItem.reward_ids.add(set(self.ids)),
            ]
        if late:
            actions.append(DecisionItem.late_rewards.add(late))
        if self.dropped:
            actions.append(DecisionItem.dropped_rewards.add(self.dropped))
        return actions

    def condition(self) -> Condition:
        """Still as read: same revision, same status."""
        revision: Condition = (
            DecisionItem.rev == self.decision.rev
            if self.decision.rev
            else (DecisionItem.rev == 0) | DecisionItem.rev.does_not_exist()
        )
        status: Condition = DecisionItem.status == self.decision.status
        return cast(Condition, revision & status)


def join(
    decision: StoredDecision, rewards: Sequence[dict[str, Any]], spec: RewardSpec | None
) -> tuple[list[RewardOutcome], EventChange]:
    """The outcome of each reward for ``decision`` and the change that stores the new ones.

    ``spec`` is the policy's reward spec (``None``: the policy is gone, nothing is judged).
    Rewards of an open event are applied, or counted as late or of an unknown type by the one
    lateness rule; rewards of a closed event are late; a reward past the event's caps is
    dropped, whatever it is.
    """
    change = EventChange(decision)
    seen = set(decision.reward_ids)
    stored = len(decision.record.rewards)
    window = None if spec is None else window_spec(decision.record, spec)
    outcomes: list[RewardOutcome] = []
    for reward in rewards:
        item_id = rewarded_item(decision.record, reward)
        if item_id is None:
            outcomes.append(RewardOutcome.ORPHAN)  # it names no slot of this event
            continue
        rid = reward_id(str(reward["event_id"]), reward)
        if rid in seen:
            outcomes.append(RewardOutcome.DUPLICATE)
            continue
        seen.add(rid)
        entry = {
            "item_id": item_id,
            "type": str(reward["type"]),
            "value": storable_number(reward.get("value")),
            "timestamp": storable_number(float(reward["timestamp"])),
            "final": bool(reward.get("final", False)),
            "late": not decision.open,
        }
        size = entry_size(entry, rid)
        if (
            stored + len(change.entries) >= MAX_STORED_REWARDS
            or decision.reward_bytes + change.size + size > MAX_REWARD_BYTES
        ):
            change.dropped += 1
            outcomes.append(RewardOutcome.DROPPED)
            continue
        change.size += size
        change.entries.append(entry)
        change.ids.append(rid)
        outcomes.append(_outcome(decision, entry, window))
    return outcomes, change


def rewarded_item(record: DecisionRecord, reward: dict[str, Any]) -> str | None:
    """The item a reward is for: its ``item_id``, or the item shown at its ``position`` or in
    the slot the app named ``slot_id`` (Personalizer's rewards); None when there is none."""
    if reward.get("item_id") is not None:
        return str(reward["item_id"])
    position = reward.get("position")
    slot_id = reward.get("slot_id")
    if slot_id is not None:
        names = record.slot_ids or []
        position = names.index(slot_id) + 1 if slot_id in names else None
    for slot in record.slate:
        if slot.position == position:
            return slot.item_id
    return None


def entry_size(entry: dict[str, Any], rid: str) -> int:
    """Bytes one stored reward adds to its event's item: its list entry and its id."""
    return value_size({"L": DecisionItem.rewards.serialize([entry])}) - 3 + len(rid.encode())


def _outcome(
    decision: StoredDecision, entry: dict[str, Any], window: RewardSpec | None
) -> RewardOutcome:
    if not decision.open:
        return RewardOutcome.LATE
    if entry["item_id"] not in {slot.item_id for slot in decision.record.slate}:
        return RewardOutcome.ORPHAN  # kept on the event, never learned: it was not shown
    if window is None:
        return RewardOutcome.APPLIED
    if entry["type"] not in window.types:
        return RewardOutcome.UNKNOWN_TYPE
    core = LoggedReward.model_validate(entry).to_reward()
    if not counts(core, decision.record.window_start, window, flagged_late=False):
        return RewardOutcome.LATE
    return RewardOutcome.APPLIED


def write(changes: Sequence[EventChange]) -> None:
    """Store the changes, in transactions within DynamoDB's caps; ``EventsChangedError`` if one
    moved.

    Transactions already committed stay: every change is idempotent to redo after a re-read.
    """
    bind()
    pending = [change for change in changes if change.writes]
    for chunk in chunks(
        pending,
        lambda change: change.size,
        max_items=MAX_TRANSACTION_ITEMS,
        max_bytes=TRANSACTION_REWARD_BYTES,
    ):
        try:
            with TransactWrite(connection=transaction_connection()) as transaction:
                for change in chunk:
                    transaction.update(
                        DecisionItem(change.key),
                        actions=change.actions(),
                        condition=change.condition(),
                    )
        except TransactWriteError as exc:
            codes = [reason.code if reason else None for reason in exc.cancellation_reasons or []]
            if "ConditionalCheckFailed" in codes or "TransactionConflict" in codes:
                raise EventsChangedError(f"{len(chunk)} events changed while joining") from exc
            raise StorageError(f"decision store unavailable: {exc.msg}") from exc
        except PynamoDBException as exc:
            raise StorageError(f"decision store unavailable: {exc.msg}") from exc
