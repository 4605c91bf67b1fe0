"""Run policies side by side on one simulated request stream and measure them.

Every contender sees the same requests in the same order; clicks are drawn from the
population's known probabilities, so CTR can be set against the oracle's. The bandit contender
goes through the real core: ``Ranker.rank``, a decision record, and ``learn_record``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from bandit.decision_log import DecisionRecord, LoggedReward
from bandit.learn.learning import learn_record
from bandit.serve.coldstart import PopularityPrior
from bandit.serve.ranker import Ranker, RankRequest, RankResult
from bandit.simulate.simulation import Population, SimRequest
from bandit.spec import PolicySpec


@dataclass(frozen=True, slots=True)
class Choice:
    """A contender's slate for one request."""

    item_ids: list[str]
    explored: list[bool]
    segment: str = "all"
    event_id: str = ""


class Contender(Protocol):
    """Anything that picks a slate and may learn from the clicks it gets."""

    name: str

    def choose(self, request: SimRequest, event_id: str, slate_size: int) -> Choice:
        """Pick a slate for ``request``."""

    def observe(self, request: SimRequest, choice: Choice, clicks: Sequence[bool]) -> None:
        """Learn from the clicks the slate got."""


class BanditContender:
    """A serendip policy: rank with the core, log the decision, learn it when it closes."""

    def __init__(self, spec: PolicySpec, name: str | None = None) -> None:
        self.name = name or spec.name
        self.spec = spec
        self._now = 0.0
        self.ranker = Ranker(spec, clock=lambda: self._now)
        self._pending: dict[str, RankResult] = {}

    def choose(self, request: SimRequest, event_id: str, slate_size: int) -> Choice:
        """Rank through ``Ranker.rank`` and keep the result until its clicks arrive."""
        self._now = request.timestamp
        result = self.ranker.rank(
            RankRequest(
                event_id=event_id,
                context=request.context,
                candidates=request.candidates,
                user_id=request.user_id,
                interactions=request.interactions,
                slate_size=slate_size,
                timestamp=request.timestamp,
            )
        )
        self._pending[event_id] = result
        return Choice(
            [s.item_id for s in result.slots],
            [s.explored for s in result.slots],
            result.segment,
            event_id,
        )

    def closed_record(
        self, request: SimRequest, choice: Choice, clicks: Sequence[bool]
    ) -> DecisionRecord:
        """The decision record of a chosen slate, with its click rewards attached."""
        result = self._pending[choice.event_id]
        record = result.record(self.spec, self.ranker.model.events_learned)
        rewards = [
            LoggedReward(item_id=item, type="click", timestamp=request.timestamp + 1.0)
            for item, clicked in zip(choice.item_ids, clicks, strict=True)
            if clicked
        ]
        return record.model_copy(update={"rewards": rewards})

    def observe(self, request: SimRequest, choice: Choice, clicks: Sequence[bool]) -> None:
        """Close the event: attach click rewards to its record and learn every slot."""
        record = self.closed_record(request, choice, clicks)
        del self._pending[choice.event_id]
        learn_record(self.ranker.model, record, self.spec)
        for item, clicked in zip(choice.item_ids, clicks, strict=True):
            self.ranker.prior.observe(item, 1.0, float(clicked))


class UniformContender:
    """Uniform random slates: the no-knowledge baseline."""

    def __init__(self, seed: int = 0, name: str = "uniform-random") -> None:
        self.name = name
        self._rng = np.random.default_rng(seed)

    def choose(self, request: SimRequest, event_id: str, slate_size: int) -> Choice:
        """Pick ``slate_size`` distinct candidates uniformly."""
        picks = self._rng.choice(len(request.candidates), slate_size, replace=False)
        return Choice([request.candidates[i].id for i in picks], [True] * slate_size)

    def observe(self, request: SimRequest, choice: Choice, clicks: Sequence[bool]) -> None:
        """Uniform random learns nothing."""


class PopularityContender:
    """Most popular first (smoothed click rate), ignoring the context."""

    def __init__(self, smoothing: float = 20.0, name: str = "popularity-only") -> None:
        self.name = name
        self.prior = PopularityPrior({}, smoothing)

    def choose(self, request: SimRequest, event_id: str, slate_size: int) -> Choice:
        """The top candidates by smoothed click rate."""
        scores = self.prior.scores([c.id for c in request.candidates])
        order = np.argsort(-scores, kind="stable")[:slate_size]
        return Choice([request.candidates[i].id for i in order], [False] * slate_size)

    def observe(self, request: SimRequest, choice: Choice, clicks: Sequence[bool]) -> None:
        """Count impressions and clicks."""
        for item, clicked in zip(choice.item_ids, clicks, strict=True):
            self.prior.observe(item, 1.0, float(clicked))


class OracleContender:
    """Knows every true click probability: the ceiling."""

    def __init__(self, population: Population, name: str = "oracle") -> None:
        self.name = name
        self.population = population

    def choose(self, request: SimRequest, event_id: str, slate_size: int) -> Choice:
        """The candidates with the highest true click probability."""
        ids = self.population.oracle_slate(request.user_id, request.candidates, slate_size)
        return Choice(ids, [False] * slate_size)

    def observe(self, request: SimRequest, choice: Choice, clicks: Sequence[bool]) -> None:
        """The oracle needs nothing."""


@dataclass
class Track:
    """Per-decision outcomes of one contender."""

    expected_ctr: list[float] = field(default_factory=list)
    clicks: list[int] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)
    explored: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    shown: list[list[str]] = field(default_factory=list)
    categories: list[list[str | None]] = field(default_factory=list)


def run(
    population: Population,
    contenders: Sequence[Contender],
    *,
    decisions: int,
    slate_size: int,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Track]:
    """Serve ``decisions`` requests to every contender in lockstep and track the outcomes."""
    tracks = {contender.name: Track() for contender in contenders}
    rngs = {contender.name: np.random.default_rng(seed) for contender in contenders}
    for t in range(decisions):
        request = population.next_request()
        for contender in contenders:
            choice = contender.choose(request, f"{contender.name}-{t}", slate_size)
            clicks = population.clicks(request.user_id, choice.item_ids, rngs[contender.name])
            contender.observe(request, choice, clicks)
            track = tracks[contender.name]
            shown = len(choice.item_ids)
            track.expected_ctr.append(
                population.expected_clicks(request.user_id, choice.item_ids) / max(shown, 1)
            )
            track.clicks.append(sum(clicks))
            track.slots.append(shown)
            cell = track.explored[choice.segment]
            cell[0] += shown
            cell[1] += sum(choice.explored)
            track.shown.append(choice.item_ids)
            track.categories.append([population.candidate(i).category for i in choice.item_ids])
        if progress:
            progress(t + 1)
    return tracks


@dataclass(frozen=True)
class Summary:
    """What the quality benchmark reports for one contender."""

    ctr: float
    ctr_last_quarter: float
    expected_ctr_last_quarter: float
    coverage_last_quarter: float
    diversity: float
    exploration_share: dict[str, float]


def summarise(track: Track, catalog_size: int) -> Summary:
    """CTR (observed, and expected from true probabilities), coverage, diversity, exploration."""
    n = len(track.slots)
    last = slice(3 * n // 4, n)
    slots = np.asarray(track.slots, dtype=np.float64)
    clicks = np.asarray(track.clicks, dtype=np.float64)
    expected = np.asarray(track.expected_ctr) * slots
    shown_last = {item for slate in track.shown[last] for item in slate}
    return Summary(
        ctr=float(clicks.sum() / slots.sum()),
        ctr_last_quarter=float(clicks[last].sum() / slots[last].sum()),
        expected_ctr_last_quarter=float(expected[last].sum() / slots[last].sum()),
        coverage_last_quarter=len(shown_last) / catalog_size,
        diversity=float(np.mean([intra_list_diversity(c) for c in track.categories])),
        exploration_share={
            segment: explored / served for segment, (served, explored) in track.explored.items()
        },
    )


def intra_list_diversity(categories: Sequence[str | None]) -> float:
    """Share of slot pairs in a slate whose categories differ (1 = all different).

    >>> round(intra_list_diversity(["a", "a", "b"]), 3)
    0.667
    """
    n = len(categories)
    if n < 2:
        return 0.0
    same = sum(count * (count - 1) for count in Counter(categories).values())
    return 1.0 - same / (n * (n - 1))


def simulated_logs(
    spec: PolicySpec, events: int, *, seed: int = 3, candidates: int = 20
) -> list[DecisionRecord]:
    """Decision logs of ``spec`` learning online on a simulated population, with click rewards.

    >>> from bandit.spec import PolicySpec
    >>> logs = simulated_logs(PolicySpec(name="demo", slate_size=2), 3)
    >>> [len(record.slate) for record in logs]
    [2, 2, 2]
    """
    population = Population(seed=seed, candidates=candidates)
    contender = BanditContender(spec)
    rng = np.random.default_rng(seed)
    logs = []
    for t in range(events):
        request = population.next_request()
        choice = contender.choose(request, f"{spec.name}-{t}", spec.slate_size)
        clicks = population.clicks(request.user_id, choice.item_ids, rng)
        logs.append(contender.closed_record(request, choice, clicks))
        contender.observe(request, choice, clicks)
    return logs
