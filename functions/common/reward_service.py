"""The reward webhook: verify, validate, queue. Nothing is acknowledged that was not stored.

Rewards are checked for shape here and queued for the learner, which joins them to their events
(unknown events are recorded as orphans, late ones as late). If the queue refuses the message the
caller gets 503 with ``Retry-After`` and must post again.
"""

from __future__ import annotations

import json
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from functions.common import decision_store, policy_store
from functions.common.api_models import RewardIn, RewardsBody
from functions.common.auth import Principal, verify_signature
from functions.common.aws import sqs
from functions.common.errors import BadRequestError, UnavailableError
from functions.common.http import parse_json
from functions.common.observability import logger
from functions.common.settings import settings


def parse_rewards(body: bytes, now: float) -> list[dict[str, Any]]:
    """One reward or ``{rewards: [...]}`` -> validated reward dicts with timestamps and ids.

    ``timestamp`` is the app's or, if it sent none, the time of receipt; ``reward_id`` depends
    only on what the app sent, so a retried post deduplicates.
    """
    data = parse_json(body or b"null")
    if isinstance(data, dict) and "rewards" in data:
        rewards = RewardsBody.model_validate(data).rewards
    elif isinstance(data, dict):
        rewards = [RewardIn.model_validate(data)]
    else:
        raise BadRequestError("body must be a reward object or {rewards: [...]}", field="body")
    parsed = []
    for reward in rewards:
        data = reward.model_dump()
        data["sent_timestamp"] = reward.timestamp
        data["timestamp"] = reward.timestamp if reward.timestamp is not None else now
        data["reward_id"] = decision_store.reward_id(reward.event_id, data)
        parsed.append(data)
    return parsed


def accept(principal: Principal, body: bytes, signature: str | None) -> int:
    """Verify the signature, validate, queue; returns how many rewards were accepted.

    The handler verifies the signature before routing too; checking here keeps the service
    safe on its own.
    """
    principal.require("reward")
    verify_signature(signature, body, principal.webhook_secrets)
    rewards = parse_rewards(body, time.time())
    message = {"tenant": principal.tenant, "rewards": rewards, "received_at": time.time()}
    try:
        sqs().send_message(QueueUrl=settings().reward_queue_url, MessageBody=json.dumps(message))
    except (BotoCoreError, ClientError) as exc:
        logger.error("reward queue unavailable", extra={"error": str(exc)})
        raise UnavailableError("reward queue unavailable; retry", retry_after=5) from exc
    return len(rewards)


def activate(principal: Principal, event_id: str) -> bool:
    """Mark a deferred event as shown (404 for unknown or another tenant's events)."""
    principal.require("reward")
    stored = decision_store.get(principal.tenant, event_id)
    wait = policy_store.get(principal.tenant, stored.record.policy).spec.rewards.wait_seconds
    return decision_store.activate(principal.tenant, event_id, wait)


def event_status(principal: Principal, event_id: str) -> dict[str, Any]:
    """An event's state: open, learned, expired or failed (with the reason it was set aside)."""
    principal.require("reward")
    return decision_store.status(principal.tenant, event_id)
