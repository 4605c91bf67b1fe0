"""The shapes of requests and answers, as ``TypedDict`` s: at run time they are the plain dicts
the API sends, so nothing is lost when the service adds a field.

See docs/api.md of the service for what every field means.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

# ------------------------------------------------------------------ requests


class Candidate(TypedDict):
    """A candidate of a rank request (or just a catalog item's id, as a ``str``)."""

    id: str
    features: NotRequired[dict[str, Any]]
    category: NotRequired[str | None]
    creator: NotRequired[str | None]
    created_at: NotRequired[float | None]


class Item(TypedDict):
    """A catalog item, as upserted and as read back."""

    id: str
    features: NotRequired[dict[str, Any]]
    category: NotRequired[str | None]
    creator: NotRequired[str | None]
    created_at: NotRequired[float | None]
    embedding: NotRequired[list[float] | None]
    updated_at: NotRequired[float]  # as read back: when it was last upserted


class Reward(TypedDict):
    """One reward of a ``POST /v1/rewards``."""

    event_id: str
    item_id: str
    type: NotRequired[str]
    value: NotRequired[float]
    final: NotRequired[bool]
    timestamp: NotRequired[float]


class Filters(TypedDict, total=False):
    """Recommend's ``filters``."""

    categories: list[str]
    exclude_categories: list[str]


# ------------------------------------------------------------------ answers


class Slot(TypedDict):
    """One slot of a slate; ``probability`` is exact given the slots before it."""

    id: str
    position: int
    probability: float
    explored: bool
    source: NotRequired[str]  # recommend: which retrieval source gave the item


class Exploration(TypedDict):
    """The exploration budget of the request's segment."""

    segment: str
    budget: float
    spent: float
    rate: float


class RankResult(TypedDict):
    """``POST /v1/policies/{policy}/rank``."""

    event_id: str
    policy: str
    model_version: int
    slate: list[Slot]
    exploration: Exploration
    logged: bool
    degraded: bool


class Retrieval(TypedDict):
    """What recommend retrieved from the catalog index."""

    index_version: int
    candidates: int
    sources: dict[str, int]


class RecommendResult(RankResult):
    """``POST /v1/policies/{policy}/recommend``."""

    retrieval: Retrieval


class Accepted(TypedDict):
    """``POST /v1/rewards``: how many rewards were queued."""

    accepted: int


class Activation(TypedDict):
    """``POST /v1/events/{event_id}/activate``."""

    event_id: str
    activated: bool
    seen: NotRequired[list[int]]
    late: NotRequired[bool]


class EventState(TypedDict):
    """``GET /v1/events/{event_id}``; ``status`` is open, learned, expired or failed."""

    event_id: str
    policy: str | None
    status: str
    reason: str | None
    decided_at: float
    activated: bool
    closes_at: float | None
    closed_at: float | None
    model_version: int
    learned_version: int | None
    rewards: int
    late_rewards: int
    dropped_rewards: int
    slots: int
    seen: list[int] | None
    late_impressions: int
    slate: NotRequired[list[dict[str, Any]] | None]  # what was shown, with each slot's reward
    joined_rewards: NotRequired[list[dict[str, Any]] | None]  # each stored reward's outcome


class Policy(TypedDict):
    """A policy: its spec, spec version and model head."""

    name: str
    spec: dict[str, Any]
    spec_version: int
    model_version: int
    updated_at: float
    retrain: NotRequired[dict[str, Any] | None]  # the latest retrain job's status


class PolicyPut(Policy):
    """``PUT /v1/policies/{policy}``: ``model_reset`` says the change started a fresh model;
    ``changed`` is false when the spec equals the stored (or pending) one."""

    model_reset: bool
    changed: NotRequired[bool]


class PolicyDeleted(TypedDict):
    """``DELETE /v1/policies/{policy}``: what was deleted (its logged events stay)."""

    policy: str
    deleted: dict[str, Any]


class ModelVersion(TypedDict):
    """One kept model version."""

    version: int
    size: int
    stored_in: str
    created_at: float
    examples_learned: int
    events_learned: int
    rolled_back_from: int | None


class ModelsPage(TypedDict):
    """One page of ``GET /v1/policies/{policy}/models``, newest first."""

    policy: str
    head: int
    versions: list[ModelVersion]
    next_token: NotRequired[str | None]


class Rollback(TypedDict):
    """``POST /v1/policies/{policy}/rollback``: the new head copies ``rolled_back_from``."""

    policy: str
    head: int
    rolled_back_from: int


class Records(TypedDict):
    """What one metrics page read; ``next_token`` reads the next page."""

    read: int
    cap: int
    complete: bool
    truncated: bool
    through: float | None
    next_token: str | None


class MetricsPage(TypedDict):
    """One page of ``GET /v1/policies/{policy}/metrics`` (see the service's docs/metrics.md)."""

    policy: str
    window: dict[str, Any]
    n_events: int
    records: Records
    metrics: dict[str, Any]
    benchmarks: dict[str, Any]
    notes: list[str]


class Verdict(TypedDict):
    """Whether the policy is learning, in one sentence, with its lift over a random pick."""

    state: str
    sentence: str
    lift_over_uniform: dict[str, float] | None


class Challenger(TypedDict):
    """``/v1/policies/{policy}/challenger``: a challenger's standing against its champion."""

    status: str
    spec: dict[str, Any]
    rule: dict[str, Any]
    started_at: float
    updated_at: float
    events_learned: int
    estimates: dict[str, Any]
    unsupported_events: int
    judgement: str | None
    promoted_version: int | None
    champion_version: int | None


class Progress(TypedDict):
    """``GET /v1/policies/{policy}/progress``: learning progress over ``[since, until)``, per
    window of ``window_seconds`` and in ``total``."""

    policy: str
    since: float
    until: float
    window_seconds: int
    model_version: int
    mode: str
    verdict: Verdict
    total: dict[str, Any]
    windows: list[dict[str, Any]]


class Upserted(TypedDict):
    """``PUT /v1/items``: how many items were written."""

    upserted: int


class ItemsPage(TypedDict):
    """One page of ``GET /v1/items``."""

    items: list[Item]
    next_token: NotRequired[str | None]


class Health(TypedDict):
    """``GET /v1/health``."""

    status: str
