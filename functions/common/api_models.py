"""Request and response bodies of the HTTP API (pydantic), with their caps.

Unknown fields are refused, numbers must be finite, every list has a cap, and ``context`` and
``features`` are capped in depth, size and values (see ``JsonFeatures``), so bad input fails
with a 4xx naming the field before anything is stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag

from bandit.errors import FieldError
from bandit.retrieve.settings import MAX_RETRIEVAL_SIZE
from bandit.serve.features import MAX_ABS_VALUE, MAX_DEPTH, MAX_STRING_LENGTH

MAX_CANDIDATES = 1000
MAX_SLATE = 50
MAX_EMBEDDING_DIMS = 1024
MAX_REWARDS = 100
MAX_ITEMS = 500
MAX_FEATURES = 1000
MAX_TIMESTAMP = 253_402_300_799.0  # 9999-12-31T23:59:59Z, the last second a datetime holds
MAX_VERSION = 2**53 - 1  # the largest integer every JSON reader holds exactly
ID_PATTERN = r"^[^\x00-\x1f]{1,256}$"

# Union member tags appear in validation error locations; ``http`` drops them from field names.
CANDIDATE_TAG = "candidate object"
CATALOG_ID_TAG = "catalog id"
UNION_TAGS = frozenset({CANDIDATE_TAG, CATALOG_ID_TAG})


class _Body(BaseModel):
    # Strict: a value of another JSON type is refused, not coerced ("1.5" is no number,
    # false no timestamp), as the OpenAPI document says.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class _RefusedError(Exception):
    """The fast check found something to refuse; the full walk names it."""


def _fits(text: str) -> bool:
    if len(text) > MAX_STRING_LENGTH:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _count(value: Any, level: int) -> int:
    """Non-null values inside ``value`` (at ``level``); ``_RefusedError`` on anything doubtful.

    The hot path of every rank request, so it dispatches on exact types and builds no paths.
    """
    children: Iterable[Any]
    if type(value) is dict:
        for key in value:
            if type(key) is not str or not (
                (key.isascii() and len(key) <= MAX_STRING_LENGTH) or _fits(key)
            ):
                raise _RefusedError
        children = value.values()
    else:
        children = value
    if value and level >= MAX_DEPTH:
        raise _RefusedError
    count = 0
    for inner in children:
        kind = type(inner)
        if kind is str:
            if not ((inner.isascii() and len(inner) <= MAX_STRING_LENGTH) or _fits(inner)):
                raise _RefusedError
            count += 1
        elif kind is float or kind is int:
            if not -MAX_ABS_VALUE <= inner <= MAX_ABS_VALUE:
                raise _RefusedError
            count += 1
        elif kind is bool:
            count += 1
        elif kind is dict or kind is list:
            count += _count(inner, level + 1)
        elif inner is not None:
            raise _RefusedError
    return count


def _check_text(text: str, path: str) -> None:
    if len(text) > MAX_STRING_LENGTH:
        raise FieldError(path, f"string longer than {MAX_STRING_LENGTH} characters")
    if not _fits(text):
        raise FieldError(path, "string holds a lone surrogate (not valid unicode)")


def _check_scalar(value: Any, path: str) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, str):
        _check_text(value, path)
    elif isinstance(value, int | float):
        # NaN fails every comparison; an int compares exactly, so 10**400 needs no conversion
        if not abs(value) <= MAX_ABS_VALUE:
            raise FieldError(path, f"numbers must be finite and at most {MAX_ABS_VALUE:g} in size")
    else:
        raise FieldError(path, f"unsupported type {type(value).__name__}")


def _walk(value: Any, path: str, level: int, count: list[int]) -> None:
    """Raise ``FieldError`` at the first value (in document order) that breaks a cap."""
    if level > MAX_DEPTH:
        raise FieldError(path, f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if not isinstance(key, str):
                raise FieldError(path, "object keys must be strings")
            _check_text(key, path)
            _walk(inner, f"{path}.{key}", level + 1, count)
    elif isinstance(value, list | tuple):
        for index, inner in enumerate(value):
            _walk(inner, f"{path}[{index}]", level + 1, count)
    elif value is not None:
        _check_scalar(value, path)
        count[0] += 1
        if count[0] > MAX_FEATURES:
            raise FieldError(path, f"more than {MAX_FEATURES} features")


def check_features(value: dict[str, Any]) -> dict[str, Any]:
    """Refuse a ``context`` or ``features`` object the featuriser could not take.

    Caps: ``MAX_DEPTH`` levels (the object itself is level 1, each key or index one more),
    ``MAX_FEATURES`` non-null values, strings and keys of at most ``MAX_STRING_LENGTH``
    characters and valid unicode, numbers finite and at most ``MAX_ABS_VALUE`` in size. The
    error's field is the path below the object (``http`` prefixes the object's own field).

    >>> check_features({"user": {"age": 31, "tags": ["a", "b"]}})
    {'user': {'age': 31, 'tags': ['a', 'b']}}
    >>> check_features({"user": {"age": float("nan")}})
    Traceback (most recent call last):
    ...
    bandit.errors.FieldError: .user.age: numbers must be finite and at most 1e+30 in size
    """
    try:
        fits = _count(value, 1) <= MAX_FEATURES
    except _RefusedError:
        fits = False
    if not fits:
        # The full walk is the authority: it raises naming the path, or accepts what the fast
        # check only doubted (a tuple, a Mapping that is not a dict).
        _walk(value, "", 1, [0])
    return value


JsonFeatures = Annotated[dict[str, Any], AfterValidator(check_features)]
CatalogId = Annotated[str, Field(pattern=ID_PATTERN)]
Timestamp = Annotated[float, Field(ge=0, le=MAX_TIMESTAMP)]


class ItemIn(_Body):
    """A catalog item: a candidate, and optionally its own embedding (for recommend)."""

    id: str = Field(pattern=ID_PATTERN)
    features: JsonFeatures = Field(default_factory=dict)
    category: str | None = Field(None, max_length=256)
    creator: str | None = Field(None, max_length=256)
    created_at: Timestamp | None = None
    embedding: list[Annotated[float, Field(ge=-1e6, le=1e6)]] | None = Field(
        None, min_length=2, max_length=MAX_EMBEDDING_DIMS
    )


class CandidateIn(_Body):
    """A candidate sent in full (or use a string id from the catalog)."""

    id: str = Field(pattern=ID_PATTERN)
    features: JsonFeatures = Field(default_factory=dict)
    category: str | None = Field(None, max_length=256)
    creator: str | None = Field(None, max_length=256)
    created_at: Timestamp | None = None


def _candidate_kind(value: Any) -> str:
    return CATALOG_ID_TAG if isinstance(value, str) else CANDIDATE_TAG


CandidateRef = Annotated[
    Annotated[CandidateIn, Tag(CANDIDATE_TAG)] | Annotated[CatalogId, Tag(CATALOG_ID_TAG)],
    Discriminator(_candidate_kind),
]


class RankBody(_Body):
    """``POST /v1/policies/{policy}/rank``."""

    context: JsonFeatures
    user_id: str | None = Field(None, pattern=ID_PATTERN)
    candidates: list[CandidateRef] = Field(min_length=1, max_length=MAX_CANDIDATES)
    slate_size: int | None = Field(None, ge=1, le=MAX_SLATE)
    exclude: list[CatalogId] = Field(default_factory=list, max_length=MAX_CANDIDATES)
    defer_activation: bool = False
    baseline: list[CatalogId] | None = Field(None, max_length=MAX_SLATE)


CategoryName = Annotated[str, Field(min_length=1, max_length=256)]


class RecommendFilters(_Body):
    """What recommend may retrieve: categories to keep (all when absent) and to leave out."""

    categories: list[CategoryName] | None = Field(None, min_length=1, max_length=100)
    exclude_categories: list[CategoryName] = Field(default_factory=list, max_length=100)


class RecommendBody(_Body):
    """``POST /v1/policies/{policy}/recommend``: no candidates, the catalog is the pool."""

    context: JsonFeatures = Field(default_factory=dict)
    user_id: str | None = Field(None, pattern=ID_PATTERN)
    slate_size: int | None = Field(None, ge=1, le=MAX_SLATE)
    filters: RecommendFilters = RecommendFilters()
    exclude: list[CatalogId] = Field(default_factory=list, max_length=MAX_CANDIDATES)
    size: int | None = Field(None, ge=1, le=MAX_RETRIEVAL_SIZE)
    defer_activation: bool = False


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
    timestamp: Timestamp | None = None


class RewardsBody(_Body):
    """``POST /v1/rewards`` with several rewards."""

    rewards: list[RewardIn] = Field(min_length=1, max_length=MAX_REWARDS)


Position = Annotated[int, Field(ge=1, le=MAX_SLATE)]


class ActivateBody(_Body):
    """``POST /v1/events/{event_id}/activate``: optionally, which slots the user saw.

    ``seen`` lists 1-based positions (as the slate response gives them); ``seen_through: k``
    says the first ``k`` slots were seen. At most one of the two; neither: every shown slot.
    """

    seen: list[Position] | None = Field(None, min_length=1, max_length=MAX_SLATE)
    seen_through: Position | None = None


class AcceptedResponse(BaseModel):
    """``202``: how many rewards were queued."""

    accepted: int


class RollbackBody(_Body):
    """``POST /v1/policies/{policy}/rollback``."""

    version: int = Field(ge=1, le=MAX_VERSION)


class ItemsBody(_Body):
    """``PUT /v1/items``: catalog upsert."""

    items: list[ItemIn] = Field(min_length=1, max_length=MAX_ITEMS)


class ErrorResponse(BaseModel):
    """Every error: a code, a human detail and, for bad input, the field."""

    error: str
    detail: str
    field: str | None = None
