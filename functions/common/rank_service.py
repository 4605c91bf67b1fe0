"""The rank use case: policy + cached model + budget state -> slate -> decision record.

If storage fails after the slate is drawn, the slate is still served with ``logged: false``;
if the head model cannot be loaded, the last good model serves and ``degraded`` is true.

A warm rank makes two rounds of AWS calls (``functions.common.rounds``): round 1 reads the user
profile, with whatever else is due (the policy once per ``MODEL_CACHE_SECONDS``, the API key once
per ``API_KEY_REVALIDATE_SECONDS``, catalog items named by reference, popularity counts a cold
user or a young model may need); round 2 writes the decision, with the budget counters' due
flush or refresh. A new model version (the head moved) is loaded between them, once per
container.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from bandit.decision_log import DecisionRecord, RetrievalLog
from bandit.domain import Candidate
from bandit.learn.history import History, snapshot
from bandit.serve.budget import ExplorationBudget
from bandit.serve.coldstart import PopularityPrior, model_weight
from bandit.serve.features import ActionLines
from bandit.serve.ranker import Ranker, RankRequest, RankResult
from bandit.spec import PolicySpec
from functions.common import decision_store, policy_store, users
from functions.common.api_models import RankBody, RecommendBody
from functions.common.budget_ledger import DynamoLedger
from functions.common.errors import IndexNotBuiltError, StorageError
from functions.common.index_store import IndexCache, StoredIndex
from functions.common.observability import logger, metrics
from functions.common.rank_reads import Popularity, RankReads
from functions.common.recommend import Decision, candidate_affinities, retrieve_for
from functions.common.rounds import run_round


class RankService(RankReads):
    """Ranks for every tenant and policy this process serves, with per-policy caches."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.clock = clock
        self._budgets: dict[tuple[str, str, int], ExplorationBudget] = {}
        self._ledgers: dict[tuple[str, str, int], DynamoLedger] = {}
        # Featurized candidates, shared by every policy: a line depends only on the candidate.
        self.lines = ActionLines()
        self.indexes = IndexCache()

    def _budget(self, tenant: str, stored: policy_store.StoredPolicy) -> ExplorationBudget:
        spec = stored.spec
        key = (tenant, spec.name, stored.spec_version)
        budget = self._budgets.get(key)
        if budget is None:
            exploration = spec.exploration
            ledger = DynamoLedger(
                tenant,
                spec.name,
                exploration.shards,
                exploration.bucket_seconds,
                deferred=True,
            )
            self._ledgers[key] = ledger
            budget = ExplorationBudget(
                spec.budgets(),
                window_seconds=exploration.window_seconds,
                bucket_seconds=exploration.bucket_seconds,
                shards=exploration.shards,
                ledger=ledger,
                clock=self.clock,
            )
            self._budgets[key] = budget
        return budget

    def rank(
        self,
        tenant: str,
        policy: str,
        body: RankBody,
        revalidate: Callable[[], object] | None = None,
    ) -> dict[str, Any]:
        """Draw a slate from the app's candidates and log the decision; returns the body.

        ``revalidate`` (the caller's key read again, raising if it no longer may rank) runs in
        the first round, before anything is drawn.
        """
        started = time.perf_counter()
        first = self._first_round(tenant, policy, body.user_id, revalidate=revalidate, body=body)
        stored, profile, candidates, popularity = (
            first.policy,
            first.profile,
            first.candidates or [],
            first.popularity,
        )
        answer, _ = self._decide(
            tenant,
            stored,
            Decision(
                context=body.context,
                candidates=candidates,
                user_id=body.user_id,
                slate_size=body.slate_size,
                exclude=body.exclude,
                defer_activation=body.defer_activation,
                baseline=body.baseline,
            ),
            profile,
            started=started,
            popularity=popularity,
        )
        return answer

    def decide(
        self, tenant: str, policy: str, decision: Decision
    ) -> tuple[dict[str, Any], RankResult]:
        """Draw and log a slate for a decision built by another front (the Personalizer API):
        the ``rank`` answer and the draw itself (with every slot's distribution if asked)."""
        started = time.perf_counter()
        ids = [c.id for c in decision.candidates]
        first = self._first_round(tenant, policy, decision.user_id, candidate_ids=ids)
        return self._decide(
            tenant,
            first.policy,
            decision,
            first.profile,
            started=started,
            popularity=first.popularity,
        )

    def recommend(
        self,
        tenant: str,
        policy: str,
        body: RecommendBody,
        revalidate: Callable[[], object] | None = None,
    ) -> dict[str, Any]:
        """Retrieve candidates from the tenant's catalog index, then rank them (see
        ``functions.common.recommend``); the probabilities are exact given the retrieved set."""
        started = time.perf_counter()
        first = self._first_round(tenant, policy, body.user_id, revalidate=revalidate)
        stored, profile = first.policy, first.profile
        index = self._index(tenant, required=True)
        assert index is not None  # required=True raises instead
        retrieved = retrieve_for(index, stored.spec, profile, body)
        result, _ = self._decide(
            tenant,
            stored,
            Decision(
                context=body.context,
                candidates=list(retrieved.candidates),
                user_id=body.user_id,
                slate_size=body.slate_size,
                exclude=(),
                defer_activation=body.defer_activation,
                retrieval=RetrievalLog(
                    index_version=index.head.version,
                    sources=[source.value for source in retrieved.sources],
                ),
            ),
            profile,
            started=started,
            index=index,
        )
        source_of = dict(zip(retrieved.item_ids, retrieved.sources, strict=True))
        for slot in result["slate"]:
            slot["source"] = source_of[slot["id"]].value
        result["retrieval"] = {
            "index_version": index.head.version,
            "candidates": len(retrieved.candidates),
            "sources": retrieved.counts(),
        }
        return result

    def _decide(
        self,
        tenant: str,
        stored: policy_store.StoredPolicy,
        decision: Decision,
        profile: users.Profile,
        *,
        started: float,
        index: StoredIndex | None = None,
        popularity: Popularity | None = None,
    ) -> tuple[dict[str, Any], RankResult]:
        spec = stored.spec
        policy = spec.name
        cached, degraded = self.models.get(
            tenant, policy, spec, stored.head_version, stored.lineage
        )
        candidates = decision.candidates
        interactions = profile.interactions
        segment = spec.segment_for(interactions).name
        prior = self._prior(
            tenant, spec, cached.model.examples_learned, segment, candidates, prefetched=popularity
        )
        ranker = Ranker(
            spec,
            cached.model,
            budget=self._budget(tenant, stored),
            prior=prior,
            clock=self.clock,
            lines=self.lines,
        )
        now = self.clock()
        affinities = None
        if spec.collaborative.enabled:
            if index is None:
                index = self._index(tenant, required=False)
            affinities = candidate_affinities(index, spec, profile, candidates)
        result = ranker.rank(
            RankRequest(
                event_id=decision.event_id or f"evt_{uuid.uuid4().hex}",
                context=decision.context,
                candidates=candidates,
                user_id=decision.user_id,
                interactions=interactions,
                slate_size=decision.slate_size,
                exclude=decision.exclude,
                timestamp=now,
                history=_history(spec, profile),
                affinities=affinities,
                exclude_at=decision.exclude_at,
                slot_ids=decision.slot_ids,
                baseline=decision.baseline,
                keep_distributions=decision.keep_distributions,
                slot_features=decision.slot_features,
            )
        )
        record = result.record(spec, cached.version, deferred=decision.defer_activation)
        if decision.retrieval is not None:
            record = record.model_copy(update={"retrieval": decision.retrieval})
        # Round 2: the decision, with the budget counters' due work.
        ledger = self._ledgers[(tenant, policy, stored.spec_version)]
        calls: dict[str, Callable[[], Any]] = {"decision": partial(_log, tenant, record, spec)}
        done = run_round(2, calls | ledger.due_calls())
        ledger.absorb(done)
        if isinstance(done["decision"], decision_store.DuplicateEventError):
            raise done["decision"]  # only an app's own event id can be taken: never unlogged
        logged = done["decision"] is True
        metrics.add_metric(name="Ranks", unit="Count", value=1)
        metrics.add_metric(
            name="ExploredSlots", unit="Count", value=sum(s.explored for s in result.slots)
        )
        # The budget-drift alarm compares explored slots with these (docs/operations.md).
        served = len(result.slots)
        metrics.add_metric(name="ServedSlots", unit="Count", value=served)
        metrics.add_metric(name="BudgetTargetSlots", unit="Count", value=result.budget * served)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        metrics.add_metric(name="RankLatency", unit="Milliseconds", value=elapsed_ms)
        return {
            "event_id": result.request.event_id,
            "policy": policy,
            "model_version": cached.version,
            "slate": [
                {
                    "id": slot.item_id,
                    "position": slot.position,
                    "probability": slot.probability,
                    "explored": slot.explored,
                }
                for slot in result.slots
            ],
            "exploration": {
                "segment": result.segment,
                "budget": result.budget,
                "spent": result.spent,
                "rate": result.rate,
            },
            "logged": logged,
            "degraded": degraded,
        }, result

    def _index(self, tenant: str, *, required: bool) -> StoredIndex | None:
        """The tenant's catalog index build; recommend needs one, rank only uses it."""
        try:
            index = self.indexes.get(tenant)
        except StorageError as exc:
            if required:
                raise
            logger.warning("taste factors unavailable", extra={"error": exc.detail})
            return None
        if index is None and required:
            raise IndexNotBuiltError(
                "the catalog index of this tenant is not built yet: upsert items "
                "(POST /v1/items); the index builder runs every few minutes"
            )
        return index

    def _prior(
        self,
        tenant: str,
        spec: PolicySpec,
        examples_learned: int,
        segment: str,
        candidates: Sequence[Candidate],
        *,
        prefetched: Popularity | None = None,
    ) -> PopularityPrior:
        smoothing = spec.cold_start.popularity_smoothing
        needs_prior = model_weight(spec.cold_start, examples_learned, segment) < 1.0
        needs_impressions = spec.cold_start.new_item.boost > 1.0
        if not (needs_prior or needs_impressions):
            return PopularityPrior({}, smoothing)
        try:
            stats, totals = prefetched or self.popularity.get(
                tenant, spec.name, [c.id for c in candidates]
            )
        except StorageError as exc:
            logger.warning("popularity unavailable", extra={"error": exc.detail})
            stats, totals = {}, None
        return PopularityPrior(stats, smoothing, totals)


def _log(tenant: str, record: DecisionRecord, spec: PolicySpec) -> bool | Exception:
    """Store the decision: True, False when storage failed (logged and counted), or the
    ``DuplicateEventError`` to raise once the round is over."""
    try:
        decision_store.put(tenant, record, wait_seconds=spec.rewards.wait_seconds)
    except decision_store.DuplicateEventError as exc:
        return exc
    except StorageError as exc:
        logger.error("decision not logged", extra={"policy": spec.name, "error": exc.detail})
        metrics.add_metric(name="DecisionsNotLogged", unit="Count", value=1)
        return False
    return True


def _history(spec: PolicySpec, profile: users.Profile) -> History | None:
    """The history snapshot the spec asks for (logged with the decision), or None when off."""
    settings_ = spec.history
    if not settings_.enabled:
        return None
    return snapshot(
        profile.rewarded,
        items=settings_.items,
        categories=settings_.categories,
        creators=settings_.creators,
        decay=settings_.decay,
    )
