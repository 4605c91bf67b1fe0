"""What a retrain job shows (``RetrainStatus``), where it got to (``RetrainCursor``) and what
it will learn (``Plan``): plain values, stored as JSON by ``retrain_store``.

The plan holds the events to learn in the order the live model learned them (model version,
then decision time and event id, as the learner sorts each save's events) and the events that
may still be learned by the live model (open, or learned past the plan's cut), which the next
catch-up looks at again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class RetrainState(StrEnum):
    """The states of a retrain job."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SUPERSEDED = "superseded"  # another change of the policy came first


class Phase(StrEnum):
    """What a running job does next."""

    HARVEST = "harvest"  # read the log for the events learned up to a head version
    REPLAY = "replay"  # learn the plan's events; catch up or swap once it is through


SKIP_REASONS = ("undecodable", "expired", "unfeaturizable")


@dataclass
class RetrainStatus:
    """A retrain job's progress, as the policy's view shows it."""

    state: RetrainState
    pending_spec_version: int
    started_at: float
    updated_at: float
    events_done: int = 0
    events_total: int = 0  # an estimate until the log has been read
    model_version: int | None = None  # the retrained version, once done
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))
    reason: str | None = None  # why it failed or was superseded

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**asdict(self), "state": self.state.value}

    def to_json(self) -> str:
        """As stored."""
        return json.dumps(self.as_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RetrainStatus:
        """As ``to_json`` wrote it."""
        data = json.loads(text)
        return cls(**{**data, "state": RetrainState(data["state"])})


@dataclass
class RetrainCursor:
    """Where a running job got to (the job's own bookkeeping, never shown)."""

    base_spec_version: int  # the current spec's version when the job started
    phase: Phase = Phase.HARVEST
    harvest_head: int = 0  # the head read when the running harvest began
    since: float = 0.0  # where in the log (decision time) the running harvest reads from
    scan_key: dict[str, Any] | None = None  # where its read of the log stopped
    plan_slot: int | None = None  # which staged plan object is current (none: no plan yet)
    model_slot: int | None = None  # which staged model object is current (none: a fresh one)
    position: int = 0  # plan entries done
    cut: int | None = None  # every learned event of the lineage up to this version is planned
    cut_events: int = 0  # events the model at ``cut`` had learned (its own count)
    replayed: int = 0
    gone: int = 0  # planned, yet gone from the log when replayed
    log_from: float | None = None  # decision times of the events replayed
    log_to: float | None = None

    def to_json(self) -> str:
        """As stored."""
        return json.dumps({**asdict(self), "phase": self.phase.value}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RetrainCursor:
        """As ``to_json`` wrote it."""
        data = json.loads(text)
        return cls(**{**data, "phase": Phase(data["phase"])})


@dataclass
class Plan:
    """The events to learn, in order, and those a later catch-up must look at again."""

    # [learned version, decision time, event key], in learning order
    entries: list[list[Any]] = field(default_factory=list)
    # event key -> [learned version (None: still open), decision time]
    pending: dict[str, list[Any]] = field(default_factory=dict)
    watermark: float = 0.0  # the newest decision time read so far

    def to_json(self) -> str:
        """As stored."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        """As ``to_json`` wrote it."""
        return cls(**json.loads(text))

    def cut_at(self, head: int, keep: Any) -> int:
        """Move every pending event learned at or before ``head`` that ``keep(version)`` admits
        into the entries, in learning order; drop the ones it does not. Returns how many moved.
        """
        moved: list[list[Any]] = []
        for key, (version, decided) in list(self.pending.items()):
            if version is None or version > head:
                continue
            del self.pending[key]
            if keep(version):
                moved.append([version, decided, key])
        moved.sort(key=lambda entry: (entry[0], entry[1], entry[2]))
        self.entries += moved
        return len(moved)
