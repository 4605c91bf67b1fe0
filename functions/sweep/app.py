"""Scheduled sweep: hand events whose reward wait is over to their policies' learners."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common.observability import logger, metrics, tracer
from functions.common.sweep_service import sweep


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Lambda entry point: passes over every shard of open events while time allows."""
    report = sweep(lambda: context.get_remaining_time_in_millis() / 1000.0)
    summary = asdict(report)
    logger.info("sweep done", extra=summary)
    return summary
