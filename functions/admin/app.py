"""Admin API: policies, model versions and rollback, metrics, the item catalog, health, OpenAPI."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from functions.admin.openapi import openapi_document
from functions.common import (
    admin_service,
    challenger_service,
    metrics_service,
    progress_service,
)
from functions.common.api import api_handler, api_resolver, principal_of
from functions.common.api_models import ItemsBody, RollbackBody
from functions.common.http import install_error_handlers
from functions.common.media_types import JSON_OR_YAML

router = APIGatewayRouter()
app = api_resolver()
install_error_handlers(app)


def _json(body: dict[str, Any], status: int = 200) -> Response[dict[str, Any]]:
    return Response(status, content_types.APPLICATION_JSON, body)


@router.get("/v1/health", summary="Liveness (no authentication)", tags=["admin"])
def health() -> Response[dict[str, Any]]:
    """Always 200 while the function runs."""
    return _json({"status": "ok"})


@router.get("/v1/openapi.json", summary="This API's OpenAPI document", tags=["admin"])
def openapi() -> Response[dict[str, Any]]:
    """The OpenAPI 3 document of every route."""
    return _json(openapi_document())


@router.get("/v1/policies", summary="List policies", tags=["policies"])
def list_policies() -> Response[dict[str, Any]]:
    """The tenant's policies with their specs and model heads."""
    return _json(admin_service.list_policies(principal_of(app)))


@router.get("/v1/policies/<policy>", summary="Get a policy", tags=["policies"])
def get_policy(policy: str) -> Response[dict[str, Any]]:
    """One policy (404 if unknown, also for another tenant's)."""
    return _json(admin_service.get_policy(principal_of(app), policy))


