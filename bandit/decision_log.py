"""The decision log: one JSON record per event, written as JSONL.

It is what export, offline evaluation and warm start read; ``docs/decision-log.md`` describes
every field. Each record keeps the exact per-slot probabilities and everything needed to rebuild
the candidates each slot was drawn from (candidates, exclusions, diversity caps).

Impressions: a record without ``seen`` (no report from the app, and every record written before
impressions existed) counts every shown slot as seen. Once the app reported impressions, a slot
is seen when its position was reported or its item got a reward before the event closed
(``seen_slots``); unseen slots are neither learned nor counted in metrics.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bandit.domain import Candidate, Reward
from bandit.learn.history import History

FORMAT_VERSION = 1
# A snapshot line starts with its name (pydantic writes fields in order); records never do.
_SNAPSHOT_LINE = re.compile(r'\s*\{\s*"snapshot"\s*:')


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LoggedCandidate(_Record):
    """A candidate as offered to the policy."""

    id: str
    features: dict[str, Any] = Field(default_factory=dict)
    category: str | None = None
    creator: str | None = None
    created_at: float | None = None

    def to_candidate(self) -> Candidate:
        """The core ``Candidate`` value."""
        return Candidate(self.id, self.features, self.category, self.creator, self.created_at)

    @classmethod
    def of(cls, candidate: Candidate) -> LoggedCandidate:
        """Log a core ``Candidate``."""
        return cls(
            id=candidate.id,
            features=dict(candidate.features),
            category=candidate.category,
            creator=candidate.creator,
            created_at=candidate.created_at,
        )


class LoggedSlot(_Record):
    """A shown slot: item, 1-based position, exact probability, whether it explored."""

    item_id: str
    position: int = Field(ge=1)
    probability: float = Field(gt=0.0, le=1.0)
    explored: bool


class LoggedReward(_Record):
    """A reward posted for the event; ``late`` ones are kept but never learned."""

    item_id: str
    type: str
    value: float | None = None
    timestamp: float
    final: bool = False
    late: bool = False

    def to_reward(self) -> Reward:
        """The core ``Reward`` value (value defaults to 1)."""
        value = 1.0 if self.value is None else self.value
        return Reward(self.item_id, self.type, value, self.timestamp, self.final)


class Constraints(_Record):
    """What restricted the draw: excluded ids and diversity caps.

    ``exclude_by_slot[k]`` lists ids kept out of position ``k + 1`` only (multi-slot requests);
    ``None`` when no slot had exclusions of its own.
    """

    exclude: list[str] = Field(default_factory=list)
    exclude_by_slot: list[list[str]] | None = None
    max_per_category: int | None = None
    max_per_creator: int | None = None


class RetrievalLog(_Record):
    """How recommend retrieved the candidates: the index build and each candidate's source."""

    index_version: int
    sources: list[str] = Field(default_factory=list)  # in candidate order


class ExplorationLog(_Record):
    """The budget state the decision was made under."""

    budget: float
    rate: float
    discovery_positions: list[int] = Field(default_factory=list)


class DecisionRecord(_Record):
    """One event: what was offered, what was shown with which probability, what came back."""

    format: int = FORMAT_VERSION
    event_id: str
    policy: str
    model_version: int = 0
    spec_version: int = 1
    timestamp: float
    context: dict[str, Any] = Field(default_factory=dict)
    # The user's history snapshot the slate was drawn with (policies with ``history`` on).
    history: History | None = None
    # Each candidate's collaborative affinity (``collaborative`` on), in candidate order.
    affinities: list[float | None] | None = None
    user_id: str | None = None
    segment: str
    # Inline, or (in a file) the items of the snapshot named by ``snapshot`` (``read_jsonl``).
    candidates: list[LoggedCandidate] = Field(default_factory=list)
    # The catalog snapshot the candidates are, in a log written by reference (``write_jsonl``).
    snapshot: str | None = None
    slate: list[LoggedSlot]
    rewards: list[LoggedReward] = Field(default_factory=list)
    seed: int
    exploration: ExplorationLog
    constraints: Constraints = Constraints()
    deferred: bool = False
    activated: bool = True
    activated_at: float | None = None
    wait_seconds: int | None = None  # the reward wait in force when the event was decided
    learned_version: int | None = None
    # Recommend only: the catalog index build and the source of every candidate.
    retrieval: RetrievalLog | None = None
    # 1-based positions the app reported seen (the union of its reports); None: no report.
    seen: list[Annotated[int, Field(ge=1)]] | None = None
    # The app's own names of the slate's positions, in position order (multi-slot requests).
    slot_ids: list[str] | None = None
    # What the app would have shown at each position without the policy, where it said.
    baseline: list[str] | None = None
    # The model's own best first-slot candidate when the decision was made (what it would have
    # exploited there): with ``baseline``, how often the model agrees with the app.
    model_choice: str | None = None
    # Features of each position, in position order (multi-slot requests that gave some): the
    # slot is scored with them as the context's ``_slot`` namespace (``slot_context``).
    slot_features: list[dict[str, Any]] | None = None
    # How the slots' probabilities were logged: ``conditional`` on the earlier slots (Serendip's
    # own draws), or ``marginal`` per position (logs imported from systems that log those).
    propensities: Literal["conditional", "marginal"] = "conditional"

    def shown_ids(self) -> list[str]:
        """Item ids of the slate in position order."""
        return [slot.item_id for slot in sorted(self.slate, key=lambda s: s.position)]

    def seen_slots(self) -> list[LoggedSlot]:
        """The shown slots the user saw, in position order.

        Without an impressions report, every shown slot. With one, the reported positions and
        every slot whose item got a reward posted before the event closed (a reward implies the
        slot was seen; one flagged late came after learning and changes nothing).
        """
        slots = sorted(self.slate, key=lambda s: s.position)
        if self.seen is None:
            return slots
        positions = set(self.seen)
        rewarded = {reward.item_id for reward in self.rewards if not reward.late}
        return [s for s in slots if s.position in positions or s.item_id in rewarded]

    def seen_ids(self) -> list[str]:
        """Item ids of the seen slots (``seen_slots``) in position order."""
        return [slot.item_id for slot in self.seen_slots()]

    @property
    def window_start(self) -> float:
        """When the reward wait started: activation for deferred events, else the decision."""
        return self.timestamp if self.activated_at is None else self.activated_at

    def core_rewards(self) -> list[Reward]:
        """The posted rewards as core values, in the order they were stored."""
        return [reward.to_reward() for reward in self.rewards]

    def late_reward_indices(self) -> frozenset[int]:
        """Indices of the rewards flagged late (posted after the event closed)."""
        return frozenset(i for i, reward in enumerate(self.rewards) if reward.late)


