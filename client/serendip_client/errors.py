"""The errors the client raises: one class per answer status, all of them ``SerendipError``.

Every error answer of the API is ``{"error": <code>, "detail": <text>, "field": <field>}``; the
exception carries those, the HTTP status, the ``Retry-After`` delay when the service gave one,
and the response's ``x-request-id`` header (quote it when reporting a problem).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class SerendipError(Exception):
    """Base of every error the client raises.

    >>> error = SerendipError("policy 'x' not found", status=404, error="not_found")
    >>> (error.status, error.error, error.field)
    (404, 'not_found', None)
    """

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        error: str | None = None,
        field: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.error = error
        self.field = field
        self.request_id = request_id
        self.retry_after = retry_after
        self.body = body

    def __str__(self) -> str:
        parts = [str(self.status)] if self.status is not None else []
        parts += [self.error] if self.error else []
        prefix = " ".join(parts)
        where = f" (field {self.field})" if self.field else ""
        request = f" [request {self.request_id}]" if self.request_id else ""
        return f"{prefix}: {self.detail}{where}{request}" if prefix else f"{self.detail}{request}"


class SerendipConnectionError(SerendipError):
    """No answer: the connection failed or timed out (``status`` is None)."""


class BadRequestError(SerendipError):
    """400: the body is not JSON, or not the expected shape."""


class UnauthorizedError(SerendipError):
    """401: missing, unknown or revoked key; missing, stale or wrong webhook signature."""


class ForbiddenError(SerendipError):
    """403: the key lacks the scope."""


class NotFoundError(SerendipError):
    """404: unknown policy, event, item or model version (also another tenant's)."""


class ConflictError(SerendipError):
    """409: a concurrent change won; read again and retry."""


class PayloadTooLargeError(SerendipError):
    """413: the body, or what it would store, is too large."""


class ValidationError(SerendipError):
    """422: a field is invalid; ``field`` names it, e.g. ``candidates[3].features.price``."""


class RateLimitedError(SerendipError):
    """429: too many requests (raised once the retries are spent)."""


class UnavailableError(SerendipError):
    """503: a dependency is down, or the catalog index is not built yet (raised once the
    retries are spent); ``retry_after`` says when to try again."""


class ServerError(SerendipError):
    """Another 5xx answer."""


_BY_STATUS: dict[int, type[SerendipError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: RateLimitedError,
    503: UnavailableError,
}


def error_for(
    status: int, headers: Mapping[str, str], body: bytes, retry_after: float | None
) -> SerendipError:
    """The exception for an error answer (``headers`` with lower-case names).

    >>> e = error_for(422, {"x-request-id": "r-1"},
    ...               b'{"error": "validation_error", "detail": "bad", "field": "slate_size"}',
    ...               None)
    >>> type(e).__name__, e.field, e.request_id
    ('ValidationError', 'slate_size', 'r-1')
    """
    kind = _BY_STATUS.get(status, ServerError if status >= 500 else SerendipError)
    decoded = _decoded(body)
    if isinstance(decoded, dict):
        code = decoded.get("error")
        detail = decoded.get("detail") or decoded.get("message") or f"HTTP {status}"
        field = decoded.get("field")
    else:
        text = body.decode("utf-8", errors="replace").strip()
        code, detail, field = None, text[:500] or f"HTTP {status}", None
    return kind(
        str(detail),
        status=status,
        error=None if code is None else str(code),
        field=None if field is None else str(field),
        request_id=headers.get("x-request-id"),
        retry_after=retry_after,
        body=decoded,
    )


def _decoded(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None