@router.put(
    "/v1/policies/<policy>",
    summary="Create or replace a policy",
    tags=["policies"],
    responses={
        200: {
            "description": "Stored, or unchanged (changed: false)",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        202: {
            "description": "Stored pending: the model is being retrained for the new VW arguments",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
    },
)
def put_policy(
    policy: str,
    body: Annotated[dict[str, Any], Body()],
    model: Annotated[
        str | None,
        Query(description="on a VW-argument change: retrain (default, 202) or fresh"),
    ] = None,
) -> Response[dict[str, Any]]:
    """Validate and store a policy spec (scope ``admin``); a VW-argument change retrains the
    model from the decision log in the background (202), or with ``model=fresh`` starts a fresh
    one at once."""
    answer = admin_service.put_policy(principal_of(app), policy, body, model)
    return _json(answer, admin_service.put_status(answer))


@router.delete("/v1/policies/<policy>", summary="Delete a policy", tags=["policies"])
def delete_policy(policy: str) -> Response[dict[str, Any]]:
    """Delete a policy with its model versions (scope ``admin``); its logged events stay."""
    return _json(admin_service.delete_policy(principal_of(app), policy))


@router.get("/v1/policies/<policy>/models", summary="List model versions", tags=["models"])
def list_models(
    policy: str,
    limit: Annotated[int, Query(ge=1, le=100, description="versions per page")] = 20,
    next_token: Annotated[str | None, Query(description="the previous page's next_token")] = None,
) -> Response[dict[str, Any]]:
    """Kept model versions, newest first, one page at a time."""
    return _json(admin_service.list_models(principal_of(app), policy, limit, next_token))


@router.post("/v1/policies/<policy>/rollback", summary="Roll back the model", tags=["models"])
def rollback(policy: str, body: Annotated[RollbackBody, Body()]) -> Response[dict[str, Any]]:
    """Make a kept version the head again (scope ``admin``)."""
    return _json(admin_service.rollback(principal_of(app), policy, body.version))


@router.get("/v1/policies/<policy>/metrics", summary="Product metrics", tags=["metrics"])
def policy_metrics(
    policy: str,
    since: Annotated[str | None, Query(description="unix seconds; default until - 24 h")] = None,
    until: Annotated[str | None, Query(description="unix seconds, exclusive; default now")] = None,
    segment: Annotated[str | None, Query(description="one user-maturity segment")] = None,
    next_token: Annotated[
        str | None, Query(description="the previous page's records.next_token")
    ] = None,
) -> Response[dict[str, Any]]:
    """CTR, conversion, coverage, diversity, serendipity, cold start, fairness (any scope), of
    one page of at most 2,000 events; ``records.next_token`` reads the next."""
    return _json(
        metrics_service.policy_metrics(
            principal_of(app),
            policy,
            since=since,
            until=until,
            segment=segment,
            next_token=next_token,
        )
    )


@router.get("/v1/policies/<policy>/progress", summary="Is it learning?", tags=["metrics"])
def policy_progress(
    policy: str,
    since: Annotated[str | None, Query(description="unix seconds; default until - 24 h")] = None,
    until: Annotated[str | None, Query(description="unix seconds, exclusive; default now")] = None,
    window: Annotated[
        str | None, Query(description="window width in seconds; default about 24 windows")
    ] = None,
) -> Response[dict[str, Any]]:
    """The policy's learning progress per window (what it earned per slot against a random
    pick, its own exploratory slots and the app's baseline, with 95% intervals; events learned,
    model versions, reward outcomes, budget target vs realised) and whether it is learning, in
    one sentence (any scope)."""
    return _json(
        progress_service.policy_progress(
            principal_of(app), policy, since=since, until=until, window=window
        )
    )


@router.put("/v1/items", summary="Upsert catalog items", tags=["items"])
def put_items(body: Annotated[ItemsBody, Body()]) -> Response[dict[str, Any]]:
    """Create or replace up to 500 items (scope ``admin``)."""
    return _json(admin_service.upsert_items(principal_of(app), body))


@router.get("/v1/items", summary="List catalog items", tags=["items"])
def list_items(
    limit: Annotated[int, Query(ge=1, le=1000, description="items per page")] = 100,
    next_token: Annotated[str | None, Query(description="the previous page's next_token")] = None,
) -> Response[dict[str, Any]]:
    """The tenant's catalog in id order, one page at a time (any scope)."""
    return _json(admin_service.list_items(principal_of(app), limit, next_token))


@router.get("/v1/items/<item_id>", summary="Get a catalog item", tags=["items"])
def get_item(item_id: str) -> Response[dict[str, Any]]:
    """One catalog item (any scope; 404 if unknown)."""
    return _json(admin_service.get_item(principal_of(app), item_id))


CHALLENGER = "/v1/policies/<policy>/challenger"


@router.put(CHALLENGER, summary="Start a challenger", tags=["challengers"])
def put_challenger(
    policy: str, body: Annotated[dict[str, Any], Body()]
) -> Response[dict[str, Any]]:
    """Start (or restart from a fresh model) a challenger spec that learns from the policy's
    logged decisions and is promoted by its rule (scope ``admin``)."""
    return _json(challenger_service.put(principal_of(app), policy, body))


@router.get(CHALLENGER, summary="A challenger's standing", tags=["challengers"])
def get_challenger(policy: str) -> Response[dict[str, Any]]:
    """The challenger's and the champion's estimates and the rule's last answer (any scope)."""
    return _json(challenger_service.get(principal_of(app), policy))


@router.delete(CHALLENGER, summary="Stop a challenger", tags=["challengers"])
def delete_challenger(policy: str) -> Response[dict[str, Any]]:
    """Stop and forget the challenger (scope ``admin``)."""
    return _json(challenger_service.delete(principal_of(app), policy))


@router.post(CHALLENGER + "/promote", summary="Promote a challenger now", tags=["challengers"])
def promote_challenger(policy: str) -> Response[dict[str, Any]]:
    """Make the running challenger the policy now, as the next model version (scope
    ``admin``)."""
    return _json(challenger_service.promote(principal_of(app), policy))


@router.post(CHALLENGER + "/rollback", summary="Undo a promotion", tags=["challengers"])
def rollback_challenger(policy: str) -> Response[dict[str, Any]]:
    """Put the champion's spec and model back as the next model version (scope ``admin``)."""
    return _json(challenger_service.rollback(principal_of(app), policy))


# Routes are copied when included, so include them after they are all defined.
app.include_router(router)


lambda_handler = api_handler(app, media_types={("PUT", "/v1/policies/{policy}"): JSON_OR_YAML})
