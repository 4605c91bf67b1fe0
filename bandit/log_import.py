"""Other systems' logs into the decision log, by a documented column mapping.

A mapping (``ImportMapping``, a YAML file: ``docs/import.md``) names which column of a CSV or
JSONL log holds each part of an event: the shown item, its position, the probability it was
shown with, the reward, the context; item features come from a side file of items (the catalog
snapshot), which is every event's candidates unless a column lists them. Rows sharing an event
id are one event's slots; without an event id column each row is an event of its own (one slot at
its position, as the Open Bandit Dataset logs them).

Cells are converted as the featurizer expects: in CSV a cell that reads as a finite number is a
number, any other text is categorical, an empty cell is absent. Imported records log
``propensities`` as the mapping says (``marginal`` per position by default: most systems log
those), every slot as explored, and an exploration state of rate 1: the logging policy's own
budget is unknown, so replay checks no floor against it.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bandit.decision_log import (
    DecisionRecord,
    ExplorationLog,
    LoggedCandidate,
    LoggedReward,
    LoggedSlot,
)
from bandit.spec import POLICY_NAME_PATTERN

Columns = list[str] | dict[str, list[str]]
Subset = tuple[list[LoggedCandidate], frozenset[str]]


class LogImportError(ValueError):
    """A mapping or a log row that cannot be imported; the message names the row and column."""


class _Mapping(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ItemsMapping(_Mapping):
    """The side file of items: every candidate's id and features."""

    file: str  # relative to the mapping file
    format: Literal["csv", "jsonl"] | None = None  # default: from the file's extension
    id: str
    features: Columns = Field(default_factory=list)
    category: str | None = None
    creator: str | None = None


class ColumnMapping(_Mapping):
    """Which column holds what; only ``action`` and ``propensity`` are required."""

    action: str
    propensity: str
    reward: str | None = None  # an empty cell: no reward posted
    position: str | None = None  # none: every row is position 1
    timestamp: str | None = None  # unix seconds or ISO 8601 (UTC without a zone); none: row
    event_id: str | None = None  # rows sharing one are one event's slots; none: one per row
    user_id: str | None = None
    segment: str | None = None
    candidates: str | None = None  # ids: a JSON list or "|"-separated; none: every item


class ImportMapping(_Mapping):
    """How a log's columns become decision records (``docs/import.md``)."""

    policy: str = Field(pattern=POLICY_NAME_PATTERN)
    format: Literal["csv", "jsonl"] | None = None  # default: from the log's extension
    columns: ColumnMapping
    # Column names or globs into the context (a namespace per column), or namespace -> columns.
    context: Columns = Field(default_factory=list)
    position_base: Literal[0, 1] = 1
    propensities: Literal["marginal", "conditional"] = "marginal"
    reward_type: str = Field("click", pattern=r"^[A-Za-z0-9_]{1,64}$")
    segment: str = Field("all", min_length=1, max_length=64)  # when no column names one
    items: ItemsMapping | None = None

    @model_validator(mode="after")
    def _candidates_known(self) -> ImportMapping:
        if self.items is None and self.columns.candidates is None:
            raise ValueError("give items (a side file of items) or columns.candidates")
        return self


def load_mapping(path: str | Path) -> tuple[ImportMapping, Path]:
    """The mapping in a YAML file, and the directory its relative paths start from."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return ImportMapping.model_validate(data), path.resolve().parent
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise LogImportError(f"mapping {path}: {where}: {first['msg']}") from error
    except (OSError, yaml.YAMLError) as error:
        raise LogImportError(f"mapping {path}: {error}") from error


def read_rows(path: Path, format: str | None) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(row number, row)`` of a CSV (header line first) or JSONL file; numbers from 1."""
    kind = format or ("jsonl" if path.suffix.lower() in (".jsonl", ".json", ".ndjson") else "csv")
    # utf-8-sig: a spreadsheet's export starts with a byte-order mark, which is not a column name
    with open(path, encoding="utf-8-sig", newline="") as handle:
        if kind == "csv":
            for number, row in enumerate(csv.DictReader(handle), start=1):
                yield number, {key: _cell(value) for key, value in row.items() if key is not None}
            return
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as error:
                raise LogImportError(f"{path.name} line {number}: not JSON: {error}") from error
            if not isinstance(row, dict):
                raise LogImportError(f"{path.name} line {number}: must be a JSON object")
            yield number, row


def _cell(text: str | None) -> Any:
    """A CSV cell as the featurizer should see it: a finite number, text, or absent (None)."""
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def _expand(patterns: list[str], names: list[str]) -> list[str]:
    out = [n for pattern in patterns for n in names if fnmatch.fnmatchcase(n, pattern)]
    return list(dict.fromkeys(out))


