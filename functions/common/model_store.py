"""Versioned models: inline zlib blobs up to the inline limit, S3 objects beyond it.

Saving writes a new immutable version and flips the policy's head in one DynamoDB transaction
that is conditional on the head still being the version the learner started from, and on every
event it learned still being open. So a lost race never loses another learner's update and no
event is learned twice: the loser reloads and retries. The last ``KEEP_VERSIONS`` are kept.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.exceptions import DoesNotExist, PynamoDBException, TransactWriteError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from bandit.errors import ModelError
from bandit.serve.vw import VWModel
from functions.common.aws import s3
from functions.common.decision_store import EventStatus, closing_actions
from functions.common.errors import NotFoundError, StorageError
from functions.common.observability import logger
from functions.common.reward_join import EventChange
from functions.common.settings import settings
from functions.common.tables import (
    DecisionItem,
    ModelVersionItem,
    PolicyItem,
    bind,
    transaction_connection,
)

KEEP_VERSIONS = 20
PRUNE_EVERY = 5  # prune on every 5th version: between 20 and 24 versions are kept


class HeadMovedError(Exception):
    """Another learner saved first: reload the head and learn again."""


class AlreadyLearnedError(Exception):
    """Some of the events were learned by someone else meanwhile."""

    def __init__(self, event_keys: Sequence[str]) -> None:
        super().__init__(f"{len(event_keys)} events were already learned")
        self.event_keys = list(event_keys)


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """What the models endpoint lists for one version."""

    version: int
    size: int
    stored_in: str
    created_at: float
    examples_learned: int
    events_learned: int
    rolled_back_from: int | None
    # After a spec change retrained from the log: events learned, skipped, and the log range.
    retrained: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "version": self.version,
            "size": self.size,
            "stored_in": self.stored_in,
            "created_at": self.created_at,
            "examples_learned": self.examples_learned,
            "events_learned": self.events_learned,
            "rolled_back_from": self.rolled_back_from,
            "retrained": self.retrained,
        }


def model_key(tenant: str, policy: str) -> str:
    """Partition key of a policy's model versions."""
    return f"{tenant}#{policy}"


def _decode(item: ModelVersionItem) -> VWModel:
    if item.blob is not None:
        compressed = bytes(item.blob)
    elif item.s3_key:
        try:
            response = s3().get_object(Bucket=settings().model_bucket, Key=item.s3_key)
            compressed = response["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"model object unavailable: {exc}") from exc
    else:
        raise ModelError(f"model version {item.version} has no blob")
    if hashlib.sha256(compressed).hexdigest() != item.sha256:
        raise ModelError(f"model version {item.version} failed its checksum")
    try:
        return VWModel.from_bytes(zlib.decompress(compressed))
    except zlib.error as exc:
        raise ModelError(f"model version {item.version} is not valid zlib") from exc


def load(tenant: str, policy: str, version: int) -> VWModel:
    """Load one stored version; raise ``ModelError`` if it fails its checksum."""
    bind()
    try:
        item = ModelVersionItem.get(model_key(tenant, policy), version)
    except DoesNotExist as exc:
        raise NotFoundError(f"model version {version} of policy '{policy}' not found") from exc
    except PynamoDBException as exc:
        raise StorageError(f"model store unavailable: {exc.msg}") from exc
    return _decode(item)


def _stage(tenant: str, policy: str, version: int, compressed: bytes) -> ModelVersionItem:
    item = ModelVersionItem(
        model_key(tenant, policy),
        version,
        sha256=hashlib.sha256(compressed).hexdigest(),
        size=len(compressed),
        created_at=time.time(),
    )
    if len(compressed) <= settings().inline_model_bytes:
        item.blob = compressed
    else:
        key = f"models/{tenant}/{policy}/{version:08d}-{uuid.uuid4().hex}.vw.z"
        try:
            s3().put_object(Bucket=settings().model_bucket, Key=key, Body=compressed)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"model bucket unavailable: {exc}") from exc
        item.s3_key = key
    return item


def _discard_object(item: ModelVersionItem) -> None:
    if item.s3_key:
        try:
            s3().delete_object(Bucket=settings().model_bucket, Key=item.s3_key)
        except (BotoCoreError, ClientError):
            logger.warning("could not delete staged model object", extra={"key": item.s3_key})


