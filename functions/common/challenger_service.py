"""Challenger policies: a second spec learns from the champion's log and takes over when better.

``PUT /v1/policies/{policy}/challenger`` names a spec (VW arguments, exploration, anything a
policy spec has) and the promotion rule. From then on, every event the champion's learner
learns is evaluated for the challenger and then learned by it (``bandit.evaluate.challenger``),
in the same learn invocation, after the champion's save: the challenger never serves, and a
failure of its part is logged and never holds back the champion's learning (the events it
missed are neither evaluated nor learned by it, so its estimate stays honest).

When the rule holds (``auto_promote``), or on ``POST .../challenger/promote``, the challenger's
spec becomes the policy's and its model the next model version, in one transaction
(``model_store.save`` with a ``SpecChange``), so no rank pairs one's spec with the other's
model; a retrain the policy was running for another spec change ends as superseded.
``POST .../challenger/rollback`` puts the champion's spec and a copy of its last model back as
the next version (``rolled_back_from``). The challenger's model lives with its state, inline
when small, else in the model bucket.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
import zlib
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pynamodb.exceptions import DeleteError, DoesNotExist, PutError, PynamoDBException

from bandit.decision_log import DecisionRecord
from bandit.errors import SpecError
from bandit.evaluate.challenger import Judgement, Standing, judge, step
from bandit.evaluate.sums import Sums
from bandit.serve.ranker import Ranker, build_model
from bandit.serve.vw import VWModel
from bandit.spec import PolicySpec, parse_spec
from functions.common import model_store, policy_store
from functions.common.auth import Principal
from functions.common.aws import s3
from functions.common.errors import (
    ConflictError,
    NotFoundError,
    StorageError,
    ValidationFailedError,
)
from functions.common.observability import logger, metrics
from functions.common.settings import settings
from functions.common.tables import ChallengerItem, bind

RUNNING, PROMOTED, ROLLED_BACK = "running", "promoted", "rolled_back"


class ChallengerRule(BaseModel):
    """When a challenger takes over."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    margin: float = Field(0.01, ge=0.0, le=1e6)
    min_events: int = Field(1000, ge=1, le=10**9)
    auto_promote: bool = True


class ChallengerBody(ChallengerRule):
    """``PUT /v1/policies/{policy}/challenger``: the challenger's spec and its rule."""

    spec: dict[str, Any]


def _key(tenant: str, policy: str) -> tuple[str, str]:
    return f"{tenant}#{policy}#challenger", "state"


def _read(tenant: str, policy: str) -> ChallengerItem | None:
    bind()
    try:
        return ChallengerItem.get(*_key(tenant, policy), consistent_read=True)
    except DoesNotExist:
        return None
    except PynamoDBException as exc:
        raise StorageError(f"challenger unavailable: {exc.msg}") from exc


def _standing(item: ChallengerItem) -> Standing:
    data = json.loads(item.standing)
    return Standing(
        Sums.from_dict(data["challenger"]),
        Sums.from_dict(data["champion"]),
        int(data.get("learned", 0)),
        int(data.get("unsupported", 0)),
    )


def _standing_json(standing: Standing) -> str:
    return json.dumps(
        {
            "challenger": standing.challenger.as_dict(),
            "champion": standing.champion.as_dict(),
            "learned": standing.learned,
            "unsupported": standing.unsupported,
        }
    )


def _load_model(item: ChallengerItem) -> VWModel:
    if item.blob is not None:
        compressed = bytes(item.blob)
    else:
        try:
            body = s3().get_object(Bucket=settings().model_bucket, Key=item.s3_key)["Body"]
            compressed = body.read()
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"challenger model unavailable: {exc}") from exc
    return VWModel.from_bytes(zlib.decompress(compressed))


def _store_model(item: ChallengerItem, tenant: str, policy: str, model: VWModel) -> str | None:
    """Put ``model`` on ``item`` (inline or a new object); the object it replaces, if any."""
    compressed = zlib.compress(model.to_bytes())
    old = item.s3_key
    if len(compressed) <= settings().inline_model_bytes:
        item.blob, item.s3_key = compressed, None
        return old
    digest = hashlib.sha256(compressed).hexdigest()[:16]
    key = f"models/{tenant}/{policy}/challenger/{uuid.uuid4().hex}-{digest}.vw.z"
    try:
        s3().put_object(Bucket=settings().model_bucket, Key=key, Body=compressed)
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"model bucket unavailable: {exc}") from exc
    item.blob, item.s3_key = None, key
    return old


