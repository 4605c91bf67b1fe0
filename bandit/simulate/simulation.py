"""Synthetic recommendation worlds with known click probabilities, for benchmarks and demos.

- :class:`Population`: cohorts of users with category affinities, a growing catalog of items
  with per-item appeal, and a request stream in which new users and new items keep arriving.
  Every click probability is known, so a policy's CTR can be set against an oracle's and its
  regret measured, with no learner involved.
- :class:`NewsScenario`: the deterministic Vowpal Wabbit contextual-bandit tutorial (Tom and
  Anna reading the news in the morning and the afternoon).

``bandit.simulate.taste_world.TasteWorld`` is the world where context is not enough: personal
tastes the context does not reveal, over a 10,000-item catalog of clustered items.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from bandit.domain import Candidate

DEVICES = ("ios", "android", "web")
DAYPARTS = ("night", "morning", "afternoon", "evening")
LENGTHS = ("short", "long")

FAVOURITE_AFFINITY = 3.0
OTHER_AFFINITY = 0.3
MAX_PROBABILITY = 0.95
MEAN_INITIAL_INTERACTIONS = 60.0

_SECONDS_PER_HOUR = 3_600.0
_SECONDS_PER_DAY = 86_400.0
_CATALOG_SPREAD_SECONDS = 30 * _SECONDS_PER_DAY


def daypart(timestamp: float) -> str:
    """Part of the UTC day: night 0-6h, morning 6-12h, afternoon 12-18h, evening 18-24h."""
    hour = int((timestamp % _SECONDS_PER_DAY) // _SECONDS_PER_HOUR)
    return DAYPARTS[hour // 6]


@dataclass(frozen=True, slots=True)
class SimRequest:
    """One recommendation request: who asks, when, and which items may be shown.

    ``interactions`` is the user's count *before* this request, so 0 means a brand-new user.
    """

    user_id: str
    context: dict[str, Any]
    candidates: tuple[Candidate, ...]
    timestamp: float
    interactions: int

    @property
    def user_is_new(self) -> bool:
        """True when this is the user's first request."""
        return self.interactions == 0


def _grown(array: NDArray[Any], size: int) -> NDArray[Any]:
    """``array`` with room for at least ``size`` rows; doubling keeps appends amortised O(1)."""
    if size <= len(array):
        return array
    bigger = np.zeros((max(size, 2 * len(array)), *array.shape[1:]), dtype=array.dtype)
    bigger[: len(array)] = array
    return bigger


