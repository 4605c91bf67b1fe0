"""The linear peers of ``benchmarks.peers``: numeric encodings, a numpy LinUCB, MABWiser.

Peers that take numbers rather than VW text see the very tokens serendip's featurizer writes
(``bandit.serve.features``): ``cohort=cohort-3`` in namespace ``Cuser``, ``category=cat-01`` in
``I``.

- :class:`FeatureIndex` gives every token a column the first time it is seen (exact one-hot, no
  collisions) up to a fixed capacity; once full, further tokens share columns by a stable hash.
- :class:`JointEncoder` writes one sparse row per (context, candidate): a bias, every context
  token, every candidate token (id, category, creator, features) and the products of every
  context token with the candidate's low-cardinality fields (``category`` and ``length`` by
  default). Those products play the part of VW's ``-q CI``; the id and creator crosses are
  left out, because a dense d x d model cannot afford thousands of columns for them.
- :class:`ContextEncoder` writes the dense context-only vector (bias + context tokens) that a
  per-arm (disjoint) model such as MABWiser's LinUCB takes.
- :class:`SharedLinUCB` is LinUCB with one ridge regression over the joint rows (Li et al. 2010,
  the shared-feature form): score = x.theta + alpha * sqrt(x' A^-1 x), A = lambda I + X'X.
- :class:`NumpyLinUCB`, :class:`MabwiserPerItem` and :class:`MabwiserShared` are
  ``bandit.simulate.arena`` contenders: they show the top candidates by score and learn from the
  clicks in batches of decisions.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from mabwiser.mab import MAB, LearningPolicy
from numpy.typing import NDArray

from bandit.domain import Candidate
from bandit.serve.features import context_namespaces, item_namespaces
from bandit.simulate.arena import Choice
from bandit.simulate.simulation import SimRequest

BIAS = "bias"
JOINT_COLUMNS = 768
CROSS_FIELDS = ("category", "length")

Token = tuple[str, float]
Rows = tuple[NDArray[np.int64], NDArray[np.float64]]


def _token(namespace: str, text: str) -> tuple[str, str, float]:
    """(field, feature name, value) of one VW token: ``a=b`` is 1.0, ``a:2.5`` is 2.5."""
    if "=" in text:
        return text.split("=", 1)[0], f"{namespace}^{text}", 1.0
    name, _, value = text.partition(":")
    return name, f"{namespace}^{name}", float(value or 1.0)


def context_tokens(context: Mapping[str, Any]) -> list[Token]:
    """The context's features as (name, value), exactly the tokens of serendip's ``C`` lines.

    >>> context_tokens({"user": {"cohort": "c1"}, "age": 3})
    [('Cuser^cohort=c1', 1.0), ('Cage^age', 3.0)]
    """
    return [
        (name, value)
        for namespace, texts in context_namespaces(context)
        for _, name, value in (_token(namespace, text) for text in texts)
    ]


def item_tokens(candidate: Candidate) -> list[tuple[str, str, float]]:
    """The candidate's features as (field, name, value), the tokens of serendip's ``I`` lines."""
    return [
        _token(namespace, text) for namespace, texts in item_namespaces(candidate) for text in texts
    ]


class FeatureIndex:
    """Feature name -> column: exact until ``capacity`` names are known, hashed after that.

    >>> index = FeatureIndex(4)
    >>> [index.column(name) for name in ("a", "b", "a")], index.size
    ([0, 1, 0], 2)
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._columns: dict[str, int] = {}
        self.overflowed = 0

    @property
    def size(self) -> int:
        """How many columns are in use."""
        return len(self._columns)

    def column(self, name: str) -> int:
        """The column of ``name``, assigning the next free one on first sight."""
        column = self._columns.get(name)
        if column is not None:
            return column
        if len(self._columns) < self.capacity:
            column = self._columns[name] = len(self._columns)
            return column
        self.overflowed += 1
        return zlib.crc32(name.encode()) % self.capacity


class JointEncoder:
    """Sparse rows, one per (context, candidate), padded to equal length with zero values.

    >>> encoder = JointEncoder(64)
    >>> columns, values = encoder.rows({"u": "x"}, [Candidate("a", category="c")])
    >>> columns.shape, values.tolist()
    ((1, 5), [[1.0, 1.0, 1.0, 1.0, 1.0]])
    """

    def __init__(
        self, capacity: int = JOINT_COLUMNS, cross_fields: Sequence[str] = CROSS_FIELDS
    ) -> None:
        self.index = FeatureIndex(capacity)
        self.cross_fields = frozenset(cross_fields)

    @property
    def dims(self) -> int:
        """Width of a dense row."""
        return self.index.capacity

    def _row(self, context: list[Token], candidate: Candidate) -> list[Token]:
        item = item_tokens(candidate)
        crossed = [(name, value) for field, name, value in item if field in self.cross_fields]
        return [
            (BIAS, 1.0),
            *context,
            *((name, value) for _, name, value in item),
            *((f"{c}*{i}", cv * iv) for c, cv in context for i, iv in crossed),
        ]

    def rows(self, context: Mapping[str, Any], candidates: Sequence[Candidate]) -> Rows:
        """Column indices and values, each of shape (candidates, longest row)."""
        shared = context_tokens(context)
        tokens = [self._row(shared, candidate) for candidate in candidates]
        width = max(len(row) for row in tokens)
        columns = np.zeros((len(tokens), width), dtype=np.int64)
        values = np.zeros((len(tokens), width))
        for r, row in enumerate(tokens):
            for k, (name, value) in enumerate(row):
                columns[r, k] = self.index.column(name)
                values[r, k] = value
        return columns, values

    def dense(self, rows: Rows) -> NDArray[np.float64]:
        """The rows as a dense (candidates, dims) matrix."""
        columns, values = rows
        out = np.zeros((len(columns), self.dims))
        np.add.at(out, (np.arange(len(columns))[:, None], columns), values)
        return out


