"""A synthetic world where taste matters: personal tastes that the context does not reveal.

In :class:`bandit.simulate.simulation.Population` a user's affinities come from their cohort, which
the request's context names, so context alone can learn everything there is to know. Here:

- **Items** belong to one of ``n_tastes`` hidden taste clusters (a genre no feature names). An
  item's visible ``category`` is its cluster's own category with probability
  ``category_fidelity`` and a random one otherwise, so categories hint at tastes without
  spelling them out; items also have a creator and an appeal (lognormal).
- **Users** each like ``tastes_per_user`` clusters, drawn independently of everything the context
  says (cohort, device, daypart): no demographic explains a taste. A user clicks an item of a
  liked cluster with ``base_ctr * LIKED_LIFT * appeal`` and any other with ``base_ctr * appeal``
  (capped at 0.95).
- **Co-consumption**: users who like one item of a cluster like the whole cluster, so items that
  are clicked by the same users share a cluster: the structure item-item co-occurrence and latent
  factors can find, and that a user's own history (what they clicked, its categories) reveals.

The catalog is large (10,000 items by default) and each request offers ``candidates`` items drawn
at random from it: uniformly, or with ``exposure_skew`` > 0 Zipf-like (item ``k`` of a random
order offered in proportion to ``(k + 1) ** -exposure_skew``), the head-and-long-tail a real
app's candidate lists have, where the head gathers enough feedback to learn item by item. Every
probability is known, so a policy can be set against the oracle, against the best policy that
knows only the context (:meth:`TasteWorld.context_oracle_slate`), and against one that knows the
user's tastes. All randomness comes from ``seed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bandit.domain import Candidate
from bandit.simulate.simulation import DEVICES, MAX_PROBABILITY, SimRequest, daypart

LIKED_LIFT = 6.0  # a liked cluster's items against the others, before appeal
COHORTS = tuple(f"cohort-{c}" for c in range(8))


class TasteWorld:
    """Users with hidden personal tastes over a large catalog of clustered items.

    Example::

        world = TasteWorld(seed=1)
        request = world.next_request()
        shown = world.oracle_slate(request.user_id, request.candidates, 3)
        world.clicks(request.user_id, shown, np.random.default_rng(0))
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        n_items: int = 10_000,
        n_users: int = 5_000,
        n_tastes: int = 24,
        n_categories: int = 24,
        n_creators: int = 400,
        tastes_per_user: int = 2,
        category_fidelity: float = 0.6,
        candidates: int = 20,
        base_ctr: float = 0.03,
        seconds_per_request: float = 1.0,
        start_time: float = 1_700_000_000.0,
        exposure_skew: float = 0.0,
    ) -> None:
        for name, count in (
            ("n_items", n_items),
            ("n_users", n_users),
            ("n_tastes", n_tastes),
            ("n_categories", n_categories),
            ("n_creators", n_creators),
            ("candidates", candidates),
        ):
            if count < 1:
                raise ValueError(f"{name} must be at least 1, got {count}")
        if not 1 <= tastes_per_user <= n_tastes:
            raise ValueError(f"tastes_per_user must be in [1, n_tastes], got {tastes_per_user}")
        if not 0.0 <= category_fidelity <= 1.0:
            raise ValueError(f"category_fidelity must be in [0, 1], got {category_fidelity}")
        if not 0.0 <= exposure_skew <= 3.0:
            raise ValueError(f"exposure_skew must be in [0, 3], got {exposure_skew}")
        if not 0.0 < base_ctr * LIKED_LIFT <= MAX_PROBABILITY:
            raise ValueError(f"base_ctr must be in (0, {MAX_PROBABILITY / LIKED_LIFT:.3f}]")
        world_seed, stream_seed = np.random.SeedSequence(seed).spawn(2)
        world = np.random.default_rng(world_seed)
        self._rng = np.random.default_rng(stream_seed)
        self._n_candidates = min(candidates, n_items)
        self._base_ctr = base_ctr
        self._seconds_per_request = seconds_per_request
        self._now = start_time

        categories = tuple(f"cat-{c:02d}" for c in range(n_categories))
        creators = tuple(f"creator-{c:03d}" for c in range(n_creators))
        cluster_category = world.integers(n_categories, size=n_tastes)
        self._item_cluster = world.integers(n_tastes, size=n_items)
        faithful = world.random(n_items) < category_fidelity
        category = np.where(
            faithful,
            cluster_category[self._item_cluster],
            world.integers(n_categories, size=n_items),
        )
        creator = world.integers(n_creators, size=n_items)
        self._item_category = category.astype(np.int64)
        # P(cluster | category): each cluster shows its own category with the fidelity, any
        # category with the rest, and clusters are equally likely a priori.
        given_cluster = np.full((n_tastes, n_categories), (1.0 - category_fidelity) / n_categories)
        given_cluster[np.arange(n_tastes), cluster_category] += category_fidelity
        self._cluster_posterior = (given_cluster / given_cluster.sum(axis=0)).T
        self._item_appeal = world.lognormal(0.0, 0.3, size=n_items)
        ages = world.uniform(0.0, 30 * 86_400.0, size=n_items)
        self._item_ids = tuple(f"item-{i:05d}" for i in range(n_items))
        self._item_index = {item_id: i for i, item_id in enumerate(self._item_ids)}
        self._candidates = tuple(
            Candidate(
                id=self._item_ids[i],
                features={"appeal_hint": round(float(self._item_appeal[i]), 1)},
                category=categories[int(category[i])],
                creator=creators[int(creator[i])],
                created_at=start_time - float(ages[i]),
            )
            for i in range(n_items)
        )

        self._user_ids = tuple(f"user-{u:05d}" for u in range(n_users))
        self._user_index = {user_id: u for u, user_id in enumerate(self._user_ids)}
        self._likes = np.zeros((n_users, n_tastes), dtype=bool)
        for user in range(n_users):
            self._likes[user, world.choice(n_tastes, size=tastes_per_user, replace=False)] = True
        # Drawn after, and apart from, the tastes: the context says nothing about them.
        self._user_cohort = world.integers(len(COHORTS), size=n_users)
        self._user_device = world.integers(len(DEVICES), size=n_users)
        self._interactions = np.zeros(n_users, dtype=np.int64)
        # How often each item is a candidate: uniform, or Zipf-like over a random order of the
        # catalog (a head of often-offered items and a long tail), drawn last so that the rest
        # of the world is the same at every skew.
        self._exposure: NDArray[np.float64] | None = None
        if exposure_skew > 0.0:
            order = world.permutation(n_items)
            weights = np.empty(n_items)
            weights[order] = (1.0 + np.arange(n_items)) ** -exposure_skew
            self._exposure = weights / weights.sum()

    # -- the request stream ---------------------------------------------------------------

    def next_request(self) -> SimRequest:
        """Advance the clock, pick a user at random and ``candidates`` items from the catalog."""
        self._now += self._seconds_per_request
        user = int(self._rng.integers(len(self._user_ids)))
        picked = self._rng.choice(
            len(self._item_ids), size=self._n_candidates, replace=False, p=self._exposure
        )
        interactions = int(self._interactions[user])
        self._interactions[user] = interactions + 1
        context: dict[str, Any] = {
            "user": {
                "cohort": COHORTS[int(self._user_cohort[user])],
                "device": DEVICES[int(self._user_device[user])],
            },
            "time": {"daypart": daypart(self._now)},
        }
        return SimRequest(
            user_id=self._user_ids[user],
            context=context,
            candidates=tuple(self._candidates[i] for i in picked.tolist()),
            timestamp=self._now,
            interactions=interactions,
        )

    # -- ground truth ---------------------------------------------------------------------

    def click_probabilities(self, user_id: str, item_ids: Iterable[str]) -> NDArray[np.float64]:
        """True click probability of each item for the user, in the order given."""
        user = self._user_index[user_id]
        items = np.fromiter((self._item_index[i] for i in item_ids), dtype=np.int64)
        liked = self._likes[user, self._item_cluster[items]]
        lift = np.where(liked, LIKED_LIFT, 1.0)
        probabilities: NDArray[np.float64] = np.minimum(
            MAX_PROBABILITY, self._base_ctr * lift * self._item_appeal[items]
        )
        return probabilities

    def clicks(self, user_id: str, item_ids: Sequence[str], rng: np.random.Generator) -> list[bool]:
        """One independent Bernoulli draw per shown item (no position bias)."""
        probabilities = self.click_probabilities(user_id, item_ids)
        drawn: list[bool] = (rng.random(len(probabilities)) < probabilities).tolist()
        return drawn

    def expected_clicks(self, user_id: str, item_ids: Iterable[str]) -> float:
        """Sum of the true click probabilities of the items for the user."""
        return float(self.click_probabilities(user_id, item_ids).sum())

    def oracle_slate(self, user_id: str, candidates: Sequence[Candidate], k: int) -> list[str]:
        """The ``k`` candidates with the highest true click probability for the user."""
        ids = [c.id for c in candidates]
        order = np.argsort(-self.click_probabilities(user_id, ids), kind="stable")[: max(k, 0)]
        return [ids[i] for i in order.tolist()]

    def context_oracle_slate(
        self, context: dict[str, Any], candidates: Sequence[Candidate], k: int
    ) -> list[str]:
        """The best slate knowing only the context: by each item's mean probability over the
        users who share the context's cohort and device. Tastes are drawn apart from the
        context, so this is nearly the order of appeal whatever the context."""
        cohort = COHORTS.index(context["user"]["cohort"])
        device = DEVICES.index(context["user"]["device"])
        users = np.flatnonzero((self._user_cohort == cohort) & (self._user_device == device))
        items = np.fromiter((self._item_index[c.id] for c in candidates), dtype=np.int64)
        liked_share = self._likes[users][:, self._item_cluster[items]].mean(axis=0)
        lift = 1.0 + (LIKED_LIFT - 1.0) * liked_share
        mean = np.minimum(MAX_PROBABILITY, self._base_ctr * lift * self._item_appeal[items])
        order = np.argsort(-mean, kind="stable")[: max(k, 0)]
        return [candidates[i].id for i in order.tolist()]

    def category_oracle_slate(
        self, user_id: str, candidates: Sequence[Candidate], k: int
    ) -> list[str]:
        """The best slate knowing the user's tastes and every item's appeal, but items' clusters
        only through their categories: what a learner that mastered the categories could reach.

        An item's chance to be of a liked cluster is the posterior over clusters given its
        category (fidelity ``category_fidelity``, clusters equally likely); nothing beyond the
        category tells two items of one category apart, so no category-level learner does better.
        """
        user = self._user_index[user_id]
        items = np.fromiter((self._item_index[c.id] for c in candidates), dtype=np.int64)
        liked_share = self._cluster_posterior[self._item_category[items]][:, self._likes[user]]
        lift = 1.0 + (LIKED_LIFT - 1.0) * liked_share.sum(axis=1)
        expected = self._item_appeal[items] * lift
        order = np.argsort(-expected, kind="stable")[: max(k, 0)]
        return [candidates[i].id for i in order.tolist()]

    def liked_item_ids(self, user_id: str, candidates: Sequence[Candidate]) -> list[str]:
        """The candidates of clusters the user likes (what a perfect history would reveal)."""
        user = self._user_index[user_id]
        return [
            c.id
            for c in candidates
            if self._likes[user, self._item_cluster[self._item_index[c.id]]]
        ]

    # -- inspection -----------------------------------------------------------------------

    @property
    def now(self) -> float:
        """The clock of the last request."""
        return self._now

    @property
    def n_items(self) -> int:
        """Items in the catalog."""
        return len(self._item_ids)

    @property
    def catalog(self) -> tuple[Candidate, ...]:
        """Every item of the catalog."""
        return self._candidates

    def cluster_of(self, item_id: str) -> int:
        """The hidden taste cluster of an item (for tests and analyses, never a feature)."""
        return int(self._item_cluster[self._item_index[item_id]])