def _discard(key: str | None) -> None:
    if key:
        try:
            s3().delete_object(Bucket=settings().model_bucket, Key=key)
        except (BotoCoreError, ClientError):
            logger.warning("could not delete a challenger model object", extra={"key": key})


def _save(item: ChallengerItem) -> None:
    try:
        item.save()
    except PutError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            raise ConflictError("the challenger changed meanwhile; read it again") from exc
        raise StorageError(f"challenger unavailable: {exc.msg}") from exc
    except PynamoDBException as exc:
        raise StorageError(f"challenger unavailable: {exc.msg}") from exc


def _interval(estimate: tuple[float, float, float] | None, n: float) -> dict[str, Any] | None:
    if estimate is None:
        return None
    value, low, high = estimate
    return {
        "value": value,
        "low": low if math.isfinite(low) else None,
        "high": high if math.isfinite(high) else None,
        "n": int(n),
    }


def _view(item: ChallengerItem) -> dict[str, Any]:
    standing = _standing(item)
    rule = ChallengerRule.model_validate_json(item.rule)
    return {
        "status": item.status,
        "spec": json.loads(item.spec),
        "rule": rule.model_dump(),
        "started_at": float(item.started_at),
        "updated_at": float(item.updated_at),
        "events_learned": standing.learned,
        "estimates": {
            "challenger": _interval(standing.challenger.estimate(), standing.challenger.n),
            "champion": _interval(standing.champion.estimate(), standing.champion.n),
        },
        "unsupported_events": standing.unsupported,
        "judgement": item.judgement,
        "promoted_version": None if item.promoted_version is None else int(item.promoted_version),
        "champion_version": None if item.champion_version is None else int(item.champion_version),
    }


def _challenger_spec(policy: str, raw: dict[str, Any]) -> PolicySpec:
    named = raw.get("name", policy)
    if named != policy:
        raise ValidationFailedError(
            f"spec.name: a challenger is named as its policy ('{policy}'), not '{named}'",
            field="spec.name",
        )
    try:
        return parse_spec({**raw, "name": policy})
    except SpecError as exc:
        raise ValidationFailedError(
            f"spec.{exc.field}: {exc.message}", field=f"spec.{exc.field}"
        ) from exc


def put(principal: Principal, policy: str, raw: Any) -> dict[str, Any]:
    """Start (or restart, from a fresh model) the policy's challenger (scope ``admin``)."""
    principal.require("admin")
    policy_store.get(principal.tenant, policy)  # 404 for an unknown policy
    try:
        body = ChallengerBody.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "body"
        raise ValidationFailedError(f"{field}: {error['msg']}", field=field) from exc
    spec = _challenger_spec(policy, body.spec)
    existing = _read(principal.tenant, policy)
    now = time.time()
    item = existing or ChallengerItem(*_key(principal.tenant, policy))
    old_object = item.s3_key
    item.spec = spec.model_dump_json()
    item.rule = ChallengerRule.model_validate(body.model_dump(exclude={"spec"})).model_dump_json()
    item.status = RUNNING
    item.started_at = now
    item.updated_at = now
    item.standing = _standing_json(Standing(Sums(), Sums()))
    item.judgement = None
    item.promoted_version = None
    item.champion_spec = None
    item.champion_version = None
    item.s3_key = None
    _store_model(item, principal.tenant, policy, build_model(spec))
    _save(item)
    _discard(old_object)
    return _view(item)


def get(principal: Principal, policy: str) -> dict[str, Any]:
    """The policy's challenger with both estimates and the rule's last answer (any scope)."""
    item = _read(principal.tenant, policy)
    if item is None:
        raise NotFoundError(f"policy '{policy}' has no challenger")
    return _view(item)


def delete(principal: Principal, policy: str) -> dict[str, Any]:
    """Stop and forget the policy's challenger (scope ``admin``)."""
    principal.require("admin")
    item = _read(principal.tenant, policy)
    if item is None:
        raise NotFoundError(f"policy '{policy}' has no challenger")
    try:
        item.delete()
    except (DeleteError, PynamoDBException) as exc:
        raise StorageError(f"challenger unavailable: {exc}") from exc
    _discard(item.s3_key)
    return {"deleted": True, "status": item.status}


