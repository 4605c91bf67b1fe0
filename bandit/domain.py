"""Plain value types shared across the core: candidates, slots and rewards."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Candidate:
    """An item that may be shown. ``created_at`` is unix seconds (used for the new-item boost)."""

    id: str
    features: Mapping[str, Any] = field(default_factory=dict)
    category: str | None = None
    creator: str | None = None
    created_at: float | None = None


@dataclass(frozen=True, slots=True)
class Slot:
    """One filled position of a slate and the exact probability it was drawn with.

    ``explored`` is true when the slot's draw came from the exploration distribution
    (it spent exploration budget), whatever item that draw produced.
    """

    item_id: str
    position: int
    probability: float
    explored: bool


@dataclass(frozen=True, slots=True)
class Reward:
    """An outcome posted by the app for one shown item of one event."""

    item_id: str
    type: str
    value: float
    timestamp: float
    final: bool = False
