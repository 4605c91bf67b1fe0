"""The learning loop: join rewards to decisions, close events, learn each exactly once.

Events close when every shown slot has a reward, a ``final`` reward came, or the sweep finds
their reward wait over. Closed events of one policy are learned together: load the head model,
learn every slot, then save a new version in one transaction that also marks the events learned,
conditional on the head not having moved and the events still being open. A lost race reloads
and retries, so no other learner's update is lost and no event is learned twice.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bandit.learning import learn_record
from bandit.rewards import slot_rewards
from bandit.spec import PolicySpec
from functions.common import counters, decision_store, model_store, policy_store, users
from functions.common.decision_store import StoredDecision
from functions.common.errors import NotFoundError, StorageError
from functions.common.model_cache import CachedModel, ModelCache
from functions.common.observability import logger, metrics

MAX_EVENTS_PER_SAVE = 90  # a DynamoDB transaction holds 100 items: model, head and events
MAX_ATTEMPTS = 8


@dataclass
class LearnReport:
    """What one batch did."""

    outcomes: Counter[str] = field(default_factory=Counter)
    events_learned: int = 0
    slot_examples: int = 0
    versions: list[int] = field(default_factory=list)


class Learner:
    """Applies rewards and learns closed events; keeps its own head models cached."""

    def __init__(self) -> None:
        self.models = ModelCache()

    def apply_rewards(self, tenant: str, rewards: Sequence[dict[str, Any]]) -> LearnReport:
        """Attach rewards to their events, then learn the events that closed."""
        report = LearnReport()
        touched = self.join_rewards(tenant, rewards, report)
        self.learn_closable(tenant, touched.values(), report)
        return report

    @staticmethod
    def join_rewards(
        tenant: str, rewards: Sequence[dict[str, Any]], report: LearnReport
    ) -> dict[str, StoredDecision]:
        """Attach rewards to their events (each at most once); return the events touched.

        Duplicates count as touched: a redelivered batch must still close its events.
        """
        touched: dict[str, StoredDecision] = {}
        by_event: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for reward in rewards:
            by_event[reward["event_id"]].append(reward)
        for event_id, event_rewards in by_event.items():
            outcomes, stored = decision_store.add_rewards(tenant, event_id, event_rewards)
            for outcome in outcomes:
                report.outcomes[outcome.value] += 1
                metrics.add_metric(name=f"Rewards{outcome.value.title()}", unit="Count", value=1)
            if stored is not None:
                touched[stored.key] = stored
        return touched

    def learn_closable(
        self, tenant: str, decisions: Iterable[StoredDecision], report: LearnReport
    ) -> None:
        """Learn those of ``decisions`` that have closed."""
        self._learn_grouped(tenant, [d for d in decisions if d.closable], report)

    def sweep(self, now: float | None = None) -> LearnReport:
        """Close events whose reward wait is over: learn activated ones, expire the rest."""
        report = LearnReport()
        moment = time.time() if now is None else now
        keys = decision_store.due(moment)
        by_tenant: dict[str, list[StoredDecision]] = defaultdict(list)
        for decision in decision_store.get_many(keys):
            if decision.status != "open":
                continue
            if not decision.record.activated:
                decision_store.expire(decision.key)
                report.outcomes["expired"] += 1
                continue
            by_tenant[decision.key.split("#", 1)[0]].append(decision)
        for tenant, decisions in by_tenant.items():
            self._learn_grouped(tenant, decisions, report)
        return report

    def _learn_grouped(
        self, tenant: str, decisions: Iterable[StoredDecision], report: LearnReport
    ) -> None:
        by_policy: dict[str, list[StoredDecision]] = defaultdict(list)
        for decision in decisions:
            by_policy[decision.record.policy].append(decision)
        for policy, group in by_policy.items():
            for start in range(0, len(group), MAX_EVENTS_PER_SAVE):
                self.learn_events(
                    tenant, policy, group[start : start + MAX_EVENTS_PER_SAVE], report
                )

    def learn_events(
        self,
        tenant: str,
        policy: str,
        decisions: Sequence[StoredDecision],
        report: LearnReport,
    ) -> None:
        """Learn ``decisions`` (one policy) into a new model version, exactly once each."""
        # Time order, so that a replay of the log learns the same examples in the same order.
        ordered = sorted(
            (d for d in decisions if d.status == "open"),
            key=lambda d: (d.record.timestamp, d.record.event_id),
        )
        pending = {d.key: d for d in ordered}
        for _attempt in range(MAX_ATTEMPTS):
            if not pending:
                return
            try:
                stored = policy_store.get(tenant, policy)
            except NotFoundError:
                logger.warning(
                    "events of a deleted policy are not learned", extra={"policy": policy}
                )
                return
            spec = stored.spec
            cached, stale = self.models.get(tenant, policy, spec, stored.head_version)
            if stale:
                # Learning on an older model would drop the versions in between: let the batch
                # be redelivered once the head loads again.
                raise StorageError(
                    f"head {stored.head_version} of '{policy}' cannot be loaded; not learning"
                )
            model = cached.model
            slots = 0
            try:
                for decision in pending.values():
                    slots += learn_record(model, decision.record, spec)
                version = model_store.save(
                    tenant,
                    policy,
                    model,
                    expected_head=stored.head_version,
                    learned_events=list(pending),
                )
            except model_store.HeadMovedError:
                self.models.forget(tenant, policy)
                continue
            except model_store.AlreadyLearnedError as exc:
                self.models.forget(tenant, policy)
                for key in exc.event_keys:
                    pending.pop(key, None)
                continue
            except Exception:
                # The in-memory model has absorbed events that were not saved: drop it.
                self.models.forget(tenant, policy)
                raise
            self.models.put(tenant, policy, CachedModel(version, model, tuple(spec.vw_args())))
            report.events_learned += len(pending)
            report.slot_examples += slots
            report.versions.append(version)
            metrics.add_metric(name="EventsLearned", unit="Count", value=len(pending))
            self._after_learning(tenant, policy, pending.values(), spec)
            return
        raise StorageError(f"could not save a model for '{policy}' after {MAX_ATTEMPTS} attempts")

    @staticmethod
    def _after_learning(
        tenant: str, policy: str, decisions: Iterable[StoredDecision], spec: PolicySpec
    ) -> None:
        """Popularity counters and user profiles (best effort: the model is already saved)."""
        popularity: dict[str, tuple[int, float]] = {}
        try:
            for decision in decisions:
                record = decision.record
                outcome = slot_rewards(
                    record.shown_ids(),
                    [r.to_reward() for r in record.rewards],
                    record.timestamp,
                    spec.rewards,
                    frozenset(i for i, r in enumerate(record.rewards) if r.late),
                )
                categories = {c.id: c.category for c in record.candidates}
                rewarded: list[str] = []
                for item, reward in outcome.per_item.items():
                    impressions, total = popularity.get(item, (0, 0.0))
                    popularity[item] = (impressions + 1, total + reward)
                    category = categories.get(item)
                    if reward > 0 and category:
                        rewarded.append(category)
                if record.user_id:
                    users.record_interaction(tenant, record.user_id, rewarded)
            counters.add_popularity(tenant, policy, popularity)
        except StorageError as exc:
            logger.warning("counters not updated after learning", extra={"error": exc.detail})
