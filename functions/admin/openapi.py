"""The OpenAPI document of the whole API, from the routes of every function.

``serendip openapi > docs/openapi.json`` regenerates the committed copy.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from functions.common.api_models import (
    ActivateBody,
    ErrorResponse,
    RankResponse,
    RewardIn,
    RewardsBody,
)
from functions.common.media_types import YAML
from functions.common.request_ids import REQUEST_ID_HEADER

TITLE = "Serendip"
VERSION = "1.0.0"


@cache
def openapi_document() -> dict[str, Any]:
    """Every route of the rank, rewards and admin functions, with auth and error schemas."""
    from functions.admin import app as admin
    from functions.rank import app as rank
    from functions.rewards import app as rewards

    resolver = APIGatewayRestResolver(enable_validation=True)
    for module in (rank, rewards, admin):
        resolver.include_router(module.router)
    document: dict[str, Any] = json.loads(
        resolver.get_openapi_json_schema(
            title=TITLE,
            version=VERSION,
            summary="Contextual-bandit explore service for recommendations",
        )
    )
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in (ActivateBody, ErrorResponse, RankResponse, RewardIn, RewardsBody):
        schemas[model.__name__] = model.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        schemas.update(schemas[model.__name__].pop("$defs", {}))
    components["securitySchemes"] = {
        "ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
        "WebhookSignature": {"type": "apiKey", "in": "header", "name": "x-serendip-signature"},
    }
    document["security"] = [{"ApiKey": []}]
    paths = document.get("paths", {})
    for path in ("/v1/health", "/v1/openapi.json"):
        for operation in paths.get(path, {}).values():
            operation["security"] = []
    reward_post = paths.get("/v1/rewards", {}).get("post", {})
    reward_post["security"] = [{"ApiKey": [], "WebhookSignature": []}]
    reward_post["requestBody"] = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/RewardIn"},
                        {"$ref": "#/components/schemas/RewardsBody"},
                    ]
                }
            }
        },
    }
    activate_post = paths.get("/v1/events/{event_id}/activate", {}).get("post", {})
    activate_post["requestBody"] = {
        "required": False,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ActivateBody"}}},
    }
    rank_post = paths.get("/v1/policies/{policy}/rank", {}).get("post", {})
    rank_post.setdefault("responses", {})["200"] = {
        "description": "The slate",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RankResponse"}}},
    }
    _also_yaml(paths.get("/v1/policies/{policy}", {}).get("put", {}))
    _document_errors(paths)
    _document_request_ids(paths)
    # Powertools' validation error bodies are never sent: every error is an ErrorResponse.
    for unused in ("HTTPValidationError", "ResponseValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return document


ERRORS = (
    ("400", "Malformed body"),
    ("401", "Missing or wrong API key or signature"),
    ("403", "Missing scope"),
    ("404", "Unknown resource"),
    ("413", "Body too large"),
    ("422", "Invalid field"),
)
UNAVAILABLE = ("503", "Storage or queue unavailable; nothing was changed, retry after Retry-After")
RATE_LIMITED = ("429", "Over the tenant's request rate; nothing changed, retry after Retry-After")


def _document_errors(paths: dict[str, Any]) -> None:
    """Every operation's error answers, all with the ``ErrorResponse`` body."""
    error = {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    }
    retry_after = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}}
    for methods in paths.values():
        for operation in methods.values():
            responses = operation.setdefault("responses", {})
            for status, description in ERRORS:
                responses[status] = {"description": description, **error}
            if operation.get("security") != []:
                for status, text in (RATE_LIMITED, UNAVAILABLE):
                    responses[status] = {"description": text, "headers": retry_after, **error}


def _also_yaml(operation: dict[str, Any]) -> None:
    """A body the operation takes as YAML too (``functions.common.media_types``)."""
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        for media_type in sorted(YAML):
            content[media_type] = dict(content["application/json"])


def _document_request_ids(paths: dict[str, Any]) -> None:
    """Every answer's ``x-request-id`` (``functions.common.request_ids``)."""
    header = {
        "description": "this request's id, also in the function's log lines; quote it when "
        "reporting a problem",
        "schema": {"type": "string"},
    }
    for methods in paths.values():
        for operation in methods.values():
            for response in operation.get("responses", {}).values():
                response["headers"] = {**response.get("headers", {}), REQUEST_ID_HEADER: header}


def openapi_json() -> str:
    """The document as the committed ``docs/openapi.json`` holds it."""
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