@dataclass(frozen=True, slots=True)
class SpecChange:
    """A new spec saved together with a model built for it: the old weights no longer fit it.

    ``also`` are further updates of the policy item in the same write, made only if
    ``only_if`` holds too (a retrained model: its job still being the policy's).
    """

    spec_json: str
    expected_spec_version: int
    also: tuple[Action, ...] = ()
    only_if: Condition | None = None


def save(
    tenant: str,
    policy: str,
    model: VWModel,
    *,
    expected_head: int,
    learned_events: Sequence[str] = (),
    rolled_back_from: int | None = None,
    spec_change: SpecChange | None = None,
    event_changes: Mapping[str, EventChange] | None = None,
    retrained: Mapping[str, Any] | None = None,
) -> int:
    """Store ``model`` as version ``expected_head + 1`` and mark ``learned_events`` learned.

    ``event_changes`` (by event key) are the learned events as read and their new rewards,
    stored with them in the same transaction, conditional on each event being as it was read.

    With ``spec_change`` the policy's spec is replaced in the same transaction (conditional on
    its spec version), so no rank can pair the new spec with the old model or the reverse.
    ``retrained`` is kept with the version: the log a spec change's model was retrained from.
    The policy item notes the versions that start a line of their own (a model that learned
    nothing) or copy another (a rollback), for ``lineage``.
    Raises ``HeadMovedError`` if the head (or the spec) moved and ``AlreadyLearnedError`` if
    any event was learned meanwhile; nothing is changed then.
    """
    bind()
    version = expected_head + 1
    now = time.time()
    item = _stage(tenant, policy, version, zlib.compress(model.to_bytes(), 6))
    item.examples_learned = model.examples_learned
    item.events_learned = model.events_learned
    item.rolled_back_from = rolled_back_from
    item.retrained = None if retrained is None else json.dumps(retrained, sort_keys=True)
    policy_actions: list[Action] = [PolicyItem.head_version.set(version)]
    policy_condition = PolicyItem.head_version == expected_head
    if rolled_back_from is not None:
        copy = [[version, rolled_back_from]]
        policy_actions.append(
            PolicyItem.model_copies.set((PolicyItem.model_copies | []).append(copy))
        )
    elif model.events_learned == 0:
        policy_actions.append(
            PolicyItem.model_roots.set((PolicyItem.model_roots | []).append([version]))
        )
    if spec_change is not None:
        policy_actions += [
            PolicyItem.spec.set(spec_change.spec_json),
            PolicyItem.spec_version.set(spec_change.expected_spec_version + 1),
            PolicyItem.updated_at.set(now),
            *spec_change.also,
        ]
        policy_condition &= PolicyItem.spec_version == spec_change.expected_spec_version
        if spec_change.only_if is not None:
            policy_condition &= spec_change.only_if
    try:
        with TransactWrite(connection=transaction_connection()) as transaction:
            transaction.save(item, condition=ModelVersionItem.version.does_not_exist())
            transaction.update(
                PolicyItem(tenant, policy), actions=policy_actions, condition=policy_condition
            )
            for key in learned_events:
                actions = [
                    *closing_actions(EventStatus.LEARNED, now),
                    DecisionItem.learned_version.set(version),
                ]
                condition = DecisionItem.status == "open"
                change = (event_changes or {}).get(key)
                if change is not None:
                    # Still as read, even without new rewards: an impression report in between
                    # bumped the revision, and the event must be learned with it.
                    condition &= change.condition()
                    if change.writes:
                        actions += change.actions()
                transaction.update(DecisionItem(key), actions=actions, condition=condition)
    except TransactWriteError as exc:
        _discard_object(item)
        reasons = exc.cancellation_reasons or []
        codes = [reason.code if reason else None for reason in reasons]
        learned = [
            key
            for key, code in zip(learned_events, codes[2:], strict=False)
            if code == "ConditionalCheckFailed"
        ]
        if learned:
            raise AlreadyLearnedError(learned) from exc
        if "ConditionalCheckFailed" in codes[:2] or "TransactionConflict" in codes:
            raise HeadMovedError(f"head of '{policy}' moved past {expected_head}") from exc
        raise StorageError(f"model save failed: {exc.msg}") from exc
    except PynamoDBException as exc:
        _discard_object(item)
        raise StorageError(f"model save failed: {exc.msg}") from exc
    _prune(tenant, policy, version)
    return version