def after_learning(tenant: str, policy: str, records: Sequence[DecisionRecord]) -> bool:
    """Evaluate then learn the champion's just-learned ``records`` for the running challenger,
    and promote it if its rule says so; True when it was promoted. Best effort: a problem is
    logged, and those events are neither evaluated nor learned by the challenger."""
    if not records:
        return False
    try:
        item = _read(tenant, policy)
        if item is None or item.status != RUNNING:
            return False
        spec = parse_spec(json.loads(item.spec))
        ranker = Ranker(spec, _load_model(item), clock=time.time)
        standing = _standing(item) + step(ranker, records)
        rule = ChallengerRule.model_validate_json(item.rule)
        verdict = judge(standing, margin=rule.margin, min_events=rule.min_events)
        item.standing = _standing_json(standing)
        item.judgement = verdict.reason
        item.updated_at = time.time()
        old_object = _store_model(item, tenant, policy, ranker.model)
        _save(item)
        _discard(old_object)
        if verdict.promote and rule.auto_promote:
            _promote(
                item, tenant=tenant, policy=policy, model=ranker.model, spec=spec, verdict=verdict
            )
            return True
    except Exception:
        logger.exception(
            "the challenger missed these events", extra={"policy": policy, "events": len(records)}
        )
        metrics.add_metric(name="ChallengerEventsMissed", unit="Count", value=len(records))
    return False


def _promote(
    item: ChallengerItem,
    *,
    tenant: str,
    policy: str,
    model: VWModel,
    spec: PolicySpec,
    verdict: Judgement,
) -> int:
    """Make the challenger the champion: its spec and model, as the next model version."""
    stored, change = policy_store.replacing_spec(tenant, policy, spec.model_dump_json())
    try:
        version = model_store.save(
            tenant,
            policy,
            model,
            expected_head=stored.head_version,
            spec_change=change,
            retrained={"promoted_challenger": verdict.reason},
        )
    except model_store.HeadMovedError as exc:
        raise ConflictError("the policy's model moved meanwhile; promote again") from exc
    item.status = PROMOTED
    item.promoted_version = version
    item.champion_spec = stored.spec.model_dump_json()
    item.champion_version = stored.head_version
    item.judgement = verdict.reason
    item.updated_at = time.time()
    _save(item)
    logger.info(
        "challenger promoted", extra={"policy": policy, "version": version, "why": verdict.reason}
    )
    metrics.add_metric(name="ChallengersPromoted", unit="Count", value=1)
    return version


def promote(principal: Principal, policy: str) -> dict[str, Any]:
    """Promote the running challenger now, whatever its rule says (scope ``admin``)."""
    principal.require("admin")
    item = _read(principal.tenant, policy)
    if item is None or item.status != RUNNING:
        raise NotFoundError(f"policy '{policy}' has no running challenger")
    spec = parse_spec(json.loads(item.spec))
    rule = ChallengerRule.model_validate_json(item.rule)
    verdict = judge(_standing(item), margin=rule.margin, min_events=rule.min_events)
    reason = f"promoted by hand ({verdict.reason})"
    _promote(
        item,
        tenant=principal.tenant,
        policy=policy,
        model=_load_model(item),
        spec=spec,
        verdict=Judgement(True, reason),
    )
    return _view(item)


def rollback(principal: Principal, policy: str) -> dict[str, Any]:
    """Undo a promotion: the champion's spec and a copy of its last model as the next version
    (scope ``admin``)."""
    principal.require("admin")
    item = _read(principal.tenant, policy)
    if item is None or item.status != PROMOTED or item.champion_version is None:
        raise NotFoundError(f"policy '{policy}' has no promoted challenger to roll back")
    stored, change = policy_store.replacing_spec(principal.tenant, policy, str(item.champion_spec))
    if stored.head_version != int(item.promoted_version or -1):
        raise ConflictError(
            f"the policy learned past the promoted version {item.promoted_version} (head "
            f"{stored.head_version}); roll back with POST /v1/policies/{policy}/rollback"
        )
    source = int(item.champion_version)
    model = model_store.load(principal.tenant, policy, source)
    try:
        version = model_store.save(
            principal.tenant,
            policy,
            model,
            expected_head=stored.head_version,
            rolled_back_from=source,
            spec_change=change,
        )
    except model_store.HeadMovedError as exc:
        raise ConflictError("the policy's model moved meanwhile; roll back again") from exc
    item.status = ROLLED_BACK
    item.updated_at = time.time()
    _save(item)
    return {**_view(item), "model_version": version}