class Population:
    """A synthetic user population and catalog whose true click probabilities are known.

    ``p(user, item) = min(0.95, base_ctr * affinity[user, category(item)] * appeal(item))``,
    where a user's affinity is their cohort's (3.0 for 2-3 favourite categories, 0.3 otherwise)
    times personal lognormal(0, 0.15) noise, and an item's appeal is lognormal(0, 0.35) times
    its creator's lognormal(0, 0.2) popularity. Device and item length are noise features.

    All randomness comes from ``seed``: the same seed gives the same world and the same request
    stream. :meth:`next_request` marks the user as served (their interaction count goes up by
    one) before it returns.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        n_categories: int = 10,
        n_cohorts: int = 8,
        n_creators: int = 60,
        n_items: int = 400,
        n_users: int = 2000,
        candidates: int = 50,
        new_user_rate: float = 0.02,
        new_item_rate: float = 0.01,
        seconds_per_request: float = 1.0,
        start_time: float = 1_700_000_000.0,
        base_ctr: float = 0.08,
    ) -> None:
        for name, count in (
            ("n_categories", n_categories),
            ("n_cohorts", n_cohorts),
            ("n_creators", n_creators),
            ("n_items", n_items),
            ("n_users", n_users),
            ("candidates", candidates),
        ):
            if count < 1:
                raise ValueError(f"{name} must be at least 1, got {count}")
        for name, rate in (("new_user_rate", new_user_rate), ("new_item_rate", new_item_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {rate}")
        if seconds_per_request < 0.0:
            raise ValueError(f"seconds_per_request must be >= 0, got {seconds_per_request}")
        if not 0.0 < base_ctr <= MAX_PROBABILITY:
            raise ValueError(f"base_ctr must be in (0, {MAX_PROBABILITY}], got {base_ctr}")

        # Separate streams, so how the world is built never shifts the request stream.
        world_seed, stream_seed = np.random.SeedSequence(seed).spawn(2)
        world = np.random.default_rng(world_seed)
        self._rng = np.random.default_rng(stream_seed)

        self._n_candidates = candidates
        self._new_user_rate = new_user_rate
        self._new_item_rate = new_item_rate
        self._seconds_per_request = seconds_per_request
        self._base_ctr = base_ctr
        self._now = start_time

        self._categories = tuple(f"cat-{c:02d}" for c in range(n_categories))
        self._cohorts = tuple(f"cohort-{c}" for c in range(n_cohorts))
        self._creators = tuple(f"creator-{c:03d}" for c in range(n_creators))
        self._cohort_affinity = np.full((n_cohorts, n_categories), OTHER_AFFINITY)
        self._favourites: list[tuple[int, ...]] = []
        for cohort in range(n_cohorts):
            n_favourites = min(int(world.integers(2, 4)), n_categories)
            favourites = np.sort(world.choice(n_categories, size=n_favourites, replace=False))
            self._cohort_affinity[cohort, favourites] = FAVOURITE_AFFINITY
            self._favourites.append(tuple(int(f) for f in favourites))
        self._creator_appeal = world.lognormal(0.0, 0.2, size=n_creators)

        self._user_ids: list[str] = []
        self._user_index: dict[str, int] = {}
        self._user_cohort = np.zeros(0, dtype=np.int64)
        self._user_device = np.zeros(0, dtype=np.int64)
        self._user_interactions = np.zeros(0, dtype=np.int64)
        self._user_affinity = np.zeros((0, n_categories))
        # Geometric starts at 1, so only brand-new users ever have zero interactions.
        initial = world.geometric(1.0 / MEAN_INITIAL_INTERACTIONS, size=n_users)
        for count in initial:
            self._add_user(world, int(count))

        self._item_ids: list[str] = []
        self._item_index: dict[str, int] = {}
        self._item_candidates: list[Candidate] = []
        self._item_category = np.zeros(0, dtype=np.int64)
        self._item_appeal = np.zeros(0)
        self._item_created_at = np.zeros(0)
        ages = world.uniform(0.0, _CATALOG_SPREAD_SECONDS, size=n_items)
        for age in np.sort(ages)[::-1]:
            self._add_item(world, start_time - float(age))

    # -- world building -------------------------------------------------------------------

    def _add_user(self, rng: np.random.Generator, interactions: int) -> int:
        index = len(self._user_ids)
        user_id = f"user-{index:05d}"
        self._user_ids.append(user_id)
        self._user_index[user_id] = index
        self._user_cohort = _grown(self._user_cohort, index + 1)
        self._user_device = _grown(self._user_device, index + 1)
        self._user_interactions = _grown(self._user_interactions, index + 1)
        self._user_affinity = _grown(self._user_affinity, index + 1)
        cohort = int(rng.integers(len(self._cohorts)))
        noise = rng.lognormal(0.0, 0.15, size=len(self._categories))
        self._user_cohort[index] = cohort
        self._user_device[index] = rng.integers(len(DEVICES))
        self._user_interactions[index] = interactions
        self._user_affinity[index] = self._cohort_affinity[cohort] * noise
        return index

    def _add_item(self, rng: np.random.Generator, created_at: float) -> int:
        index = len(self._item_ids)
        item_id = f"item-{index:04d}"
        category = int(rng.integers(len(self._categories)))
        creator = int(rng.integers(len(self._creators)))
        appeal = float(rng.lognormal(0.0, 0.35)) * float(self._creator_appeal[creator])
        length = LENGTHS[int(rng.integers(len(LENGTHS)))]
        self._item_ids.append(item_id)
        self._item_index[item_id] = index
        self._item_category = _grown(self._item_category, index + 1)
        self._item_appeal = _grown(self._item_appeal, index + 1)
        self._item_created_at = _grown(self._item_created_at, index + 1)
        self._item_category[index] = category
        self._item_appeal[index] = appeal
        self._item_created_at[index] = created_at
        self._item_candidates.append(
            Candidate(
                id=item_id,
                features={"length": length},
                category=self._categories[category],
                creator=self._creators[creator],
                created_at=created_at,
            )
        )
        return index

    # -- the request stream ---------------------------------------------------------------

    def next_request(self) -> SimRequest:
        """Advance the clock, maybe add an item, pick a user, sample candidates, serve the user.

        The returned ``interactions`` is the count before this request; the user's stored count
        is incremented here, so callers need not report back that the user was served.
        """
        self._now += self._seconds_per_request
        rng = self._rng
        if rng.random() < self._new_item_rate:
            self._add_item(rng, self._now)
        if rng.random() < self._new_user_rate:
            user = self._add_user(rng, 0)
        else:
            user = int(rng.integers(len(self._user_ids)))
        n_items = len(self._item_ids)
        picked = rng.choice(n_items, size=min(self._n_candidates, n_items), replace=False)
        items = self._item_candidates
        interactions = int(self._user_interactions[user])
        self._user_interactions[user] = interactions + 1
        context: dict[str, Any] = {
            "user": {
                "cohort": self._cohorts[int(self._user_cohort[user])],
                "device": DEVICES[int(self._user_device[user])],
            },
            "time": {"daypart": daypart(self._now)},
        }
        return SimRequest(
            user_id=self._user_ids[user],
            context=context,
            candidates=tuple([items[i] for i in picked.tolist()]),
            timestamp=self._now,
            interactions=interactions,
        )

    # -- ground truth ---------------------------------------------------------------------

    def click_probabilities(self, user_id: str, item_ids: Iterable[str]) -> NDArray[np.float64]:
        """True click probability of each item for the user, in the order given."""
        user = self._user_index[user_id]
        items = np.fromiter((self._item_index[i] for i in item_ids), dtype=np.int64)
        affinity = self._user_affinity[user, self._item_category[items]]
        probabilities: NDArray[np.float64] = np.minimum(
            MAX_PROBABILITY, self._base_ctr * affinity * self._item_appeal[items]
        )
        return probabilities

    def click_probability(self, user_id: str, item_id: str) -> float:
        """True probability that the user clicks the item when shown it."""
        return float(self.click_probabilities(user_id, (item_id,))[0])

    def clicks(self, user_id: str, item_ids: Sequence[str], rng: np.random.Generator) -> list[bool]:
        """One independent Bernoulli draw per shown item (no position bias)."""
        probabilities = self.click_probabilities(user_id, item_ids)
        drawn: list[bool] = (rng.random(len(probabilities)) < probabilities).tolist()
        return drawn

    def expected_clicks(self, user_id: str, item_ids: Iterable[str]) -> float:
        """Sum of the true click probabilities: a low-variance stand-in for counting clicks."""
        return float(self.click_probabilities(user_id, item_ids).sum())

    def oracle_slate(self, user_id: str, candidates: Sequence[Candidate], k: int) -> list[str]:
        """The ``k`` candidate ids with the highest true click probability, best first."""
        ids = [c.id for c in candidates]
        probabilities = self.click_probabilities(user_id, ids)
        # Stable sort on the negation keeps ties in candidate order, so the oracle is repeatable.
        order = np.argsort(-probabilities, kind="stable")[: max(k, 0)]
        return [ids[i] for i in order.tolist()]

    # -- inspection -----------------------------------------------------------------------

    @property
    def now(self) -> float:
        """The simulated clock (unix seconds) as of the latest request."""
        return self._now

    @property
    def categories(self) -> tuple[str, ...]:
        """All category names."""
        return self._categories

    @property
    def cohorts(self) -> tuple[str, ...]:
        """All cohort names."""
        return self._cohorts

    @property
    def user_ids(self) -> tuple[str, ...]:
        """Every user so far, initial ones first, in arrival order."""
        return tuple(self._user_ids)

    @property
    def item_ids(self) -> tuple[str, ...]:
        """Every item in the catalog, oldest first."""
        return tuple(self._item_ids)

    @property
    def n_users(self) -> int:
        """How many users exist so far."""
        return len(self._user_ids)

    @property
    def n_items(self) -> int:
        """How many items the catalog holds so far."""
        return len(self._item_ids)

    def favourite_categories(self, cohort: str) -> tuple[str, ...]:
        """The 2 or 3 categories the cohort likes (affinity 3.0 rather than 0.3)."""
        favourites = self._favourites[self._cohorts.index(cohort)]
        return tuple(self._categories[f] for f in favourites)

    def user_cohort(self, user_id: str) -> str:
        """The cohort the user belongs to."""
        return self._cohorts[int(self._user_cohort[self._user_index[user_id]])]

    def interactions(self, user_id: str) -> int:
        """How many times the user has been served (including initial history)."""
        return int(self._user_interactions[self._user_index[user_id]])

    def user_is_new(self, user_id: str) -> bool:
        """True while the user has never been served."""
        return self.interactions(user_id) == 0

    def candidate(self, item_id: str) -> Candidate:
        """The cached candidate for an item."""
        return self._item_candidates[self._item_index[item_id]]

    def created_at(self, item_id: str) -> float:
        """When the item entered the catalog (unix seconds of the simulated clock)."""
        return float(self._item_created_at[self._item_index[item_id]])

    def is_new_item(self, item_id: str, now: float, max_age_hours: float = 48.0) -> bool:
        """True when the item is at most ``max_age_hours`` old at ``now`` (as cold start judges)."""
        return now - self.created_at(item_id) <= max_age_hours * _SECONDS_PER_HOUR


class NewsScenario:
    """The Vowpal Wabbit contextual-bandit news tutorial, with a deterministic reward.

    Tom clicks politics in the morning and music in the afternoon; Anna clicks sports in the
    morning and politics in the afternoon; every other article earns 0. With epsilon-greedy at
    exploration rate ``e`` over the 7 articles, even a perfect model explores on a fraction
    ``e`` of requests and hits the liked article on 1 in 7 of those, so the best achievable CTR
    is ``(1 - e) + e / 7`` (0.829 at ``e = 0.2``); see :meth:`epsilon_greedy_ceiling`.
    """

    USERS: ClassVar[tuple[str, ...]] = ("Tom", "Anna")
    TIMES_OF_DAY: ClassVar[tuple[str, ...]] = ("morning", "afternoon")
    ARTICLES: ClassVar[tuple[str, ...]] = (
        "politics",
        "sports",
        "music",
        "food",
        "finance",
        "health",
        "camping",
    )
    LIKES: ClassVar[Mapping[tuple[str, str], str]] = {
        ("Tom", "morning"): "politics",
        ("Tom", "afternoon"): "music",
        ("Anna", "morning"): "sports",
        ("Anna", "afternoon"): "politics",
    }
    _CANDIDATES: ClassVar[tuple[Candidate, ...]] = tuple(
        Candidate(id=article, features={}, category=article) for article in ARTICLES
    )

    def context(self, rng: np.random.Generator) -> dict[str, Any]:
        """A uniformly random user and time of day."""
        user = self.USERS[int(rng.integers(len(self.USERS)))]
        time_of_day = self.TIMES_OF_DAY[int(rng.integers(len(self.TIMES_OF_DAY)))]
        return {"user": {"name": user}, "time": {"time_of_day": time_of_day}}

    def candidates(self) -> tuple[Candidate, ...]:
        """The seven articles, in tutorial order."""
        return self._CANDIDATES

    def best(self, context: Mapping[str, Any]) -> str:
        """The one article this user clicks at this time of day."""
        try:
            key = (context["user"]["name"], context["time"]["time_of_day"])
            return self.LIKES[key]
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a news-scenario context: {context!r}") from error

    def reward(self, context: Mapping[str, Any], item_id: str) -> float:
        """1.0 for the liked article, 0.0 for any other."""
        return 1.0 if item_id == self.best(context) else 0.0

    @staticmethod
    def epsilon_greedy_ceiling(epsilon: float, n_arms: int = len(ARTICLES)) -> float:
        """Best CTR epsilon-greedy can reach with a perfect model: ``(1 - e) + e / n_arms``."""
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        if n_arms < 1:
            raise ValueError(f"n_arms must be at least 1, got {n_arms}")
        return (1.0 - epsilon) + epsilon / n_arms
