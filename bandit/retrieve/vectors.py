"""The one module that touches the nearest-neighbour library (faiss).

A ``VectorSpace`` is an HNSW graph over the vectors of one named space ("taste", "embedding"),
stored in half precision and keyed by the item's position in the catalog. It searches one query
at a time on the calling thread (a Lambda container serves one request at a time), gives back
its stored vectors for the history items of a query, and serialises to bytes. Searching a
loaded graph is deterministic: the same graph and query give the same hits in the same order.
Cosine spaces hold unit vectors and normalise the query; inner-product spaces hold them as given.
"""

from __future__ import annotations

import struct
from typing import Any, Literal

import faiss
import numpy as np
from numpy.typing import NDArray

from bandit.errors import FieldError

Metric = Literal["cos", "ip"]
MAX_DIMENSIONS = 4_096
CONNECTIVITY = 16  # HNSW "M": 0.99 recall@10 at 100k x 64 (benchmarks/retrieval.py)
EXPANSION_ADD = 128
EXPANSION_SEARCH = 128  # the search beam; widened to the count asked when that is larger
# A filtered search scans the allowed rows exactly when there are at most this many of them, or
# at most a tenth of the space: a graph search through mostly filtered-out nodes costs more.
EXACT_ROWS = 16_384
_HEADER = struct.Struct("<4sIQ")  # metric, dimensions, vector count
_METRICS: dict[str, Metric] = {"cos\0": "cos", "ip\0\0": "ip"}


