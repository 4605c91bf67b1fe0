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

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from bandit.domain import Candidate, Reward
from bandit.learn.history import History

FORMAT_VERSION = 1


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
    candidates: list[LoggedCandidate]
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


def read_jsonl(source: str | Path | IO[str]) -> Iterator[DecisionRecord]:
    """Yield records from a JSONL file or stream; blank lines are skipped.

    A malformed line raises ``ValueError`` naming its line number.
    """
    if isinstance(source, str | Path):
        with open(source, encoding="utf-8") as handle:
            yield from read_jsonl(handle)
        return
    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            yield DecisionRecord.model_validate_json(line)
        except ValueError as exc:
            raise ValueError(f"decision log line {number}: {exc}") from exc


def write_jsonl(records: Iterable[DecisionRecord], sink: IO[str]) -> int:
    """Write records one per line; return how many were written."""
    count = 0
    for record in records:
        sink.write(record.model_dump_json(exclude_none=False))
        sink.write("\n")
        count += 1
    return count
