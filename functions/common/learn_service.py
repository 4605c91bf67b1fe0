"""The learning loop: join rewards to decisions, close events, learn each exactly once.

An event closes when a final reward came, every shown slot has a reward, or its reward wait is
over (``bandit.learn.rewards.record_closed``: one lateness rule for closing, learning and metrics).
Closed events of one policy are learned together: load the head model, learn every slot, then
save a new version in one transaction that also marks the events learned, conditional on the
head not having moved and the events still being open. A lost race reloads and retries, so no
other learner's update is lost and no event is learned twice.

Failures are isolated. A problem of one event's data (an undecodable record, a deleted policy,
a record that contradicts its own constraints) sets that event aside as ``failed`` with a
reason; rewards of types the policy does not value are kept and not learned. An outage while
learning one policy is reported for that policy alone (``LearnReport.failed_groups``), so the
caller retries just the work that touched it and every other tenant and policy goes on.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bandit.decision_log import DecisionRecord
from bandit.evaluate.progress import ProgressSums, event_progress
from bandit.learn.history import Rewarded
from bandit.learn.learning import SlotExample, examples_work, learn_examples, slot_examples
from bandit.learn.rewards import record_closed, record_outcome, window_spec
from bandit.serve.cost import MAX_SLOT_WORK
from bandit.spec import PolicySpec
from functions.common import (
    challenger_service,
    counters,
    decision_store,
    model_store,
    open_events,
    policy_store,
    progress_store,
    reward_join,
    users,
)
from functions.common.decision_store import RewardOutcome
from functions.common.errors import NotFoundError, StorageError
from functions.common.item_size import MAX_TRANSACTION_BYTES, chunks
from functions.common.model_cache import CachedModel, ModelCache
from functions.common.observability import logger, metrics
from functions.common.reward_join import EventChange, EventsChangedError, join
from functions.common.settings import settings

MAX_ATTEMPTS = 8
# New rewards stored with one save, leaving room in the transaction's 4 MB for the model version
# (inline up to 350 KB) and the policy item (its spec up to 400 KB).
SAVE_REWARD_BYTES = MAX_TRANSACTION_BYTES - 1024 * 1024
# A record's own data can make building its examples fail; nothing else is caught per event.
DATA_PROBLEMS = (ValueError, KeyError, TypeError)
# Learning work per model save (``bandit.serve.cost``): about 10 s on one core of a 2-core machine
# at the measured 0.05 s per slot of ``MAX_SLOT_WORK``, so one save always fits a Lambda's minute.
SAVE_WORK = 200 * MAX_SLOT_WORK
# A save is not started with less time left than this; the rest of the work is handed back
# (its messages retried), and what was saved stays saved.
TIME_MARGIN_SECONDS = 15.0


class OutOfTimeError(StorageError):
    """The invocation's time ran short: the rest of the work is handed back, nothing lost."""


Group = tuple[str, str]  # (tenant, policy)


