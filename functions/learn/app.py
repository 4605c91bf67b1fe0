"""SQS consumer: join rewards to decisions and learn closed events (partial batch failures)."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from functions.common.api_models import MAX_REWARDS
from functions.common.learn_service import Learner
from functions.common.observability import logger, metrics, tracer

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
_learner: Learner | None = None


class QueuedReward(BaseModel):
    """A reward as the webhook queued it (already validated, with a timestamp)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    event_id: str = Field(min_length=1, max_length=256)
    item_id: str = Field(min_length=1, max_length=256)
    type: str = Field(min_length=1, max_length=64)
    value: float | None = None
    final: bool = False
    timestamp: float


class RewardMessage(BaseModel):
    """One queued webhook post."""

    model_config = ConfigDict(extra="ignore")

    tenant: str = Field(min_length=1)
    rewards: list[QueuedReward] = Field(min_length=1, max_length=MAX_REWARDS)


def learner() -> Learner:
    """The process-wide learner (built on first use)."""
    global _learner  # noqa: PLW0603
    if _learner is None:
        _learner = Learner()
    return _learner


@tracer.capture_method
def record_handler(record: SQSRecord) -> dict[str, Any]:
    """Apply one message's rewards; a malformed message fails (and reaches the DLQ in time)."""
    message = RewardMessage.model_validate(json.loads(record.body))
    report = learner().apply_rewards(message.tenant, [r.model_dump() for r in message.rewards])
    logger.info(
        "rewards applied",
        extra={"outcomes": dict(report.outcomes), "events_learned": report.events_learned},
    )
    return dict(report.outcomes)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Lambda entry point."""
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)
