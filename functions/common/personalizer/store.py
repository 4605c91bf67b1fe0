"""What the Personalizer API keeps beside the policy: the settings Serendip's spec has no field
for, and offline evaluations. Both live on the counters table, keyed by tenant and policy."""

from __future__ import annotations

import json
import time
import zlib
from typing import Any

from pynamodb.exceptions import DoesNotExist, PutError, PynamoDBException

from functions.common.errors import NotFoundError, StorageError
from functions.common.tables import PersonalizerEvaluationItem, PersonalizerSettingsItem, bind

MAX_EVALUATIONS = 1000  # kept per policy; a list reads at most this many


def _settings_key(tenant: str) -> str:
    return f"{tenant}#personalizer"


def _evaluations_key(tenant: str, policy: str) -> str:
    return f"{tenant}#evaluations#{policy}"


def read_settings(tenant: str, policy: str) -> tuple[dict[str, Any], float]:
    """The kept settings of a policy's resource and when they were last edited (0: never)."""
    bind()
    try:
        item = PersonalizerSettingsItem.get(_settings_key(tenant), policy, consistent_read=True)
    except DoesNotExist:
        return {}, 0.0
    except PynamoDBException as exc:
        raise StorageError(f"settings store unavailable: {exc.msg}") from exc
    return dict(json.loads(item.settings)), float(item.edited_at)


def write_settings(tenant: str, policy: str, values: dict[str, Any]) -> float:
    """Replace the kept settings; returns the edit time."""
    bind()
    now = time.time()
    item = PersonalizerSettingsItem(
        _settings_key(tenant), policy, settings=json.dumps(values, sort_keys=True), edited_at=now
    )
    try:
        item.save()
    except PynamoDBException as exc:
        raise StorageError(f"settings store unavailable: {exc.msg}") from exc
    return now


class EvaluationExistsError(Exception):
    """An evaluation of that id is kept already."""


def put_evaluation(tenant: str, policy: str, evaluation_id: str, body: dict[str, Any]) -> None:
    """Keep a new evaluation; ``EvaluationExistsError`` if the id is taken."""
    bind()
    item = PersonalizerEvaluationItem(
        _evaluations_key(tenant, policy),
        evaluation_id,
        created_at=time.time(),
        body=zlib.compress(json.dumps(body).encode(), 6),
    )
    try:
        item.save(condition=PersonalizerEvaluationItem.sk.does_not_exist())
    except PutError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            raise EvaluationExistsError(evaluation_id) from exc
        raise StorageError(f"evaluation store unavailable: {exc.msg}") from exc
    except PynamoDBException as exc:
        raise StorageError(f"evaluation store unavailable: {exc.msg}") from exc


def get_evaluation(tenant: str, policy: str, evaluation_id: str) -> dict[str, Any]:
    """A kept evaluation; ``NotFoundError`` if there is none of that id."""
    bind()
    try:
        item = PersonalizerEvaluationItem.get(
            _evaluations_key(tenant, policy), evaluation_id, consistent_read=True
        )
    except DoesNotExist as exc:
        raise NotFoundError(f"no evaluation with id '{evaluation_id}'") from exc
    except PynamoDBException as exc:
        raise StorageError(f"evaluation store unavailable: {exc.msg}") from exc
    return _decoded(item)


def list_evaluations(tenant: str, policy: str) -> list[dict[str, Any]]:
    """The policy's kept evaluations, newest first."""
    bind()
    try:
        items = list(
            PersonalizerEvaluationItem.query(
                _evaluations_key(tenant, policy), limit=MAX_EVALUATIONS
            )
        )
    except PynamoDBException as exc:
        raise StorageError(f"evaluation store unavailable: {exc.msg}") from exc
    items.sort(key=lambda item: float(item.created_at), reverse=True)
    return [_decoded(item) for item in items]


def delete_evaluation(tenant: str, policy: str, evaluation_id: str) -> None:
    """Forget an evaluation; ``NotFoundError`` if there is none of that id."""
    get_evaluation(tenant, policy, evaluation_id)
    try:
        PersonalizerEvaluationItem(_evaluations_key(tenant, policy), evaluation_id).delete()
    except PynamoDBException as exc:
        raise StorageError(f"evaluation store unavailable: {exc.msg}") from exc


def _decoded(item: PersonalizerEvaluationItem) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(zlib.decompress(bytes(item.body)))
    return body