SLOT_KEY = "_slot"


def slot_context(
    context: Mapping[str, Any], slot_features: Sequence[Mapping[str, Any]] | None, position: int
) -> Mapping[str, Any]:
    """The context a slot is scored and learned with: the request's, plus the 1-based
    ``position``'s own features under ``_slot`` when the request gave slot features.

    >>> slot_context({"u": 1}, [{"size": "big"}, {}], 1)
    {'u': 1, '_slot': {'size': 'big'}}
    >>> slot_context({"u": 1}, None, 1)
    {'u': 1}
    """
    if not slot_features or position > len(slot_features) or not slot_features[position - 1]:
        return context
    return {**context, SLOT_KEY: dict(slot_features[position - 1])}


class CatalogSnapshot(_Record):
    """A line of a log written by reference: candidates stored once, named by content."""

    snapshot: str
    items: list[LoggedCandidate]

    @classmethod
    def of(cls, items: list[LoggedCandidate]) -> CatalogSnapshot:
        """The snapshot of ``items``, named by a hash of their content and order.

        >>> a = CatalogSnapshot.of([LoggedCandidate(id="a", features={"n": 1})])
        >>> b = CatalogSnapshot.of([LoggedCandidate(id="a", features={"n": 1})])
        >>> a.snapshot == b.snapshot, a.snapshot.startswith("sha256:")
        (True, True)
        """
        content = json.dumps(
            [item.model_dump(mode="json") for item in items], sort_keys=True, separators=(",", ":")
        )
        digest = hashlib.sha256(content.encode("utf-8")).hexdigest()[:32]
        return cls(snapshot=f"sha256:{digest}", items=items)


def read_jsonl(source: str | Path | IO[str]) -> Iterator[DecisionRecord]:
    """Yield records from a JSONL file or stream; blank lines are skipped.

    A log written by reference (``write_jsonl(..., by_reference=True)``) holds snapshot lines
    (``CatalogSnapshot``); a record naming one gets its items as its candidates, shared between
    the records that name it. A malformed line, a snapshot whose name is not the hash of its
    items, or a record naming a snapshot no earlier line holds, raises ``ValueError`` naming its
    line number.
    """
    if isinstance(source, str | Path):
        with open(source, encoding="utf-8") as handle:
            yield from read_jsonl(handle)
        return
    snapshots: dict[str, list[LoggedCandidate]] = {}
    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            if _SNAPSHOT_LINE.match(line):
                snapshot = CatalogSnapshot.model_validate_json(line)
                if CatalogSnapshot.of(snapshot.items).snapshot != snapshot.snapshot:
                    raise ValueError(f"snapshot {snapshot.snapshot!r} does not match its items")
                snapshots[snapshot.snapshot] = snapshot.items
                continue
            record = DecisionRecord.model_validate_json(line)
        except ValueError as exc:
            raise ValueError(f"decision log line {number}: {exc}") from exc
        if record.snapshot is not None:
            items = snapshots.get(record.snapshot)
            if items is None:
                raise ValueError(
                    f"decision log line {number}: snapshot {record.snapshot!r} is not on an "
                    "earlier line"
                )
            if record.candidates:
                raise ValueError(
                    f"decision log line {number}: a record naming a snapshot has no candidates "
                    "of its own"
                )
            record = record.model_copy(update={"candidates": items, "snapshot": None})
        yield record


def write_jsonl(
    records: Iterable[DecisionRecord], sink: IO[str], *, by_reference: bool = False
) -> int:
    """Write records one per line; return how many records were written.

    ``by_reference``: each distinct candidate list is written once, as a ``CatalogSnapshot``
    line before the first record that uses it, and records name it (``snapshot``) instead of
    embedding it. ``read_jsonl`` restores the records exactly.
    """
    count = 0
    # By the identity of the items (kept alive with the name, so no id is reused)
    names: dict[tuple[int, ...], tuple[list[LoggedCandidate], str]] = {}
    written: set[str] = set()
    for record in records:
        line = record
        if by_reference and record.candidates:
            key = tuple(map(id, record.candidates))
            known = names.get(key)
            if known is None:
                snapshot = CatalogSnapshot.of(record.candidates)
                known = (record.candidates, snapshot.snapshot)
                names[key] = known
                if snapshot.snapshot not in written:
                    sink.write(snapshot.model_dump_json())
                    sink.write("\n")
                    written.add(snapshot.snapshot)
            line = record.model_copy(update={"candidates": [], "snapshot": known[1]})
        elif record.snapshot is not None:
            line = record.model_copy(update={"snapshot": None})
        sink.write(line.model_dump_json(exclude_none=False))
        sink.write("\n")
        count += 1
    return count
