"""The catalog index recommend retrieves from: built by a builder job, loaded per container.

A ``CatalogIndex`` holds the tenant's catalog items, a nearest-neighbour graph per named vector
space (content "embedding", learned "taste" factors, ...), each item's popularity score, and
the orders the sources walk: by popularity, by recency (newest first) and, per category, by
popularity. Building (slow, off the rank path) and loading (``from_bytes``, fast) are apart; the
orders are derived on load from the stored columns, so they can never disagree with them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bandit.domain import Candidate
from bandit.errors import FieldError
from bandit.retrieve.blob import CatalogIndexError, pack, unpack
from bandit.retrieve.catalog import ItemTable
from bandit.retrieve.settings import SPACE_NAME_PATTERN
from bandit.retrieve.vectors import MAX_DIMENSIONS, Metric, VectorSpace

MAX_SPACES = 8
Vector = Sequence[float] | NDArray[np.floating[Any]]


class CatalogIndex:
    """Items, vector spaces, popularity and the orders retrieval walks.

    >>> index = CatalogIndex.build(
    ...     [Candidate("a", category="x", created_at=1.0), Candidate("b", created_at=2.0)],
    ...     vectors={"taste": {"a": [1.0, 0.0], "b": [0.0, 1.0]}},
    ...     popularity={"a": 0.5},
    ... )
    >>> [index.items.ids[p] for p in index.by_popularity], index.spaces["taste"].dimensions
    (['a', 'b'], 2)
    >>> CatalogIndex.from_bytes(index.to_bytes()).items.ids
    ('a', 'b')
    """

    def __init__(
        self,
        items: ItemTable,
        popularity: NDArray[np.float64],
        spaces: Mapping[str, VectorSpace],
        label: str = "",
    ) -> None:
        self.items = items
        self.popularity = popularity
        self.spaces = dict(spaces)
        self.label = label
        self.positions = {item_id: n for n, item_id in enumerate(items.ids)}
        count = len(items)
        created = np.nan_to_num(items.created_at, nan=-np.inf)
        by_id = np.arange(count)
        # lexsort: the last key sorts first; ties fall to newer, then to the id.
        self.by_popularity = np.lexsort((by_id, -created, -popularity)).astype(np.int64)
        self.by_recency = np.lexsort((by_id, -popularity, -created)).astype(np.int64)
        self.popularity_rank = np.empty(count, dtype=np.int64)
        self.popularity_rank[self.by_popularity] = by_id
        self.by_category = _per_category(self.by_popularity, items)
        # Categories by their best item's popularity: the order coverage visits them in.
        self.category_order = sorted(
            (code for code, members in enumerate(self.by_category) if len(members)),
            key=lambda code: int(self.popularity_rank[self.by_category[code][0]]),
        )

    @classmethod
    def build(
        cls,
        items: Iterable[Candidate],
        *,
        vectors: Mapping[str, Mapping[str, Vector]] | None = None,
        popularity: Mapping[str, float] | None = None,
        metrics: Mapping[str, Metric] | None = None,
        threads: int = 0,
        label: str = "",
    ) -> CatalogIndex:
        """Index ``items`` with their vectors by space and popularity scores (0 when absent).

        A vector is a sequence of floats or a numpy row. Vectors and scores of ids not in
        ``items`` are ignored (the catalog is what can be
        served); an all-zero vector means "no vector" for that item. Spaces use cosine unless
        ``metrics`` names ``"ip"`` (inner product) for them. ``label`` names the build (for
        the decision log's lineage).
        """
        table = ItemTable.of(items)
        positions = {item_id: n for n, item_id in enumerate(table.ids)}
        scores = np.zeros(len(table), dtype=np.float64)
        for item_id, score in (popularity or {}).items():
            if (n := positions.get(item_id)) is not None:
                if not math.isfinite(score):
                    raise FieldError(f"popularity[{item_id}]", "must be finite")
                scores[n] = float(score)
        spaces_in = vectors or {}
        if len(spaces_in) > MAX_SPACES:
            raise FieldError("vectors", f"at most {MAX_SPACES} vector spaces")
        spaces = {
            name: _build_space(
                name,
                by_item,
                positions,
                metric=(metrics or {}).get(name, "cos"),
                threads=threads,
            )
            for name, by_item in sorted(spaces_in.items())
        }
        return cls(table, scores, spaces, label)

    def to_bytes(self) -> bytes:
        """The index as a versioned, checksummed blob (see ``bandit.retrieve.blob``)."""
        sections = {
            "category_codes": self.items.category_codes.astype("<i4").tobytes(),
            "created_at": self.items.created_at.astype("<f8").tobytes(),
            "popularity": self.popularity.astype("<f8").tobytes(),
            "features": b"\n".join(self.items.features),
        }
        sections |= {f"space:{name}": space.to_bytes() for name, space in self.spaces.items()}
        meta = {"label": self.label, "columns": self.items.columns(), "spaces": list(self.spaces)}
        return pack(meta, sections)

    @classmethod
    def from_bytes(cls, blob: bytes | memoryview) -> CatalogIndex:
        """Load an index written by ``to_bytes``; refuses other format versions and corrupt blobs.

        Raises ``CatalogIndexError``.
        """
        meta, sections = unpack(blob)
        try:
            count = len(meta["columns"]["ids"])
            features = bytes(sections["features"]).split(b"\n") if count else []
            table = ItemTable.from_columns(
                meta["columns"],
                np.frombuffer(sections["category_codes"], dtype="<i4").astype(np.int32),
                np.frombuffer(sections["created_at"], dtype="<f8").astype(np.float64),
                features,
            )
            scores = np.frombuffer(sections["popularity"], dtype="<f8").astype(np.float64)
            spaces = {
                name: VectorSpace.from_bytes(sections[f"space:{name}"]) for name in meta["spaces"]
            }
        except (KeyError, TypeError, ValueError) as error:
            raise CatalogIndexError(f"catalog index blob is malformed: {error}") from error
        if len(scores) != len(table):
            raise CatalogIndexError("catalog index blob is malformed: popularity length")
        return cls(table, scores, spaces, str(meta.get("label", "")))

    def __len__(self) -> int:
        return len(self.items)


def _build_space(
    name: str,
    by_item: Mapping[str, Vector],
    positions: Mapping[str, int],
    *,
    metric: Metric,
    threads: int,
) -> VectorSpace:
    field = f"vectors.{name}"
    if not re.fullmatch(SPACE_NAME_PATTERN, name):
        raise FieldError(field, f"space name must match {SPACE_NAME_PATTERN}")
    if metric not in ("cos", "ip"):
        raise FieldError(f"metrics.{name}", "must be 'cos' or 'ip'")
    ids = sorted((i for i in by_item if i in positions), key=positions.__getitem__)
    keys = [positions[i] for i in ids]
    rows = [by_item[i] for i in ids]
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        raise FieldError(field, f"vectors must all have one length, got {sorted(widths)}")
    width = widths.pop() if widths else 1
    if not 1 <= width <= MAX_DIMENSIONS:
        raise FieldError(field, f"vectors must have 1 to {MAX_DIMENSIONS} dimensions")
    matrix = np.asarray(rows, dtype=np.float32).reshape(len(rows), width)
    if not np.isfinite(matrix).all():
        raise FieldError(field, "vectors must be finite")
    present = np.abs(matrix).sum(axis=1) > 0
    return VectorSpace.build(
        np.asarray(keys, dtype=np.int64)[present],
        np.ascontiguousarray(matrix[present]),
        metric=metric,
        threads=threads,
    )


def _per_category(by_popularity: NDArray[np.int64], items: ItemTable) -> list[NDArray[np.int64]]:
    """Each category's items in popularity order (index = category code)."""
    codes = items.category_codes[by_popularity]
    grouped = by_popularity[np.argsort(codes, kind="stable")]
    counts = np.bincount(codes, minlength=len(items.categories) + 1)[: len(items.categories)]
    bounds = np.cumsum(counts)
    return [grouped[end - size : end] for size, end in zip(counts, bounds, strict=True)]
