"""SQS consumer: join rewards to decisions and learn closed events (partial batch failures)."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from functions.common.api_models import MAX_REWARDS
from functions.common.decision_store import StoredDecision
from functions.common.learn_service import Learner, LearnReport
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
    sent_timestamp: float | None = None
    reward_id: str | None = Field(None, max_length=64)


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


class _Batch:
    """Events touched by the records of the current invocation, learned once at the end."""

    def __init__(self) -> None:
        self.touched: dict[str, dict[str, StoredDecision]] = {}
        self.report = LearnReport()


_batch = _Batch()


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    """Join one message's rewards; a malformed message fails (and reaches the DLQ in time)."""
    message = RewardMessage.model_validate(json.loads(record.body))
    touched = learner().join_rewards(
        message.tenant, [r.model_dump() for r in message.rewards], _batch.report
    )
    _batch.touched.setdefault(message.tenant, {}).update(touched)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Join every record's rewards, then learn all closed events with one save per policy.

    If learning fails the whole invocation fails and SQS redelivers the batch: joining is
    idempotent and the events are still open, so nothing is lost or learned twice.
    """
    global _batch  # noqa: PLW0603
    _batch = _Batch()
    with processor(
        records=event.get("Records", []), handler=record_handler, lambda_context=context
    ):
        processor.process()
    for tenant, decisions in _batch.touched.items():
        learner().learn_closable(tenant, decisions.values(), _batch.report)
    logger.info(
        "batch done",
        extra={
            "outcomes": dict(_batch.report.outcomes),
            "events_learned": _batch.report.events_learned,
            "versions": _batch.report.versions,
        },
    )
    return dict(processor.response())
