"""The rank decision: score candidates, pace exploration, draw the slate, describe the event.

``Ranker.rank`` is the whole core of ``POST /v1/policies/{policy}/rank`` without any storage:
it scores candidates with the model (blended with the popularity prior while the model or the
user is new), asks the exploration budget for this segment's rate, draws the slate slot by slot
with exact probabilities under the policy's masks, and counts the spend.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bandit.decision_log import (
    Constraints,
    DecisionRecord,
    ExplorationLog,
    LoggedCandidate,
    LoggedSlot,
    slot_context,
)
from bandit.domain import Candidate, Slot
from bandit.errors import FieldError
from bandit.learn.history import History, history_namespace
from bandit.learn.taste_factors import taste_lines
from bandit.serve.budget import Clock, ExplorationBudget
from bandit.serve.coldstart import PopularityPrior, blend, exploration_weights, model_weight
from bandit.serve.cost import check_slot_work
from bandit.serve.exploration import distribution
from bandit.serve.features import ActionLines, shared_line
from bandit.serve.slate import (
    SlateConstraints,
    allowed_mask,
    best_allowed,
    sample_slate,
    seed_for,
)
from bandit.serve.vw import VWModel
from bandit.spec import ExplorationAlgorithm, PolicySpec


@dataclass(frozen=True)
class RankRequest:
    """What the app asks for: a context, candidates and optional slate settings."""

    event_id: str
    context: Mapping[str, Any]
    candidates: Sequence[Candidate]
    user_id: str | None = None
    interactions: int = 0
    slate_size: int | None = None
    exclude: Collection[str] = ()
    timestamp: float | None = None
    history: History | None = None  # the user's history snapshot, when the spec uses it
    # Each candidate's collaborative affinity (``bandit.learn.taste_factors``), when on.
    affinities: Sequence[float | None] | None = None
    # Ids kept out of single positions (1-based), on top of ``exclude`` (multi-slot requests).
    exclude_at: Mapping[int, Collection[str]] = field(default_factory=dict)
    # The app's names of the positions and its own choice for each, logged with the decision.
    slot_ids: Sequence[str] | None = None
    baseline: Sequence[str] | None = None
    # Keep every slot's whole distribution over the candidates (``RankResult.distributions``).
    keep_distributions: bool = False
    # Each position's own features (multi-slot requests), scored as ``slot_context`` says.
    slot_features: Sequence[Mapping[str, Any]] | None = None


@dataclass(frozen=True)
class RankResult:
    """The slate and the exploration state it was drawn under."""

    request: RankRequest
    slots: list[Slot]
    segment: str
    budget: float
    rate: float
    spent: float
    seed: int
    timestamp: float
    discovery_positions: list[int] = field(default_factory=list)
    # Each slot's probability of every candidate, in candidate order (when the request asked).
    distributions: list[np.ndarray] = field(default_factory=list)
    # The model's own best first-slot candidate (what it would exploit there).
    model_choice: str | None = None
    # The app's order the slate followed (apprentice mode), as logged.
    lead: list[str] | None = None

    def record(
        self, spec: PolicySpec, model_version: int, *, deferred: bool = False
    ) -> DecisionRecord:
        """The decision-log record of this event (rewards still empty)."""
        request = self.request
        return DecisionRecord(
            event_id=request.event_id,
            policy=spec.name,
            model_version=model_version,
            spec_version=spec.version,
            timestamp=self.timestamp,
            context=dict(request.context),
            history=request.history,
            affinities=None if request.affinities is None else list(request.affinities),
            user_id=request.user_id,
            segment=self.segment,
            candidates=[LoggedCandidate.of(c) for c in request.candidates],
            slate=[
                LoggedSlot(
                    item_id=s.item_id,
                    position=s.position,
                    probability=s.probability,
                    explored=s.explored,
                )
                for s in self.slots
            ],
            seed=self.seed,
            exploration=ExplorationLog(
                budget=self.budget, rate=self.rate, discovery_positions=self.discovery_positions
            ),
            constraints=Constraints(
                exclude=sorted(request.exclude),
                exclude_by_slot=_exclude_by_slot(request.exclude_at, len(self.slots)),
                max_per_category=spec.diversity.max_per_category,
                max_per_creator=spec.diversity.max_per_creator,
            ),
            deferred=deferred,
            activated=not deferred,
            wait_seconds=spec.rewards.wait_seconds,
            slot_ids=None if request.slot_ids is None else list(request.slot_ids),
            baseline=self.lead if self.lead is not None else _ids(request.baseline),
            model_choice=self.model_choice,
            slot_features=(
                None
                if request.slot_features is None
                else [dict(features) for features in request.slot_features]
            ),
        )


class Ranker:
    """Ranks for one policy with one model, budget and popularity prior.

    >>> from bandit.spec import ExplorationAlgorithm, PolicySpec
    >>> ranker = Ranker(PolicySpec(name="demo", slate_size=2), clock=lambda: 0.0)
    >>> result = ranker.rank(RankRequest("evt-1", {}, [Candidate("a"), Candidate("b")]))
    >>> [slot.item_id for slot in result.slots]
    ['a', 'b']
    """

    def __init__(
        self,
        spec: PolicySpec,
        model: VWModel | None = None,
        *,
        budget: ExplorationBudget | None = None,
        prior: PopularityPrior | None = None,
        clock: Clock = time.time,
        lines: ActionLines | None = None,
    ) -> None:
        self.spec = spec
        self.model = model or build_model(spec)
        self.budget = budget or budget_for(spec, clock=clock)
        self.prior = prior or PopularityPrior({}, spec.cold_start.popularity_smoothing)
        self.clock = clock
        self.lines = lines if lines is not None else ActionLines()

    def scores(self, request: RankRequest, segment: str, position: int = 1) -> np.ndarray:
        """Expected-reward scores of the candidates (model blended with the prior) for the
        1-based ``position`` (which matters only when the request has slot features)."""
        context = slot_context(request.context, request.slot_features, position)
        shared = shared_line(context, history_namespace(request.history))
        actions = taste_lines(self.lines(request.candidates), request.affinities)
        check_slot_work(self.model.args, shared, actions)
        model_scores = self.model.score(shared, actions)
        weight = model_weight(self.spec.cold_start, self.model.examples_learned, segment)
        if weight >= 1.0:
            return model_scores
        prior_scores = self.prior.scores([c.id for c in request.candidates])
        return blend(model_scores, prior_scores, weight)

    def rank(self, request: RankRequest) -> RankResult:
        """Draw the slate for ``request`` and count its exploration spend."""
        candidates = request.candidates
        if not candidates:
            raise FieldError("candidates", "at least one candidate is required")
        index = {c.id: i for i, c in enumerate(candidates)}
        if len(index) != len(candidates):
            raise FieldError("candidates", "candidate ids must be unique")
        spec = self.spec
        now = self.clock() if request.timestamp is None else request.timestamp
        segment = spec.segment_for(request.interactions).name
        size = min(request.slate_size or spec.slate_size, len(candidates))
        target = self.budget.target(segment)
        discovery = (
            sorted(p for p in spec.exploration.discovery_positions if p <= size)
            if target > 0.0
            else []
        )
        rate = self.budget.rate(segment, slate_size=size, discovery_slots=len(discovery))
        constraints = SlateConstraints(
            excluded=frozenset(index[i] for i in request.exclude if i in index),
            excluded_at={
                position: frozenset(index[i] for i in ids if i in index)
                for position, ids in request.exclude_at.items()
            },
            categories=[c.category for c in candidates],
            creators=[c.creator for c in candidates],
            max_per_category=spec.diversity.max_per_category,
            max_per_creator=spec.diversity.max_per_creator,
            discovery_positions=frozenset(discovery),
        )
        seed = seed_for(request.event_id)
        distributions: list[np.ndarray] | None = [] if request.keep_distributions else None
        by_slot = request.slot_features is not None
        scores = self.scores(request, segment)
        lead = app_order(spec, request) if spec.mode == "apprentice" else None
        first = best_allowed(scores, allowed_mask(len(candidates), [], constraints))
        draws = sample_slate(
            scores,
            slate_size=size,
            rate=rate,
            explore=lambda s, w: distribution(spec.exploration, s, w),
            rng=np.random.default_rng(seed),
            constraints=constraints,
            weights=exploration_weights(candidates, spec.cold_start.new_item, now, self.prior),
            distributions=distributions,
            scores_at=(lambda position: self.scores(request, segment, position))
            if by_slot
            else None,
            lead=None if lead is None else [index[i] for i in lead],
        )
        explored = sum(d.explored for d in draws)
        spent = self.budget.spend(segment).share
        self.budget.record(segment, served=len(draws), explored=explored)
        slots = [Slot(candidates[d.index].id, d.position, d.probability, d.explored) for d in draws]
        return RankResult(
            request,
            slots,
            segment,
            target,
            rate,
            spent,
            seed,
            now,
            discovery,
            distributions or [],
            model_choice=None if first is None else candidates[first].id,
            lead=lead,
        )


# The app's order logged with an apprentice decision: at most this many of its ids.
MAX_LEAD = 50


def app_order(spec: PolicySpec, request: RankRequest) -> list[str]:
    """The order an apprentice policy serves: the request's ``baseline`` (ids it does not name
    as candidates left out), else the candidates as sent; at most ``MAX_LEAD`` ids."""
    known = {c.id for c in request.candidates}
    if request.baseline:
        order = [i for i in dict.fromkeys(request.baseline) if i in known]
    else:
        order = [c.id for c in request.candidates]
    return order[:MAX_LEAD]


def _ids(ids: Sequence[str] | None) -> list[str] | None:
    return None if ids is None else list(ids)


def _exclude_by_slot(
    exclude_at: Mapping[int, Collection[str]], slots: int
) -> list[list[str]] | None:
    """Per-position exclusions as logged: one sorted list per shown position, or None."""
    if not any(exclude_at.get(p) for p in range(1, slots + 1)):
        return None
    return [sorted(exclude_at.get(position, ())) for position in range(1, slots + 1)]


def build_model(spec: PolicySpec) -> VWModel:
    """A fresh model for ``spec`` (VW's own pmf when the policy explores with ``vw_pmf``)."""
    explore = spec.exploration.algorithm is ExplorationAlgorithm.VW_PMF
    return VWModel(spec.vw_args(), explore=explore)


def budget_for(spec: PolicySpec, *, clock: Clock = time.time) -> ExplorationBudget:
    """An in-memory exploration budget with ``spec``'s targets and window."""
    exploration = spec.exploration
    return ExplorationBudget(
        spec.budgets(),
        window_seconds=exploration.window_seconds,
        bucket_seconds=exploration.bucket_seconds,
        shards=exploration.shards,
        clock=clock,
    )
