"""Running an API handler: size cap, authentication and the tenant's rate limit before the
resolver, errors mapped.

Authentication happens before request validation, so a caller without a valid key learns
nothing about the body's shape; the principal reaches routes through the resolver's context.
Path parameters that no resource can have are refused before anything reads storage.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.utilities.typing import LambdaContext

from bandit.spec import POLICY_NAME_PATTERN
from functions.common.api_models import ID_PATTERN
from functions.common.auth import Principal, Revalidation, authenticate, authenticate_deferred
from functions.common.errors import (
    NotFoundError,
    ServiceError,
    UnauthorizedError,
    ValidationFailedError,
)
from functions.common.http import (
    check_body_size,
    check_body_text,
    header,
    parse_json_object,
    service_error_response,
)
from functions.common.media_types import RouteMediaTypes, decode_body
from functions.common.observability import logger, metrics, tracer
from functions.common.rate_limit import check_rate
from functions.common.request_ids import start_request, with_request_id

PUBLIC_PATHS = frozenset({"/v1/health", "/v1/openapi.json"})
PATH_PATTERNS = {"policy": POLICY_NAME_PATTERN, "event_id": ID_PATTERN, "item_id": ID_PATTERN}


def api_resolver() -> APIGatewayRestResolver:
    """A resolver with request validation and a JSON parser whose failures are all 400."""
    return APIGatewayRestResolver(enable_validation=True, json_body_deserializer=parse_json_object)


def _matches(pattern: str, value: str) -> bool:
    # ``re`` takes a lone surrogate for a character; it is not valid unicode, so never a name.
    return value.encode("utf-8", "replace").decode() == value and bool(re.fullmatch(pattern, value))


def check_path_parameters(event: dict[str, Any]) -> None:
    """Refuse a policy name or event id no resource can have, naming the parameter.

    Such a name is unknown (404) when read and invalid (422) when a ``PUT`` would create it;
    either way it never reaches storage (whose keys have size limits of their own).
    """
    for name, value in (event.get("pathParameters") or {}).items():
        pattern = PATH_PATTERNS.get(name)
        if pattern is None or _matches(pattern, str(value)):
            continue
        if event.get("httpMethod") == "PUT":
            raise ValidationFailedError(f"{name}: must match {pattern}", field=name)
        raise NotFoundError(f"no such {name.replace('_', ' ')}", field=name)


PreCheck = Callable[[dict[str, Any], Principal], None]


def handle(
    app: APIGatewayRestResolver,
    event: dict[str, Any],
    context: LambdaContext,
    pre_check: PreCheck | None = None,
    media_types: RouteMediaTypes | None = None,
) -> dict[str, Any]:
    """Cap the body, authenticate, hold the tenant to its rate, run ``pre_check`` (e.g. a
    signature), check the body's media type (``media_types``: what a route takes besides
    JSON), then resolve. Every answer carries the request's id (``request_ids``)."""
    request_id = start_request(event)
    try:
        check_body_size(event)
        if event.get("path") not in PUBLIC_PATHS:
            principal, revalidation = authenticate_deferred(header(event, "x-api-key"))
            if pre_check is not None and revalidation is not None:
                principal, revalidation = revalidation(), None
            check_rate(principal.tenant)
            if pre_check is not None:
                principal = _checked(pre_check, event, principal)
            check_path_parameters(event)
            check_body_text(event)
            event = decode_body(event, media_types)
            app.append_context(principal=principal, revalidation=revalidation)
    except ServiceError as error:
        return with_request_id(service_error_response(error), request_id)
    except Exception:
        # The resolver maps what its routes raise; this is what the checks before it raised.
        logger.exception("unhandled error before the route", extra={"path": event.get("path")})
        return with_request_id(service_error_response(ServiceError("internal error")), request_id)
    return with_request_id(app.resolve(event, context), request_id)


def _checked(pre_check: PreCheck, event: dict[str, Any], principal: Principal) -> Principal:
    """The principal that passes ``pre_check``: the kept one, or the key read again.

    A key kept by this container (``API_KEY_CACHE_SECONDS``) may predate a secret added since:
    a refused signature reads the key once more before the refusal stands.
    """
    try:
        pre_check(event, principal)
        return principal
    except UnauthorizedError:
        fresh = authenticate(header(event, "x-api-key"), fresh=True)
        if fresh == principal:
            raise
    pre_check(event, fresh)
    return fresh


def principal_of(app: APIGatewayRestResolver) -> Principal:
    """The authenticated caller of the current request (its key read again first if due)."""
    principal, revalidation = principal_and_revalidation(app)
    if revalidation is None:
        return principal
    fresh = revalidation()
    app.append_context(principal=fresh)
    return fresh


def principal_and_revalidation(
    app: APIGatewayRestResolver,
) -> tuple[Principal, Revalidation | None]:
    """The caller as kept, and the read of its key that is due, if one is: for a route that
    runs it alongside its own first reads (``functions.common.auth.authenticate_deferred``) and
    checks the fresh principal before it answers. It is handed out once."""
    principal = app.context.get("principal")
    if not isinstance(principal, Principal):
        raise RuntimeError("route reached without authentication")
    revalidation = app.context.get("revalidation")
    app.append_context(revalidation=None)
    return principal, revalidation


LambdaHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def api_handler(
    app: APIGatewayRestResolver,
    pre_check: PreCheck | None = None,
    media_types: RouteMediaTypes | None = None,
) -> LambdaHandler:
    """The Lambda entry point of an API function: logging context, metrics, tracing, ``handle``."""

    @logger.inject_lambda_context(clear_state=True)
    @metrics.log_metrics
    @tracer.capture_lambda_handler
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return handle(app, event, context, pre_check, media_types)

    return lambda_handler
