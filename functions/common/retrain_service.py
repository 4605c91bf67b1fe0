"""Retraining a policy's model from its kept decision log after a spec change.

A ``PUT`` that changes the VW arguments with ``model=retrain`` stores the new spec as pending
and queues the job's first chunk on the learn queue, in the policy's message group: chunks run
one at a time, in order with the policy's learning, so nothing the live learner saves can race
one. Meanwhile the policy serves its current spec and model. The job:

1. **Harvests**: reads the head version, then the log (decision-time order) for the events
   learned up to it. Those of the head's lineage (``model_lineage``) go into the plan in the
   order the live model learned them: by model version, then by decision time and event id, as
   the learner sorts each save's events. That order makes the result the model the live learner
   would have built had it run the pending spec all along (and it is well defined, which
   decision-time order is not for events learned late). Events still open, or learned past the
   head it read, wait for the next harvest.
2. **Replays** the plan into a model built from the pending spec: the slot examples the learner
   builds under the pending spec, with the logged probabilities. Events whose records are gone
   (expired), cannot be decoded, or cannot be featurized under the new spec are skipped and
   counted.
3. Once through, if the head has not moved it **swaps**: the pending spec becomes current and
   the retrained model the next version, in one transaction (``model_store.save`` with a
   ``SpecChange``), conditional on the job still being the policy's. If the head moved (events
   learned meanwhile), it harvests again from the oldest event it still waits for.

Each chunk does at most ``CHUNK_WORK`` of learning (a learner's save) or ``SCAN_SECONDS`` of
reading, and stops with ``TIME_MARGIN_SECONDS`` of its invocation left; it stages its model and
plan, commits its cursor (conditional on the chunk: a chunk delivered twice commits once) and
queues the next chunk. A job whose policy changed again finds itself ended and deletes what it
staged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from bandit.errors import ModelError, SpecError
from bandit.learn.learning import examples_work, learn_examples, slot_examples
from bandit.serve.ranker import build_model
from bandit.serve.vw import VWModel
from bandit.spec import PolicySpec, parse_spec
from functions.common import decision_store, model_store, retrain_store
from functions.common.learn_service import (
    DATA_PROBLEMS,
    SAVE_WORK,
    TIME_MARGIN_SECONDS,
    OutOfTimeError,
)
from functions.common.observability import logger, metrics
from functions.common.queue_messages import RetrainStep
from functions.common.retrain_state import Phase, Plan, RetrainCursor, RetrainState, RetrainStatus
from functions.common.retrain_store import Job, LogScan

CHUNK_WORK = SAVE_WORK
SCAN_SECONDS = 10.0
# A harvest after the first reads back this far before the newest decision it had seen: an
# event's decision time is taken before its record is written, by another function's clock.
CLOCK_SKEW_SECONDS = 60.0
RECORDS_PER_READ = 100
MAX_SWAPS = 3  # swap attempts per chunk


@dataclass(frozen=True, slots=True)
class ChunkReport:
    """What one chunk did: ``advanced``, ``done``, ``failed``, ``ended`` (the job had ended) or
    ``duplicate`` (a chunk run before)."""

    outcome: str
    replayed: int = 0
    version: int | None = None


class _JobStopError(Exception):
    """The job cannot go on (its reason is in the message)."""


class _JobEndedError(Exception):
    """The job ended (superseded, or its policy deleted) while this chunk ran."""


class Retrainer:
    """Runs retrain chunks. ``time_left`` tells the seconds left in this invocation."""

    def __init__(
        self,
        time_left: Callable[[], float] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.time_left = time_left
        self._clock = clock
        self._monotonic = monotonic

    def _short_of_time(self) -> bool:
        return self.time_left is not None and self.time_left() < TIME_MARGIN_SECONDS

    def run(self, tenant: str, policy: str, step: RetrainStep) -> ChunkReport:
        """Run ``step`` if it is the chunk the policy's job expects; see the module's doc.

        Raises on outages (the chunk is simply run again) and ``OutOfTimeError`` when too
        little time is left to start it.
        """
        job = retrain_store.read(tenant, policy)
        if job is None or not job.runs(step.job):
            retrain_store.discard(tenant, policy, step.job)
            logger.info("retrain chunk of an ended job dropped", extra=_where(tenant, policy, step))
            return ChunkReport("ended")
        if step.chunk != job.chunk:
            if job.chunk is not None and step.chunk == job.chunk - 1:
                # Committed, but its successor may not have been queued: queue it (again).
                retrain_store.send_step(tenant, policy, step.job, job.chunk)
            return ChunkReport("duplicate")
        if self._short_of_time():
            raise OutOfTimeError(f"no time left to retrain '{policy}'; retried")
        try:
            return _Chunk(job, step.chunk, self).run()
        except (_JobStopError, ModelError) as exc:
            return self._fail(job, step.chunk, str(exc))
        except _JobEndedError:
            retrain_store.discard(tenant, policy, step.job)
            logger.info("retrain ended while a chunk ran", extra=_where(tenant, policy, step))
            return ChunkReport("ended")

    def _fail(self, job: Job, chunk: int, reason: str) -> ChunkReport:
        status = job.shown()
        status.state, status.reason, status.updated_at = RetrainState.FAILED, reason, self._clock()
        logger.warning("retrain failed", extra={"policy": job.policy, "reason": reason})
        if retrain_store.fail(job, chunk, status):
            metrics.add_metric(name="RetrainsFailed", unit="Count", value=1)
        retrain_store.discard(job.tenant, job.policy, str(job.job))
        return ChunkReport("failed")


class _Chunk:
    """One chunk of a job: its model, plan and cursor as it read them, and what it did."""

    def __init__(self, job: Job, number: int, runner: Retrainer) -> None:
        self.job, self.number, self.runner = job, number, runner
        self.status: RetrainStatus = job.shown()
        self.cursor: RetrainCursor = job.where()
        try:
            self.spec: PolicySpec = parse_spec(json.loads(job.pending_spec or "null"))
        except (SpecError, ValueError, TypeError) as exc:
            raise _JobStopError(f"the pending spec no longer validates: {exc}") from exc
        slot = self.cursor.model_slot
        self.model: VWModel = (
            _fresh_model(self.spec) if slot is None else retrain_store.load_model(job, slot)
        )
        slot = self.cursor.plan_slot
        self.plan: Plan = Plan() if slot is None else retrain_store.load_plan(job, slot)
        self.started = runner._monotonic()
        self.work = 0
        self.replayed = 0
        self.swaps = 0
        self.model_changed = self.plan_changed = False

    def run(self) -> ChunkReport:
        """Harvest, replay and swap while the chunk's budget lasts; then commit."""
        while not self.runner._short_of_time():
            if self.cursor.phase is Phase.HARVEST:
                if not self._scan():
                    break
                self._cut()
            elif self.cursor.position < len(self.plan.entries):
                if not self._replay():
                    break
            elif self.swaps < MAX_SWAPS:
                version = self._swap_or_harvest()
                if version is not None:
                    return ChunkReport("done", self.replayed, version)
            else:
                break  # the swap kept losing a race: the next chunk tries again
        return self._commit()

    # ------------------------------------------------------------ harvest

    def _scan(self) -> bool:
        """Read the log on from the cursor; True once it is through."""
        cursor, plan = self.cursor, self.plan
        planned = {entry[2] for entry in plan.entries if entry[1] >= cursor.since}
        scan = LogScan(self.job.tenant, self.job.policy, cursor.since, cursor.scan_key)
        self.plan_changed = True
        for entry in scan:
            plan.watermark = max(plan.watermark, entry.decided_at)
            if entry.key not in planned:
                if entry.status == decision_store.EventStatus.LEARNED:
                    plan.pending[entry.key] = [entry.learned_version, entry.decided_at]
                elif entry.status == decision_store.EventStatus.OPEN:
                    plan.pending[entry.key] = [None, entry.decided_at]
                else:  # expired or failed: never learned
                    plan.pending.pop(entry.key, None)
            elapsed = self.runner._monotonic() - self.started
            if elapsed > SCAN_SECONDS or self.runner._short_of_time():
                cursor.scan_key = scan.resume_key()
                if cursor.scan_key is not None:
                    return False
                break
        cursor.scan_key = None
        return True

    def _cut(self) -> None:
        """The harvest is through: plan the events learned up to the head it read."""
        cursor, plan = self.cursor, self.plan
        head = cursor.harvest_head
        roots, copies = model_store.line_marks(self.job.tenant, self.job.policy)
        line = self.job.lineage(head, roots, copies)
        if cursor.cut is not None and cursor.cut not in line and cursor.cut != 0:
            raise _JobStopError(
                f"the model was rolled back or replaced while retraining (head {head} does not "
                f"build on version {cursor.cut}); put the spec again"
            )
        plan.cut_at(head, line.__contains__)
        cursor.cut, cursor.phase = head, Phase.REPLAY
        cursor.cut_events = self._events_learned(head)
        self._show_progress()

    def _events_learned(self, version: int) -> int:
        """How many events model ``version`` learned, by its own count (0 for none)."""
        if version == 0:
            return 0
        info = model_store.version_info(self.job.tenant, self.job.policy, version)
        return 0 if info is None else info.events_learned

    def _start_harvest(self, head: int) -> None:
        cursor, plan = self.cursor, self.plan
        waiting = [decided for _, decided in plan.pending.values()]
        cursor.phase, cursor.harvest_head, cursor.scan_key = Phase.HARVEST, head, None
        cursor.since = max(0.0, min([*waiting, plan.watermark]) - CLOCK_SKEW_SECONDS)
        self.plan_changed = True

    # ------------------------------------------------------------ replay

    def _replay(self) -> bool:
        """Learn plan entries on from the cursor; False once the chunk's work is used up."""
        cursor, skipped = self.cursor, self.status.skipped
        args = self.spec.vw_args()
        batch = self.plan.entries[cursor.position : cursor.position + RECORDS_PER_READ]
        decisions, broken = decision_store.get_many(entry[2] for entry in batch)
        found = {d.key: d for d in decisions}
        undecodable = {problem.key for problem in broken}
        for _version, _decided, key in batch:
            if self.runner._short_of_time():
                return False
            decision = found.get(key)
            if key in undecodable:
                skipped["undecodable"] += 1
            elif decision is None or decision.status != decision_store.EventStatus.LEARNED:
                cursor.gone += 1  # gone from the log since it was planned
            else:
                try:
                    examples = slot_examples(decision.record, self.spec)
                except DATA_PROBLEMS:
                    skipped["unfeaturizable"] += 1
                else:
                    work = examples_work(args, examples)
                    if self.work and self.work + work > CHUNK_WORK:
                        return False
                    learn_examples(self.model, examples)
                    self.work += work
                    self.replayed += 1
                    self.model_changed = True
                    decided = decision.record.timestamp
                    cursor.replayed += 1
                    cursor.log_from = min(cursor.log_from or decided, decided)
                    cursor.log_to = max(cursor.log_to or decided, decided)
            cursor.position += 1
        return True

    # ------------------------------------------------------------ swap

    def _swap_or_harvest(self) -> int | None:
        """The plan is through: swap if the head is still its cut (the new version), else
        start a harvest of what was learned since (None)."""
        now = retrain_store.read(self.job.tenant, self.job.policy)
        if now is None or not now.runs(str(self.job.job)) or now.chunk != self.number:
            raise _JobEndedError
        cursor = self.cursor
        if now.spec_version != cursor.base_spec_version:
            # Changed by a path that leaves pending specs alone: the swap could never hold.
            raise _JobStopError("the policy's current spec changed while retraining")
        if now.head_version != cursor.cut:
            self._start_harvest(now.head_version)
            return None
        self._show_progress()
        self.swaps += 1
        version = now.head_version + 1
        done = RetrainStatus(
            **{**self.status.as_dict(), "state": RetrainState.DONE, "model_version": version}
        )
        done.updated_at = self.runner._clock()
        change = model_store.SpecChange(
            str(self.job.pending_spec),
            cursor.base_spec_version,
            also=tuple(retrain_store.end_actions(done)),
            only_if=retrain_store.running_condition(str(self.job.job), self.number),
        )
        try:
            saved = model_store.save(
                self.job.tenant,
                self.job.policy,
                self.model,
                expected_head=now.head_version,
                spec_change=change,
                retrained=self._lineage_note(),
            )
        except model_store.HeadMovedError:
            return None  # read again: the job ended, or the head moved (a harvest follows)
        retrain_store.discard(self.job.tenant, self.job.policy, str(self.job.job))
        metrics.add_metric(name="RetrainsDone", unit="Count", value=1)
        self.status = done
        self._log("retrain done: the pending spec is current")
        return saved

    def _lineage_note(self) -> dict[str, object]:
        cursor = self.cursor
        return {
            "events": cursor.replayed,
            "skipped": dict(self.status.skipped),
            "log_range": [cursor.log_from, cursor.log_to],
            "through_version": cursor.cut,
        }

    # ------------------------------------------------------------ commit

    def _show_progress(self) -> None:
        status, cursor, plan = self.status, self.cursor, self.plan
        learned_waiting = sum(1 for version, _ in plan.pending.values() if version is not None)
        if cursor.cut is None:  # still reading the log for the first time
            if not status.events_total:
                status.events_total = self._events_learned(cursor.harvest_head)
            status.events_total = max(status.events_total, learned_waiting)
            return
        # Learned by the model at the cut, yet gone from the log before it was read (its TTL).
        missing = max(0, cursor.cut_events - len(plan.entries))
        status.skipped["expired"] = cursor.gone + missing
        status.events_total = len(plan.entries) + learned_waiting + missing
        status.events_done = cursor.position + missing

    def _commit(self) -> ChunkReport:
        job, cursor = self.job, self.cursor
        if self.model_changed:
            cursor.model_slot = 0 if cursor.model_slot == 1 else 1
            retrain_store.stage_model(job, cursor.model_slot, self.model)
        if self.plan_changed:
            cursor.plan_slot = 0 if cursor.plan_slot == 1 else 1
            retrain_store.stage_plan(job, cursor.plan_slot, self.plan)
        self._show_progress()
        self.status.updated_at = self.runner._clock()
        if not retrain_store.commit(job, self.number, self.status, cursor):
            raise _JobEndedError
        retrain_store.send_step(job.tenant, job.policy, str(job.job), self.number + 1)
        self._log("retrain chunk")
        return ChunkReport("advanced", self.replayed)

    def _log(self, message: str) -> None:
        status = self.status
        logger.info(
            message,
            extra={
                "tenant": self.job.tenant,
                "policy": self.job.policy,
                "job": self.job.job,
                "chunk": self.number,
                "phase": self.cursor.phase.value,
                "events_done": status.events_done,
                "events_total": status.events_total,
                "replayed": self.replayed,
                "skipped": status.skipped,
                "model_version": status.model_version,
            },
        )


def _fresh_model(spec: PolicySpec) -> VWModel:
    """A model built from ``spec``; VW refusing its arguments ends the job."""
    try:
        return build_model(spec)
    except Exception as exc:  # VW raises RuntimeError and others for arguments it refuses
        raise _JobStopError(f"VW refuses the pending spec's arguments: {exc}"[:500]) from exc


def _where(tenant: str, policy: str, step: RetrainStep) -> dict[str, object]:
    return {"tenant": tenant, "policy": policy, "job": step.job, "chunk": step.chunk}
