"""Tests for the synthetic worlds in ``bandit.simulate.simulation``."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from bandit.domain import Candidate
from bandit.simulate.simulation import (
    DAYPARTS,
    DEVICES,
    MAX_PROBABILITY,
    NewsScenario,
    Population,
    SimRequest,
    daypart,
)

# -- Population: determinism -----------------------------------------------------------------


def _stream(population: Population, n: int) -> list[tuple[str, tuple[str, ...], float, int]]:
    out = []
    for _ in range(n):
        request = population.next_request()
        ids = tuple(c.id for c in request.candidates)
        out.append((request.user_id, ids, request.timestamp, request.interactions))
    return out


def test_same_seed_gives_identical_stream_and_different_seeds_differ() -> None:
    # Given two populations from one seed and one from another
    first, second, other = Population(seed=7), Population(seed=7), Population(seed=8)

    # When each produces 300 requests
    a, b, c = _stream(first, 300), _stream(second, 300), _stream(other, 300)

    # Then the same seed repeats exactly, a different seed does not
    assert a == b
    assert [r[0] for r in a] != [r[0] for r in c]
    assert [r[1] for r in a] != [r[1] for r in c]
    assert first.click_probability("user-00000", "item-0000") == second.click_probability(
        "user-00000", "item-0000"
    )


def test_request_shape() -> None:
    population = Population(seed=1)
    start = population.now

    request = population.next_request()

    assert isinstance(request, SimRequest)
    assert request.timestamp == start + 1.0 == population.now
    assert len(request.candidates) == 50
    assert len({c.id for c in request.candidates}) == 50
    assert all(isinstance(c, Candidate) for c in request.candidates)
    assert request.context["user"]["cohort"] in population.cohorts
    assert request.context["user"]["device"] in DEVICES
    assert request.context == {
        "user": {
            "cohort": population.user_cohort(request.user_id),
            "device": request.context["user"]["device"],
        },
        "time": {"daypart": daypart(request.timestamp)},
    }
    candidate = request.candidates[0]
    assert candidate.features["length"] in {"short", "long"}
    assert candidate.category in population.categories
    assert candidate.creator is not None and candidate.creator.startswith("creator-")
    # Candidates are cached, not rebuilt per request
    assert population.candidate(candidate.id) is candidate


def test_names_follow_the_documented_patterns() -> None:
    population = Population(seed=2, n_users=3, n_items=3)

    assert population.categories[0] == "cat-00"
    assert population.cohorts[0] == "cohort-0"
    assert population.user_ids == ("user-00000", "user-00001", "user-00002")
    assert population.item_ids == ("item-0000", "item-0001", "item-0002")


def test_daypart_follows_the_utc_clock() -> None:
    midnight = 1_700_006_400.0  # 2023-11-15 00:00 UTC
    assert midnight % 86_400 == 0
    assert [daypart(midnight + h * 3600) for h in (0, 5, 6, 11, 12, 17, 18, 23)] == [
        "night",
        "night",
        "morning",
        "morning",
        "afternoon",
        "afternoon",
        "evening",
        "evening",
    ]
    # Given an hour per request, every daypart shows up in the stream
    population = Population(seed=3, seconds_per_request=3600.0)
    seen = {population.next_request().context["time"]["daypart"] for _ in range(24)}
    assert seen == set(DAYPARTS)


def test_interactions_count_up_each_time_a_user_is_served() -> None:
    population = Population(seed=4, n_users=1, new_user_rate=0.0)
    before = population.interactions("user-00000")
    assert before >= 1  # initial users come with history

    counts = [population.next_request().interactions for _ in range(5)]

    assert counts == [before, before + 1, before + 2, before + 3, before + 4]
    assert population.interactions("user-00000") == before + 5


def test_invalid_parameters_are_rejected() -> None:
    with pytest.raises(ValueError, match="candidates"):
        Population(candidates=0)
    with pytest.raises(ValueError, match="new_user_rate"):
        Population(new_user_rate=1.5)
    with pytest.raises(ValueError, match="base_ctr"):
        Population(base_ctr=0.0)


# -- Population: ground truth ----------------------------------------------------------------


def test_click_probabilities_are_in_range_and_favourites_dominate() -> None:
    # Given a population and the full user x item probability table
    population = Population(seed=11, n_users=400)
    items = population.item_ids
    categories = np.array([population.candidate(i).category for i in items])
    table = np.stack([population.click_probabilities(u, items) for u in population.user_ids])

    # Then every probability is a real, capped probability
    assert table.min() > 0.0
    assert table.max() <= MAX_PROBABILITY

    # And each cohort's users click their favourite categories far more than the rest
    cohorts = np.array([population.user_cohort(u) for u in population.user_ids])
    ratios = []
    for cohort in population.cohorts:
        favourites = population.favourite_categories(cohort)
        assert 2 <= len(favourites) <= 3
        is_favourite = np.isin(categories, favourites)
        rows = table[cohorts == cohort]
        ratios.append(rows[:, is_favourite].mean() / rows[:, ~is_favourite].mean())
    assert min(ratios) > 5.0
    assert 8.0 < float(np.mean(ratios)) < 12.0  # 3.0 / 0.3 = 10, blurred by the noise


def test_click_probability_matches_the_formula_inputs() -> None:
    population = Population(seed=12)
    user, item = "user-00010", "item-0020"

    single = population.click_probability(user, item)
    batch = population.click_probabilities(user, [item, item])

    assert batch.tolist() == [single, single]
    assert population.expected_clicks(user, [item, item]) == pytest.approx(2 * single)


def test_empirical_click_rate_matches_click_probability() -> None:
    # Given one request's candidates and a fixed click rng
    population = Population(seed=13)
    request = population.next_request()
    ids = [c.id for c in request.candidates[:5]]
    truth = population.click_probabilities(request.user_id, ids)
    rng = np.random.default_rng(99)
    draws = 20_000

    # When the same slate is shown many times
    counts = np.zeros(len(ids))
    for _ in range(draws):
        counts += population.clicks(request.user_id, ids, rng)

    # Then each item's click frequency is within 4.5 binomial standard deviations of the truth
    sigma = np.sqrt(truth * (1.0 - truth) / draws)
    assert np.all(np.abs(counts / draws - truth) < 4.5 * sigma)


def test_oracle_slate_is_top_k_and_beats_random_slates() -> None:
    # Given a stream and a way to draw random slates
    population = Population(seed=21)
    rng = np.random.default_rng(5)
    k, n = 5, 2_000
    oracle_clicks = random_clicks = 0.0

    for _ in range(n):
        request = population.next_request()
        # When the oracle and a uniformly random policy each choose k items
        oracle = population.oracle_slate(request.user_id, request.candidates, k)
        ids = [c.id for c in request.candidates]
        randomly = [ids[i] for i in rng.choice(len(ids), size=k, replace=False)]
        oracle_clicks += population.expected_clicks(request.user_id, oracle)
        random_clicks += population.expected_clicks(request.user_id, randomly)

        # Then the oracle's items are exactly the k most likely, best first
        probabilities = population.click_probabilities(request.user_id, ids)
        chosen = population.click_probabilities(request.user_id, oracle)
        rest = [p for i, p in zip(ids, probabilities, strict=True) if i not in oracle]
        assert len(oracle) == len(set(oracle)) == k
        assert list(chosen) == sorted(chosen, reverse=True)
        assert chosen.min() >= max(rest)

    oracle_ctr, random_ctr = oracle_clicks / (n * k), random_clicks / (n * k)
    assert 0.05 < random_ctr < 0.15
    assert oracle_ctr >= 2.0 * random_ctr


# -- Population: arrivals --------------------------------------------------------------------


def test_new_users_arrive_fresh_at_the_configured_rate() -> None:
    # Given a 5% new-user rate
    rate, n = 0.05, 20_000
    population = Population(seed=31, new_user_rate=rate)
    initial_users = set(population.user_ids)

    # When the stream runs
    first_seen: list[SimRequest] = []
    for _ in range(n):
        request = population.next_request()
        if request.user_id not in initial_users and request.interactions == 0:
            first_seen.append(request)

    # Then new users appear about rate * n times, each with no history on arrival
    arrivals = population.n_users - len(initial_users)
    assert len(first_seen) == arrivals
    assert abs(arrivals - rate * n) < 5.0 * math.sqrt(n * rate * (1 - rate))
    assert all(r.user_is_new for r in first_seen)
    assert not population.user_is_new(first_seen[0].user_id)  # served once, no longer new


def test_new_items_join_the_catalog_at_the_simulated_time() -> None:
    # Given a small catalog with frequent arrivals, so new items are sampled quickly
    population = Population(seed=41, n_items=40, candidates=10, new_item_rate=0.05)
    created: dict[str, float] = {}
    first_shown: dict[str, float] = {}

    # When the stream runs, noting which item (if any) each request added
    for _ in range(4_000):
        before = population.n_items
        request = population.next_request()
        if population.n_items == before + 1:
            created[population.item_ids[-1]] = request.timestamp
        for candidate in request.candidates:
            first_shown.setdefault(candidate.id, request.timestamp)

    # Then each new item is stamped with its creation time and only shown from then on
    assert 150 < len(created) < 250
    for item_id, timestamp in created.items():
        candidate = population.candidate(item_id)
        assert candidate.created_at == timestamp == population.created_at(item_id)
        assert item_id not in first_shown or first_shown[item_id] >= timestamp
    assert sum(item_id in first_shown for item_id in created) > 0.9 * len(created)
    newest = population.item_ids[-1]
    assert population.is_new_item(newest, population.now, max_age_hours=48.0)
    assert not population.is_new_item("item-0000", population.now, max_age_hours=1.0)


def test_initial_items_predate_the_start_by_up_to_thirty_days() -> None:
    population = Population(seed=42)
    ages = np.array([population.now - population.created_at(i) for i in population.item_ids])

    assert ages.min() > 0.0
    assert ages.max() <= 30 * 86_400.0
    assert ages.max() > 25 * 86_400.0


# -- NewsScenario ----------------------------------------------------------------------------


def _news_context(name: str, time_of_day: str) -> dict[str, dict[str, str]]:
    return {"user": {"name": name}, "time": {"time_of_day": time_of_day}}


EXPECTED_LIKES = {
    ("Tom", "morning"): "politics",
    ("Tom", "afternoon"): "music",
    ("Anna", "morning"): "sports",
    ("Anna", "afternoon"): "politics",
}


def test_news_reward_table_is_exactly_the_tutorial() -> None:
    news = NewsScenario()
    articles = [c.id for c in news.candidates()]
    assert articles == ["politics", "sports", "music", "food", "finance", "health", "camping"]
    assert all(c.category == c.id and dict(c.features) == {} for c in news.candidates())

    for (name, time_of_day), liked in EXPECTED_LIKES.items():
        context = _news_context(name, time_of_day)
        assert news.best(context) == liked
        rewards = {article: news.reward(context, article) for article in articles}
        assert rewards == {article: float(article == liked) for article in articles}


def test_news_contexts_are_uniform_over_users_and_times() -> None:
    news = NewsScenario()
    rng = np.random.default_rng(3)
    n = 8_000

    counts: dict[tuple[str, str], int] = {}
    for _ in range(n):
        context = news.context(rng)
        key = (context["user"]["name"], context["time"]["time_of_day"])
        counts[key] = counts.get(key, 0) + 1

    assert set(counts) == set(itertools.product(("Tom", "Anna"), ("morning", "afternoon")))
    assert all(abs(c - n / 4) < 5 * math.sqrt(n * 0.25 * 0.75) for c in counts.values())


def test_news_rejects_unknown_contexts() -> None:
    with pytest.raises(ValueError):
        NewsScenario().best(_news_context("Bob", "morning"))


def test_epsilon_greedy_ceiling() -> None:
    assert NewsScenario.epsilon_greedy_ceiling(0.2) == pytest.approx(0.8 + 0.2 / 7)
    assert round(NewsScenario.epsilon_greedy_ceiling(0.2), 3) == 0.829
    assert NewsScenario.epsilon_greedy_ceiling(0.0) == 1.0
    assert NewsScenario.epsilon_greedy_ceiling(1.0) == pytest.approx(1 / 7)

    # Given a perfect model explored with epsilon-greedy at e = 0.2
    news, rng, n, epsilon = NewsScenario(), np.random.default_rng(8), 20_000, 0.2
    articles = [c.id for c in news.candidates()]
    total = 0.0
    for _ in range(n):
        context = news.context(rng)
        explore = rng.random() < epsilon
        chosen = articles[int(rng.integers(7))] if explore else news.best(context)
        total += news.reward(context, chosen)

    # Then its simulated CTR sits at the ceiling
    assert abs(total / n - 0.8286) < 0.015
