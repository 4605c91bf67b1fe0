"""Policies per tenant: validated specs, their versions and their model heads.

Lineage is truth: a spec change that makes the old weights unusable (its VW arguments, see
``resets_model``) either saves a fresh model as a new head version in the same transaction as
the spec (``ModelChange.FRESH``), or is kept pending while a retrain job replays the decision
log into a model for it, which then becomes the next version together with the spec
(``ModelChange.RETRAIN``, ``functions.common.retrain_service``). Either way every rank and
every decision record names the model that really served it.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from pynamodb.exceptions import DoesNotExist, PutError, PynamoDBException, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from bandit.errors import SpecError
from bandit.serve.ranker import build_model
from bandit.spec import PolicySpec, load_spec, parse_spec
from functions.common import model_store, retrain_store
from functions.common.errors import (
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    StorageError,
)
from functions.common.item_size import MAX_ITEM_BYTES, item_size
from functions.common.observability import logger
from functions.common.retrain_state import RetrainCursor, RetrainState, RetrainStatus
from functions.common.tables import PolicyItem, bind

PUT_ATTEMPTS = 5


class PolicyNotFoundError(NotFoundError):
    """The tenant has no policy of that name."""

    def __init__(self, policy: str) -> None:
        super().__init__(f"policy '{policy}' not found")
        self.policy = policy


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    """A policy as stored: its spec, spec version and model head version, and the status of
    its latest retrain job (``RetrainStatus.as_dict``), if it had one."""

    spec: PolicySpec
    spec_version: int
    head_version: int
    updated_at: float
    retrain: dict[str, Any] | None = None
    lineage: str | None = None  # which creation of the policy this is (see ``PolicyItem``)


def _stored(item: PolicyItem) -> StoredPolicy:
    spec = parse_spec(json.loads(item.spec))
    status = item.retrain_status
    return StoredPolicy(
        spec=spec,
        spec_version=int(item.spec_version),
        head_version=int(item.head_version),
        updated_at=float(item.updated_at),
        retrain=None if status is None else RetrainStatus.from_json(status).as_dict(),
        lineage=item.lineage,
    )


def get(tenant: str, policy: str) -> StoredPolicy:
    """The tenant's policy, or ``NotFoundError`` (also for another tenant's policy)."""
    bind()
    try:
        return _stored(PolicyItem.get(tenant, policy, consistent_read=True))
    except DoesNotExist as exc:
        raise PolicyNotFoundError(policy) from exc
    except PynamoDBException as exc:
        raise StorageError(f"policy store unavailable: {exc.msg}") from exc


def list_policies(tenant: str) -> list[StoredPolicy]:
    """Every policy of the tenant, by name."""
    bind()
    try:
        return [_stored(item) for item in PolicyItem.query(tenant)]
    except PynamoDBException as exc:
        raise StorageError(f"policy store unavailable: {exc.msg}") from exc


def tenants() -> set[str]:
    """Every tenant that has a policy (a scan of the small policies table, keys only)."""
    bind()
    try:
        return {item.pk for item in PolicyItem.scan(attributes_to_get=["pk", "sk"])}
    except PynamoDBException as exc:
        raise StorageError(f"policy store unavailable: {exc.msg}") from exc


class ModelChange(StrEnum):
    """What a spec change that ``resets_model`` does to the model."""

    RETRAIN = "retrain"  # keep serving; retrain a model for the new spec from the log, then swap
    FRESH = "fresh"  # a fresh model for the new spec, at once


@dataclass(frozen=True, slots=True)
class PutResult:
    """A stored policy; whether storing it started a fresh model version, changed anything
    at all, and started a retrain job (the spec then waits, pending, in ``stored.retrain``)."""

    stored: StoredPolicy
    model_reset: bool
    changed: bool = True
    retrain_started: bool = False


def resets_model(old: PolicySpec, new: PolicySpec) -> bool:
    """Whether ``new`` cannot use a model trained under ``old``: its VW arguments differ.

    VW's arguments (``vw.args`` and ``vw.explore_args``) fix the model's shape; every other
    setting (exploration, budget, cold start, rewards, diversity) applies around the weights.
    """
    return old.vw_args() != new.vw_args()


def put(tenant: str, spec: PolicySpec) -> StoredPolicy:
    """Create or replace a policy's spec (see ``put_spec``)."""
    return put_spec(tenant, spec).stored


