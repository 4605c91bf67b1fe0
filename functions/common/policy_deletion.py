"""Deleting a policy: its spec and every model version, so that a policy created again under
the same name starts fresh (a spec, no model, version numbers from 1) and meets no leftovers.

The versions go first and the policy item last, in a delete conditional on the head still being
the one read before the versions were deleted. A save (a learner, a rollback, a spec change
that resets the model) is itself conditional on the policy's head, so one that lands in between
moves the head, the conditional delete fails, and the versions are deleted again: once the
policy item is gone no save can succeed, and no version outlives it. If a step fails the
policy item is still there (without some of its versions): deleting it again finishes the job.

What stays: the policy's decisions (their TTL reaps them; the learner sets open ones aside,
"policy no longer exists"), its exploration-budget counters (their TTL, 7 days) and its
popularity counters, which have no TTL.
"""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.exceptions import DeleteError, PynamoDBException

from functions.common import model_store, policy_store
from functions.common.aws import s3
from functions.common.errors import ConflictError, StorageError
from functions.common.settings import settings
from functions.common.tables import ModelVersionItem, PolicyItem, bind

DELETE_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class DeletedPolicy:
    """What deleting a policy removed."""

    policy: str
    spec_version: int
    model_head: int
    model_versions: int
    model_objects: int


@dataclass(frozen=True, slots=True)
class Deleted:
    """What ``delete_versions`` deleted: version items, and the S3 objects of those kept there."""

    versions: int
    objects: int


def delete_versions(tenant: str, policy: str) -> Deleted:
    """Delete every stored version of a policy, each one's S3 object first (``StorageError``
    if either cannot be deleted: what is left is deleted by the next call).

    Only for a policy that is being deleted: ``delete`` makes sure no version saved
    meanwhile outlives it.
    """
    bind()
    versions = objects = 0
    try:
        for item in ModelVersionItem.query(
            model_store.model_key(tenant, policy), attributes_to_get=["pk", "version", "s3_key"]
        ):
            if item.s3_key:
                s3().delete_object(Bucket=settings().model_bucket, Key=item.s3_key)
                objects += 1
            item.delete()
            versions += 1
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"model bucket unavailable: {exc}") from exc
    except PynamoDBException as exc:
        raise StorageError(f"model store unavailable: {exc.msg}") from exc
    return Deleted(versions, objects)


def _delete_item(tenant: str, policy: str, head: int) -> bool:
    """Delete the policy item if its head is still ``head``; False if it moved (or went)."""
    try:
        PolicyItem(tenant, policy).delete(condition=PolicyItem.head_version == head)
    except DeleteError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise StorageError(f"policy store unavailable: {exc.msg}") from exc
    except PynamoDBException as exc:
        raise StorageError(f"policy store unavailable: {exc.msg}") from exc
    return True


def delete(tenant: str, policy: str) -> DeletedPolicy:
    """Delete the tenant's policy and its model versions (``NotFoundError`` if it has none of
    that name; ``ConflictError`` if saves keep moving its head, which the learn queue's order
    makes all but impossible)."""
    bind()
    versions = objects = 0
    for _ in range(DELETE_ATTEMPTS):
        stored = policy_store.get(tenant, policy)
        deleted = delete_versions(tenant, policy)
        versions += deleted.versions
        objects += deleted.objects
        if _delete_item(tenant, policy, stored.head_version):
            return DeletedPolicy(
                policy, stored.spec_version, stored.head_version, versions, objects
            )
    raise ConflictError(f"policy '{policy}' kept changing while it was deleted; retry")