@dataclass
class LearnReport:
    """What one batch did; ``failed_groups`` are (tenant, policy) pairs to retry."""

    outcomes: Counter[str] = field(default_factory=Counter)
    events_learned: int = 0
    events_failed: int = 0
    slot_examples: int = 0
    versions: list[int] = field(default_factory=list)
    failed_groups: set[Group] = field(default_factory=set)
    learned_keys: set[str] = field(default_factory=set)
    # Learning progress by minute (``progress_store``): learned events by their decision time,
    # model saves by the time they were made.
    progress: dict[int, ProgressSums] = field(default_factory=dict)
    # The events saved, in the order they were learned (for the policy's challenger).
    learned_records: list[DecisionRecord] = field(default_factory=list)

    def add_progress(self, moment: float, sums: ProgressSums) -> None:
        """Add ``sums`` to the progress of ``moment``'s minute."""
        minute = progress_store.bucket_of(moment, progress_store.MINUTE)
        current = self.progress.get(minute)
        self.progress[minute] = sums if current is None else current + sums

    def outcome_progress(self, moment: float) -> None:
        """Add the reward outcomes and failed events counted so far to ``moment``'s progress."""
        sums = ProgressSums()
        for outcome, times in self.outcomes.items():
            sums.count("events_expired" if outcome == "expired" else f"rewards_{outcome}", times)
        sums.count("events_failed", self.events_failed)
        if sums.counts:
            self.add_progress(moment, sums)

    def count(self, outcome: RewardOutcome, times: int = 1) -> None:
        """Count ``times`` rewards with ``outcome``."""
        if times:
            self.outcomes[outcome.value] += times

    def publish(self) -> None:
        """Add each outcome's count as one metric value (``Rewards<Outcome>``), once per batch."""
        for outcome in RewardOutcome:
            if self.outcomes[outcome.value]:
                value = self.outcomes[outcome.value]
                metrics.add_metric(name=_metric_name(outcome), unit="Count", value=value)

    def merge(self, other: LearnReport, *, learned_only: bool = False) -> None:
        """Add ``other``'s figures; ``learned_only``: just what was saved (a retried attempt's
        reward outcomes are counted again by the attempt that completes)."""
        if not learned_only:
            self.outcomes.update(other.outcomes)
        self.events_learned += other.events_learned
        self.events_failed += other.events_failed
        self.slot_examples += other.slot_examples
        self.versions += other.versions
        self.failed_groups |= other.failed_groups
        self.learned_keys |= other.learned_keys
        self.learned_records += other.learned_records
        for minute, sums in other.progress.items():
            current = self.progress.get(minute)
            self.progress[minute] = sums if current is None else current + sums


@dataclass(frozen=True, slots=True)
class PolicyWork:
    """One policy's share of a batch: rewards to join, and due events to close."""

    tenant: str
    policy: str
    rewards: Sequence[dict[str, Any]] = ()
    close: Sequence[str] = ()


