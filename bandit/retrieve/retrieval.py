"""Retrieval: the candidate set recommend ranks, drawn from the whole catalog.

Sources fill in a fixed order (``SOURCE_ORDER``), each aiming for its share of what is still
to fill, so a source that comes up short (no history, no vectors, filters) leaves its places to
the ones after it; the popularity order, which holds every item, tops up the rest. Every source
goes through the same filters (category allow-list, excluded categories, excluded items, the
user's history) and no item is taken twice. Nothing is random: the same index and request give
the same ordered set, so the probabilities the ranker logs are exact given that set.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bandit.domain import Candidate
from bandit.errors import FieldError
from bandit.retrieve.index import CatalogIndex
from bandit.retrieve.settings import (
    MAX_RETRIEVAL_SIZE,
    SOURCE_ORDER,
    RetrievalSpec,
    Source,
)
from bandit.retrieve.vectors import VectorSpace

MAX_HISTORY = 1_000
_FIRST_CHUNK = 256


@dataclass(frozen=True)
class RetrievalRequest:
    """What one recommend call asks of retrieval.

    ``history_item_ids``: the user's recent rewarded items, most recent first (optional
    ``history_weights``, one per item); ``user_vector``: the user's own vector in the taste
    space, used instead of the history's mean; ``size`` overrides the settings' size;
    ``categories`` (allow-list), ``exclude_categories`` and ``exclude`` (item ids) filter
    every source.
    """

    history_item_ids: Sequence[str] = ()
    history_weights: Sequence[float] | None = None
    user_vector: Sequence[float] | None = None
    size: int | None = None
    categories: Collection[str] | None = None
    exclude_categories: Collection[str] = ()
    exclude: Collection[str] = ()


@dataclass(frozen=True)
class Retrieved:
    """The retrieved candidates in order, and the source each came from."""

    candidates: tuple[Candidate, ...]
    sources: tuple[Source, ...]

    @property
    def item_ids(self) -> list[str]:
        """The candidates' ids, in order."""
        return [candidate.id for candidate in self.candidates]

    def counts(self) -> dict[str, int]:
        """How many candidates each source gave (sources that gave none are left out)."""
        return dict(Counter(source.value for source in self.sources))


class _Selection:
    """The filters of one request and the items taken so far."""

    def __init__(self, index: CatalogIndex, request: RetrievalRequest, blocked: set[int]):
        names = index.items.categories
        allowed = np.ones(len(names) + 1, dtype=bool)
        if request.categories is not None:
            wanted = set(request.categories)
            allowed[:] = False
            allowed[: len(names)] = np.array([name in wanted for name in names], dtype=bool)
        excluded = set(request.exclude_categories)
        allowed[: len(names)] &= np.array([name not in excluded for name in names], dtype=bool)
        self.category_allowed = allowed
        self.codes = index.items.category_codes
        self.blocked = blocked
        self.taken: dict[int, Source] = {}
        self._allowed_items: NDArray[np.bool_] | None = None

    def allowed_items(self) -> NDArray[np.bool_] | None:
        """One flag per item position when a category filter applies, else ``None``."""
        if self.category_allowed.all():
            return None
        if self._allowed_items is None:
            self._allowed_items = self.category_allowed[self.codes]
        return self._allowed_items

    def admits(self, position: int) -> bool:
        return (
            bool(self.category_allowed[self.codes[position]])
            and position not in self.blocked
            and position not in self.taken
        )

    def take(self, source: Source, positions: Iterator[int], want: int) -> None:
        """Take up to ``want`` admitted items from ``positions``, in their order."""
        if want <= 0:
            return
        goal = len(self.taken) + want
        for position in positions:
            if self.admits(position):
                self.taken[position] = source
                if len(self.taken) >= goal:
                    return


