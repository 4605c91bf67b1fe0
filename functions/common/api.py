"""Running an API handler: size cap and authentication before the resolver, errors mapped.

Authentication happens before request validation, so a caller without a valid key learns
nothing about the body's shape; the principal reaches routes through the resolver's context.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common.auth import Principal, authenticate
from functions.common.errors import ServiceError
from functions.common.http import check_body_size, header, service_error_response
from functions.common.observability import logger, metrics, tracer

PUBLIC_PATHS = frozenset({"/v1/health", "/v1/openapi.json"})

PreCheck = Callable[[dict[str, Any], Principal], None]


def handle(
    app: APIGatewayRestResolver,
    event: dict[str, Any],
    context: LambdaContext,
    pre_check: PreCheck | None = None,
) -> dict[str, Any]:
    """Cap the body, authenticate, run ``pre_check`` (e.g. a signature), then resolve."""
    try:
        check_body_size(event)
        if event.get("path") not in PUBLIC_PATHS:
            principal = authenticate(header(event, "x-api-key"))
            if pre_check is not None:
                pre_check(event, principal)
            app.append_context(principal=principal)
    except ServiceError as error:
        return service_error_response(error)
    return app.resolve(event, context)


def principal_of(app: APIGatewayRestResolver) -> Principal:
    """The authenticated caller of the current request."""
    principal = app.context.get("principal")
    if not isinstance(principal, Principal):
        raise RuntimeError("route reached without authentication")
    return principal


LambdaHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def api_handler(app: APIGatewayRestResolver, pre_check: PreCheck | None = None) -> LambdaHandler:
    """The Lambda entry point of an API function: logging context, metrics, tracing, ``handle``."""

    @logger.inject_lambda_context(clear_state=True)
    @metrics.log_metrics
    @tracer.capture_lambda_handler
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return handle(app, event, context, pre_check)

    return lambda_handler
