"""Storage of retrain jobs: their state on the policy item, their staged objects, their chunks.

A job lives on its policy's item (``pending_spec``, ``retrain_job``, ``retrain_chunk``,
``retrain_status``, ``retrain_cursor``). Every chunk commits with an update conditional on the
job still being the policy's and on the chunk being the one it ran, so a chunk delivered twice
commits once and a superseded job never writes again. Its intermediate model and its plan are
staged in the models bucket under ``retrain/<tenant>/<policy>/<job>/``, in two slots each that
chunks alternate between: a chunk reads the slot its cursor names and writes the other, so a
chunk that failed before committing is run again from what it read.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.exceptions import DoesNotExist, PynamoDBException, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from bandit.errors import ModelError
from bandit.serve.vw import VWModel
from functions.common import learn_queue
from functions.common.aws import s3
from functions.common.decision_store import policy_key
from functions.common.errors import StorageError
from functions.common.model_lineage import Lineage, lineage
from functions.common.observability import logger
from functions.common.retrain_state import Plan, RetrainCursor, RetrainStatus
from functions.common.settings import settings
from functions.common.tables import DecisionItem, PolicyItem, bind

STAGING_PREFIX = "retrain/"
SLOTS = (0, 1)


class StagedObjectError(ModelError):
    """A staged object of a job is gone or corrupt: the job cannot go on."""


@dataclass(frozen=True, slots=True)
class Job:
    """A policy's retrain job as stored, with what the job needs of the policy."""

    tenant: str
    policy: str
    job: str | None
    chunk: int | None  # the next chunk the job expects; None once it ended
    status: RetrainStatus | None
    cursor: RetrainCursor | None
    pending_spec: str | None
    spec_version: int
    head_version: int
    roots: tuple[int, ...]
    copies: dict[int, int]

    def runs(self, job: str) -> bool:
        """Whether ``job`` is this policy's job and still running."""
        return (
            self.job == job
            and self.chunk is not None
            and self.cursor is not None
            and self.status is not None
        )

    def shown(self) -> RetrainStatus:
        """The job's status (a running job always has one)."""
        if self.status is None:
            raise StorageError(f"the retrain job of '{self.policy}' has no status")
        return self.status

    def where(self) -> RetrainCursor:
        """The job's cursor (a running job always has one)."""
        if self.cursor is None:
            raise StorageError(f"the retrain job of '{self.policy}' has no cursor")
        return self.cursor

    def lineage(
        self, head: int, roots: Sequence[int] = (), copies: Mapping[int, int] | None = None
    ) -> Lineage:
        """The lineage of version ``head`` by what the policy item notes, and ``roots`` and
        ``copies`` besides (what the kept versions show)."""
        return lineage(head, [*self.roots, *roots], {**(copies or {}), **self.copies})


def read(tenant: str, policy: str) -> Job | None:
    """The policy's job state (None when the policy does not exist)."""
    bind()
    try:
        item = PolicyItem.get(tenant, policy, consistent_read=True)
    except DoesNotExist:
        return None
    except PynamoDBException as exc:
        raise StorageError(f"policy store unavailable: {exc.msg}") from exc
    status, cursor = item.retrain_status, item.retrain_cursor
    return Job(
        tenant=tenant,
        policy=policy,
        job=item.retrain_job,
        chunk=None if item.retrain_chunk is None else int(item.retrain_chunk),
        status=None if status is None else RetrainStatus.from_json(status),
        cursor=None if cursor is None else RetrainCursor.from_json(cursor),
        pending_spec=item.pending_spec,
        spec_version=int(item.spec_version),
        head_version=int(item.head_version),
        roots=tuple(int(v) for v in item.model_roots or ()),
        copies={int(copy): int(source) for copy, source in item.model_copies or ()},
    )


def job_condition(job: str | None) -> Condition:
    """The policy item's job is ``job`` (none at all for None)."""
    if job is None:
        return PolicyItem.retrain_job.does_not_exist()
    return PolicyItem.retrain_job == job


def start_actions(
    job: str, pending_spec: str, status: RetrainStatus, cursor: RetrainCursor
) -> list[Action]:
    """The update that makes ``job`` the policy's running job, retraining for ``pending_spec``."""
    return [
        PolicyItem.pending_spec.set(pending_spec),
        PolicyItem.retrain_job.set(job),
        PolicyItem.retrain_chunk.set(0),
        PolicyItem.retrain_status.set(status.to_json()),
        PolicyItem.retrain_cursor.set(cursor.to_json()),
    ]


def end_actions(status: RetrainStatus) -> list[Action]:
    """The update that ends the policy's job with ``status`` (its chunks then find it ended)."""
    return [
        PolicyItem.pending_spec.remove(),
        PolicyItem.retrain_chunk.remove(),
        PolicyItem.retrain_cursor.remove(),
        PolicyItem.retrain_status.set(status.to_json()),
    ]


def running_condition(job: str, chunk: int) -> Condition:
    """The policy's job is ``job`` and expects ``chunk``."""
    condition: Condition = (PolicyItem.retrain_job == job) & (PolicyItem.retrain_chunk == chunk)
    return condition


