"""Request and response bodies of the HTTP API (pydantic), with their caps.

Unknown fields are refused, numbers must be finite, and every list has a cap, so bad input
fails with a 4xx naming the field before anything is stored.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_CANDIDATES = 1000
MAX_SLATE = 50
MAX_REWARDS = 100
MAX_ITEMS = 500
ID_PATTERN = r"^[^\x00-\x1f]{1,256}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class CandidateIn(_Body):
    """A candidate sent in full (or use a string id from the catalog)."""

    id: str = Field(pattern=ID_PATTERN)
    features: dict[str, Any] = Field(default_factory=dict)
    category: str | None = Field(None, max_length=256)
    creator: str | None = Field(None, max_length=256)
    created_at: float | None = Field(None, ge=0)


class RankBody(_Body):
    """``POST /v1/policies/{policy}/rank``."""

    context: dict[str, Any]
    user_id: str | None = Field(None, pattern=ID_PATTERN)
    candidates: list[CandidateIn | str] = Field(min_length=1, max_length=MAX_CANDIDATES)
    slate_size: int | None = Field(None, ge=1, le=MAX_SLATE)
    exclude: list[str] = Field(default_factory=list, max_length=MAX_CANDIDATES)
    defer_activation: bool = False
    baseline: list[str] | None = Field(None, max_length=MAX_SLATE)


class SlotOut(BaseModel):
    """One slot of the answer."""

    id: str
    position: int
    probability: float
    explored: bool


class ExplorationOut(BaseModel):
    """The exploration budget the slate was drawn under."""

    segment: str
    budget: float
    spent: float
    rate: float


class RankResponse(BaseModel):
    """The slate, with the exact probability of every slot."""

    event_id: str
    policy: str
    model_version: int
    slate: list[SlotOut]
    exploration: ExplorationOut
    logged: bool
    degraded: bool = False


class RewardIn(_Body):
    """One reward for one shown item of one event."""

    event_id: str = Field(pattern=ID_PATTERN)
    item_id: str = Field(pattern=ID_PATTERN)
    type: str = Field("click", pattern=r"^[A-Za-z0-9_]{1,64}$")
    value: float | None = Field(None, ge=-1e9, le=1e9)
    final: bool = False
    timestamp: float | None = Field(None, ge=0)


class RewardsBody(_Body):
    """``POST /v1/rewards`` with several rewards."""

    rewards: list[RewardIn] = Field(min_length=1, max_length=MAX_REWARDS)


class AcceptedResponse(BaseModel):
    """``202``: how many rewards were queued."""

    accepted: int


class RollbackBody(_Body):
    """``POST /v1/policies/{policy}/rollback``."""

    version: int = Field(ge=1)


class ItemsBody(_Body):
    """``PUT /v1/items``: catalog upsert."""

    items: list[CandidateIn] = Field(min_length=1, max_length=MAX_ITEMS)


class ErrorResponse(BaseModel):
    """Every error: a code, a human detail and, for bad input, the field."""

    error: str
    detail: str
    field: str | None = None
