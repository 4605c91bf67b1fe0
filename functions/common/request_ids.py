"""The id of each API request: on every response (``x-request-id``) and in every log line.

It is API Gateway's ``requestContext.requestId`` (the id in its own access logs and in
``x-amzn-RequestId``), or a fresh UUID for an event without one. An ``x-request-id`` the caller
sends is never taken for it (anyone can send anything): it is logged beside it, as
``client_request_id``, so that the caller's own id still finds the request.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from functions.common.http import header
from functions.common.observability import logger

REQUEST_ID_HEADER = "x-request-id"
MAX_CLIENT_ID_CHARS = 200
_GATEWAY_ID = re.compile(r"[A-Za-z0-9-]{1,128}")


def request_id_of(event: dict[str, Any]) -> str:
    """API Gateway's id of the request, or a fresh one when the event has none (or a strange one).

    >>> request_id_of({"requestContext": {"requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"}})
    'c6af9ac6-7b61-11e6-9a41-93e8deadbeef'
    >>> request_id_of({"headers": {"x-request-id": "mine"}}) != "mine"
    True
    """
    given = (event.get("requestContext") or {}).get("requestId")
    if isinstance(given, str) and _GATEWAY_ID.fullmatch(given):
        return given
    return str(uuid.uuid4())


def start_request(event: dict[str, Any]) -> str:
    """The request's id, set as the logger's correlation id (with the caller's own id, if it
    sent one, as ``client_request_id``) for every line logged while it is handled."""
    request_id = request_id_of(event)
    logger.set_correlation_id(request_id)
    client_id = header(event, REQUEST_ID_HEADER)
    if client_id:
        logger.append_keys(client_request_id=client_id[:MAX_CLIENT_ID_CHARS])
    else:
        logger.remove_keys(["client_request_id"])
    return request_id


def with_request_id(response: dict[str, Any], request_id: str) -> dict[str, Any]:
    """A Lambda proxy response with the ``x-request-id`` header (where API Gateway reads it:
    ``multiValueHeaders`` when the response has them, else ``headers``)."""
    multi = response.get("multiValueHeaders")
    if isinstance(multi, dict):
        for name in [n for n in multi if n.lower() == REQUEST_ID_HEADER]:
            del multi[name]
        multi[REQUEST_ID_HEADER] = [request_id]
    else:
        headers = response.get("headers")
        headers = dict(headers) if isinstance(headers, dict) else {}
        headers[REQUEST_ID_HEADER] = request_id
        response["headers"] = headers
    return response
