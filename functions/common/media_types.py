"""The media types a route takes its body in, checked before the resolver reads the body.

A JSON route takes ``application/json`` (with or without ``charset=utf-8``); a route may take
YAML too (``PUT /v1/policies/{policy}``: a spec as a person writes it). A request that names
another type is refused with 400 naming ``content-type``, whatever its body looks like (``curl
-d`` sends ``application/x-www-form-urlencoded``). A body that names no type is read as JSON.
A YAML body is read here (``yaml_body``) and handed on as the JSON it amounts to, so the route
and its validation see one shape whichever way it was sent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from functions.common.errors import BadRequestError
from functions.common.http import header, raw_body
from functions.common.yaml_body import parse_yaml_object

JSON = "application/json"
JSON_ONLY = frozenset({JSON})
YAML = frozenset({"application/yaml", "application/x-yaml", "text/yaml"})
JSON_OR_YAML = JSON_ONLY | YAML
UTF_8 = frozenset({"utf-8", "utf8"})
# Methods whose requests carry a body; the media type of any other request is not looked at.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# (method, resource as the template declares it) -> the media types that route takes.
RouteMediaTypes = Mapping[tuple[str, str], frozenset[str]]


def parse_media_type(value: str) -> tuple[str, str | None]:
    """A ``content-type`` value's type (lower case) and its charset, if it names one.

    >>> parse_media_type('Application/JSON; charset="UTF-8"')
    ('application/json', 'utf-8')
    """
    essence, _, parameters = value.partition(";")
    charset = None
    for parameter in parameters.split(";"):
        name, _, given = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = given.strip().strip('"').lower()
    return essence.strip().lower(), charset


def body_media_type(event: dict[str, Any], accepted: frozenset[str] = JSON_ONLY) -> str:
    """The media type the request's body is in: one of ``accepted``, or ``application/json``
    when the request names none (or carries no body by its method).

    ``BadRequestError`` naming ``content-type`` for a type not in ``accepted`` or a charset
    other than UTF-8.
    """
    value = header(event, "content-type")
    if event.get("httpMethod") not in BODY_METHODS or not (value and value.strip()):
        return JSON
    media_type, charset = parse_media_type(value)
    if media_type not in accepted:
        takes = " or ".join(sorted(accepted))
        raise BadRequestError(
            f"content-type: the body must be sent as {takes}, not {media_type or value!r}",
            field="content-type",
        )
    if charset is not None and charset not in UTF_8:
        raise BadRequestError(
            f"content-type: the body must be UTF-8, not charset={charset}", field="content-type"
        )
    return media_type


def decode_body(event: dict[str, Any], routes: RouteMediaTypes | None = None) -> dict[str, Any]:
    """``event`` once its body's media type is checked against what its route takes (``routes``,
    by method and resource; JSON only for routes not in it), as the resolver reads it: a YAML
    body becomes JSON, and the type is named as the resolver expects it (lower case).

    The event is copied, never changed in place: the caller may still hold it.
    """
    route = (str(event.get("httpMethod")), str(event.get("resource")))
    media_type = body_media_type(event, (routes or {}).get(route, JSON_ONLY))
    if media_type in YAML:
        body = json.dumps(parse_yaml_object(raw_body(event)))
        return _as_json(event, {"body": body, "isBase64Encoded": False})
    if (header(event, "content-type") or JSON).startswith(JSON):
        return event
    return _as_json(event, {})


def _as_json(event: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``event`` with ``changes`` whose content type is ``application/json``."""
    headers = {
        name: value
        for name, value in (event.get("headers") or {}).items()
        if name.lower() != "content-type"
    }
    multi = {
        name: values
        for name, values in (event.get("multiValueHeaders") or {}).items()
        if name.lower() != "content-type"
    }
    return {
        **event,
        **changes,
        "headers": {**headers, "content-type": JSON},
        "multiValueHeaders": {**multi, "content-type": [JSON]},
    }
