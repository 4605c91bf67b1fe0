"""``/model``, ``/model/properties`` and ``/logs/properties`` of the Personalizer API, over
Serendip's model versions and decision log.

The exported model is Serendip's model blob: one line of JSON (the VW arguments, what it
learned, a SHA-256 over it all) and then VW's own model file. Import takes such a blob back
(built with the policy's current arguments) as a new model version; reset starts a fresh one.
Every one of them is a version of ``GET /v1/policies/{policy}/models``, so a rollback undoes it.
Personalizer's own exported models are VW files in another envelope: they are refused
(``InvalidModelImportFormat``).
"""

from __future__ import annotations

from typing import Any

from bandit.errors import ModelError
from bandit.serve.ranker import build_model
from bandit.serve.vw import VWModel
from functions.common import decision_store, model_store
from functions.common.auth import Principal
from functions.common.personalizer import errors as codes
from functions.common.personalizer.configuration import iso_time
from functions.common.personalizer.errors import PersonalizerError
from functions.common.personalizer.resource import stored
from functions.common.policy_store import StoredPolicy


def export(principal: Principal) -> bytes:
    """``GET /model``: the head model version's blob."""
    principal.require("admin")
    current = stored(principal)
    if current.head_version == 0:
        model = build_model(current.spec)
    else:
        model = model_store.load(principal.tenant, current.spec.name, current.head_version)
    try:
        return model.to_bytes()
    finally:
        model.close()


def _conflict(policy: str) -> PersonalizerError:
    return PersonalizerError(
        409,
        codes.NOT_ALLOWED,
        f"the model of '{policy}' changed while this request ran (a learner saved a new "
        "version); retry",
    )


def import_model(principal: Principal, blob: bytes) -> None:
    """``PUT /model``: a blob exported from this policy becomes the new head version."""
    principal.require("admin")
    current = stored(principal)
    try:
        model = VWModel.from_bytes(blob)
    except ModelError as exc:
        raise PersonalizerError(
            400,
            codes.INVALID_MODEL_FORMAT,
            f"not a model exported by Serendip's GET /model: {exc}",
            target="body",
        ) from exc
    try:
        if list(model.args) != current.spec.vw_args():
            raise PersonalizerError(
                400,
                codes.INVALID_MODEL_FORMAT,
                f"the model was built with {' '.join(model.args)}; the policy learns with "
                f"{' '.join(current.spec.vw_args())} (PUT /configurations/policy first)",
                target="body",
            )
        _save_head(principal, current, model)
    finally:
        model.close()


def reset(principal: Principal) -> None:
    """``DELETE /model``: a fresh model as the new head version."""
    principal.require("admin")
    current = stored(principal)
    model = build_model(current.spec)
    try:
        _save_head(principal, current, model)
    finally:
        model.close()


def _save_head(principal: Principal, current: StoredPolicy, model: VWModel) -> None:
    """``model`` as the policy's next version; 409 if a learner saved one meanwhile."""
    try:
        model_store.save(
            principal.tenant, current.spec.name, model, expected_head=current.head_version
        )
    except model_store.HeadMovedError as exc:
        raise _conflict(current.spec.name) from exc


def properties(principal: Principal) -> dict[str, Any]:
    """``GET /model/properties``: when the model line began (its oldest kept version) and
    when it last changed (the head's), with the head's version and what it learned."""
    principal.require("admin")
    current = stored(principal)
    kept = model_store.versions(principal.tenant, current.spec.name)
    created = kept[-1].created_at if kept else current.updated_at
    head = next((v for v in kept if v.version == current.head_version), None)
    return {
        "creationTime": iso_time(created),
        "lastModifiedTime": iso_time(head.created_at if head else current.updated_at),
        "serendip": {
            "modelVersion": current.head_version,
            "examplesLearned": head.examples_learned if head else 0,
            "eventsLearned": head.events_learned if head else 0,
        },
    }


def log_properties(principal: Principal) -> dict[str, Any]:
    """``GET /logs/properties``: the dates of the oldest and newest kept decisions."""
    principal.require("admin")
    current = stored(principal)
    span = decision_store.log_range(principal.tenant, current.spec.name)
    if span is None:
        return {"dateRange": {"from": None, "to": None}}
    return {"dateRange": {"from": iso_time(span[0]), "to": iso_time(span[1])}}