class Learner:
    """Learns each policy's work: joins rewards, closes events, saves model versions.

    Keeps its own head models cached. ``learn_work`` is what the learn queue's consumer calls
    for one (tenant, policy) group; ``apply_rewards`` and ``sweep`` do the router's and the
    sweep's part in process too (tests, benchmarks, tools).
    """

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self.models = ModelCache()
        self._clock = clock
        # Seconds left in this invocation (the handler sets it from the Lambda context).
        self.time_left: Callable[[], float] | None = None

    def out_of_time(self) -> bool:
        """Whether too little time is left to start another save."""
        return self.time_left is not None and self.time_left() < TIME_MARGIN_SECONDS

    def clock(self) -> float:
        """Now, by the injected clock or the system's."""
        return self._clock() if self._clock else time.time()

    def apply_rewards(self, tenant: str, rewards: Sequence[dict[str, Any]]) -> LearnReport:
        """Route ``rewards`` to their events' policies and learn each policy's share.

        Policies whose learning failed are in ``failed_groups``: deliver their rewards again,
        which changes nothing that was already done.
        """
        report = LearnReport()
        policies = decision_store.policies_of(tenant, {str(r["event_id"]) for r in rewards})
        by_policy: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for reward in rewards:
            policy = policies.get(str(reward["event_id"]))
            if policy is None:
                report.count(RewardOutcome.ORPHAN)
            else:
                by_policy[policy].append(reward)
        for policy, share in by_policy.items():
            self.learn_isolated(PolicyWork(tenant, policy, rewards=share), report)
        return report

    def sweep(self, now: float | None = None) -> LearnReport:
        """Close every event whose reward wait is over, policy by policy, in process."""
        report = LearnReport()
        moment = self.clock() if now is None else now
        for due in open_events.due_by_policy(moment):
            work = PolicyWork(due.tenant, due.policy, close=due.event_ids)
            self.learn_isolated(work, report, moment)
        return report

    def learn_isolated(
        self, work: PolicyWork, report: LearnReport, now: float | None = None
    ) -> bool:
        """``learn_work``, with a failure reported in ``report.failed_groups``, not raised."""
        try:
            if self.out_of_time():
                raise OutOfTimeError(f"no time left to learn '{work.policy}'; retried")
            self.learn_work(work, report, now)
        except OutOfTimeError as exc:
            logger.info(str(exc), extra={"tenant": work.tenant, "policy": work.policy})
            metrics.add_metric(name="LearnGroupsDeferred", unit="Count", value=1)
            report.failed_groups.add((work.tenant, work.policy))
            return False
        except Exception:
            # An outage (or a fault of ours) while learning this policy: its events stay open
            # and the caller retries what touched them; other policies go on.
            logger.exception(
                "learning failed for one policy; its work will be retried",
                extra={"tenant": work.tenant, "policy": work.policy, "rewards": len(work.rewards)},
            )
            metrics.add_metric(name="LearnGroupsFailed", unit="Count", value=1)
            report.failed_groups.add((work.tenant, work.policy))
            return False
        return True

    def learn_work(self, work: PolicyWork, report: LearnReport, now: float | None = None) -> None:
        """Join the work's rewards (each at most once), close its due events, and learn every
        event that closed, exactly once, into new versions of the policy's model.

        Raises on outages (nothing half-done is lost: the work can simply be done again);
        handles data problems itself.
        """
        moment = self.clock() if now is None else now
        mine = LearnReport()
        try:
            self._learn_work_attempts(work, mine, moment)
        finally:
            self._record_progress(work, mine, moment)
            report.merge(mine)
            # The challenger evaluates, then learns, what the champion saved (best effort; a
            # promotion changes the spec, so it comes after every save of this work).
            challenger_service.after_learning(work.tenant, work.policy, mine.learned_records)

    def _learn_work_attempts(self, work: PolicyWork, report: LearnReport, moment: float) -> None:
        for _attempt in range(MAX_ATTEMPTS):
            attempt = LearnReport()
            try:
                self._learn_work_once(work, attempt, moment)
            except OutOfTimeError:
                report.merge(attempt, learned_only=True)  # the saves made so far stand
                raise
            except (
                EventsChangedError,
                model_store.HeadMovedError,
                model_store.AlreadyLearnedError,
            ):
                # Another writer overlapped (never, while the queue serialises the policy):
                # read everything again and redo what is left.
                self.models.forget(work.tenant, work.policy)
                report.merge(attempt, learned_only=True)
                continue
            except Exception:
                report.merge(attempt, learned_only=True)  # the saves made so far stand
                raise
            attempt.outcome_progress(moment)
            report.merge(attempt)
            return
        raise StorageError(f"could not learn for '{work.policy}' after {MAX_ATTEMPTS} attempts")

    @staticmethod
    def _record_progress(work: PolicyWork, report: LearnReport, moment: float) -> None:
        """Add the work's progress to the policy's counters (best effort: learning is saved)."""
        try:
            progress_store.add(work.tenant, work.policy, report.progress)
        except StorageError as exc:
            logger.warning("progress counters not updated", extra={"error": exc.detail})
        except Exception:  # a fault of ours must not fail learning that is saved
            logger.exception("progress counters not updated")

    def _learn_work_once(self, work: PolicyWork, report: LearnReport, now: float) -> None:
        tenant, policy = work.tenant, work.policy
        by_event: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for reward in work.rewards:
            by_event[decision_store.event_key(tenant, str(reward["event_id"]))].append(reward)
        close_keys = [decision_store.event_key(tenant, event_id) for event_id in work.close]
        decisions, broken = decision_store.get_many([*by_event, *close_keys])
        for problem in broken:
            self._set_aside(problem.key, problem.reason, report)
            report.count(RewardOutcome.SET_ASIDE, len(by_event.pop(problem.key, ())))
        found = {d.key: d for d in decisions if d.record.policy == policy}
        if len(found) < len(decisions):
            # The router and the sweep read each event's policy from the event itself.
            logger.warning(
                "events of another policy in this policy's work were left alone",
                extra={"policy": policy, "events": len(decisions) - len(found)},
            )
        for key in set(by_event) - set(found):
            report.count(RewardOutcome.ORPHAN, len(by_event.pop(key)))
        try:
            stored = policy_store.get(tenant, policy)
        except NotFoundError:
            stored = None
        spec = None if stored is None else stored.spec
        changes: dict[str, EventChange] = {}
        for key, decision in found.items():
            outcomes, change = join(decision, by_event.get(key, ()), spec.rewards if spec else None)
            for outcome in outcomes:
                report.count(outcome)
            changes[key] = change
        if spec is None:
            reward_join.write(list(changes.values()))
            for change in changes.values():
                if change.decision.open:
                    self._set_aside(change.key, f"policy '{policy}' no longer exists", report)
            return
        closed = sorted(
            (
                change
                for change in changes.values()
                if change.decision.open
                and change.decision.record.activated
                and record_closed(change.record(), now, spec.rewards)
            ),
            key=lambda c: (c.decision.record.timestamp, c.decision.record.event_id),
        )
        problems = self._learn(work, spec, closed, changes, report)
        reward_join.write([c for c in changes.values() if c.key not in report.learned_keys])
        for key, reason in problems.items():
            self._set_aside(key, reason, report)
        for key in close_keys:
            unshown = changes.get(key)
            if (
                unshown is not None
                and unshown.decision.open
                and not unshown.decision.record.activated
                and _wait_over(unshown.decision.record, spec, now)
                and decision_store.expire(key, now)
            ):
                report.outcomes["expired"] += 1

    def _learn(
        self,
        work: PolicyWork,
        spec: PolicySpec,
        closed: Sequence[EventChange],
        changes: dict[str, EventChange],
        report: LearnReport,
    ) -> dict[str, str]:
        """Learn ``closed`` (time order) in saves of at most ``events_per_save`` events (the
        ``LEARN_EVENTS_PER_SAVE`` setting), ``SAVE_WORK`` of learning and ``SAVE_REWARD_BYTES``
        of new rewards; returns the events whose own data cannot be learned, with the reason.
        A save is not started once time runs short (``OutOfTimeError``)."""
        problems: dict[str, str] = {}
        examples: dict[str, list[SlotExample]] = {}
        for change in closed:
            try:
                examples[change.key] = slot_examples(change.record(), spec)
            except DATA_PROBLEMS as exc:
                problems[change.key] = f"cannot be learned: {exc}"[:500]
        args = spec.vw_args()
        by_work = chunks(
            list(examples),
            lambda key: examples_work(args, examples[key]),
            max_items=settings().events_per_save,
            max_bytes=SAVE_WORK,
        )
        for number, chunk in enumerate(
            part
            for heavy in by_work
            for part in chunks(
                heavy,
                lambda key: changes[key].size,
                max_items=len(heavy),
                max_bytes=SAVE_REWARD_BYTES,
            )
        ):
            if number and self.out_of_time():
                raise OutOfTimeError(f"out of time learning '{work.policy}'; the rest is retried")
            self._save_chunk(work, chunk, examples, changes, report)
        return problems

    def _save_chunk(
        self,
        work: PolicyWork,
        keys: Sequence[str],
        examples: dict[str, list[SlotExample]],
        changes: dict[str, EventChange],
        report: LearnReport,
    ) -> None:
        """Learn one chunk into the head model and save it as the next version."""
        tenant, policy = work.tenant, work.policy
        stored = policy_store.get(tenant, policy)
        spec = stored.spec
        cached, stale = self.models.get(tenant, policy, spec, stored.head_version, stored.lineage)
        if stale:
            # Learning on an older model would drop the versions in between: leave the work
            # for a retry once the head loads again.
            raise StorageError(
                f"head {stored.head_version} of '{policy}' cannot be loaded; not learning"
            )
        model = cached.model
        slots = 0
        try:
            for key in keys:
                slots += learn_examples(model, examples[key])
            version = model_store.save(
                tenant,
                policy,
                model,
                expected_head=stored.head_version,
                learned_events=keys,
                event_changes=changes,
            )
        except Exception:
            # The in-memory model has absorbed events that were not saved: drop it.
            self.models.forget(tenant, policy)
            raise
        self.models.put(
            tenant,
            policy,
            CachedModel(version, model, tuple(spec.vw_args()), stored.lineage),
        )
        report.events_learned += len(keys)
        report.learned_keys.update(keys)
        report.slot_examples += slots
        report.versions.append(version)
        metrics.add_metric(name="EventsLearned", unit="Count", value=len(keys))
        learned = [changes[key].record() for key in keys]
        self._progress_of(report, learned, spec, version)
        report.learned_records += learned
        self._after_learning(tenant, policy, [changes[key].record() for key in keys], spec)

    def _progress_of(
        self,
        report: LearnReport,
        records: Sequence[DecisionRecord],
        spec: PolicySpec,
        version: int,
    ) -> None:
        """What a save adds to the policy's progress: its events and one model version."""
        for record in records:
            try:
                report.add_progress(record.timestamp, event_progress(record, spec.rewards))
            except DATA_PROBLEMS as exc:  # learned already; only its figures are missing
                logger.warning("event left out of progress", extra={"error": str(exc)[:200]})
        report.add_progress(
            self.clock(), ProgressSums(counts={"versions": 1.0}, last_version=version)
        )

    @staticmethod
    def _set_aside(key: str, reason: str, report: LearnReport) -> None:
        """Mark one event ``failed`` (a data problem: retrying would never help)."""
        logger.warning("event set aside", extra={"event_key": key, "reason": reason})
        if decision_store.fail(key, reason):
            report.events_failed += 1
            metrics.add_metric(name="EventsFailed", unit="Count", value=1)

    @staticmethod
    def _after_learning(
        tenant: str, policy: str, records: Iterable[DecisionRecord], spec: PolicySpec
    ) -> None:
        """Popularity counters and user profiles, one write per user and a few for every item
        (best effort: the model is already saved). Only seen slots count as impressions."""
        popularity: dict[str, tuple[int, float]] = {}
        profiles: dict[str, tuple[int, list[Rewarded]]] = {}
        for record in records:
            outcome = record_outcome(record, spec.rewards)
            offered = {c.id: c for c in record.candidates}
            rewarded: list[Rewarded] = []
            for item in record.seen_ids():
                reward = outcome.per_item[item]
                impressions, total = popularity.get(item, (0, 0.0))
                popularity[item] = (impressions + 1, total + reward)
                if reward > 0 and item in offered:
                    candidate = offered[item]
                    rewarded.append(Rewarded(item, candidate.category, candidate.creator))
            if record.user_id:
                events, seen = profiles.get(record.user_id, (0, []))
                profiles[record.user_id] = (events + 1, seen + rewarded)
        try:
            users.record_interactions(tenant, profiles)
            counters.add_popularity(tenant, policy, popularity)
        except StorageError as exc:
            logger.warning("counters not updated after learning", extra={"error": exc.detail})


def _wait_over(record: DecisionRecord, spec: PolicySpec, now: float) -> bool:
    """Whether an unactivated event's wait (from its decision) has ended: it expires then."""
    return now >= record.timestamp + window_spec(record, spec.rewards).wait_seconds


def _metric_name(outcome: RewardOutcome) -> str:
    return "Rewards" + "".join(part.title() for part in outcome.value.split("_"))
