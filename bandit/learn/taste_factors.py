"""Collaborative signal: latent taste factors learned from who rewarded what.

"People who liked X liked Y" without asking the app for anything: every user's rewarded items
(the learner keeps the last ``MAX_ITEMS`` per user, ``functions.common.users``) form a sparse
user x token matrix, a token being an item id, a category or a creator (the ``kinds`` the
policy names); its truncated SVD (randomized, numpy only) gives every token a unit vector in
``dims`` dimensions where tokens the same users reward point the same way. Each column is
scaled by ``count ** -popularity_damping`` first, so the factors describe taste rather than
popularity (which the cold-start prior already knows). An item's vector is the normalised sum
of its tokens' vectors: a new item has one through its category.

At rank time a user's taste vector is the recency-weighted sum of the vectors of their recent
rewarded items, and each candidate's **affinity** is the cosine between the two. The policy's
``collaborative`` settings write it as VW namespace ``T`` (``affinity:<cosine>`` and the band
it falls in, for a non-linear response); the decision record logs every candidate's signal,
so learning and replay see exactly what the slate was drawn with. A candidate the factors do
not know gets no ``T`` feature.

Factors are fitted off the rank path (the catalog index builder) and loaded with the index.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bandit.learn.history import Rewarded
from bandit.serve.features import Namespace

TASTE_NAMESPACE = "T"
BANDS = (-0.2, 0.1, 0.3, 0.5, 0.7)  # band edges of the affinity (cosine)
CHUNK = 262_144  # non-zeros per step of the sparse products (bounds temporary memory)

FloatArray = NDArray[np.float32]


TOKEN_KINDS = ("item", "category", "creator")


@dataclass(frozen=True)
class TasteFactors:
    """Unit vectors of the tokens the factors know (row ``i`` for ``tokens[i]``).

    A token is ``item:<id>``, ``category:<name>`` or ``creator:<name>``; an item's vector is
    the normalised sum of its known tokens' vectors, so an item no user rewarded yet still
    has one through its category or creator when those are in ``kinds``.
    """

    tokens: tuple[str, ...]
    vectors: FloatArray  # (len(tokens), dims), float32, rows of norm 1 (or 0)
    kinds: tuple[str, ...] = ("item", "category")

    @property
    def dims(self) -> int:
        """Dimensions of the taste space."""
        return int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0

    def rows(self) -> dict[str, int]:
        """Token -> row (build once per load)."""
        return {token: i for i, token in enumerate(self.tokens)}

    def item_vector(
        self, rows: Mapping[str, int], item_id: str, category: str | None, creator: str | None
    ) -> FloatArray | None:
        """The unit taste vector of one item, or None when the factors know none of its tokens."""
        total: FloatArray | None = None
        for token in item_tokens(item_id, category, creator, self.kinds):
            row = rows.get(token)
            if row is not None:
                vector = self.vectors[row]
                total = vector.copy() if total is None else total + vector
        if total is None:
            return None
        norm = float(np.linalg.norm(total))
        return (total / norm).astype(np.float32) if norm > 0.0 else None


def item_tokens(
    item_id: str, category: str | None, creator: str | None, kinds: Sequence[str]
) -> list[str]:
    """The tokens of one item under ``kinds``.

    >>> item_tokens("a", "shoes", None, ("item", "category", "creator"))
    ['item:a', 'category:shoes']
    """
    out: list[str] = []
    if "item" in kinds:
        out.append(f"item:{item_id}")
    if "category" in kinds and category:
        out.append(f"category:{category}")
    if "creator" in kinds and creator:
        out.append(f"creator:{creator}")
    return out


def fit(
    histories: Sequence[Sequence[Rewarded]],
    *,
    kinds: Sequence[str] = ("item", "category"),
    dims: int = 24,
    min_users: int = 2,
    popularity_damping: float = 0.5,
    power_iterations: int = 3,
    seed: int = 0,
) -> TasteFactors:
    """Taste factors of the tokens at least ``min_users`` users rewarded.

    ``histories`` holds each user's rewarded items (any order; a token counts once per user).
    A token's vector is its row of the right singular vectors, unweighted (weighting them by
    the singular values let the strongest direction, how much a token is rewarded at all,
    swamp the tastes: on the taste world it separated liked from other items worse).

    >>> a, b, c, d = (Rewarded(i) for i in "abcd")
    >>> f = fit([[a, b], [a, b], [c, d], [c, d], [a, b, c, d]], kinds=("item",), dims=3)
    >>> rows = f.rows()
    >>> va, vb, vc = (f.vectors[rows[f"item:{i}"]] for i in "abc")
    >>> float(va @ vb) > 0.9, float(va @ vc) < 0.1
    (True, True)
    """
    unknown = set(kinds) - set(TOKEN_KINDS)
    if unknown:
        raise ValueError(f"unknown token kinds {sorted(unknown)}; use {list(TOKEN_KINDS)}")
    users: list[list[str]] = [
        sorted({t for r in h for t in item_tokens(r.item_id, r.category, r.creator, kinds)})
        for h in histories
    ]
    counts: dict[str, int] = {}
    for tokens in users:
        for token in tokens:
            counts[token] = counts.get(token, 0) + 1
    known = sorted(token for token, n in counts.items() if n >= min_users)
    column = {token: i for i, token in enumerate(known)}
    rows: list[int] = []
    cols: list[int] = []
    for u, tokens in enumerate(users):
        for token in tokens:
            position = column.get(token)
            if position is not None:
                rows.append(u)
                cols.append(position)
    if len(known) < 2:
        return TasteFactors((), np.zeros((0, dims), dtype=np.float32), tuple(kinds))
    r = np.asarray(rows, dtype=np.int64)
    c = np.asarray(cols, dtype=np.int64)
    token_count = np.bincount(c, minlength=len(known)).astype(np.float64)
    user_count = np.bincount(r, minlength=len(users)).astype(np.float64)
    # Damp popular tokens, and let each user weigh the same however much they rewarded.
    values = token_count[c] ** -popularity_damping / np.sqrt(user_count[r])
    matrix = _Sparse(r, c, values, (len(users), len(known)))
    rank = max(1, min(dims, len(known), len(users)))
    vectors = _token_vectors(matrix, rank, power_iterations, seed)
    if vectors.shape[1] < dims:
        vectors = np.pad(vectors, ((0, 0), (0, dims - vectors.shape[1])))
    return TasteFactors(tuple(known), vectors.astype(np.float32), tuple(kinds))


def user_vector(vectors: Sequence[FloatArray | None], decay: float) -> FloatArray | None:
    """The unit taste vector of a user from their recent items' vectors (most recent first)."""
    total: NDArray[np.float64] | None = None
    weight = 1.0
    for vector in vectors:
        if vector is not None:
            part = weight * vector.astype(np.float64)
            total = part if total is None else total + part
        weight *= decay
    if total is None:
        return None
    norm = float(np.linalg.norm(total))
    return (total / norm).astype(np.float32) if norm > 0.0 else None