def _prune(tenant: str, policy: str, head: int) -> None:
    """Delete versions older than the last ``KEEP_VERSIONS`` (best effort, every few saves)."""
    oldest_kept = head - KEEP_VERSIONS + 1
    if oldest_kept <= 1 or head % PRUNE_EVERY:
        return
    try:
        for item in ModelVersionItem.query(
            model_key(tenant, policy), ModelVersionItem.version < oldest_kept
        ):
            _discard_object(item)
            item.delete()
    except PynamoDBException as exc:
        logger.warning("model pruning failed", extra={"policy": policy, "error": exc.msg})


def _info(item: ModelVersionItem) -> VersionInfo:
    return VersionInfo(
        version=int(item.version),
        size=int(item.size),
        stored_in="s3" if item.s3_key else "inline",
        created_at=float(item.created_at),
        examples_learned=int(item.examples_learned),
        events_learned=int(item.events_learned),
        rolled_back_from=None if item.rolled_back_from is None else int(item.rolled_back_from),
        retrained=None if item.retrained is None else json.loads(item.retrained),
    )


_INFO_ATTRIBUTES = [
    "pk",
    "version",
    "s3_key",
    "size",
    "created_at",
    "examples_learned",
    "events_learned",
    "rolled_back_from",
    "retrained",
]


def version_info(tenant: str, policy: str, version: int) -> VersionInfo | None:
    """What the models endpoint lists for one kept version (its blob unread); None if it is
    not kept."""
    bind()
    try:
        item = ModelVersionItem.get(
            model_key(tenant, policy), version, attributes_to_get=_INFO_ATTRIBUTES
        )
    except DoesNotExist:
        return None
    except PynamoDBException as exc:
        raise StorageError(f"model store unavailable: {exc.msg}") from exc
    return _info(item)


def line_marks(tenant: str, policy: str) -> tuple[list[int], dict[int, int]]:
    """What the kept versions show of their lineage (``model_lineage``): the versions saved
    with a model that had learned nothing, and the rollback copies (copy -> source)."""
    bind()
    roots: list[int] = []
    copies: dict[int, int] = {}
    try:
        for item in ModelVersionItem.query(
            model_key(tenant, policy),
            attributes_to_get=["pk", "version", "events_learned", "rolled_back_from"],
        ):
            if item.rolled_back_from is not None:
                copies[int(item.version)] = int(item.rolled_back_from)
            elif not item.events_learned:
                roots.append(int(item.version))
    except PynamoDBException as exc:
        raise StorageError(f"model store unavailable: {exc.msg}") from exc
    return roots, copies


def versions(tenant: str, policy: str) -> list[VersionInfo]:
    """Kept versions, newest first."""
    bind()
    try:
        items = ModelVersionItem.query(model_key(tenant, policy), scan_index_forward=False)
        return [_info(item) for item in items]
    except PynamoDBException as exc:
        raise StorageError(f"model store unavailable: {exc.msg}") from exc


def versions_before(
    tenant: str, policy: str, before: int | None, limit: int
) -> tuple[list[VersionInfo], bool]:
    """At most ``limit`` kept versions older than ``before`` (all with ``None``), newest first,
    and whether older ones follow."""
    bind()
    condition = None if before is None else ModelVersionItem.version < before
    try:
        items = ModelVersionItem.query(
            model_key(tenant, policy),
            condition,
            scan_index_forward=False,
            limit=limit + 1,
            page_size=limit + 1,
            attributes_to_get=_INFO_ATTRIBUTES,
        )
        found = [_info(item) for item in items]
    except PynamoDBException as exc:
        raise StorageError(f"model store unavailable: {exc.msg}") from exc
    return found[:limit], len(found) > limit


class IncompatibleModelError(Exception):
    """A kept version was built with other VW arguments than the policy's spec has now."""


def rollback(tenant: str, policy: str, version: int, head: int, args: Sequence[str]) -> int:
    """Make a copy of kept ``version`` the new head (so history stays linear).

    ``args`` are the VW arguments of the current spec: a version built with others would not
    fit it, so it raises ``IncompatibleModelError`` instead.
    """
    model = load(tenant, policy, version)
    if tuple(model.args) != tuple(args):
        raise IncompatibleModelError(
            f"model version {version} was built with other VW arguments than the spec has now"
        )
    return save(tenant, policy, model, expected_head=head, rolled_back_from=version)
