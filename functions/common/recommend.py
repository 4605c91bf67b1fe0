"""Recommend's parts of a decision: the retrieved candidate set and collaborative affinities.

``retrieve_for`` turns a recommend request into a ``bandit.retrieve`` request: the user's
recent rewarded items (most recent first) as history, their taste vector in the tenant's taste
factors as the ``similar`` query, the request's filters and exclusions. The ranker then draws
the slate from exactly that set, so every logged probability is exact given the set (the
decision record logs it as the candidates, with the index build and each one's source).

``candidate_affinities`` gives each candidate its cosine with the user's taste for policies
with ``collaborative`` on (namespace ``T``, ``bandit.learn.taste_factors``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bandit.decision_log import RetrievalLog
from bandit.domain import Candidate
from bandit.errors import FieldError
from bandit.learn.taste_factors import FloatArray, affinity, user_vector
from bandit.retrieve.retrieval import RetrievalRequest, Retrieved, retrieve
from bandit.spec import PolicySpec
from functions.common import users
from functions.common.api_models import RecommendBody
from functions.common.errors import ConflictError, ValidationFailedError
from functions.common.index_store import StoredIndex


@dataclass(frozen=True)
class Decision:
    """What one rank or recommend call decides over."""

    context: Mapping[str, Any]
    candidates: Sequence[Candidate]
    user_id: str | None
    slate_size: int | None
    exclude: Collection[str]
    defer_activation: bool
    retrieval: RetrievalLog | None = None
    event_id: str | None = None  # the app's own (Personalizer's eventId); else a new one
    exclude_at: Mapping[int, Collection[str]] = field(default_factory=dict)
    slot_ids: Sequence[str] | None = None
    baseline: Sequence[str] | None = None
    keep_distributions: bool = False
    slot_features: Sequence[Mapping[str, Any]] | None = None


def taste_of(
    index: StoredIndex, profile: users.Profile, items: int, decay: float
) -> FloatArray | None:
    """The user's unit taste vector from their last ``items`` rewarded items, or None."""
    factors = index.factors
    if not factors.tokens or not profile.rewarded:
        return None
    recent = list(reversed(profile.rewarded))[:items]
    rows = index.taste_rows
    return user_vector(
        [factors.item_vector(rows, r.item_id, r.category, r.creator) for r in recent], decay
    )


def candidate_affinities(
    index: StoredIndex | None,
    spec: PolicySpec,
    profile: users.Profile,
    candidates: Sequence[Candidate],
) -> list[float | None] | None:
    """Each candidate's affinity to the user's taste (None entries: unknown), or None when
    the tenant has no taste factors yet (the slate is then drawn without ``T``)."""
    if index is None or not index.factors.tokens:
        return None
    settings = spec.collaborative
    user = taste_of(index, profile, settings.items, settings.decay)
    factors, rows = index.factors, index.taste_rows
    return [
        affinity(user, factors.item_vector(rows, c.id, c.category, c.creator)) for c in candidates
    ]


def retrieve_for(
    index: StoredIndex, spec: PolicySpec, profile: users.Profile, body: RecommendBody
) -> Retrieved:
    """The candidate set of one recommend call; 422 when the filters leave nothing."""
    settings = spec.retrieval
    recent = [r.item_id for r in reversed(profile.rewarded)]
    taste = taste_of(index, profile, settings.history_limit, settings.history_decay)
    request = RetrievalRequest(
        history_item_ids=list(dict.fromkeys(recent))[: settings.history_limit],
        user_vector=None if taste is None else taste.tolist(),
        size=body.size,
        categories=body.filters.categories,
        exclude_categories=body.filters.exclude_categories,
        exclude=body.exclude,
    )
    if not len(index.catalog):
        raise ConflictError(
            "the tenant's catalog is empty: upsert items (PUT /v1/items), the next index "
            "build takes them in"
        )
    try:
        retrieved = retrieve(index.catalog, request, settings)
    except FieldError as exc:
        raise ValidationFailedError(exc.message, field=exc.field) from exc
    if not retrieved.candidates:
        raise ValidationFailedError(
            f"no catalog item passes the filters and exclusions (the index holds "
            f"{len(index.catalog)} items)",
            field="filters",
        )
    return retrieved