class ContextEncoder:
    """Dense context vectors (bias + context tokens), for per-arm models."""

    def __init__(self, capacity: int = 24) -> None:
        self.index = FeatureIndex(capacity)
        self.index.column(BIAS)

    def vector(self, context: Mapping[str, Any]) -> NDArray[np.float64]:
        """A (1, capacity) row for ``context``."""
        out = np.zeros((1, self.index.capacity))
        out[0, 0] = 1.0
        for name, value in context_tokens(context):
            out[0, self.index.column(name)] += value
        return out


class SharedLinUCB:
    """LinUCB over sparse joint rows; ``refit`` solves the ridge regression on what it has seen.

    Only the columns seen so far are inverted: the rest of ``A`` is still ``lambda I``, so its
    inverse there is ``I / lambda`` and its weights are 0.

    >>> model = SharedLinUCB(4, alpha=0.0)
    >>> rows = (np.array([[0, 1], [0, 2]]), np.ones((2, 2)))
    >>> model.update(rows, np.array([1.0, 0.0]))
    >>> model.refit()
    >>> [round(float(s), 3) for s in model.scores(rows)]
    [0.625, 0.125]
    """

    def __init__(self, dims: int, *, alpha: float = 1.0, l2: float = 1.0) -> None:
        if l2 <= 0.0:
            raise ValueError(f"l2 must be positive, got {l2}")
        self.alpha = alpha
        self.l2 = l2
        self.A = l2 * np.eye(dims)
        self.b = np.zeros(dims)
        self.A_inv = np.eye(dims) / l2
        self.theta = np.zeros(dims)
        self._seen = 0

    def scores(self, rows: Rows) -> NDArray[np.float64]:
        """Upper confidence bound of each row's reward."""
        columns, values = rows
        mean = (self.theta[columns] * values).sum(axis=1)
        block = self.A_inv[columns[:, :, None], columns[:, None, :]]
        variance = np.einsum("rk,rkl,rl->r", values, block, values)
        result: NDArray[np.float64] = mean + self.alpha * np.sqrt(np.maximum(variance, 0.0))
        return result

    def update(self, rows: Rows, rewards: NDArray[np.float64]) -> None:
        """Add observations to ``A`` and ``b`` (the scores change at the next ``refit``)."""
        columns, values = rows
        np.add.at(
            self.A,
            (columns[:, :, None], columns[:, None, :]),
            values[:, :, None] * values[:, None, :],
        )
        np.add.at(self.b, columns, values * rewards[:, None])
        self._seen = max(self._seen, int(columns.max()) + 1)

    def refit(self) -> None:
        """Recompute ``A^-1`` and ``theta`` over the columns seen so far."""
        seen = self._seen
        self.A_inv[:seen, :seen] = np.linalg.inv(self.A[:seen, :seen])
        self.theta[:seen] = self.A_inv[:seen, :seen] @ self.b[:seen]


def top(scores: NDArray[np.float64], k: int) -> list[int]:
    """Indices of the ``k`` highest scores; ties keep candidate order (which the stream shuffles).

    >>> top(np.array([0.1, 0.3, 0.3, 0.2]), 2)
    [1, 2]
    """
    order: list[int] = np.argsort(-scores, kind="stable")[:k].tolist()
    return order


class NumpyLinUCB:
    """Arena contender: :class:`SharedLinUCB` on :class:`JointEncoder` rows, refit every batch."""

    def __init__(
        self, name: str, *, alpha: float = 1.0, batch: int = 100, capacity: int = JOINT_COLUMNS
    ) -> None:
        self.name = name
        self.batch = batch
        self.encoder = JointEncoder(capacity)
        self.model = SharedLinUCB(capacity, alpha=alpha)
        self._decisions = 0
        self._pending: dict[str, Rows] = {}

    def choose(self, request: SimRequest, event_id: str, slate_size: int) -> Choice:
        """The candidates with the highest upper confidence bound."""
        columns, values = self.encoder.rows(request.context, request.candidates)
        picks = top(self.model.scores((columns, values)), slate_size)
        self._pending[event_id] = (columns[picks], values[picks])
        ids = [request.candidates[i].id for i in picks]
        return Choice(ids, [False] * len(ids), event_id=event_id)

    def observe(self, request: SimRequest, choice: Choice, clicks: Sequence[bool]) -> None:
        """Add the shown rows with their clicks; refit after every ``batch`` decisions."""
        self.model.update(self._pending.pop(choice.event_id), np.asarray(clicks, dtype=float))
        self._decisions += 1
        if self._decisions % self.batch == 0:
            self.model.refit()


