"""Admin API: policies, model versions and rollback, metrics, the item catalog, health, OpenAPI."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from functions.admin.openapi import openapi_document
from functions.common import admin_service, metrics_service
from functions.common.api import api_handler, api_resolver, principal_of
from functions.common.api_models import ItemsBody, RollbackBody
from functions.common.http import install_error_handlers

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


@router.put("/v1/policies/<policy>", summary="Create or replace a policy", tags=["policies"])
def put_policy(policy: str, body: Annotated[dict[str, Any], Body()]) -> Response[dict[str, Any]]:
    """Validate and store a policy spec (scope ``admin``)."""
    return _json(admin_service.put_policy(principal_of(app), policy, body))


@router.get("/v1/policies/<policy>/models", summary="List model versions", tags=["models"])
def list_models(policy: str) -> Response[dict[str, Any]]:
    """Kept model versions, newest first."""
    return _json(admin_service.list_models(principal_of(app), policy))


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


@router.put("/v1/items", summary="Upsert catalog items", tags=["items"])
def put_items(body: Annotated[ItemsBody, Body()]) -> Response[dict[str, Any]]:
    """Create or replace up to 500 items (scope ``admin``)."""
    return _json(admin_service.upsert_items(principal_of(app), body))


# Routes are copied when included, so include them after they are all defined.
app.include_router(router)


lambda_handler = api_handler(app)
