"""``bandit.simulate.taste_world``: personal tastes the context does not reveal, clustered items."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2_contingency

from bandit.simulate.simulation import MAX_PROBABILITY
from bandit.simulate.taste_world import COHORTS, LIKED_LIFT, TasteWorld

SMALL = {"n_items": 2_000, "n_users": 1_500}


def test_the_same_seed_gives_the_same_world_and_stream() -> None:
    one, two, other = (
        TasteWorld(seed=3, **SMALL),
        TasteWorld(seed=3, **SMALL),
        TasteWorld(seed=4, **SMALL),
    )
    first = [one.next_request() for _ in range(20)]
    assert first == [two.next_request() for _ in range(20)]
    assert [r.user_id for r in first] != [other.next_request().user_id for _ in range(20)]


def test_the_default_catalog_is_large_and_requests_draw_from_all_of_it() -> None:
    world = TasteWorld(seed=1)
    assert world.n_items == 10_000
    seen = {c.id for _ in range(2_000) for c in world.next_request().candidates}
    assert len(seen) > 9_000  # 40,000 draws from 10,000 items reach nearly every one


def test_tastes_are_independent_of_the_cohort() -> None:
    # Given many users, the cohort each request names, and the clusters each user likes
    world = TasteWorld(seed=2, n_items=500, n_users=5_000)
    cohorts = {}
    for _ in range(20_000):
        request = world.next_request()
        cohorts[request.user_id] = COHORTS.index(request.context["user"]["cohort"])
    table = np.zeros((len(COHORTS), 24))
    for user_id, cohort in cohorts.items():  # each user once
        for cluster in {world.cluster_of(i) for i in world.liked_item_ids(user_id, world.catalog)}:
            table[cohort, cluster] += 1
    assert table.sum() > 4_000 * 2
    # Then a chi-square test finds no dependence between cohort and taste
    assert chi2_contingency(table).pvalue > 0.001


def test_context_alone_falls_far_short_of_knowing_the_taste() -> None:
    world = TasteWorld(seed=5, **SMALL)
    oracle = context = history = 0.0
    for _ in range(3_000):
        request = world.next_request()
        user, candidates = request.user_id, request.candidates
        oracle += world.expected_clicks(user, world.oracle_slate(user, candidates, 1))
        context += world.expected_clicks(
            user, world.context_oracle_slate(request.context, candidates, 1)
        )
        liked = world.liked_item_ids(user, candidates)
        knows_taste = world.context_oracle_slate(
            request.context, [c for c in candidates if c.id in liked] or list(candidates), 1
        )
        history += world.expected_clicks(user, knows_taste)
    # The best context-only policy earns well under half the oracle; knowing the taste, nearly all
    assert context / oracle < 0.5
    assert history / oracle > 0.9


def test_items_of_a_cluster_are_liked_by_the_same_users() -> None:
    world = TasteWorld(seed=6, **SMALL)
    rng = np.random.default_rng(0)
    items = [world.catalog[i] for i in rng.choice(world.n_items, 200, replace=False)]
    users = [world.next_request().user_id for _ in range(400)]
    probabilities = np.array([world.click_probabilities(u, [c.id for c in items]) for u in users])
    clusters = np.array([world.cluster_of(c.id) for c in items])
    liked = probabilities > np.median(probabilities, axis=0)  # above the item's median user
    same = different = 0.0
    pairs = Counter()
    for a in range(len(items)):
        for b in range(a + 1, len(items)):
            agreement = float(np.mean(liked[:, a] & liked[:, b]) / max(np.mean(liked[:, a]), 1e-9))
            kind = "same" if clusters[a] == clusters[b] else "different"
            pairs[kind] += 1
            if kind == "same":
                same += agreement
            else:
                different += agreement
    # Users who like one item of a cluster like its other items far more often than others'
    assert pairs["same"] > 100
    assert (same / pairs["same"]) > 1.5 * (different / pairs["different"])


def test_categories_hint_at_the_hidden_cluster() -> None:
    world = TasteWorld(seed=7, n_items=5_000, n_users=10, category_fidelity=0.6)
    by_cluster: dict[int, Counter[str]] = {}
    for item in world.catalog:
        by_cluster.setdefault(world.cluster_of(item.id), Counter())[str(item.category)] += 1
    modal = sum(c.most_common(1)[0][1] for c in by_cluster.values()) / world.n_items
    assert 0.55 < modal < 0.75  # 0.6 faithful, plus random draws that land on it


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_tastes=st.integers(1, 30),
    base_ctr=st.floats(0.001, MAX_PROBABILITY / LIKED_LIFT),
)
def test_probabilities_are_bounded_and_the_oracle_orders_them(
    seed: int, n_tastes: int, base_ctr: float
) -> None:
    world = TasteWorld(
        seed=seed, n_items=300, n_users=50, n_tastes=n_tastes, tastes_per_user=1, base_ctr=base_ctr
    )
    request = world.next_request()
    ids = [c.id for c in request.candidates]
    probabilities = world.click_probabilities(request.user_id, ids)
    assert ((probabilities > 0) & (probabilities <= MAX_PROBABILITY)).all()
    slate = world.oracle_slate(request.user_id, request.candidates, 5)
    ordered = world.click_probabilities(request.user_id, slate)
    assert list(ordered) == sorted(ordered, reverse=True)
    assert ordered[0] == probabilities.max()


def test_the_category_oracle_sits_between_context_alone_and_the_oracle() -> None:
    # Given one stream, three references that know more and more
    world = TasteWorld(seed=3, n_users=200, base_ctr=0.06)
    totals = {"context": 0.0, "category": 0.0, "oracle": 0.0}
    for _ in range(3000):
        request = world.next_request()
        user, candidates = request.user_id, request.candidates
        slates = {
            "context": world.context_oracle_slate(request.context, candidates, 1),
            "category": world.category_oracle_slate(user, candidates, 1),
            "oracle": world.oracle_slate(user, candidates, 1),
        }
        for name, slate in slates.items():
            totals[name] += float(world.click_probabilities(user, slate)[0])
    # Then knowing tastes through categories beats the context, and falls short of the truth
    assert totals["context"] * 1.2 < totals["category"] < totals["oracle"] * 0.8


def test_exposure_skew_gives_a_head_and_a_long_tail_and_leaves_the_rest_alone() -> None:
    flat, skewed = TasteWorld(seed=4), TasteWorld(seed=4, exposure_skew=1.0)
    counts: Counter[str] = Counter()
    for _ in range(500):
        counts.update(c.id for c in skewed.next_request().candidates)
    top_tenth = sum(n for _, n in counts.most_common(skewed.n_items // 10))
    assert top_tenth > 0.5 * sum(counts.values())  # a Zipf head: most offers go to 10%
    assert [c.category for c in flat.catalog] == [c.category for c in skewed.catalog]
    with pytest.raises(ValueError, match="exposure_skew"):
        TasteWorld(exposure_skew=-1.0)
