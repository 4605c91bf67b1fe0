"""The collaborative rows of the taste benchmark: for-you with taste factors refitted as it runs.

On the service the catalog index builder refits a tenant's taste factors from every user's
rewarded items on a schedule, off the rank path; here :class:`CollaborativePolicy` does the same
every ``refit_every`` rounds from the benchmark's profiles, and ranks with each candidate's
affinity (``bandit.learn.taste_factors``), exactly as ``RankService`` does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from bandit.learn.taste_factors import TasteFactors, affinity, fit, user_vector
from bandit.serve.ranker import RankRequest
from bandit.simulate.simulation import SimRequest
from bandit.simulate.taste_world import TasteWorld
from bandit.spec import PolicySpec
from benchmarks.taste import Factory, Profiles, TastePolicy, policies

REFIT_EVERY = 1_000  # rounds between refits (the builder's schedule, in requests)
DEFAULT_KINDS = ("item", "category")  # the service's defaults (TASTE_KINDS, TASTE_DIMS)
DEFAULT_DIMS = 24


class CollaborativePolicy(TastePolicy):
    """A serendip policy whose requests carry collaborative affinities (namespace ``T``)."""

    def __init__(
        self,
        spec: PolicySpec,
        world: TasteWorld,
        profiles: Profiles,
        *,
        refit_every: int,
        kinds: Sequence[str] = DEFAULT_KINDS,
        dims: int = DEFAULT_DIMS,
    ) -> None:
        super().__init__(spec, world, profiles)
        self._refit_every = refit_every
        self._kinds = tuple(kinds)
        self._dims = dims
        self._rounds = 0
        self._factors: TasteFactors | None = None
        self._rows: dict[str, int] = {}

    def _refit(self) -> None:
        self._factors = fit(list(self._profiles.values()), kinds=self._kinds, dims=self._dims)
        self._rows = self._factors.rows()

    def rank_request(self, request: SimRequest, event_id: str, slate_size: int) -> RankRequest:
        """The base request with every candidate's affinity to the user's taste."""
        if self._rounds % self._refit_every == 0:
            self._refit()
        self._rounds += 1
        base = super().rank_request(request, event_id, slate_size)
        factors = self._factors
        if factors is None or not factors.tokens:
            return base
        settings = self.spec.collaborative
        recent = list(reversed(self._profiles.get(request.user_id, ())))[: settings.items]
        user = user_vector(
            [factors.item_vector(self._rows, r.item_id, r.category, r.creator) for r in recent],
            settings.decay,
        )
        values = [
            affinity(user, factors.item_vector(self._rows, c.id, c.category, c.creator))
            for c in base.candidates
        ]
        return dataclasses.replace(base, affinities=values)


def collaborative_specs(**overrides: Any) -> dict[str, PolicySpec]:
    """for-you as shipped with the collaborative signal on (and ``overrides`` to it)."""
    base = policies()["for-you"]
    collaborative = base.collaborative.model_copy(update={"enabled": True, **overrides})
    return {"for-you + collaborative": base.model_copy(update={"collaborative": collaborative})}


def collaborative_rows(
    refit_every: int = REFIT_EVERY,
    kinds: Sequence[str] = DEFAULT_KINDS,
    dims: int = DEFAULT_DIMS,
    **overrides: Any,
) -> dict[str, Factory]:
    """Factories of the collaborative rows, for ``taste_bench(extra=...)``."""
    return {
        name: _factory(spec, refit_every, kinds, dims)
        for name, spec in collaborative_specs(**overrides).items()
    }


def _factory(spec: PolicySpec, refit_every: int, kinds: Sequence[str], dims: int) -> Factory:
    def factory(world: TasteWorld, profiles: Profiles) -> CollaborativePolicy:
        return CollaborativePolicy(
            spec, world, profiles, refit_every=refit_every, kinds=kinds, dims=dims
        )

    factory.setup = setup_of(refit_every, kinds, dims)  # type: ignore[attr-defined]
    return factory


def setup_of(refit_every: int, kinds: Sequence[str], dims: int) -> str:
    """How a collaborative row learns, for the table."""
    return (
        f"for-you with collaborative on: namespace T, the cosine to the user's taste in factors "
        f"over {', '.join(kinds)} in {dims} dimensions, refitted every {refit_every:,} rounds"
    )