def _select(columns: Columns, row: Mapping[str, Any], names: list[str]) -> dict[str, Any]:
    """The row's features under ``columns``: flat, or grouped into namespaces."""
    if isinstance(columns, dict):
        grouped = {space: _select(patterns, row, names) for space, patterns in columns.items()}
        return {space: values for space, values in grouped.items() if values}
    return {n: row[n] for n in _expand(columns, names) if row.get(n) is not None}


def _patterns(columns: Columns) -> list[str]:
    if isinstance(columns, dict):
        return [pattern for patterns in columns.values() for pattern in patterns]
    return columns


def load_items(items: ItemsMapping, base: Path) -> list[LoggedCandidate]:
    """The items of the side file, in file order: the catalog snapshot every event draws from."""
    path = base / items.file
    out: dict[str, LoggedCandidate] = {}
    names: list[str] | None = None
    try:
        rows = list(read_rows(path, items.format))
    except OSError as error:
        raise LogImportError(f"items file {path}: {error}") from error
    for number, row in rows:
        if names is None:
            names = list(row)
            _require(row, [items.id], f"items file {path.name}")
            if not _expand(_patterns(items.features), names) and _patterns(items.features):
                raise LogImportError(
                    f"items file {path.name}: no column matches features {items.features}"
                )
        item_id = _text(row.get(items.id))
        if item_id is None:
            raise LogImportError(f"items file {path.name} row {number}: column {items.id!r} empty")
        if item_id in out:
            raise LogImportError(f"items file {path.name} row {number}: item {item_id!r} twice")
        out[item_id] = LoggedCandidate(
            id=item_id,
            features=_select(items.features, row, list(row)),
            category=_text(row.get(items.category)) if items.category else None,
            creator=_text(row.get(items.creator)) if items.creator else None,
        )
    if not out:
        raise LogImportError(f"items file {path.name}: holds no item")
    return list(out.values())


def _text(value: Any) -> str | None:
    """An id cell as text: ``12.0`` read from CSV is the id ``12``."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _require(row: Mapping[str, Any], columns: Iterable[str | None], where: str) -> None:
    missing = [c for c in columns if c is not None and c not in row]
    if missing:
        raise LogImportError(f"{where}: no column {missing[0]!r} (columns: {', '.join(row)})")


@dataclass
class ImportReport:
    """What an import read, wrote and set aside."""

    rows: int = 0
    events: int = 0
    rewards: int = 0
    items: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        """Count one row set aside for ``reason``."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


@dataclass
class _Event:
    event_id: str
    timestamp: float
    context: dict[str, Any]
    user_id: str | None
    segment: str
    candidates: list[LoggedCandidate]
    ids: frozenset[str]
    slots: list[LoggedSlot] = field(default_factory=list)
    rewards: list[LoggedReward] = field(default_factory=list)


