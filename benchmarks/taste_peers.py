"""The taste table's peers: plain Vowpal Wabbit and its grid, online popularity, references.

:class:`PlainVW` is an arena contender (``bandit.simulate.arena``): ``--cb_explore_adf`` with VW's
own exploration gives a pmf over the candidates, the first slot is drawn from it and the rest of
the slate follows the pmf's order; one label per round, ``0:cost:probability`` on the first slot
(cost = -click), as a plain VW user with one decision per request would learn. It sees the very
tokens serendip writes (``bandit.serve.features.shared_line`` and ``ActionLines``), with the
user's history namespace ``H`` (``bandit.learn.history``) when asked.

:data:`GRID` is the small grid tried on both feature sets: VW's SquareCB at three gamma scales
and epsilon-greedy 0.05, ``--cb_type mtr`` and ``dm`` (VW's SquareCB accepts only ``mtr``),
learning rates 0.1 and 0.5.

:class:`OnlinePopularity` ranks by smoothed CTR learned from its own feedback; :class:`Reference`
shows a slate the world computes from the truth (the oracle, the best context-only slate).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from vowpalwabbit import Workspace

from bandit.learn.history import Rewarded, history_namespace, snapshot
from bandit.serve.coldstart import PopularityPrior
from bandit.serve.features import ActionLines, shared_line
from bandit.simulate.arena import Choice
from bandit.simulate.simulation import SimRequest
from bandit.spec import HistorySpec
from benchmarks.bakeoff import _sample
from benchmarks.taste_report import NAMES

EXPLORATIONS: dict[str, tuple[str, ...]] = {
    "squarecb gamma_scale 10": ("--squarecb", "--gamma_scale", "10"),
    "squarecb gamma_scale 100": ("--squarecb", "--gamma_scale", "100"),
    "squarecb gamma_scale 1000": ("--squarecb", "--gamma_scale", "1000"),
    "epsilon 0.05": ("--epsilon", "0.05"),
}
CB_TYPES = ("mtr", "dm")
LEARNING_RATES = (0.1, 0.5)
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "context + item": ("-q", "CI"),
    "context + item + history": ("-q", "CI", "-q", "HI"),
}


@dataclass(frozen=True)
class VWSetting:
    """One point of the grid: the feature set and the VW arguments it runs with."""

    features: str
    exploration: str
    cb_type: str
    learning_rate: float

    @property
    def history(self) -> bool:
        """Whether the shared line carries the user's history namespace."""
        return "history" in self.features

    @property
    def args(self) -> tuple[str, ...]:
        """The VW arguments (after ``--cb_explore_adf``)."""
        return (
            "--cb_type",
            self.cb_type,
            *FEATURE_SETS[self.features],
            "-l",
            repr(self.learning_rate),
            *EXPLORATIONS[self.exploration],
        )

    @property
    def label(self) -> str:
        """A short description for tables."""
        return f"{self.exploration}, {self.cb_type}, lr {self.learning_rate:g}"


GRID: tuple[VWSetting, ...] = tuple(
    VWSetting(features, exploration, cb_type, rate)
    for features in FEATURE_SETS
    for exploration in EXPLORATIONS
    for cb_type in CB_TYPES
    for rate in LEARNING_RATES
    if cb_type == "mtr" or not exploration.startswith("squarecb")  # VW's SquareCB needs mtr
)


class PlainVW:
    """Arena contender: VW's ``--cb_explore_adf`` alone, first slot drawn from its pmf.

    ``profiles`` is the stream's per-user list of rewarded items (kept by the caller); with
    ``history`` set, the shared line carries their snapshot as namespace ``H``.
    """

    def __init__(
        self,
        setting: VWSetting,
        profiles: Mapping[str, Sequence[Rewarded]],
        *,
        history: HistorySpec,
        seed: int = 0,
    ) -> None:
        self.name = f"plain VW ({setting.features})"
        self.setting = setting
        self._vw = Workspace(arg_list=["--cb_explore_adf", "--quiet", *setting.args])
        self._profiles = profiles
        self._history = history
        self._rng = np.random.default_rng(seed)
        self._lines = ActionLines()
        self._pending: dict[str, tuple[list[str], int, float]] = {}

    def _shared(self, request: SimRequest) -> str:
        if not self.setting.history:
            return shared_line(request.context)
        h = self._history
        taken = snapshot(
            self._profiles.get(request.user_id, ()),
            items=h.items,
            categories=h.categories,
            creators=h.creators,
            decay=h.decay,
        )
        return shared_line(request.context, history_namespace(taken))

    def choose(self, request: SimRequest, event_id: str, slate_size: int) -> Choice:
        """Draw the first slot from VW's pmf; fill the rest by the pmf's order."""
        actions = self._lines(request.candidates)
        lines = [self._shared(request), *actions]
        pmf = np.asarray(self._vw.predict(lines), dtype=np.float64)
        first = _sample(pmf, self._rng)
        rest = [int(i) for i in np.argsort(-pmf, kind="stable") if i != first]
        picks = [first, *rest[: slate_size - 1]]
        self._pending[event_id] = (lines, first, float(pmf[first]))
        ids = [request.candidates[i].id for i in picks]
        return Choice(ids, [False] * len(ids), event_id=event_id)

    def observe(self, request: SimRequest, choice: Choice, clicks: Sequence[bool]) -> None:
        """Learn the first slot's click: label ``0:-click:probability`` on its action line."""
        lines, first, probability = self._pending.pop(choice.event_id)
        lines[first + 1] = f"0:{-float(clicks[0])!r}:{probability!r} {lines[first + 1]}"
        self._vw.learn(lines)

    def close(self) -> None:
        """Release VW's native resources."""
        self._vw.finish()


class OnlinePopularity:
    """Arena contender: the highest smoothed CTR first, learned from its own feedback.

    Score ``(clicks + m * g) / (impressions + m)`` with ``g`` the global rate so far and ``m =
    smoothing`` (``bandit.serve.coldstart.PopularityPrior``); ties by item id; no exploration.
    """

    def __init__(self, smoothing: float = 20.0) -> None:
        self.name = NAMES["popularity"]
        self.prior = PopularityPrior({}, smoothing)

    def choose(self, request: SimRequest, event_id: str, slate_size: int) -> Choice:
        """The top candidates by smoothed CTR."""
        ids = [c.id for c in request.candidates]
        scores = self.prior.scores(ids)
        order = sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))[:slate_size]
        return Choice([ids[i] for i in order], [False] * len(order))

    def observe(self, request: SimRequest, choice: Choice, clicks: Sequence[bool]) -> None:
        """Count one impression per shown item and its click."""
        for item, clicked in zip(choice.item_ids, clicks, strict=True):
            self.prior.observe(item, 1.0, float(clicked))


class Reference:
    """Arena contender: a slate the world computes from the truth (oracle, context only)."""

    def __init__(self, name: str, slate: Callable[[SimRequest, int], list[str]]) -> None:
        self.name = name
        self._slate = slate

    def choose(self, request: SimRequest, event_id: str, slate_size: int) -> Choice:
        """The world's slate for this request."""
        ids = self._slate(request, slate_size)
        return Choice(ids, [False] * len(ids))

    def observe(self, request: SimRequest, choice: Choice, clicks: Sequence[bool]) -> None:
        """References learn nothing."""
