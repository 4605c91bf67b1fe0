"""Personalizer's error shape: ``{"error": {"code", "message", "target"?}}`` and the
``x-ms-error-code`` header, with the codes of its spec.

Serendip's own errors are translated here, in one place: bad input is 400 (Personalizer has no
422) with the route's own code (``InvalidRankRequest``, ``InvalidRewardRequest`` ...), unknown
resources 404 ``ResourceNotFound`` (or ``EvaluationNotFound``), a missing or unknown key 401, a
key without the route's scope 403, a body over the cap 413 ``PayloadSizeExceeded``, storage
outages 503 with ``Retry-After``, and what Serendip does not do 501 ``OperationNotAllowed``.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from bandit.errors import FieldError, SpecError
from functions.common.decision_store import DuplicateEventError
from functions.common.errors import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceError,
    UnauthorizedError,
    UnavailableError,
    ValidationFailedError,
)

# The spec's codes used here (PersonalizerErrorCode of 2022-09-01-preview; v1.0's are a subset,
# except those marked).
BAD_REQUEST = "BadRequest"
INVALID_RANK = "InvalidRankRequest"
INVALID_REWARD = "InvalidRewardRequest"
INVALID_ACTIVATE = "InvalidEventIdToActivate"
INVALID_SERVICE_CONFIGURATION = "InvalidServiceConfiguration"
INVALID_POLICY_CONFIGURATION = "InvalidPolicyConfiguration"
INVALID_EVALUATION = "InvalidEvaluationContract"
INVALID_REWARD_WAIT = "InvalidRewardWaitTime"
INVALID_LOG_RETENTION = "InvalidLogRetentionDays"
INVALID_MODEL_RETRAIN = "InvalidModelRetrainDays"
INVALID_MODEL_FORMAT = "InvalidModelImportFormat"
DUPLICATE_POLICY_NAMES = "DuplicateCustomPolicyNames"
NO_LOGS = "NoLogsExistInDateRange"
LOGS_TOO_LARGE = "LogsSizeExceedAllowedLimit"
EVALUATION_EXISTS = "EvaluationAlreadyExists"
PAYLOAD_TOO_LARGE = "PayloadSizeExceeded"
NOT_FOUND = "ResourceNotFound"
EVALUATION_NOT_FOUND = "EvaluationNotFound"
LEARNING_SETTINGS_NOT_FOUND = "LearningSettingsNotFound"
NOT_ALLOWED = "OperationNotAllowed"
INTERNAL = "InternalServerError"
UNAUTHORIZED = "Unauthorized"  # not a spec code: Azure's gateway answered 401 before the service
FORBIDDEN = "Forbidden"  # likewise


class PersonalizerError(Exception):
    """An error to answer in Personalizer's shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        target: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        """The JSON body: ``{"error": {"code", "message", "target"?}}``."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target:
            error["target"] = self.target
        return {"error": error}

    def headers(self) -> dict[str, str]:
        """``x-ms-error-code`` (as Personalizer sent it) and, for outages, ``Retry-After``."""
        headers = {"Content-Type": "application/json", "x-ms-error-code": self.code}
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return headers

    def proxy_response(self) -> dict[str, Any]:
        """The error as a Lambda proxy response."""
        return {
            "statusCode": self.status,
            "headers": self.headers(),
            "body": json.dumps(self.body()),
            "isBase64Encoded": False,
        }


def not_supported(what: str, why: str) -> PersonalizerError:
    """501 ``OperationNotAllowed`` for a Personalizer feature Serendip does not offer."""
    return PersonalizerError(501, NOT_ALLOWED, f"{what} is not supported by Serendip: {why}")


def invalid(code: str, target: str, message: str) -> PersonalizerError:
    """400 with ``code``, naming the field (``target``) that is wrong."""
    return PersonalizerError(400, code, f"{target}: {message}", target=target)


def _location(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        text = str(part)
        out += f"[{text}]" if isinstance(part, int) else (f".{text}" if out else text)
    return out or "body"


def from_validation(error: ValidationError, code: str) -> PersonalizerError:
    """400 naming the first field pydantic refused (``actions[2].id``)."""
    first = error.errors()[0]
    target = _location(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, FieldError):
        target, message = f"{target}{cause.field}", cause.message
    return invalid(code, target, message)


def translate(error: Exception, code: str) -> PersonalizerError:
    """Serendip's error as Personalizer's; ``code`` is the route's code for bad input."""
    if isinstance(error, PersonalizerError):
        return error
    if isinstance(error, ValidationError):
        return from_validation(error, code)
    if isinstance(error, FieldError | SpecError):
        field = getattr(error, "field", None) or "body"
        message = getattr(error, "message", None) or str(error)
        return PersonalizerError(400, code, f"{field}: {message}", target=field)
    if isinstance(error, ServiceError):
        return _from_service(error, code)
    return PersonalizerError(500, INTERNAL, "A generic error has occurred on the server.")


def _from_service(error: ServiceError, code: str) -> PersonalizerError:
    target = error.field
    if isinstance(error, UnauthorizedError):
        return PersonalizerError(401, UNAUTHORIZED, _unauthorized(error.detail))
    if isinstance(error, ForbiddenError):
        return PersonalizerError(403, FORBIDDEN, error.detail)
    if isinstance(error, NotFoundError):
        return PersonalizerError(404, NOT_FOUND, error.detail, target=target)
    if isinstance(error, PayloadTooLargeError):
        return PersonalizerError(413, PAYLOAD_TOO_LARGE, error.detail, target=target)
    if isinstance(error, BadRequestError | ValidationFailedError | DuplicateEventError):
        return PersonalizerError(400, code, error.detail, target=target)
    if isinstance(error, ConflictError):
        return PersonalizerError(409, NOT_ALLOWED, error.detail, target=target)
    retry = error.retry_after if isinstance(error, UnavailableError) else 5
    if error.status >= 500:
        return PersonalizerError(503, INTERNAL, error.detail, retry_after=retry)
    return PersonalizerError(error.status, code, error.detail, target=target)


def _unauthorized(detail: str) -> str:
    return (
        f"Access denied ({detail}): send a Serendip API key in the Ocp-Apim-Subscription-Key "
        "header, with this stack's URL as the endpoint."
    )
