"""SQS consumer of the reward queue: route each reward to its policy's learner (partial batch
failures: a post that cannot be parsed, or whose policy could not be reached, is retried)."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from functions.common.observability import logger, metrics, tracer
from functions.common.queue_messages import RewardMessage
from functions.common.route_service import route


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Parse every post of the batch, then route them all together."""
    parsed: list[tuple[str, RewardMessage]] = []
    failed: list[str] = []
    for record in event.get("Records", []):
        try:
            parsed.append(
                (record["messageId"], RewardMessage.model_validate(json.loads(record["body"])))
            )
        except (ValueError, ValidationError) as exc:
            # Not a post our webhook made: it goes to the reward DLQ after its receives.
            logger.error(
                "malformed reward message",
                extra={"message_id": record["messageId"], "error": str(exc)[:500]},
            )
            failed.append(record["messageId"])
    report = route(parsed)
    failed += sorted(report.failed_messages)
    logger.info(
        "batch routed",
        extra={"outcomes": dict(report.outcomes), "groups": report.groups, "retried": len(failed)},
    )
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}