def put_spec(tenant: str, spec: PolicySpec, model: ModelChange = ModelChange.FRESH) -> PutResult:
    """Create or replace a policy's spec; the spec version goes up by one when it changes.

    A spec equal to the stored one (compared validated) changes nothing. The model head stays,
    unless the spec ``resets_model``: then, with ``ModelChange.FRESH``, a fresh model is saved
    as the next version with the spec, atomically; with ``ModelChange.RETRAIN`` the spec is
    stored pending and a retrain job is queued (the policy serves its current spec and model
    until the job swaps both), unless the head model learned nothing (then as ``FRESH``).
    Retraining for the pending spec again leaves the job running (and queues its next chunk
    again, which is harmless); any other change ends a running job as ``superseded``. A
    learner racing the change is retried here. A spec whose item DynamoDB could never store is
    refused first (``check_size``).
    """
    bind()
    body = spec.model_dump_json()
    check_size(tenant, spec.name, body)
    for _ in range(PUT_ATTEMPTS):
        try:
            current = PolicyItem.get(tenant, spec.name, consistent_read=True)
        except DoesNotExist:
            now = time.time()
            item = PolicyItem(
                tenant,
                spec.name,
                spec=body,
                spec_version=1,
                updated_at=now,
                lineage=uuid.uuid4().hex,
            )
            try:
                item.save(condition=PolicyItem.pk.does_not_exist())
                return PutResult(_stored(item), model_reset=False)
            except PutError:
                continue  # created concurrently: update it instead
        except PynamoDBException as exc:
            raise StorageError(f"policy store unavailable: {exc.msg}") from exc
        result = _change(tenant, current, spec, body, model)
        if result is not None:
            return result
    raise ConflictError(f"policy '{spec.name}' is being changed concurrently; retry")


def _change(
    tenant: str, current: PolicyItem, spec: PolicySpec, body: str, model: ModelChange
) -> PutResult | None:
    """One attempt at changing an existing policy; None when another change came first."""
    stored = _stored(current)
    version = int(current.spec_version)
    job, chunk = current.retrain_job, current.retrain_chunk
    running = job is not None and chunk is not None
    if running and model is ModelChange.RETRAIN and _same_spec(current.pending_spec, spec):
        retrain_store.send_step(tenant, spec.name, str(job), int(chunk))
        return PutResult(stored, model_reset=False, changed=False)
    if spec == stored.spec and not running:
        return PutResult(stored, model_reset=False, changed=False)
    ended = _superseded(current) if running else []
    only_if = retrain_store.job_condition(job)
    if spec == stored.spec:  # back to the current spec: the pending one is dropped
        return _update(tenant, spec.name, ended, only_if & (PolicyItem.spec_version == version))
    if (
        resets_model(stored.spec, spec)
        and model is ModelChange.RETRAIN
        and _has_learned(tenant, spec.name, stored.head_version)
    ):
        return _start_retrain(tenant, current, spec, body)
    if resets_model(stored.spec, spec):
        try:
            model_store.save(
                tenant,
                spec.name,
                build_model(spec),
                expected_head=int(current.head_version),
                spec_change=model_store.SpecChange(body, version, tuple(ended), only_if),
            )
        except model_store.HeadMovedError:
            return None  # a learner saved meanwhile: start again from the new head
        return PutResult(get(tenant, spec.name), model_reset=True)
    actions = [
        PolicyItem.spec.set(body),
        PolicyItem.spec_version.set(version + 1),
        PolicyItem.updated_at.set(time.time()),
        *ended,
    ]
    return _update(tenant, spec.name, actions, only_if & (PolicyItem.spec_version == version))


def _update(
    tenant: str, policy: str, actions: list[Action], condition: Condition
) -> PutResult | None:
    try:
        PolicyItem(tenant, policy).update(actions=actions, condition=condition)
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return None
        raise StorageError(f"policy store unavailable: {exc.msg}") from exc
    except PynamoDBException as exc:
        raise StorageError(f"policy store unavailable: {exc.msg}") from exc
    return PutResult(get(tenant, policy), model_reset=False)


def _has_learned(tenant: str, policy: str, head: int) -> bool:
    """Whether the head model learned any event (else a retrain would learn nothing: the
    change applies at once, with a fresh model)."""
    if head == 0:
        return False
    info = model_store.version_info(tenant, policy, head)
    return info is None or info.events_learned > 0


def _same_spec(pending: str | None, spec: PolicySpec) -> bool:
    """Whether the pending spec (as stored) is ``spec``, compared validated."""
    if pending is None:
        return False
    try:
        return parse_spec(json.loads(pending)) == spec
    except (SpecError, ValueError):
        return False  # stored under other rules: replace it


def replacing_spec(
    tenant: str, policy: str, body: str
) -> tuple[StoredPolicy, model_store.SpecChange]:
    """The policy as it is now, and the ``SpecChange`` that replaces its spec with ``body``
    (a challenger's promotion, its rollback) and ends a running retrain job as superseded."""
    bind()
    try:
        current = PolicyItem.get(tenant, policy, consistent_read=True)
    except DoesNotExist as exc:
        raise PolicyNotFoundError(policy) from exc
    except PynamoDBException as exc:
        raise StorageError(f"policy store unavailable: {exc.msg}") from exc
    running = current.retrain_job is not None and current.retrain_chunk is not None
    ended = _superseded(current) if running else []
    change = model_store.SpecChange(
        body,
        int(current.spec_version),
        tuple(ended),
        retrain_store.job_condition(current.retrain_job),
    )
    return _stored(current), change


