"""Scheduled sweep: close events whose reward wait is over (learn them, or expire them)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common.observability import logger, metrics, tracer
from functions.learn.app import learner


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Lambda entry point: one sweep over every shard of open events."""
    report = learner().sweep()
    summary = {
        "events_learned": report.events_learned,
        "slot_examples": report.slot_examples,
        "expired": report.outcomes.get("expired", 0),
        "versions": report.versions,
    }
    logger.info("sweep done", extra=summary)
    metrics.add_metric(name="EventsSwept", unit="Count", value=report.events_learned)
    return summary
