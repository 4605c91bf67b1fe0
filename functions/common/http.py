"""HTTP plumbing shared by the API handlers: one place maps errors to responses.

Errors are JSON ``{error, detail, field?}``. Domain errors carry their status; the core's
``FieldError`` and request validation become 422 naming the field; a body that is not UTF-8 JSON
(or nests deeper than the parser can go) is 400; anything unexpected is logged with its stack and
answered 500 without internals.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError as RouteNotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from pydantic import ValidationError

from bandit.errors import FieldError, ModelError
from functions.common.api_models import UNION_TAGS
from functions.common.errors import (
    BadRequestError,
    PayloadTooLargeError,
    RateLimitedError,
    ServiceError,
    UnavailableError,
)
from functions.common.observability import logger

MAX_BODY_BYTES = 1024 * 1024
# Errors that tell the caller when to try again (a ``Retry-After`` header).
RETRY_LATER = (UnavailableError, RateLimitedError)


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


# Where a request parameter was read: the field is the parameter's own name (``limit``).
PARAMETER_SOURCES = frozenset({"query", "path", "header", "cookie"})


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    if loc and loc[0] in PARAMETER_SOURCES:
        loc = loc[1:]
    parts = [str(part) for part in loc if part != "body" and part not in UNION_TAGS]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "body"


def validation_error(errors: list[Any]) -> Response[dict[str, Any]]:
    """422 for pydantic/Powertools validation errors, naming the first bad field.

    A ``FieldError`` raised inside a field's validator names a path below that field
    (``.user.age``), which is appended to the field's own location.
    """
    first = errors[0] if errors else {"loc": (), "msg": "invalid body"}
    field = _location(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid value"))
    if first.get("type") == "json_invalid":
        return error_response(400, "bad_request", "body is not valid JSON", "body")
    ctx = first.get("ctx")
    cause = ctx.get("error") if isinstance(ctx, dict) else None
    if isinstance(cause, FieldError):
        field, message = f"{field}{cause.field}", cause.message
    return error_response(422, "validation_error", f"{field}: {message}", field)


def install_error_handlers(app: APIGatewayRestResolver) -> None:
    """Register the error mapping on a resolver."""

    @app.exception_handler(ServiceError)
    def _service(error: ServiceError) -> Response[dict[str, Any]]:
        headers = {"Retry-After": str(error.retry_after)} if isinstance(error, RETRY_LATER) else {}
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

    @app.exception_handler(RequestUnsupportedContentType)
    def _media_type(error: RequestUnsupportedContentType) -> Response[dict[str, Any]]:
        return error_response(
            400, "bad_request", "the body must be application/json", "content-type"
        )

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


def check_body_text(event: dict[str, Any]) -> None:
    """Raise ``BadRequestError`` for a base64 body that is not UTF-8 text (JSON is text).

    API Gateway base64-encodes bodies it cannot pass as text; the resolver would decode them
    without a check.
    """
    body = event.get("body")
    if not (event.get("isBase64Encoded") and body):
        return
    try:
        base64.b64decode(body, validate=True).decode("utf-8")
    except ValueError as exc:  # binascii.Error and UnicodeDecodeError are both ValueErrors
        raise BadRequestError("body is not valid UTF-8 text", field="body") from exc


def parse_json(body: str | bytes) -> Any:
    """Parse a JSON body; every way it can fail is ``BadRequestError`` naming ``body``.

    Besides syntax errors this covers bytes that are not UTF-8, integers longer than Python
    converts (4300 digits) and nesting deeper than the parser's recursion limit, which would
    otherwise surface as a 500. It is also the resolvers' ``json_body_deserializer``.

    >>> parse_json('{"a": [1]}')
    {'a': [1]}
    >>> parse_json("[" * 100_000)
    Traceback (most recent call last):
    ...
    functions.common.errors.BadRequestError: body nests too deeply to parse
    """
    try:
        return json.loads(body)
    except RecursionError as exc:
        raise BadRequestError("body nests too deeply to parse", field="body") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, the int digit limit
        raise BadRequestError("body is not valid JSON", field="body") from exc


def parse_json_object(body: str | bytes) -> dict[str, Any]:
    """``parse_json`` for a body that must be a JSON object, as every body of this API is.

    The resolvers' deserializer: their validation would take a one-item list for the object in
    it (``[{...}]`` for ``{...}``).

    >>> parse_json_object('[{"version": 2}]')
    Traceback (most recent call last):
    ...
    functions.common.errors.BadRequestError: body must be a JSON object
    """
    data = parse_json(body)
    if not isinstance(data, dict):
        raise BadRequestError("body must be a JSON object", field="body")
    return data


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
    if isinstance(error, RETRY_LATER):
        headers["Retry-After"] = str(error.retry_after)
    return {
        "statusCode": error.status,
        "headers": headers,
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }
