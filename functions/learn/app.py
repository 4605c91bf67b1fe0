"""SQS FIFO consumer of the learn queue: each (tenant, policy) group's work, learned in order.

A batch holds messages of one or more groups. Each group's messages are merged (rewards to join,
events to close) and learned together, then its retrain chunks (``retrain_service``) run; a
group whose learning or retraining fails hands all of its messages back (SQS keeps a group's
order, so none of its later messages may succeed without the failed one; redelivered, each is
applied once), while every other group of the batch is done.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from functions.common.learn_service import Learner, LearnReport, OutOfTimeError, PolicyWork
from functions.common.observability import logger, metrics, tracer
from functions.common.queue_messages import LearnMessage, RetrainStep
from functions.common.retrain_service import Retrainer

_learner: Learner | None = None


def learner() -> Learner:
    """The process-wide learner (built on first use)."""
    global _learner  # noqa: PLW0603
    if _learner is None:
        _learner = Learner()
    return _learner


class _Group:
    """The merged work of one message group in this batch, and the messages that carried it."""

    def __init__(self, tenant: str, policy: str) -> None:
        self.tenant = tenant
        self.policy = policy
        self.rewards: list[dict[str, Any]] = []
        self.close: list[str] = []
        self.retrain: list[RetrainStep] = []
        self.messages: list[str] = []

    def work(self) -> PolicyWork:
        return PolicyWork(self.tenant, self.policy, self.rewards, list(dict.fromkeys(self.close)))

    def learn(self, report: LearnReport) -> bool:
        """Learn the group's work, then run its retrain chunks; False if any of it failed."""
        if (self.rewards or self.close) and not learner().learn_isolated(self.work(), report):
            return False
        return all(self._retrain(step) for step in self.retrain)

    def _retrain(self, step: RetrainStep) -> bool:
        try:
            Retrainer(learner().time_left).run(self.tenant, self.policy, step)
        except OutOfTimeError as exc:
            logger.info(str(exc), extra={"tenant": self.tenant, "policy": self.policy})
            return False
        except Exception:
            # An outage (or a fault of ours): the chunk is run again from what it committed.
            logger.exception(
                "retrain chunk failed; it will be retried",
                extra={"tenant": self.tenant, "policy": self.policy, "job": step.job},
            )
            metrics.add_metric(name="RetrainChunksFailed", unit="Count", value=1)
            return False
        return True


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Learn every group's work of the batch; return the messages of groups that failed."""
    groups: dict[tuple[str, str], _Group] = {}
    failed: list[str] = []
    broken_groups: set[str] = set()
    group_ids: dict[tuple[str, str], str] = {}
    for record in event.get("Records", []):
        message_id = record["messageId"]
        group_id = str(record.get("attributes", {}).get("MessageGroupId", ""))
        try:
            message = LearnMessage.model_validate(json.loads(record["body"]))
        except (ValueError, ValidationError) as exc:
            # Not a message the router or the sweep made: it reaches the learn DLQ after its
            # receives, and holds back the rest of its group meanwhile (FIFO order).
            logger.error(
                "malformed learn message",
                extra={"message_id": message_id, "error": str(exc)[:500]},
            )
            failed.append(message_id)
            broken_groups.add(group_id)
            continue
        key = (message.tenant, message.policy)
        group = groups.setdefault(key, _Group(message.tenant, message.policy))
        group_ids[key] = group_id
        group.rewards += [reward.model_dump() for reward in message.rewards]
        group.close += message.close
        if message.retrain is not None:
            group.retrain.append(message.retrain)
        group.messages.append(message_id)
    report = LearnReport()
    # No save starts too near the timeout: what is left is handed back, what was saved stays.
    learner().time_left = lambda: context.get_remaining_time_in_millis() / 1000.0
    try:
        for key, group in groups.items():
            if group_ids[key] in broken_groups or not group.learn(report):
                failed += group.messages
    finally:
        learner().time_left = None
    report.publish()
    logger.info(
        "batch learned",
        extra={
            "outcomes": dict(report.outcomes),
            "events_learned": report.events_learned,
            "events_failed": report.events_failed,
            "versions": report.versions,
            "retried": len(failed),
        },
    )
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}