class _RowError(LogImportError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def import_log(
    rows: Iterable[tuple[int, dict[str, Any]]],
    mapping: ImportMapping,
    items: list[LoggedCandidate] | None,
    report: ImportReport,
    *,
    skip_invalid: bool = False,
) -> Iterator[DecisionRecord]:
    """The log's events as decision records, in order of their first row.

    A row that cannot be imported raises ``LogImportError`` naming its row and column, or with
    ``skip_invalid`` is counted in ``report.skipped`` by reason and left out.
    """
    columns = mapping.columns
    state = _State({item.id: item for item in items or []})
    names: list[str] | None = None
    report.items = len(state.by_id)
    for number, row in rows:
        report.rows += 1
        if names is None:
            names = list(row)
            wanted = [columns.action, columns.propensity, columns.reward, columns.position]
            wanted += [columns.timestamp, columns.event_id, columns.user_id, columns.segment]
            _require(row, [*wanted, columns.candidates], "log")
            if _patterns(mapping.context) and not _expand(_patterns(mapping.context), names):
                raise LogImportError(f"log: no column matches context {mapping.context}")
        try:
            _add_row(number, row, names, mapping, state)
        except _RowError as error:
            if not skip_invalid:
                raise LogImportError(str(error)) from error
            report.skip(error.reason)
    for event in state.events.values():
        record = _record(event, mapping)
        report.events += 1
        report.rewards += len(record.rewards)
        yield record


@dataclass
class _State:
    by_id: dict[str, LoggedCandidate]
    subsets: dict[tuple[str, ...], Subset] = field(default_factory=dict)
    events: dict[str, _Event] = field(default_factory=dict)


def _add_row(
    number: int, row: Mapping[str, Any], names: list[str], mapping: ImportMapping, state: _State
) -> None:
    columns = mapping.columns
    where = f"row {number}"
    action = _text(row.get(columns.action))
    if action is None:
        raise _RowError("empty action", f"{where}: column {columns.action!r} is empty")
    probability = _number(row, columns.propensity, where, "propensity")
    if not 0.0 < probability <= 1.0:
        raise _RowError(
            "propensity outside (0, 1]",
            f"{where}: column {columns.propensity!r}: {probability!r} is not in (0, 1]",
        )
    position = 1
    if columns.position is not None:
        logged = _number(row, columns.position, where, "position")
        position = int(logged) + 1 - mapping.position_base
        if logged != int(logged) or position < 1:
            raise _RowError(
                "bad position",
                f"{where}: column {columns.position!r}: {logged!r} is not a position "
                f"({mapping.position_base}-based)",
            )
    event_id = _text(row.get(columns.event_id)) if columns.event_id else None
    event_id = event_id or f"{mapping.policy}-{number}"
    event = state.events.get(event_id) or _Event(
        event_id,
        _timestamp(row, columns.timestamp, number),
        *_who(row, mapping, names),
        *_candidates(row, columns.candidates, state.by_id, state.subsets, where),
    )
    if action not in event.ids:
        raise _RowError(
            "action not a candidate",
            f"{where}: column {columns.action!r}: item {action!r} is not among the candidates",
        )
    if any(slot.position == position for slot in event.slots):
        raise _RowError(
            "position twice", f"{where}: event {event_id!r} has position {position} twice"
        )
    reward = None
    if columns.reward is not None and row.get(columns.reward) is not None:
        reward = _number(row, columns.reward, where, "reward")
    state.events[event_id] = event
    event.slots.append(
        LoggedSlot(item_id=action, position=position, probability=probability, explored=True)
    )
    if reward is not None:
        event.rewards.append(
            LoggedReward(
                item_id=action, type=mapping.reward_type, value=reward, timestamp=event.timestamp
            )
        )


def _who(
    row: Mapping[str, Any], mapping: ImportMapping, names: list[str]
) -> tuple[dict[str, Any], str | None, str]:
    """The event's context, user id and segment."""
    columns = mapping.columns
    user_id = _text(row.get(columns.user_id)) if columns.user_id else None
    segment = _text(row.get(columns.segment)) if columns.segment else None
    return _select(mapping.context, row, names), user_id, segment or mapping.segment


def _number(row: Mapping[str, Any], column: str, where: str, what: str) -> float:
    value = row.get(column)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _RowError(f"bad {what}", f"{where}: column {column!r}: {value!r} is not a number")
    return float(value)


def _timestamp(row: Mapping[str, Any], column: str | None, number: int) -> float:
    if column is None:
        return float(number)
    value = row.get(column)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    raise _RowError(
        "bad timestamp",
        f"row {number}: column {column!r}: {value!r} is neither unix seconds nor ISO 8601",
    )


def _candidates(
    row: Mapping[str, Any],
    column: str | None,
    by_id: Mapping[str, LoggedCandidate],
    subsets: dict[tuple[str, ...], Subset],
    where: str,
) -> Subset:
    """The event's candidates and their ids: every item (one shared list), or its column's."""
    if column is None:
        key: tuple[str, ...] = ()
        if key not in subsets:
            subsets[key] = (list(by_id.values()), frozenset(by_id))
        return subsets[key]
    ids = _id_list(row.get(column), column, where)
    key = tuple(ids)
    if key not in subsets:
        unknown = [i for i in ids if i not in by_id]
        if unknown and by_id:
            raise _RowError(
                "unknown candidate", f"{where}: column {column!r}: item {unknown[0]!r} unknown"
            )
        subsets[key] = ([by_id.get(i) or LoggedCandidate(id=i) for i in ids], frozenset(ids))
    return subsets[key]


def _id_list(value: Any, column: str, where: str) -> list[str]:
    if isinstance(value, str):
        text = value.strip()
        value = json.loads(text) if text.startswith("[") else text.split("|")
    if not isinstance(value, list) or not value:
        raise _RowError("bad candidates", f"{where}: column {column!r}: not a list of item ids")
    return list(dict.fromkeys(t for t in (_text(v) for v in value) if t))


def _record(event: _Event, mapping: ImportMapping) -> DecisionRecord:
    """The event's record; its candidates stay the list the events share (validation copies)."""
    record = DecisionRecord(
        event_id=event.event_id,
        policy=mapping.policy,
        timestamp=event.timestamp,
        context=event.context,
        user_id=event.user_id,
        segment=event.segment,
        slate=sorted(event.slots, key=lambda slot: slot.position),
        rewards=event.rewards,
        seed=0,
        exploration=ExplorationLog(budget=1.0, rate=1.0),
        propensities=mapping.propensities,
    )
    return record.model_copy(update={"candidates": event.candidates})
