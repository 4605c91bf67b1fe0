"""The catalog's items in columns: ids, categories, creators, ages, features.

Items are held by position (sorted by id, so the same catalog in any order gives the same
table). A 100k-item catalog costs a few tens of MB this way, not a ``Candidate`` object with a
features dict per item: features stay as compact JSON and are parsed only for the items a
request retrieves.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
from numpy.typing import NDArray

from bandit.domain import Candidate
from bandit.errors import FieldError

CANDIDATE_CACHE = 8_192


@dataclass(frozen=True, eq=False)
class ItemTable:
    """Catalog items by position. ``category_codes`` holds ``len(categories)`` for no category."""

    ids: tuple[str, ...]
    categories: tuple[str, ...]
    category_codes: NDArray[np.int32]
    creators: tuple[str | None, ...]
    created_at: NDArray[np.float64]  # unix seconds, NaN when unknown
    features: tuple[bytes, ...]  # compact JSON objects
    _made: dict[int, Candidate] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, items: Iterable[Candidate]) -> ItemTable:
        """The table of ``items``; ids must be unique and features JSON-encodable.

        >>> table = ItemTable.of([Candidate("b", category="x"), Candidate("a")])
        >>> table.ids, table.candidate(1).category
        (('a', 'b'), 'x')
        """
        by_id: dict[str, Candidate] = {}
        for item in items:
            if item.id in by_id:
                raise FieldError("items", f"duplicate item id {item.id!r}")
            by_id[item.id] = item
        ordered = [by_id[key] for key in sorted(by_id)]
        categories = tuple(sorted({i.category for i in ordered if i.category is not None}))
        code = {name: n for n, name in enumerate(categories)}
        return cls(
            ids=tuple(i.id for i in ordered),
            categories=categories,
            category_codes=np.array(
                [len(categories) if i.category is None else code[i.category] for i in ordered],
                dtype=np.int32,
            ),
            creators=tuple(i.creator for i in ordered),
            created_at=np.array([_timestamp(i) for i in ordered], dtype=np.float64),
            features=tuple(_features_json(i) for i in ordered),
        )

    def __len__(self) -> int:
        return len(self.ids)

    def candidate(self, position: int) -> Candidate:
        """The catalog item at ``position``, as the ranker takes it (features read-only).

        Items are made once and kept (up to ``CANDIDATE_CACHE`` of them): the popular, new and
        coverage sources give every user much the same items.
        """
        if (made := self._made.get(position)) is not None:
            return made
        if len(self._made) >= CANDIDATE_CACHE:
            self._made.clear()
        code = int(self.category_codes[position])
        created = float(self.created_at[position])
        made = Candidate(
            id=self.ids[position],
            features=MappingProxyType(json.loads(self.features[position].decode())),
            category=self.categories[code] if code < len(self.categories) else None,
            creator=self.creators[position],
            created_at=None if math.isnan(created) else created,
        )
        self._made[position] = made
        return made

    def columns(self) -> dict[str, object]:
        """The JSON-encodable columns (the arrays and features are written apart)."""
        return {"ids": self.ids, "categories": self.categories, "creators": self.creators}

    @classmethod
    def from_columns(
        cls,
        columns: dict[str, Sequence[str | None]],
        category_codes: NDArray[np.int32],
        created_at: NDArray[np.float64],
        features: Sequence[bytes],
    ) -> ItemTable:
        """The table written as ``columns()`` plus its arrays and features."""
        ids = tuple(str(i) for i in columns["ids"])
        if not (len(ids) == len(category_codes) == len(created_at) == len(features)):
            raise FieldError("index", "item columns differ in length")
        return cls(
            ids=ids,
            categories=tuple(str(c) for c in columns["categories"]),
            category_codes=category_codes,
            creators=tuple(None if c is None else str(c) for c in columns["creators"]),
            created_at=created_at,
            features=tuple(features),
        )


def _timestamp(item: Candidate) -> float:
    if item.created_at is None:
        return math.nan
    value = float(item.created_at)
    if not math.isfinite(value):
        raise FieldError(f"items[{item.id}].created_at", "must be finite")
    return value


def _features_json(item: Candidate) -> bytes:
    try:
        text = json.dumps(
            dict(item.features), separators=(",", ":"), sort_keys=True, allow_nan=False
        )
    except (TypeError, ValueError) as error:
        raise FieldError(f"items[{item.id}].features", f"must be JSON: {error}") from error
    return text.encode()
