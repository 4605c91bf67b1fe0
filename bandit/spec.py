"""Policy specs: frozen, validated settings of one recommendation surface.

A spec says how a policy learns (VW arguments from an allowlist), how it explores (algorithm,
budget, discovery slots), how it treats new users and items, how rewards are valued and how
diverse a slate must be. Invalid specs fail at load with a message naming the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bandit.errors import SpecError
from bandit.retrieve.settings import RetrievalSpec
from bandit.serve.vw_args import (
    EXPLORATION_FLAGS,
    validate_cb_type,
    validate_vw_args,
    validate_vw_settings,
)

POLICY_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
MAX_COUNT = 10**9  # cap of the counts and versions a spec holds (none comes near it)
MAX_SEGMENTS = 16
MAX_REWARD_TYPES = 64


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class ExplorationAlgorithm(StrEnum):
    """How the exploration distribution over the allowed candidates is formed."""

    EPSILON_GREEDY = "epsilon_greedy"
    SQUARECB = "squarecb"
    SOFTMAX = "softmax"
    VW_PMF = "vw_pmf"


class VWSettings(_Frozen):
    """VW learning arguments (allowlisted); ``explore_args`` only for ``vw_pmf``."""

    args: tuple[str, ...] = ("--cb_type", "dm", "-q", "CI", "--learning_rate", "0.1")
    explore_args: tuple[str, ...] = ()

    @field_validator("args")
    @classmethod
    def _args_allowed(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        validate_vw_args(value)
        for flag in value:
            if flag in EXPLORATION_FLAGS:
                raise ValueError(f"exploration flag {flag!r} belongs in vw.explore_args")
        return value

    @field_validator("explore_args")
    @classmethod
    def _explore_args_allowed(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        validate_vw_args(value, "vw.explore_args")
        return value


class ExplorationSpec(_Frozen):
    """The exploration budget: target share of exploratory slots and how draws are formed."""

    algorithm: ExplorationAlgorithm = ExplorationAlgorithm.EPSILON_GREEDY
    budget: float = Field(0.05, ge=0.0, le=1.0)
    window_seconds: int = Field(3600, ge=60, le=30 * 86400)
    bucket_seconds: int = Field(60, ge=1, le=86400)
    shards: int = Field(8, ge=1, le=256)
    discovery_positions: tuple[int, ...] = ()
    softmax_temperature: float = Field(0.1, gt=0.0, le=100.0)
    squarecb_gamma: float = Field(50.0, gt=0.0, le=1e6)

    @model_validator(mode="after")
    def _window_holds_buckets(self) -> ExplorationSpec:
        if self.window_seconds % self.bucket_seconds:
            raise ValueError("window_seconds: must be a multiple of bucket_seconds")
        if len(set(self.discovery_positions)) != len(self.discovery_positions):
            raise ValueError("discovery_positions: must not repeat")
        return self


class SegmentSpec(_Frozen):
    """A user-maturity segment: users with at most ``max_interactions`` past interactions."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    max_interactions: int | None = Field(None, ge=0, le=MAX_COUNT)
    budget: float | None = Field(None, ge=0.0, le=1.0)


def _default_segments() -> tuple[SegmentSpec, ...]:
    return (
        SegmentSpec(name="cold", max_interactions=4, budget=None),
        SegmentSpec(name="warm", max_interactions=49, budget=None),
        SegmentSpec(name="mature", max_interactions=None, budget=None),
    )


class NewItemSpec(_Frozen):
    """Items younger than ``max_age_hours`` or with fewer impressions get ``boost`` weight."""

    max_age_hours: float | None = Field(48.0, gt=0.0)
    max_impressions: int | None = Field(100, ge=0, le=MAX_COUNT)
    boost: float = Field(1.0, ge=1.0, le=100.0)


