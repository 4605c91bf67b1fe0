"""Reward webhook (``POST /v1/rewards``, HMAC-signed), event activation and event state."""

from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from functions.common import reward_service
from functions.common.api import api_handler, api_resolver, principal_of
from functions.common.auth import Principal, verify_webhook
from functions.common.http import header, install_error_handlers, raw_body
from functions.common.observability import tracer

SIGNATURE_HEADER = "x-serendip-signature"
router = APIGatewayRouter()
app = api_resolver()
install_error_handlers(app)


@router.post(
    "/v1/rewards", summary="Post rewards (signed webhook)", tags=["rewards"], status_code=202
)
@tracer.capture_method
def post_rewards() -> Response[dict[str, Any]]:
    """Queue one reward or ``{rewards: [...]}`` (signature already verified)."""
    principal = principal_of(app)
    body = raw_body(app.current_event.raw_event)
    accepted = reward_service.accept(
        principal, body, app.current_event.headers.get(SIGNATURE_HEADER)
    )
    return Response(202, content_types.APPLICATION_JSON, {"accepted": accepted})


@router.post(
    "/v1/events/<event_id>/activate",
    summary="Activate a deferred event",
    tags=["rewards"],
    status_code=202,
)
@tracer.capture_method
def activate(event_id: str) -> Response[dict[str, Any]]:
    """Mark a deferred event as shown (only activated events are learned); an optional body
    says which slots the user saw (``seen`` positions or ``seen_through``)."""
    body = raw_body(app.current_event.raw_event)
    answer = reward_service.activate(principal_of(app), event_id, body)
    return Response(202, content_types.APPLICATION_JSON, answer)


@router.get("/v1/events/<event_id>", summary="An event's state", tags=["rewards"])
@tracer.capture_method
def event_status(event_id: str) -> dict[str, Any]:
    """Whether the event is open, learned, expired or failed, and why it failed."""
    return reward_service.event_status(principal_of(app), event_id)


def _verify_webhook(event: dict[str, Any], principal: Principal) -> None:
    """Check the signature over the raw body before anything parses it."""
    if event.get("path") == "/v1/rewards":
        principal.require("reward")
        verify_webhook(principal, header(event, SIGNATURE_HEADER), raw_body(event))


# Routes are copied when included, so include them after they are all defined.
app.include_router(router)


lambda_handler = api_handler(app, pre_check=_verify_webhook)
