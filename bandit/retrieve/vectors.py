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
from typing import Literal

import faiss
import numpy as np
from numpy.typing import NDArray

from bandit.errors import FieldError

Metric = Literal["cos", "ip"]
MAX_DIMENSIONS = 4_096
CONNECTIVITY = 16  # HNSW "M": 0.99 recall@10 at 100k x 64 (benchmarks/retrieval.py)
EXPANSION_ADD = 128
EXPANSION_SEARCH = 128  # the search beam; widened to the count asked when that is larger
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
        # at all (they are SWIG enums and classes); hence the two ignores of this module.
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

    def search(self, query: NDArray[np.floating], count: int) -> NDArray[np.int64]:
        """Keys of the (approximately) ``count`` nearest items to ``query``, nearest first."""
        count = min(count, len(self._keys))
        if count <= 0:
            return np.zeros(0, dtype=np.int64)
        vector = np.asarray(query, dtype=np.float32).reshape(1, -1)
        if self.metric == "cos":
            vector = _unit(vector)
        params = faiss.SearchParametersHNSW(  # type: ignore[attr-defined]
            efSearch=max(EXPANSION_SEARCH, count)
        )
        _, rows = self._index.search(vector, count, params=params)
        found = rows[0]
        return np.asarray(self._keys[found[found >= 0]], dtype=np.int64)

    def vectors(self, keys: list[int]) -> NDArray[np.float32]:
        """The stored vectors of ``keys`` (all present in the space), one row each."""
        rows = [self._row(key) for key in keys]
        if any(row is None for row in rows):
            raise KeyError("a key is not in the vector space")
        if not rows:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        stored = self._index.reconstruct_batch(np.asarray(rows, dtype=np.int64))
        return np.asarray(stored, dtype=np.float32)


def _unit(rows: NDArray[np.float32]) -> NDArray[np.float32]:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.ascontiguousarray(rows / np.where(norms > 0, norms, 1.0), dtype=np.float32)
