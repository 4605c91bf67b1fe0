"""The reward webhook: verify, validate, queue. Nothing is acknowledged that was not stored.

Rewards are checked for shape here and queued for the learner, which joins them to their events
(unknown events are recorded as orphans, late ones as late). If the queue refuses the message the
caller gets 503 with ``Retry-After`` and must post again.

SQS takes at most 256 KiB per message, measured on the UTF-8 bytes of the body as sent (this
queue's messages carry no attributes). Bodies are written in UTF-8 rather than with JSON's
escapes of non-ASCII (which take 6 bytes for a CJK character's 3), so the largest valid post
(100 rewards, every id 256 characters of 4 UTF-8 bytes) fits one message; should one ever not,
the post is split into several, and acknowledged only once every one was queued (a retry after
a 503 may queue some rewards again: the learner applies each reward once).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bandit.errors import FieldError
from bandit.learn.rewards import record_outcome, reward_outcomes
from bandit.spec import RewardSpec
from functions.common import decision_store, impressions, policy_store
from functions.common.api_models import ActivateBody, RewardIn, RewardsBody
from functions.common.auth import Principal, verify_webhook
from functions.common.aws import sqs
from functions.common.errors import BadRequestError, NotFoundError, UnavailableError
from functions.common.http import parse_json, parse_json_object
from functions.common.observability import logger, metrics
from functions.common.settings import settings

MAX_MESSAGE_BYTES = 256 * 1024
# Characters a JSON string may hold that an SQS body may not: escaped (JSON allows it anywhere).
_NOT_FOR_SQS = re.compile(r"[\ud800-\udfff\ufffe\uffff]")


def encode(message: dict[str, Any]) -> str:
    """``message`` as an SQS body: compact UTF-8 JSON, escaping only what SQS refuses.

    >>> encode({"id": "猫", "n": [1, 2]})
    '{"id":"猫","n":[1,2]}'
    >>> encode({"id": chr(0xFFFF)}) == '{"id":"' + chr(92) + 'uffff"}'
    True
    """
    text = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
    return _NOT_FOR_SQS.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def message_bodies(tenant: str, rewards: Sequence[dict[str, Any]], received_at: float) -> list[str]:
    """The bodies that carry one post's ``rewards``, each at most ``MAX_MESSAGE_BYTES`` as sent."""
    body = encode({"tenant": tenant, "rewards": list(rewards), "received_at": received_at})
    if len(body.encode()) <= MAX_MESSAGE_BYTES or len(rewards) == 1:
        return [body]
    half = len(rewards) // 2
    return [
        *message_bodies(tenant, rewards[:half], received_at),
        *message_bodies(tenant, rewards[half:], received_at),
    ]


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
    verify_webhook(principal, signature, body)
    rewards = parse_rewards(body, time.time())
    queue(principal.tenant, rewards)
    return len(rewards)


def queue(tenant: str, rewards: Sequence[dict[str, Any]]) -> None:
    """Put validated rewards on the reward queue; ``UnavailableError`` (retry) if it refuses."""
    try:
        for message in message_bodies(tenant, rewards, time.time()):
            sqs().send_message(QueueUrl=settings().reward_queue_url, MessageBody=message)
    except (BotoCoreError, ClientError) as exc:
        logger.error("reward queue unavailable", extra={"error": str(exc)})
        raise UnavailableError("reward queue unavailable; retry", retry_after=5) from exc


def activate(principal: Principal, event_id: str, body: bytes = b"") -> dict[str, Any]:
    """Mark a deferred event as shown and record which slots were seen, if the body says.

    404 for unknown or another tenant's events; 422 naming the field, with nothing changed, for
    positions that are not on the event's slate. Impressions of an event that already closed
    are counted as late (``late: true``), never learned.
    """
    principal.require("reward")
    request = ActivateBody.model_validate(parse_json_object(body)) if body.strip() else None
    # The event's state, not its record (which may be an S3 object this function cannot read)
    state = decision_store.status(principal.tenant, event_id)
    positions = None if request is None else seen_positions(request, int(state["slots"]))
    wait = policy_store.get(principal.tenant, str(state["policy"])).spec.rewards.wait_seconds
    answer: dict[str, Any] = {
        "event_id": event_id,
        "activated": decision_store.activate(principal.tenant, event_id, wait),
    }
    if positions is not None:
        report = impressions.record(principal.tenant, event_id, positions)
        if report.late:
            metrics.add_metric(name="ImpressionsLate", unit="Count", value=1)
        answer.update(seen=report.seen, late=report.late)
    return answer


def seen_positions(request: ActivateBody, slots: int) -> list[int] | None:
    """The positions ``request`` says were seen, checked against a slate of ``slots`` slots.

    >>> seen_positions(ActivateBody(seen_through=2), 5), seen_positions(ActivateBody(), 5)
    ([1, 2], None)
    >>> seen_positions(ActivateBody(seen=[1, 6]), 5)
    Traceback (most recent call last):
    ...
    bandit.errors.FieldError: seen[1]: position 6 is not on the event's slate (1 to 5)
    """
    if request.seen is not None and request.seen_through is not None:
        raise FieldError("seen_through", "give seen or seen_through, not both")
    if request.seen_through is not None:
        if request.seen_through > slots:
            detail = f"the event's slate has {slots} slots, not {request.seen_through}"
            raise FieldError("seen_through", detail)
        return list(range(1, request.seen_through + 1))
    if request.seen is None:
        return None
    for index, position in enumerate(request.seen):
        if position > slots:
            detail = f"position {position} is not on the event's slate (1 to {slots})"
            raise FieldError(f"seen[{index}]", detail)
    return sorted(set(request.seen))


def event_status(principal: Principal, event_id: str) -> dict[str, Any]:
    """An event's state: open, learned, expired or failed (with the reason it was set aside),
    its slate, and each stored reward with what became of it (scope ``reward`` or ``admin``)."""
    if "admin" not in principal.scopes:
        principal.require("reward")
    state, record = decision_store.status_and_record(principal.tenant, event_id)
    if record is None:
        return {**state, "slate": None, "joined_rewards": None}
    try:
        spec: RewardSpec | None = policy_store.get(principal.tenant, record.policy).spec.rewards
    except NotFoundError:
        spec = None
    seen = {slot.position for slot in record.seen_slots()}
    learned = None if spec is None else record_outcome(record, spec).per_item
    slate = [
        {
            "id": slot.item_id,
            "position": slot.position,
            "probability": slot.probability,
            "explored": slot.explored,
            "seen": slot.position in seen,
            "reward": (
                learned.get(slot.item_id)
                if learned is not None and state["status"] == "learned" and slot.position in seen
                else None
            ),
        }
        for slot in sorted(record.slate, key=lambda s: s.position)
    ]
    outcomes = reward_outcomes(record, spec, state["status"])
    joined = [
        {
            "item_id": reward.item_id,
            "type": reward.type,
            "value": reward.value,
            "timestamp": reward.timestamp,
            "final": reward.final,
            "outcome": outcome,
        }
        for reward, outcome in zip(record.rewards, outcomes, strict=True)
    ]
    return {**state, "slate": slate, "joined_rewards": joined}
