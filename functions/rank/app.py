"""``POST /v1/policies/{policy}/rank`` and ``/recommend``: a slate with the exact probability of
every slot, drawn from the app's candidates or from the tenant's catalog."""

from functools import partial
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from functions.common.api import api_handler, api_resolver, principal_and_revalidation
from functions.common.api_models import RankBody, RecommendBody
from functions.common.auth import Principal, Revalidation
from functions.common.errors import UnauthorizedError
from functions.common.http import install_error_handlers
from functions.common.observability import tracer
from functions.common.rank_service import RankService

router = APIGatewayRouter()
app = api_resolver()
install_error_handlers(app)
_service: RankService | None = None


def service() -> RankService:
    """The process-wide rank service (built on first use)."""
    global _service  # noqa: PLW0603
    if _service is None:
        _service = RankService()
    return _service


@router.post("/v1/policies/<policy>/rank", summary="Rank candidates into a slate", tags=["rank"])
@tracer.capture_method
def rank(policy: str, body: Annotated[RankBody, Body()]) -> Response[dict[str, Any]]:
    """Score, explore within the budget, draw the slate, log the decision."""
    principal, revalidation = principal_and_revalidation(app)
    principal.require("rank")
    check = None if revalidation is None else partial(_still_ranks, principal, revalidation)
    result = service().rank(principal.tenant, policy, body, check)
    return Response(200, content_types.APPLICATION_JSON, result)


def _still_ranks(kept: Principal, revalidation: Revalidation) -> None:
    """The key read again (alongside the rank's first reads) may still rank for its tenant."""
    fresh = revalidation()
    fresh.require("rank")
    if fresh.tenant != kept.tenant:
        raise UnauthorizedError("this API key now belongs to another tenant")


@router.post(
    "/v1/policies/<policy>/recommend",
    summary="Recommend from the catalog: retrieve candidates, then rank them",
    tags=["rank"],
)
@tracer.capture_method
def recommend(policy: str, body: Annotated[RecommendBody, Body()]) -> Response[dict[str, Any]]:
    """Retrieve a candidate set from the catalog index, then draw and log the slate."""
    principal, revalidation = principal_and_revalidation(app)
    principal.require("rank")
    check = None if revalidation is None else partial(_still_ranks, principal, revalidation)
    result = service().recommend(principal.tenant, policy, body, check)
    return Response(200, content_types.APPLICATION_JSON, result)


# Routes are copied when included, so include them after they are all defined.
app.include_router(router)


lambda_handler = api_handler(app)