def _superseded(current: PolicyItem) -> list[Action]:
    """The update that ends the policy's running retrain job: a newer change came."""
    status = RetrainStatus.from_json(str(current.retrain_status))
    status.state, status.updated_at = RetrainState.SUPERSEDED, time.time()
    status.reason = "the policy was changed again before the retrain finished"
    return retrain_store.end_actions(status)


def _start_retrain(
    tenant: str, current: PolicyItem, spec: PolicySpec, body: str
) -> PutResult | None:
    """Store ``spec`` pending with a new retrain job and queue its first chunk."""
    check_size(tenant, spec.name, str(current.spec), pending=body)
    version, now = int(current.spec_version), time.time()
    job = uuid.uuid4().hex
    status = RetrainStatus(RetrainState.RUNNING, version + 1, started_at=now, updated_at=now)
    cursor = RetrainCursor(base_spec_version=version, harvest_head=int(current.head_version))
    condition = retrain_store.job_condition(current.retrain_job)
    condition &= PolicyItem.spec_version == version
    started = _update(
        tenant, spec.name, retrain_store.start_actions(job, body, status, cursor), condition
    )
    if started is None:
        return None
    try:
        retrain_store.send_step(tenant, spec.name, job, 0)
    except StorageError:
        _restore(tenant, current, job)
        raise
    return PutResult(started.stored, model_reset=False, retrain_started=True)


def _restore(tenant: str, before: PolicyItem, job: str) -> None:
    """Undo ``_start_retrain``'s write (its first chunk could not be queued)."""
    attributes: list[tuple[Any, Any]] = [
        (PolicyItem.pending_spec, before.pending_spec),
        (PolicyItem.retrain_job, before.retrain_job),
        (PolicyItem.retrain_chunk, before.retrain_chunk),
        (PolicyItem.retrain_status, before.retrain_status),
        (PolicyItem.retrain_cursor, before.retrain_cursor),
    ]
    actions = [a.remove() if value is None else a.set(value) for a, value in attributes]
    try:
        PolicyItem(tenant, str(before.sk)).update(
            actions=actions, condition=retrain_store.running_condition(job, 0)
        )
    except PynamoDBException:
        # The job stays stored without a queued chunk: putting the same spec again queues it.
        logger.exception("could not undo a retrain whose first chunk was not queued")


# The counters of a policy item at their widest, so the check holds for any version numbers.
_WIDEST_NUMBER = float(2**53 - 1)


# Room kept on a policy item for a retrain job's status and cursor and the lineage notes.
_RETRAIN_RESERVE = "x" * 8192


def check_size(tenant: str, policy: str, body: str, pending: str | None = None) -> None:
    """Refuse (``PayloadTooLargeError`` naming ``spec``) a spec whose item would be over 400 KB.

    ``pending``: a spec to retrain for, kept beside ``body`` (the current spec) until the job
    swaps them. The detail names the spec's largest part. Stored with a fresh model in one
    transaction the spec still fits the transaction's 4 MB: the model version takes at most
    400 KB too.
    """
    widest = PolicyItem(
        tenant,
        policy,
        spec=body,
        spec_version=_WIDEST_NUMBER,
        head_version=_WIDEST_NUMBER,
        updated_at=time.time(),
        pending_spec=pending,
        retrain_status=_RETRAIN_RESERVE,
    )
    size = item_size(widest.serialize())
    if size <= MAX_ITEM_BYTES:
        return
    parts = {
        key: len(json.dumps(value, ensure_ascii=False).encode())
        for key, value in json.loads(pending or body).items()
    }
    largest = max(parts, key=parts.__getitem__)
    beside = (
        " with the current spec kept beside it until the retrain swaps them (model=fresh "
        "keeps one spec)"
        if pending
        else ""
    )
    raise PayloadTooLargeError(
        f"the spec takes {size} bytes as stored{beside}; a policy may take at most "
        f"{MAX_ITEM_BYTES} (its largest part is '{largest}', {parts[largest]} bytes)",
        field="spec",
    )


def seed(tenant: str, directory: Path) -> list[str]:
    """Store every ``*.yaml`` spec of ``directory`` for ``tenant`` unless it already exists."""
    names: list[str] = []
    for path in sorted(directory.glob("*.yaml")):
        spec = load_spec(path)
        try:
            get(tenant, spec.name)
        except NotFoundError:
            put(tenant, spec)
        names.append(spec.name)
    return names
