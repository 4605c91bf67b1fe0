"""Round 1 of the rank path: the reads a rank needs, made side by side.

``RankReads`` keeps the policies, models and popularity counts a container has read, and reads
in one round (``functions.common.rounds``) the user's profile with whatever else is due: the
policy once per ``MODEL_CACHE_SECONDS``, the caller's API key when its revalidation is due,
catalog items named by reference, and the popularity counts a draw may need.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from bandit.domain import Candidate
from bandit.serve.coldstart import ItemStats, model_weight
from functions.common import catalog, counters, policy_store, users
from functions.common.api_models import CandidateIn, RankBody
from functions.common.errors import StorageError
from functions.common.model_cache import ModelCache
from functions.common.observability import logger
from functions.common.rounds import run_round
from functions.common.settings import settings

Popularity = tuple[dict[str, ItemStats], ItemStats | None]  # counts by item, and the totals


@dataclass(frozen=True)
class FirstRound:
    """What round 1 read: the policy, the user's profile, the candidates (rank: those named by
    reference resolved) and the popularity counts read ahead, if any."""

    policy: policy_store.StoredPolicy
    profile: users.Profile
    candidates: list[Candidate] | None
    popularity: Popularity | None


class RankReads:
    """The read side of ``RankService``: what a container keeps, and round 1."""

    def __init__(self) -> None:
        self.models = ModelCache()
        self._policies: dict[tuple[str, str], tuple[float, policy_store.StoredPolicy]] = {}
        self.popularity = counters.PopularityCache()

    def _policy(self, tenant: str, name: str) -> policy_store.StoredPolicy:
        key = (tenant, name)
        cached = self._policies.get(key)
        now = time.monotonic()
        if cached and now - cached[0] < settings().model_cache_seconds:
            return cached[1]
        try:
            stored = policy_store.get(tenant, name)
        except StorageError:
            if cached is None:
                raise
            logger.warning("policy store unavailable; using cached policy", extra={"policy": name})
            return cached[1]
        self._policies[key] = (now, stored)
        return stored

    def _first_round(
        self,
        tenant: str,
        policy: str,
        user_id: str | None,
        *,
        revalidate: Callable[[], object] | None = None,
        body: RankBody | None = None,
        candidate_ids: Sequence[str] = (),
    ) -> FirstRound:
        """Round 1: the profile, and whatever else is due, read together: the policy, the key
        (``revalidate``), ``body``'s candidates named by reference, and the popularity of
        ``candidate_ids`` (or ``body``'s) if the draw may need it."""
        known = self._kept_policy(tenant, policy)
        calls: dict[str, Callable[[], Any]] = {}
        if revalidate is not None:
            calls["key"] = revalidate  # first: a refused key is the answer, whatever else fails
        calls["profile"] = partial(self._profile, tenant, user_id)
        if known is None or known[1]:
            calls["policy"] = partial(self._policy, tenant, policy)
        if body is not None:
            if any(isinstance(c, str) for c in body.candidates):
                calls["candidates"] = partial(self._candidates, tenant, body)
            candidate_ids = [c if isinstance(c, str) else c.id for c in body.candidates]
        if candidate_ids and known is not None and self._may_need_prior(tenant, known[0]):
            ids = list(candidate_ids)
            calls["popularity"] = partial(self._prefetch_popularity, tenant, policy, ids)
        found = run_round(1, calls)
        stored = found["policy"] if "policy" in calls else known[0]  # type: ignore[index]
        candidates = None
        if body is not None:
            candidates = found.get("candidates") or self._candidates(tenant, body)
        return FirstRound(stored, found["profile"], candidates, found.get("popularity"))

    def _kept_policy(self, tenant: str, name: str) -> tuple[policy_store.StoredPolicy, bool] | None:
        """The policy this process keeps, and whether it is due to be read again."""
        cached = self._policies.get((tenant, name))
        if cached is None:
            return None
        return cached[1], time.monotonic() - cached[0] >= settings().model_cache_seconds

    def _may_need_prior(self, tenant: str, stored: policy_store.StoredPolicy) -> bool:
        """Whether a draw might need popularity counts: new items are boosted, or the model is
        young enough for some segment to lean on the prior (unknown model: assume it is)."""
        spec = stored.spec
        if spec.cold_start.new_item.boost > 1.0:
            return True
        kept = self.models.peek(tenant, spec.name)
        if kept is None or kept.version != stored.head_version:
            return True
        learned = kept.model.examples_learned
        return any(
            model_weight(spec.cold_start, learned, segment.name) < 1.0
            for segment in spec.cold_start.segments
        )

    def _prefetch_popularity(self, tenant: str, policy: str, ids: list[str]) -> Popularity | None:
        """The counts a draw may need, read ahead (None when unavailable: ``_prior`` retries)."""
        try:
            return self.popularity.get(tenant, policy, ids)
        except StorageError as exc:
            logger.warning("popularity unavailable", extra={"error": exc.detail})
            return None

    @staticmethod
    def _profile(tenant: str, user_id: str | None) -> users.Profile:
        try:
            return users.profile(tenant, user_id)
        except StorageError as exc:
            # The slate can still be drawn (and its probabilities logged exactly) for the user
            # as if new; refusing to rank would turn a profile outage into a rank outage.
            logger.warning(
                "user profile unavailable; ranking as a new user", extra={"error": exc.detail}
            )
            return users.Profile()

    @staticmethod
    def _candidates(tenant: str, body: RankBody) -> list[Candidate]:
        by_reference = [(i, c) for i, c in enumerate(body.candidates) if isinstance(c, str)]
        found = catalog.resolve(tenant, by_reference)
        out: list[Candidate] = []
        for candidate in body.candidates:
            if isinstance(candidate, CandidateIn):
                out.append(
                    Candidate(
                        candidate.id,
                        candidate.features,
                        candidate.category,
                        candidate.creator,
                        candidate.created_at,
                    )
                )
            else:
                out.append(found[candidate])
        return out
