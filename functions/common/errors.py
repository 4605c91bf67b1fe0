"""Domain errors of the service layer, each with the HTTP status it maps to.

The mapping to responses happens in exactly one place: ``functions.common.http``.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class: carries an HTTP status, a short error code and a human detail."""

    status = 500
    code = "internal_error"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class BadRequestError(ServiceError):
    """The request is malformed (bad JSON, wrong shape)."""

    status = 400
    code = "bad_request"


class ValidationFailedError(ServiceError):
    """A field holds an invalid value."""

    status = 422
    code = "validation_error"


class UnauthorizedError(ServiceError):
    """Missing or wrong API key or webhook signature."""

    status = 401
    code = "unauthorized"


class ForbiddenError(ServiceError):
    """The key is valid but lacks the scope the call needs."""

    status = 403
    code = "forbidden"


class NotFoundError(ServiceError):
    """Unknown resource (also for another tenant's resource)."""

    status = 404
    code = "not_found"


class ConflictError(ServiceError):
    """A concurrent change won (optimistic lock lost)."""

    status = 409
    code = "conflict"


class PayloadTooLargeError(ServiceError):
    """The body or one of its lists is over its cap."""

    status = 413
    code = "payload_too_large"


class RateLimitedError(ServiceError):
    """The tenant is over its request rate; retry after ``retry_after`` seconds."""

    status = 429
    code = "rate_limited"

    def __init__(self, detail: str, *, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class UnavailableError(ServiceError):
    """A dependency is down; the caller should retry later. Nothing was accepted."""

    status = 503
    code = "unavailable"

    def __init__(self, detail: str, *, retry_after: int = 5) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class IndexNotBuiltError(UnavailableError):
    """Recommend before the tenant's first catalog index build: retry once it is built."""

    code = "index_not_built"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, retry_after=60)


class StorageError(ServiceError):
    """A storage call failed (throttled, down, or refused)."""

    status = 503
    code = "storage_unavailable"
