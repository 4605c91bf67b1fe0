"""Retrieval settings: how many candidates recommend retrieves and how each source contributes.

``RetrievalSpec`` is a frozen, validated settings object in the style of the policy spec, meant
to sit in a policy spec as ``retrieval:``. Invalid settings fail at load with a message naming
the field.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_RETRIEVAL_SIZE = 500
SPACE_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
_SHARE_TOLERANCE = 1e-6


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Source(StrEnum):
    """Where a retrieved candidate came from.

    ``similar``: nearest neighbours of the user's taste (history items' mean in the taste
    space, or the user's own vector); ``embedding``: the same in the content-embedding space;
    ``coverage``: top items of categories the user's history does not hold (discovery);
    ``new``: the newest items (cold-start exposure); ``popular``: the most popular items.
    """

    SIMILAR = "similar"
    EMBEDDING = "embedding"
    COVERAGE = "coverage"
    NEW = "new"
    POPULAR = "popular"


# The order sources fill in: a source that comes up short leaves its places to the ones after
# it, so the personal sources go first and the ones that always have items (new, popular) last.
SOURCE_ORDER: tuple[Source, ...] = (
    Source.SIMILAR,
    Source.EMBEDDING,
    Source.COVERAGE,
    Source.NEW,
    Source.POPULAR,
)


class SourceQuotas(_Frozen):
    """The share of the retrieved set each source aims for; the shares sum to 1.

    >>> SourceQuotas(similar=0.5, embedding=0.0, coverage=0.1, new=0.1, popular=0.3).similar
    0.5
    """

    similar: float = Field(0.4, ge=0.0, le=1.0)
    embedding: float = Field(0.2, ge=0.0, le=1.0)
    coverage: float = Field(0.1, ge=0.0, le=1.0)
    new: float = Field(0.1, ge=0.0, le=1.0)
    popular: float = Field(0.2, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _shares_sum_to_one(self) -> SourceQuotas:
        total = sum(self.share(source) for source in SOURCE_ORDER)
        if abs(total - 1.0) > _SHARE_TOLERANCE:
            raise ValueError(f"quotas: shares must sum to 1, got {total:g}")
        return self

    def share(self, source: Source) -> float:
        """The share of ``source``.

        >>> SourceQuotas().share(Source.POPULAR)
        0.2
        """
        return float(getattr(self, source.value))


class RetrievalSpec(_Frozen):
    """How recommend retrieves its candidate set from the catalog index.

    ``history_limit`` most recent history items form the user's query, weighted
    ``history_decay ** position`` (most recent first) unless the request brings weights.
    ``overfetch`` times the wanted count is asked of the nearest-neighbour search (doubled up
    to ``max_search`` while filters remove hits).

    >>> RetrievalSpec(size=50).quotas.similar
    0.4
    """

    size: int = Field(100, ge=1, le=MAX_RETRIEVAL_SIZE)
    quotas: SourceQuotas = SourceQuotas()
    taste_space: str = Field("taste", pattern=SPACE_NAME_PATTERN)
    embedding_space: str = Field("embedding", pattern=SPACE_NAME_PATTERN)
    history_limit: int = Field(50, ge=1, le=1_000)
    history_decay: float = Field(0.9, gt=0.0, le=1.0)
    exclude_history: bool = True
    overfetch: int = Field(3, ge=1, le=50)
    max_search: int = Field(4_096, ge=16, le=100_000)

    @model_validator(mode="after")
    def _spaces_differ(self) -> RetrievalSpec:
        if self.taste_space == self.embedding_space:
            raise ValueError("embedding_space: must differ from taste_space")
        return self