class ColdStartSpec(_Frozen):
    """Segments, the popularity prior and the new-item boost."""

    segments: tuple[SegmentSpec, ...] = Field(
        default_factory=_default_segments, max_length=MAX_SEGMENTS
    )
    prior_examples: int = Field(500, ge=0, le=MAX_COUNT)
    cold_user_prior_weight: float = Field(0.5, ge=0.0, le=1.0)
    popularity_smoothing: float = Field(20.0, gt=0.0)
    new_item: NewItemSpec = NewItemSpec()

    @field_validator("segments")
    @classmethod
    def _segments_ordered(cls, value: tuple[SegmentSpec, ...]) -> tuple[SegmentSpec, ...]:
        if not value:
            raise ValueError("at least one segment is required")
        names = [segment.name for segment in value]
        if len(set(names)) != len(names):
            raise ValueError("segment names must be unique")
        limits = [segment.max_interactions for segment in value]
        if limits[-1] is not None:
            raise ValueError("the last segment must have no max_interactions")
        bounded = [limit for limit in limits[:-1] if limit is not None]
        if len(bounded) != len(limits) - 1 or bounded != sorted(set(bounded)):
            raise ValueError("max_interactions must increase and only the last may be empty")
        return value


class DiversitySpec(_Frozen):
    """Caps on how many slots of one slate may share a category or a creator."""

    max_per_category: int | None = Field(None, ge=1, le=MAX_COUNT)
    max_per_creator: int | None = Field(None, ge=1, le=MAX_COUNT)


class HistorySpec(_Frozen):
    """The user's history as features (namespace ``H``, ``bandit.learn.history``): off by default.

    ``items`` recent rewarded item ids, the ``categories`` and ``creators`` with the most
    recency-weighted reward (each older event weighs ``decay`` times the next). Cross it with
    the items in ``vw.args`` (``-q HI``) for "users who liked this like that".
    """

    enabled: bool = False
    items: int = Field(10, ge=0, le=50)
    categories: int = Field(5, ge=0, le=50)
    creators: int = Field(5, ge=0, le=50)
    decay: float = Field(0.9, gt=0.0, le=1.0)


class CollaborativeSpec(_Frozen):
    """The collaborative signal (namespace ``T``, ``bandit.learn.taste_factors``): off by default.

    The tenant's taste factors are fitted from every user's rewarded items by the catalog
    index builder (its token kinds and dimensions are deployment settings, since users are the
    tenant's, not one policy's); at rank time each candidate gets its cosine with the user's
    taste (the last ``items`` rewarded items, each older one weighing ``decay`` times the next).
    """

    enabled: bool = False
    items: int = Field(20, ge=1, le=50)
    decay: float = Field(0.9, gt=0.0, le=1.0)


