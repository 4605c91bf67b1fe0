"""Product metrics from hand-built decision logs: every number worked out by hand."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bandit.decision_log import (
    DecisionRecord,
    ExplorationLog,
    LoggedCandidate,
    LoggedReward,
    LoggedSlot,
)
from bandit.evaluate.metrics import MetricOptions, by_segment, compute, windows
from bandit.evaluate.metrics_exposure import (
    PopularitySoFar,
    gini,
    long_tail_share,
    p95,
    top_categories,
)
from bandit.spec import PolicySpec, RewardSpec

SPEC = PolicySpec(
    name="shop",
    rewards=RewardSpec(types={"click": 1.0, "purchase": 5.0}, aggregation="max", wait_seconds=600),
)
# item -> (category, creator)
CATALOG = {
    "a": ("x", "c1"),
    "b": ("x", "c1"),
    "c": ("y", "c2"),
    "d": ("z", "c3"),
    "e": ("z", "c4"),
    "f": ("y", None),
}
Shown = str | tuple[str, float]  # an item id (probability 1) or (id, probability)
Posted = tuple[str, str] | tuple[str, str, float] | LoggedReward


def event(
    at: float,
    shown: Sequence[Shown],
    rewards: Sequence[Posted] = (),
    *,
    user: str | None = None,
    segment: str = "warm",
    offered: Sequence[str] = (),
    activated: bool = True,
) -> DecisionRecord:
    """A shown event at ``at``: ``rewards`` are (item, type[, value]) posted 5 s later."""
    slots = [(s, 1.0) if isinstance(s, str) else s for s in shown]
    ids = [item for item, _ in slots] + [i for i in offered if i not in {s for s, _ in slots}]
    logged = [
        r
        if isinstance(r, LoggedReward)
        else LoggedReward(
            item_id=r[0], type=r[1], value=r[2] if len(r) > 2 else None, timestamp=at + 5
        )
        for r in rewards
    ]
    return DecisionRecord(
        event_id=f"evt-{at}",
        policy="shop",
        timestamp=at,
        user_id=user,
        segment=segment,
        candidates=[
            LoggedCandidate(id=i, category=CATALOG[i][0], creator=CATALOG[i][1]) for i in ids
        ],
        slate=[
            LoggedSlot(item_id=item, position=n, probability=p, explored=False)
            for n, (item, p) in enumerate(slots, start=1)
        ],
        rewards=logged,
        seed=0,
        exploration=ExplorationLog(budget=0.05, rate=0.05),
        activated=activated,
    )


def test_ctr_and_conversion_count_only_rewards_learning_would_use() -> None:
    late = LoggedReward(item_id="b", type="click", timestamp=6.0, late=True)
    after_wait = LoggedReward(item_id="b", type="click", timestamp=601.0)
    log = [
        event(0, ["a", "b"], [("a", "click"), late, after_wait, ("f", "click"), ("b", "share")]),
        event(10, ["c", "d"], [("c", "click"), ("c", "purchase"), ("d", "click", 0.0)]),
        event(20, ["a", "e"], [("e", "purchase")]),
        event(30, ["f"], [("f", "click")], activated=False),  # never shown: not counted
    ]
    metrics = compute(log, SPEC)
    assert (metrics.n_events, metrics.n_slots) == (3, 6)
    assert metrics.ctr == pytest.approx(2 / 6)
    assert metrics.conversion == pytest.approx(2 / 3)


def test_without_a_click_type_any_positive_reward_is_a_click() -> None:
    spec = PolicySpec(name="video", rewards=RewardSpec(types={"watch_seconds": 0.01}))
    log = [event(0, ["a", "b", "c"], [("a", "watch_seconds", 30.0), ("b", "watch_seconds", 0.0)])]
    assert compute(log, spec).ctr == pytest.approx(1 / 3)
    assert compute(log, spec).conversion == pytest.approx(1.0)  # watch time is its only goal
    no_goal = MetricOptions(conversion_types=frozenset())
    assert compute(log, spec, options=no_goal).conversion is None


def test_coverage_is_items_shown_over_items_offered() -> None:
    log = [event(0, ["a", "b"], offered=["d", "e"]), event(1, ["c", "a"], offered=["e"])]
    metrics = compute(log, SPEC)
    assert (metrics.exposure.items_shown, metrics.exposure.items_offered) == (3, 5)
    assert metrics.coverage == pytest.approx(3 / 5)


def test_diversity_is_the_mean_share_of_slot_pairs_with_different_categories() -> None:
    # x, x, y -> 1 - 2/6 = 2/3; x, y -> 1; a one-slot slate has no pairs and is left out
    log = [event(0, ["a", "b", "c"]), event(1, ["a", "c"]), event(2, ["d"])]
    assert compute(log, SPEC).diversity == pytest.approx((2 / 3 + 1) / 2)


def test_serendipity_case_by_case_in_time_order() -> None:
    options = MetricOptions(top_categories=1, popular_items=1)
    log = [
        event(0, ["a"], [("a", "click")], user="u"),  # no tastes, a never shown: serendipitous
        event(1, ["b"], [("b", "click")], user="u"),  # x is u's top category: familiar
        event(2, ["c"], [("c", "click")], user="u"),  # y new to u, c never shown: serendipitous
        event(3, ["a"], [("a", "click")], user="v"),  # a is the most shown item: familiar
        event(4, ["d", "e"], [("d", "click")], user="u"),  # d serendipitous; e unrewarded
    ]
    metrics = compute(log, SPEC, options=options)
    assert metrics.successes == 5
    assert metrics.serendipity == pytest.approx(3 / 5)
    # history before the window still counts: counting only the last event, d is serendipitous
    assert compute(log, SPEC, since=4, options=options).serendipity == pytest.approx(1.0)
    assert compute(log, SPEC, until=2, options=options).serendipity == pytest.approx(1 / 2)


def test_filter_bubble_is_cosine_of_slate_and_past_rewarded_categories() -> None:
    log = [
        event(0, ["a"], [("a", "click")], user="u"),
        event(1, ["b", "c"], [("b", "click"), ("c", "click")], user="u"),  # {x:1,y:1} vs {x:1}
        event(2, ["a", "c"], user="u"),  # {x:1,y:1} vs {x:2,y:1}
        event(3, ["d"], user="new"),  # no history: left out
    ]
    expected = (1 / math.sqrt(2) + 3 / (math.sqrt(2) * math.sqrt(5))) / 2
    assert compute(log, SPEC).filter_bubble == pytest.approx(expected)


def test_cold_start_compares_the_coldest_segment_with_the_rest() -> None:
    log = [
        event(0, ["a", "b"], [("a", "click")], segment="cold"),
        event(1, ["c", "d"], segment="cold"),
        event(2, ["a", "b"], [("a", "click")], segment="warm"),
        event(3, ["c", "d"], [("d", "click")], segment="mature"),
    ]
    metrics = compute(log, SPEC)
    assert (metrics.cold_ctr, metrics.warm_ctr) == (pytest.approx(0.25), pytest.approx(0.5))
    assert metrics.cold_start_ratio == pytest.approx(0.5)
    assert compute(log, SPEC, segment="cold").cold_start_ratio is None
    segments = by_segment(log, SPEC)
    assert {name: m.ctr for name, m in segments.items()} == {
        "cold": 0.25,
        "mature": 0.5,
        "warm": 0.5,
    }


def test_creator_gini_counts_offered_creators_never_shown() -> None:
    # slots per creator: c1 3, c2 1, c3 0, c4 0 -> Gini of [0, 0, 1, 3] = 0.625
    log = [event(0, ["a", "b"], offered=["d", "e"]), event(1, ["a", "c"])]
    exposure = compute(log, SPEC).exposure
    assert (exposure.creators, exposure.creator_gini) == (4, pytest.approx(0.625))


def test_long_tail_share_is_impressions_outside_the_top_fifth_of_items() -> None:
    # 6 items shown: the head is the 2 most shown (a: 4, b: 2); the tail got 4 of 10
    log = [
        event(t, s)
        for t, s in enumerate([["a", "b", "c"], ["a", "b", "d"], ["a", "e"], ["a", "f"]])
    ]
    assert compute(log, SPEC).exposure.long_tail_share == pytest.approx(0.4)
    assert long_tail_share({"a": 3, "b": 0}) == 0.0  # a single shown item is the whole head
    assert long_tail_share({}) is None


def test_item_popularity_separates_appeal_from_exposure() -> None:
    # a: shown twice at p=0.5, clicked once, offered 4 times -> observed 0.5, corrected 1/0.5/4
    # b: shown once at p=1, clicked and bought (max: 5), offered 4 times -> 1.0, 5/4
    log = [
        event(0, [("a", 0.5)], [("a", "click")], offered=["b"]),
        event(1, [("a", 0.5)], offered=["b"]),
        event(2, ["b"], [("b", "click"), ("b", "purchase")], offered=["a"]),
        event(3, ["c"], offered=["a", "b"]),
    ]
    top = compute(log, SPEC).exposure.top_items
    assert [(i.item_id, i.impressions, i.clicks, i.candidate_events) for i in top] == [
        ("b", 1, 1, 4),
        ("a", 2, 1, 4),
        ("c", 1, 0, 1),
    ]
    assert [(i.observed_ctr, i.corrected) for i in top] == [(1.0, 1.25), (0.5, 0.5), (0.0, 0.0)]
    assert len(compute(log, SPEC, options=MetricOptions(top_items=1)).exposure.top_items) == 1


def test_p95_latency_is_nearest_rank_and_absent_without_latencies() -> None:
    assert compute([], SPEC, latencies_ms=[float(v) for v in range(20, 0, -1)]).p95_latency_ms == 19
    assert p95([250.0]) == 250.0
    assert compute([], SPEC).p95_latency_ms is None


def test_empty_log_has_no_rates() -> None:
    metrics = compute([], SPEC)
    assert metrics.n_events == 0
    assert [metrics.ctr, metrics.coverage, metrics.diversity, metrics.serendipity] == [None] * 4
    assert metrics.exposure.creator_gini is None


def test_windows_are_aligned_skip_empty_ones_and_keep_history() -> None:
    log = [event(0, ["a"]), event(10, ["b"]), event(3600, ["c"]), event(7300, ["d"])]
    found = [(w.start, w.end, w.metrics.n_events) for w in windows(log, SPEC, 3600)]
    assert found == [(0, 3600, 2), (3600, 7200, 1), (7200, 10800, 1)]
    sparse = [(w.start, w.metrics.n_events) for w in windows([log[0], log[3]], SPEC, 3600)]
    assert sparse == [(0, 1), (7200, 1)]
    assert [w.metrics.n_events for w in windows(log, SPEC, 3600, segment="cold")] == []
    with pytest.raises(ValueError, match="positive"):
        list(windows(log, SPEC, 0))


def test_records_out_of_time_order_are_refused() -> None:
    with pytest.raises(ValueError, match="oldest first"):
        compute([event(5, ["a"]), event(1, ["b"])], SPEC)


def test_top_categories_and_popularity_so_far_include_ties() -> None:
    assert top_categories({"x": 3, "y": 1, "z": 1}, 2) == {"x", "y", "z"}
    assert top_categories({}, 3) == set()
    seen = PopularitySoFar(k=2)
    for item in ["a", "b", "c", "c"]:
        seen.show(item)
    threshold = seen.threshold()
    assert threshold == 1
    assert [seen.is_popular(i, threshold) for i in "abcd"] == [True, True, True, False]


def test_gini_of_known_distributions() -> None:
    assert gini([5, 5, 5]) == 0.0
    assert gini([0, 0, 0, 1]) == pytest.approx(0.75)
    assert gini([1, 3]) == pytest.approx(0.25)
    assert gini([]) == 0.0


@given(st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=50))
def test_gini_is_in_zero_to_one(values: list[int]) -> None:
    assert 0.0 <= gini(values) < 1.0
    assert gini(values) <= 1.0 - 1.0 / len(values) + 1e-12


@given(st.lists(st.lists(st.sampled_from(sorted(CATALOG)), min_size=1, max_size=4), max_size=12))
def test_coverage_and_long_tail_are_shares(slates: list[list[str]]) -> None:
    log = [
        event(t, list(dict.fromkeys(slate)), offered=sorted(CATALOG)[:3])
        for t, slate in enumerate(slates)
    ]
    metrics = compute(log, SPEC)
    if log:
        assert metrics.coverage is not None and 0.0 < metrics.coverage <= 1.0
        assert metrics.exposure.long_tail_share is not None
        assert 0.0 <= metrics.exposure.long_tail_share < 1.0


@given(st.lists(st.sampled_from("abcdef"), max_size=40), st.integers(min_value=1, max_value=4))
def test_popularity_so_far_matches_its_definition(shows: list[str], k: int) -> None:
    seen = PopularitySoFar(k)
    for item in shows:
        seen.show(item)
    counts = Counter(shows)
    threshold = seen.threshold()
    for item in "abcdef":
        ahead = sum(1 for other in counts.values() if other > counts[item])
        assert seen.is_popular(item, threshold) == (counts[item] > 0 and ahead < k)
