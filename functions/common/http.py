"""HTTP plumbing shared by the API handlers: one place maps errors to responses.

Errors are JSON ``{error, detail, field?}``. Domain errors carry their status; the core's
``FieldError`` and request validation become 422 naming the field; anything unexpected is logged
with its stack and answered 500 without internals.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError as RouteNotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from pydantic import ValidationError

from bandit.errors import FieldError, ModelError
from functions.common.errors import PayloadTooLargeError, ServiceError, UnavailableError
from functions.common.observability import logger

MAX_BODY_BYTES = 1024 * 1024


def error_response(
    status: int,
    code: str,
    detail: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    """A JSON error response."""
    body: dict[str, Any] = {"error": code, "detail": detail}
    if field:
        body["field"] = field
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=body,
        headers=headers or {},
    )


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(part) for part in loc if part not in ("body",)]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "body"


def validation_error(errors: list[Any]) -> Response[dict[str, Any]]:
    """422 for pydantic/Powertools validation errors, naming the first bad field."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid body"}
    field = _location(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid value"))
    if first.get("type") == "json_invalid":
        return error_response(400, "bad_request", "body is not valid JSON", "body")
    return error_response(422, "validation_error", f"{field}: {message}", field)


def install_error_handlers(app: APIGatewayRestResolver) -> None:
    """Register the error mapping on a resolver."""

    @app.exception_handler(ServiceError)
    def _service(error: ServiceError) -> Response[dict[str, Any]]:
        headers = (
            {"Retry-After": str(error.retry_after)} if isinstance(error, UnavailableError) else {}
        )
        if error.status >= 500:
            logger.warning("service unavailable", extra={"error": error.detail})
            headers.setdefault("Retry-After", "5")
        return error_response(error.status, error.code, error.detail, error.field, headers)

    @app.exception_handler(FieldError)
    def _field(error: FieldError) -> Response[dict[str, Any]]:
        return error_response(422, "validation_error", str(error), error.field)

    @app.exception_handler(RequestValidationError)
    def _request(error: RequestValidationError) -> Response[dict[str, Any]]:
        return validation_error(list(error.errors()))

    @app.exception_handler(ValidationError)
    def _pydantic(error: ValidationError) -> Response[dict[str, Any]]:
        return validation_error(list(error.errors()))

    @app.exception_handler(ModelError)
    def _model(error: ModelError) -> Response[dict[str, Any]]:
        logger.error("model failed to load", extra={"error": str(error)})
        return error_response(503, "model_unavailable", str(error), headers={"Retry-After": "5"})

    @app.exception_handler(RouteNotFoundError)
    def _no_route(error: RouteNotFoundError) -> Response[dict[str, Any]]:
        return error_response(404, "not_found", "no such route")

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response[dict[str, Any]]:
        logger.error("unhandled error", exc_info=error)
        return error_response(500, "internal_error", "internal error")


def check_body_size(event: dict[str, Any], limit: int = MAX_BODY_BYTES) -> None:
    """Raise ``PayloadTooLargeError`` for bodies over ``limit`` bytes (before any parsing)."""
    body = event.get("body") or ""
    size = len(body.encode() if isinstance(body, str) else body)
    if event.get("isBase64Encoded"):
        size = size * 3 // 4
    if size > limit:
        raise PayloadTooLargeError(f"body is {size} bytes; the limit is {limit}", field="body")


def header(event: dict[str, Any], name: str) -> str | None:
    """A request header, matched case-insensitively."""
    wanted = name.lower()
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == wanted:
            return str(value)
    return None


def raw_body(event: dict[str, Any]) -> bytes:
    """The request body exactly as sent (what a webhook signature covers)."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body)
    return body.encode() if isinstance(body, str) else bytes(body)


def service_error_response(error: ServiceError) -> dict[str, Any]:
    """A raw Lambda proxy response for an error raised before the resolver ran."""
    body: dict[str, Any] = {"error": error.code, "detail": error.detail}
    if error.field:
        body["field"] = error.field
    headers = {"Content-Type": content_types.APPLICATION_JSON}
    if isinstance(error, UnavailableError):
        headers["Retry-After"] = str(error.retry_after)
    return {
        "statusCode": error.status,
        "headers": headers,
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }
