"""Scheduled catalog index build: each tenant's taste factors and catalog index, off rank."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common.index_builder import build_all
from functions.common.observability import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Lambda entry point: builds what changed; ``{"tenants": [...]}`` builds only those."""
    tenants = event.get("tenants") if isinstance(event, dict) else None
    wanted = [str(t) for t in tenants] if isinstance(tenants, list) else None
    report = build_all(lambda: context.get_remaining_time_in_millis() / 1000.0, wanted)
    summary = asdict(report)
    logger.info("catalog index build done", extra=summary)
    return summary