class RewardSpec(_Frozen):
    """How posted outcomes become the reward VW learns (cost = -reward)."""

    types: dict[str, float] = Field(
        default_factory=lambda: {"click": 1.0}, max_length=MAX_REWARD_TYPES
    )
    aggregation: Literal["earliest", "sum", "max"] = "sum"
    default: float = Field(0.0, ge=-1e6, le=1e6)
    wait_seconds: int = Field(600, ge=1, le=7 * 86400)
    max_reward: float | None = Field(None, gt=0.0)
    # Close an event once every shown slot has a reward; false: only at a ``final`` reward or
    # the end of the wait, so that ``sum`` and ``max`` see every reward posted within it.
    close_early: bool = True

    @field_validator("types")
    @classmethod
    def _types_named(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("at least one reward type is required")
        for name, weight in value.items():
            if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", name):
                raise ValueError(f"reward type {name!r} must be 1-64 letters, digits or _")
            if not -1e6 <= weight <= 1e6:
                raise ValueError(f"weight of {name!r} must be within +-1e6")
        return value


class PolicySpec(_Frozen):
    """Everything that defines one policy (one surface of an app)."""

    name: str = Field(pattern=POLICY_NAME_PATTERN)
    version: int = Field(1, ge=1, le=MAX_COUNT)
    description: str = Field("", max_length=2000)
    slate_size: int = Field(5, ge=1, le=50)
    vw: VWSettings = VWSettings()
    exploration: ExplorationSpec = ExplorationSpec()
    cold_start: ColdStartSpec = ColdStartSpec()
    diversity: DiversitySpec = DiversitySpec()
    rewards: RewardSpec = RewardSpec()
    history: HistorySpec = HistorySpec()
    collaborative: CollaborativeSpec = CollaborativeSpec()
    retrieval: RetrievalSpec = RetrievalSpec()
    # ``apprentice``: serve the app's own order (the rank request's ``baseline``, else the
    # candidates as sent), exploring only within the budget, and learn from it.
    mode: Literal["live", "apprentice"] = "live"

    @model_validator(mode="after")
    def _consistent(self) -> PolicySpec:
        for position in self.exploration.discovery_positions:
            if not 1 <= position <= self.slate_size:
                raise ValueError(
                    f"exploration.discovery_positions: {position} is outside 1..{self.slate_size}"
                )
        uses_vw_pmf = self.exploration.algorithm is ExplorationAlgorithm.VW_PMF
        if self.vw.explore_args and not uses_vw_pmf:
            raise ValueError("vw.explore_args: only used with exploration.algorithm vw_pmf")
        validate_vw_settings(self.vw.args, self.vw.explore_args)
        validate_cb_type(self.vw.args, self.vw.explore_args)
        return self

    def segment_for(self, interactions: int) -> SegmentSpec:
        """The maturity segment of a user with ``interactions`` past interactions."""
        for segment in self.cold_start.segments:
            if segment.max_interactions is None or interactions <= segment.max_interactions:
                return segment
        return self.cold_start.segments[-1]

    def budget_for(self, segment: str) -> float:
        """Target exploratory share for ``segment``; policy budget 0 turns exploration off."""
        if self.exploration.budget == 0.0:
            return 0.0
        for candidate in self.cold_start.segments:
            if candidate.name == segment and candidate.budget is not None:
                return candidate.budget
        return self.exploration.budget

    def budgets(self) -> dict[str, float]:
        """Target share per segment name."""
        return {s.name: self.budget_for(s.name) for s in self.cold_start.segments}

    def vw_args(self) -> list[str]:
        """All VW arguments the model is built with."""
        return [*self.vw.args, *self.vw.explore_args]


def parse_spec(data: Mapping[str, Any]) -> PolicySpec:
    """Validate a spec given as a mapping; raise ``SpecError`` naming the first bad field.

    >>> parse_spec({"name": "p", "slate_size": 0})
    Traceback (most recent call last):
    ...
    bandit.errors.SpecError: slate_size: Input should be greater than or equal to 1
    """
    try:
        return PolicySpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first["loc"])
        field, message = _split_field(first["msg"].removeprefix("Value error, "))
        if not field:
            field = location or "spec"
        elif location and not field.startswith(location):
            field = f"{location}.{field}"
        raise SpecError(field, message) from exc


def _split_field(message: str) -> tuple[str, str]:
    """Split ``"path.to[0]: text"`` into the path and the text (no path: empty string)."""
    match = re.match(r"^([A-Za-z_][\w.\[\]]*): (.+)$", message, re.DOTALL)
    return (match.group(1), match.group(2)) if match else ("", message)


def load_spec(path: str | Path) -> PolicySpec:
    """Load and validate a YAML (or JSON) spec file."""
    text = Path(path).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, Mapping):
        raise SpecError("spec", f"{path} must hold a mapping")
    return parse_spec(data)


def spec_json_schema() -> str:
    """The JSON schema of ``PolicySpec``, as exported to ``docs/policy-spec.schema.json``."""
    return json.dumps(PolicySpec.model_json_schema(), indent=2, sort_keys=True) + "\n"