def affinity(user: FloatArray | None, item: FloatArray | None) -> float | None:
    """The cosine of a user's and an item's unit vectors (None when either is unknown)."""
    if user is None or item is None:
        return None
    return round(float(user @ item), 6)


def taste_lines(lines: Sequence[str], affinities: Sequence[float | None] | None) -> list[str]:
    """Action lines with each candidate's ``T`` namespace appended (unchanged when None).

    >>> taste_lines(["|I id=a", "|I id=b"], [0.5, None])
    ['|I id=a |T affinity:0.5 band=4', '|I id=b']
    """
    if affinities is None:
        return list(lines)
    if len(affinities) != len(lines):
        raise ValueError(f"{len(affinities)} affinities for {len(lines)} candidates")
    out: list[str] = []
    for line, value in zip(lines, affinities, strict=True):
        namespace = taste_namespace(value)
        if namespace is None:
            out.append(line)
        else:
            out.append(f"{line} |{namespace[0]} {' '.join(namespace[1])}")
    return out


def taste_namespace(affinity: float | None) -> Namespace | None:
    """VW namespace ``T`` of one candidate's affinity (None when it has none).

    >>> taste_namespace(0.42)
    ('T', ['affinity:0.42', 'band=3'])
    >>> taste_namespace(None) is None, taste_namespace(7.0)
    (True, ('T', ['affinity:1.0', 'band=5']))
    """
    if affinity is None or not math.isfinite(affinity):
        return None
    affinity = min(1.0, max(-1.0, float(affinity)))  # a cosine; VW reads 32-bit floats
    band = sum(affinity >= edge for edge in BANDS)
    return TASTE_NAMESPACE, [f"affinity:{affinity!r}", f"band={band}"]


class _Sparse:
    """A COO matrix with the two products a randomized SVD needs, in bounded chunks."""

    def __init__(
        self,
        rows: NDArray[np.int64],
        cols: NDArray[np.int64],
        values: NDArray[np.float64],
        shape: tuple[int, int],
    ) -> None:
        self.rows, self.cols, self.values, self.shape = rows, cols, values, shape

    def dot(self, dense: NDArray[np.float64]) -> NDArray[np.float64]:
        """``X @ dense``."""
        return self._product(self.rows, self.cols, dense, self.shape[0])

    def tdot(self, dense: NDArray[np.float64]) -> NDArray[np.float64]:
        """``X.T @ dense``."""
        return self._product(self.cols, self.rows, dense, self.shape[1])

    def _product(
        self,
        out_index: NDArray[np.int64],
        in_index: NDArray[np.int64],
        dense: NDArray[np.float64],
        size: int,
    ) -> NDArray[np.float64]:
        out = np.zeros((size, dense.shape[1]))
        for start in range(0, len(self.values), CHUNK):
            end = start + CHUNK
            np.add.at(
                out,
                out_index[start:end],
                self.values[start:end, None] * dense[in_index[start:end]],
            )
        return out


def _token_vectors(
    matrix: _Sparse, rank: int, power_iterations: int, seed: int
) -> NDArray[np.float64]:
    """Unit rows of ``V`` of the rank-``rank`` randomized SVD of ``matrix``."""
    rng = np.random.default_rng(seed)
    width = min(rank + 10, matrix.shape[1])
    probe = rng.standard_normal((matrix.shape[1], width))
    basis, _ = np.linalg.qr(matrix.dot(probe))
    for _ in range(power_iterations):
        back, _ = np.linalg.qr(matrix.tdot(basis))
        basis, _ = np.linalg.qr(matrix.dot(back))
    small = matrix.tdot(basis).T  # (width, items) = Q.T @ X
    _, singular, vt = np.linalg.svd(small, full_matrices=False)
    # Directions the data does not span (singular value ~0) are arbitrary: leave them out.
    kept = int(np.sum(singular[:rank] > singular[0] * 1e-6)) if singular.size else 0
    vectors = vt[:kept].T.astype(np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: NDArray[np.float64] = np.divide(
        vectors, norms, out=np.zeros_like(vectors), where=norms > 0
    )
    return unit