class _Batched:
    """A MABWiser model fed in batches: ``fit`` the first time, ``partial_fit`` after that."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.mab: MAB | None = None
        self.fitted = False
        self._decisions = 0
        self._arms: list[str] = []
        self._rewards: list[float] = []
        self._contexts: list[NDArray[np.float64]] = []

    def add(self, arms: list[str], rewards: Sequence[bool], contexts: NDArray[np.float64]) -> None:
        """Keep one decision's shown slots; hand the batch to MABWiser when it is full."""
        self._arms += arms
        self._rewards += [float(r) for r in rewards]
        self._contexts.append(contexts)
        self._decisions += 1
        if self._decisions % self.batch or self.mab is None:
            return
        fit = self.mab.partial_fit if self.fitted else self.mab.fit
        fit(self._arms, np.asarray(self._rewards), np.vstack(self._contexts))
        self.fitted = True
        self._arms, self._rewards, self._contexts = [], [], []


class MabwiserPerItem:
    """Arena contender: a MABWiser policy with one arm per item and the context as features.

    New items become arms (``add_arm``) when they first appear among the candidates. The slate
    is the candidates with the highest expected reward. Until the first batch is fitted (MABWiser
    cannot predict before ``fit``) it shows the first candidates, as an untrained LinUCB's ties
    would.
    """

    def __init__(
        self, name: str, policy: Any, *, batch: int = 100, seed: int = 0, capacity: int = 24
    ) -> None:
        self.name = name
        self.policy = policy
        self.seed = seed
        self.encoder = ContextEncoder(capacity)
        self.learner = _Batched(batch)
        self._arms: set[str] = set()
        self._pending: dict[str, NDArray[np.float64]] = {}

    def choose(self, request: SimRequest, event_id: str, slate_size: int) -> Choice:
        """Score every candidate's arm under the request's context."""
        x = self.encoder.vector(request.context)
        ids = [c.id for c in request.candidates]
        if self.learner.mab is None:
            self.learner.mab = MAB(ids, self.policy, seed=self.seed)
            self._arms.update(ids)
        for arm in ids:
            if arm not in self._arms:
                self.learner.mab.add_arm(arm)
                self._arms.add(arm)
        if self.learner.fitted:
            expected = self.learner.mab.predict_expectations(x)
            picks = top(np.array([expected[i] for i in ids]), slate_size)
        else:
            picks = list(range(min(slate_size, len(ids))))
        self._pending[event_id] = x
        chosen = [ids[i] for i in picks]
        return Choice(chosen, [False] * len(chosen), event_id=event_id)

    def observe(self, request: SimRequest, choice: Choice, clicks: Sequence[bool]) -> None:
        """Queue one (arm, click, context) per shown slot."""
        x = self._pending.pop(choice.event_id)
        self.learner.add(choice.item_ids, clicks, np.repeat(x, len(choice.item_ids), axis=0))


class MabwiserShared:
    """Arena contender: MABWiser's LinUCB with a single arm over :class:`JointEncoder` rows.

    One arm whose "context" is the (context, candidate) row makes MABWiser's per-arm ridge
    regression a shared-feature LinUCB: the same model as :class:`NumpyLinUCB`, dense.
    """

    ARM = "shared"

    def __init__(
        self, name: str, *, alpha: float = 1.0, batch: int = 100, capacity: int = JOINT_COLUMNS
    ) -> None:
        self.name = name
        self.encoder = JointEncoder(capacity)
        self.learner = _Batched(batch)
        self.learner.mab = MAB([self.ARM], LearningPolicy.LinUCB(alpha=alpha, l2_lambda=1.0))
        self._pending: dict[str, NDArray[np.float64]] = {}

    def choose(self, request: SimRequest, event_id: str, slate_size: int) -> Choice:
        """Score every candidate's row with the one shared model."""
        rows = self.encoder.dense(self.encoder.rows(request.context, request.candidates))
        if self.learner.fitted and self.learner.mab is not None:
            expected = self.learner.mab.predict_expectations(rows)
            if isinstance(expected, dict):
                expected = [expected]
            picks = top(np.array([e[self.ARM] for e in expected]), slate_size)
        else:
            picks = list(range(min(slate_size, len(rows))))
        self._pending[event_id] = rows[picks]
        chosen = [request.candidates[i].id for i in picks]
        return Choice(chosen, [False] * len(chosen), event_id=event_id)

    def observe(self, request: SimRequest, choice: Choice, clicks: Sequence[bool]) -> None:
        """Queue the shown rows with their clicks."""
        rows = self._pending.pop(choice.event_id)
        self.learner.add([self.ARM] * len(rows), clicks, rows)
