"""The router: hand each queued reward to its event's policy, on the learn queue.

Rewards arrive per webhook post, many posts per batch; the router reads which policy each
reward's event belongs to (one batched read per 100 events) and forwards each policy's rewards
as few learn-queue messages, in the message group of that policy. Rewards for events that do
not exist (or belong to another tenant: keys start with the tenant) are orphans: counted, not
forwarded. A policy whose forward fails is retried through the posts that carried its rewards.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from functions.common import decision_store, learn_queue
from functions.common.errors import StorageError
from functions.common.observability import logger, metrics
from functions.common.queue_messages import RewardMessage


@dataclass
class RouteReport:
    """What a batch did: rewards forwarded per outcome, and the posts to retry."""

    outcomes: Counter[str] = field(default_factory=Counter)
    groups: int = 0
    failed_messages: set[str] = field(default_factory=set)


def route(messages: Sequence[tuple[str, RewardMessage]]) -> RouteReport:
    """Forward the rewards of ``messages`` (message id, post) to their policies' learners."""
    report = RouteReport()
    by_tenant: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for message_id, message in messages:
        for reward in message.rewards:
            by_tenant[message.tenant].append((message_id, reward.model_dump()))
    for tenant, rewards in by_tenant.items():
        _route_tenant(tenant, rewards, report)
    # One value per metric and batch (not one per reward: EMF documents hold 100 values).
    metrics.add_metric(name="RewardsRouted", unit="Count", value=report.outcomes["routed"])
    if report.outcomes["orphan"]:
        metrics.add_metric(name="RewardsOrphan", unit="Count", value=report.outcomes["orphan"])
    return report


def _route_tenant(
    tenant: str, rewards: list[tuple[str, dict[str, Any]]], report: RouteReport
) -> None:
    try:
        policies = decision_store.policies_of(tenant, {r["event_id"] for _, r in rewards})
    except StorageError as exc:
        logger.error("cannot read events to route rewards", extra={"error": exc.detail})
        report.failed_messages.update(message_id for message_id, _ in rewards)
        return
    by_policy: dict[str, list[dict[str, Any]]] = defaultdict(list)
    senders: dict[str, set[str]] = defaultdict(set)
    for message_id, reward in rewards:
        policy = policies.get(reward["event_id"])
        if policy is None:
            report.outcomes["orphan"] += 1
            continue
        by_policy[policy].append(reward)
        senders[policy].add(message_id)
    for policy, share in by_policy.items():
        try:
            learn_queue.send(tenant, policy, list(learn_queue.bodies(tenant, policy, share)))
        except StorageError as exc:
            logger.error(
                "could not forward rewards to a policy's learner",
                extra={"tenant": tenant, "policy": policy, "error": exc.detail},
            )
            report.failed_messages |= senders[policy]
            continue
        report.groups += 1
        report.outcomes["routed"] += len(share)