def _update(job: Job, chunk: int, actions: Sequence[Action]) -> bool:
    bind()
    try:
        PolicyItem(job.tenant, job.policy).update(
            actions=list(actions), condition=running_condition(str(job.job), chunk)
        )
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise StorageError(f"policy store unavailable: {exc.msg}") from exc
    except PynamoDBException as exc:
        raise StorageError(f"policy store unavailable: {exc.msg}") from exc
    return True


def commit(job: Job, chunk: int, status: RetrainStatus, cursor: RetrainCursor) -> bool:
    """Record chunk ``chunk`` done; False (nothing written) if the job ended or moved on."""
    return _update(
        job,
        chunk,
        [
            PolicyItem.retrain_chunk.set(chunk + 1),
            PolicyItem.retrain_status.set(status.to_json()),
            PolicyItem.retrain_cursor.set(cursor.to_json()),
        ],
    )


def fail(job: Job, chunk: int, status: RetrainStatus) -> bool:
    """End the job as failed (``status`` says why); the policy keeps its current spec."""
    return _update(job, chunk, end_actions(status))


# ---------------------------------------------------------------- staged objects


def _object_key(tenant: str, policy: str, job: str, kind: str, slot: int) -> str:
    return f"{STAGING_PREFIX}{tenant}/{policy}/{job}/{kind}-{slot}.z"


def _put(key: str, data: bytes) -> None:
    try:
        s3().put_object(Bucket=settings().model_bucket, Key=key, Body=zlib.compress(data, 6))
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"model bucket unavailable: {exc}") from exc


def _get(key: str) -> bytes:
    try:
        body = s3().get_object(Bucket=settings().model_bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            raise StagedObjectError(f"staged object {key} is gone") from exc
        raise StorageError(f"model bucket unavailable: {exc}") from exc
    except BotoCoreError as exc:
        raise StorageError(f"model bucket unavailable: {exc}") from exc
    try:
        return zlib.decompress(body)
    except zlib.error as exc:
        raise StagedObjectError(f"staged object {key} is not valid zlib") from exc


def stage_model(job: Job, slot: int, model: VWModel) -> None:
    """Write the job's intermediate model to ``slot``."""
    _put(_object_key(job.tenant, job.policy, str(job.job), "model", slot), model.to_bytes())


def load_model(job: Job, slot: int) -> VWModel:
    """The job's intermediate model in ``slot`` (``ModelError`` if it is not intact)."""
    key = _object_key(job.tenant, job.policy, str(job.job), "model", slot)
    return VWModel.from_bytes(_get(key))


def stage_plan(job: Job, slot: int, plan: Plan) -> None:
    """Write the job's plan to ``slot``."""
    _put(_object_key(job.tenant, job.policy, str(job.job), "plan", slot), plan.to_json().encode())


def load_plan(job: Job, slot: int) -> Plan:
    """The job's plan in ``slot``."""
    data = _get(_object_key(job.tenant, job.policy, str(job.job), "plan", slot))
    try:
        return Plan.from_json(data.decode())
    except (ValueError, TypeError) as exc:
        raise StagedObjectError(f"the staged plan of job {job.job} is unreadable") from exc


def discard(tenant: str, policy: str, job: str) -> None:
    """Delete every staged object of ``job`` (best effort: a missing one is no error)."""
    for kind in ("model", "plan"):
        for slot in SLOTS:
            key = _object_key(tenant, policy, job, kind, slot)
            try:
                s3().delete_object(Bucket=settings().model_bucket, Key=key)
            except (BotoCoreError, ClientError):
                logger.warning("could not delete a staged retrain object", extra={"key": key})


def send_step(tenant: str, policy: str, job: str, chunk: int) -> None:
    """Queue chunk ``chunk`` of ``job`` in the policy's message group."""
    learn_queue.send(tenant, policy, [learn_queue.retrain_body(tenant, policy, job, chunk)])


# ---------------------------------------------------------------- the log


@dataclass(frozen=True, slots=True)
class LogEntry:
    """What a retrain reads of one event in its first pass: no record."""

    key: str
    decided_at: float
    status: str
    learned_version: int | None


class LogScan:
    """A policy's events by decision time from ``since`` on, resumable where it stopped."""

    def __init__(self, tenant: str, policy: str, since: float, start: dict[str, Any] | None):
        bind()
        self._items = DecisionItem.by_policy.query(
            policy_key(tenant, policy),
            DecisionItem.ts >= since,
            attributes_to_get=["pk", "policy_key", "ts", "status", "learned_version"],
            last_evaluated_key=start,
        )

    def __iter__(self) -> Iterator[LogEntry]:
        try:
            for item in self._items:
                yield LogEntry(
                    key=str(item.pk),
                    decided_at=float(item.ts),
                    status=str(item.status),
                    learned_version=None
                    if item.learned_version is None
                    else int(item.learned_version),
                )
        except PynamoDBException as exc:
            raise StorageError(f"decision store unavailable: {exc.msg}") from exc

    def resume_key(self) -> dict[str, Any] | None:
        """Where to resume after the entries taken so far (None: the log is through)."""
        key = self._items.last_evaluated_key
        return None if key is None else json.loads(json.dumps(key))