def retrieve(
    index: CatalogIndex, request: RetrievalRequest, settings: RetrievalSpec | None = None
) -> Retrieved:
    """The candidate set for one recommend call (see the module docstring).

    Raises ``FieldError`` for a bad request (size, history weights, user vector).

    >>> from bandit.domain import Candidate
    >>> index = CatalogIndex.build(
    ...     [Candidate(f"i{n}", category="ab"[n % 2], created_at=float(n)) for n in range(6)],
    ...     popularity={"i0": 5.0, "i1": 4.0},
    ... )
    >>> got = retrieve(index, RetrievalRequest(size=3, exclude=["i0"]))
    >>> got.item_ids, got.counts()
    (['i1', 'i5', 'i4'], {'coverage': 1, 'new': 1, 'popular': 1})
    """
    spec = settings or RetrievalSpec()
    size = spec.size if request.size is None else request.size
    if not 1 <= size <= MAX_RETRIEVAL_SIZE:
        raise FieldError("size", f"must be between 1 and {MAX_RETRIEVAL_SIZE}")
    history = _history(index, request, spec)
    blocked = {p for i in request.exclude if (p := index.positions.get(i)) is not None}
    if spec.exclude_history:
        blocked |= {
            p for i in request.history_item_ids if (p := index.positions.get(i)) is not None
        }
    selection = _Selection(index, request, blocked)
    walks: dict[Source, Callable[[int], Iterator[int]]] = {
        Source.SIMILAR: _neighbours(
            index,
            spec.taste_space,
            spec,
            selection,
            history=history,
            user_vector=request.user_vector,
        ),
        Source.EMBEDDING: _neighbours(
            index, spec.embedding_space, spec, selection, history=history
        ),
        Source.COVERAGE: lambda _: _coverage(index, history, selection),
        Source.NEW: lambda _: _walk(index.by_recency, selection),
        Source.POPULAR: lambda _: _walk(index.by_popularity, selection),
    }
    active = [source for source in SOURCE_ORDER if spec.quotas.share(source) > 0]
    for n, source in enumerate(active):
        need = size - len(selection.taken)
        if need <= 0:
            break
        if n == len(active) - 1:
            want = need
        else:
            rest = sum(spec.quotas.share(s) for s in active[n:])
            want = int(need * spec.quotas.share(source) / rest + 0.5)
        selection.take(source, walks[source](want), want)
    selection.take(
        Source.POPULAR, _walk(index.by_popularity, selection), size - len(selection.taken)
    )
    taken = list(selection.taken.items())
    return Retrieved(
        candidates=tuple(index.items.candidate(p) for p, _ in taken),
        sources=tuple(source for _, source in taken),
    )


def _history(
    index: CatalogIndex, request: RetrievalRequest, spec: RetrievalSpec
) -> list[tuple[int, float]]:
    """The (position, weight) of the history items the catalog holds, most recent first."""
    ids = request.history_item_ids
    if len(ids) > MAX_HISTORY:
        raise FieldError("history_item_ids", f"at most {MAX_HISTORY} items")
    weights = request.history_weights
    if weights is None:
        weights = [spec.history_decay**n for n in range(len(ids))]
    elif len(weights) != len(ids):
        raise FieldError("history_weights", "must have one weight per history item")
    elif not all(math.isfinite(w) and w >= 0 for w in weights):
        raise FieldError("history_weights", "must be finite and non-negative")
    pairs = [
        (p, float(w))
        for item_id, w in zip(ids[: spec.history_limit], weights, strict=False)
        if (p := index.positions.get(item_id)) is not None
    ]
    return pairs


def _query(
    space: VectorSpace, history: list[tuple[int, float]], user_vector: Sequence[float] | None
) -> NDArray[np.float32] | None:
    """The user's query in ``space``: their own vector, else the weighted mean of history's."""
    if user_vector is not None:
        vector = np.asarray(user_vector, dtype=np.float32)
        if vector.shape != (space.dimensions,) or not np.isfinite(vector).all():
            raise FieldError("user_vector", f"must be {space.dimensions} finite numbers")
        return vector if np.abs(vector).sum() > 0 else None
    present = [(p, w) for p, w in history if p in space and w > 0]
    if not present:
        return None
    rows = space.vectors([p for p, _ in present])
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    weights = np.asarray([w for _, w in present], dtype=np.float32)[:, None]
    mean = (rows / np.where(norms > 0, norms, 1.0) * weights).sum(axis=0)
    return mean.astype(np.float32) if np.linalg.norm(mean) > 1e-9 else None


def _neighbours(
    index: CatalogIndex,
    space_name: str,
    spec: RetrievalSpec,
    selection: _Selection,
    *,
    history: list[tuple[int, float]],
    user_vector: Sequence[float] | None = None,
) -> Callable[[int], Iterator[int]]:
    """A walk over the query's nearest neighbours, searching wider while filters drop hits."""

    def walk(want: int) -> Iterator[int]:
        space = index.spaces.get(space_name)
        if space is None:
            return
        query = _query(space, history, user_vector)
        if query is None:
            return
        limit = min(len(space), spec.max_search)
        count = min(limit, want * spec.overfetch + len(history))
        seen: set[int] = set()
        while True:
            for key in space.search(query, count, selection.allowed_items()).tolist():
                if key not in seen:
                    seen.add(key)
                    yield key
            if count >= limit:
                return
            count = min(limit, count * 2)

    return walk


def _coverage(
    index: CatalogIndex, history: list[tuple[int, float]], selection: _Selection
) -> Iterator[int]:
    """Round robin over the categories the history lacks: each one's best, then second, ..."""
    codes = index.items.category_codes
    held = {int(codes[p]) for p, _ in history}
    lists = [
        index.by_category[code]
        for code in index.category_order
        if code not in held and selection.category_allowed[code]
    ]
    depth = max((len(items) for items in lists), default=0)
    for rank in range(depth):
        for items in lists:
            if rank < len(items):
                yield int(items[rank])


def _walk(order: NDArray[np.int64], selection: _Selection) -> Iterator[int]:
    """``order``'s items in allowed categories, screened in growing vectorised chunks."""
    start, chunk = 0, _FIRST_CHUNK
    while start < len(order):
        block = order[start : start + chunk]
        yield from block[selection.category_allowed[selection.codes[block]]].tolist()
        start, chunk = start + chunk, chunk * 2