class VectorSpace:
    """Approximate nearest neighbours over item positions in one vector space.

    >>> space = VectorSpace.build(np.array([0, 1, 2]), np.eye(3, dtype=np.float32))
    >>> [int(k) for k in space.search(np.array([0.0, 1.0, 0.1]), 2)]
    [1, 2]
    >>> VectorSpace.from_bytes(space.to_bytes()).dimensions
    3
    """

    def __init__(self, index: faiss.Index, keys: NDArray[np.int64], metric: Metric) -> None:
        self._index = index
        self._keys = keys  # item position of each stored row, ascending
        self.metric = metric
        self._stored: NDArray[np.float16] | None = None

    @classmethod
    def build(
        cls,
        keys: NDArray[np.int64],
        matrix: NDArray[np.float32],
        *,
        metric: Metric = "cos",
        threads: int = 0,
    ) -> VectorSpace:
        """Index ``matrix`` rows under ``keys`` (distinct item positions); 0 threads = all cores."""
        order = np.argsort(keys, kind="stable")
        rows = np.ascontiguousarray(matrix[order], dtype=np.float32)
        if metric == "cos":
            rows = _unit(rows)
        # faiss's stubs type the quantizer kind and the HNSW search parameters wrongly or not
        # at all (they are SWIG enums and classes); hence the ignores of this module.
        index = faiss.IndexHNSWSQ(
            int(matrix.shape[1]),
            faiss.ScalarQuantizer.QT_fp16,  # type: ignore[arg-type]
            CONNECTIVITY,
            faiss.METRIC_INNER_PRODUCT,
        )
        index.hnsw.efConstruction = EXPANSION_ADD
        if len(rows):
            previous = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(threads or previous)
            try:
                index.train(rows)
                index.add(rows)
            finally:
                faiss.omp_set_num_threads(previous)
        return cls(index, np.asarray(keys, dtype=np.int64)[order], metric)

    @classmethod
    def from_bytes(cls, blob: bytes | memoryview) -> VectorSpace:
        """Load a space written by ``to_bytes``."""
        view = memoryview(blob)
        if len(view) < _HEADER.size:
            raise FieldError("index", "vector space is truncated")
        tag, _, count = _HEADER.unpack_from(view, 0)
        metric = _METRICS.get(tag.decode("ascii", "replace"))
        if metric is None:
            raise FieldError("index", f"vector space has an unknown metric {tag!r}")
        start = _HEADER.size + 8 * count
        keys = np.frombuffer(view[_HEADER.size : start], dtype="<i8").astype(np.int64)
        try:
            index = faiss.deserialize_index(np.frombuffer(view[start:], dtype=np.uint8))
        except RuntimeError as error:
            raise FieldError("index", f"vector space does not load: {error}") from error
        if index.ntotal != count:
            raise FieldError("index", "vector space holds another number of vectors")
        return cls(index, keys, metric)

    def to_bytes(self) -> bytes:
        """The keys, the graph and the vectors, serialised."""
        tag = next(key for key, value in _METRICS.items() if value == self.metric)
        header = _HEADER.pack(tag.encode("ascii"), self.dimensions, len(self._keys))
        graph = faiss.serialize_index(self._index)
        return header + self._keys.astype("<i8").tobytes() + graph.tobytes()

    @property
    def dimensions(self) -> int:
        """The number of dimensions of the space's vectors."""
        return int(self._index.d)

    def __len__(self) -> int:
        return len(self._keys)

    def _row(self, key: int) -> int | None:
        row = int(np.searchsorted(self._keys, key))
        return row if row < len(self._keys) and int(self._keys[row]) == key else None

    def __contains__(self, key: int) -> bool:
        return self._row(key) is not None

    def search(
        self,
        query: NDArray[np.floating],
        count: int,
        allowed: NDArray[np.bool_] | None = None,
    ) -> NDArray[np.int64]:
        """Keys of the (approximately) ``count`` nearest items to ``query``, nearest first.

        ``allowed`` (one flag per item position) restricts the search itself to those items,
        so a narrow filter does not have to be made up for by searching wider; a narrow
        enough one is searched exactly (see ``EXACT_ROWS``).
        """
        vector = np.asarray(query, dtype=np.float32).reshape(1, -1)
        if self.metric == "cos":
            vector = _unit(vector)
        params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
        if allowed is not None:
            rows = allowed[self._keys]
            permitted = int(rows.sum())
            count = min(count, permitted)
            if count > 0 and (permitted <= EXACT_ROWS or 10 * permitted <= len(rows)):
                return self._exact(vector[0], count, np.flatnonzero(rows))
            bitmap = np.packbits(rows, bitorder="little")  # kept alive through the search
            params.sel = faiss.IDSelectorBitmap(len(rows), faiss.swig_ptr(bitmap))
        count = min(count, len(self._keys))
        if count <= 0:
            return np.zeros(0, dtype=np.int64)
        params.efSearch = max(EXPANSION_SEARCH, count)
        _, found = self._index.search(vector, count, params=params)
        hits = found[0]
        return np.asarray(self._keys[hits[hits >= 0]], dtype=np.int64)

    def _exact(
        self, vector: NDArray[np.float32], count: int, rows: NDArray[np.intp]
    ) -> NDArray[np.int64]:
        """The ``count`` best of ``rows`` by inner product with the stored vectors (ties: row)."""
        # einsum, not ``@``: a matrix-vector product goes to BLAS, whose threads cost far more
        # than this small product when the machine is busy.
        scores = np.einsum("ij,j->i", self._stored_rows()[rows].astype(np.float32), vector)
        best = np.argpartition(-scores, count - 1)[:count] if count < len(rows) else None
        chosen = rows if best is None else rows[best]
        ranked = scores if best is None else scores[best]
        order = np.lexsort((chosen, -ranked))
        return np.asarray(self._keys[chosen[order]], dtype=np.int64)

    def _stored_rows(self) -> NDArray[np.float16]:
        """The stored half-precision vectors, viewed in place (no copy)."""
        if self._stored is None:
            storage: Any = faiss.downcast_index(self._index.storage)  # type: ignore[attr-defined]
            codes = storage.codes
            flat = faiss.rev_swig_ptr(codes.data(), codes.size())
            self._stored = np.asarray(flat).view(np.float16).reshape(-1, self.dimensions)
        return self._stored

    def vectors(self, keys: list[int]) -> NDArray[np.float32]:
        """The stored vectors of ``keys`` (all present in the space), one row each."""
        rows = [self._row(key) for key in keys]
        if any(row is None for row in rows):
            raise KeyError("a key is not in the vector space")
        if not rows:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return self._stored_rows()[np.asarray(rows, dtype=np.intp)].astype(np.float32)


def _unit(rows: NDArray[np.float32]) -> NDArray[np.float32]:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.ascontiguousarray(rows / np.where(norms > 0, norms, 1.0), dtype=np.float32)
