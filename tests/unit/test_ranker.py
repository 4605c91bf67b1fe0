"""The rank decision: budgets, kill switch, discovery, exclusions, cold start, replay."""

from __future__ import annotations

import pytest

from bandit.domain import Candidate
from bandit.errors import FieldError
from bandit.serve.budget import ExplorationBudget
from bandit.serve.coldstart import ItemStats, PopularityPrior
from bandit.serve.ranker import Ranker, RankRequest, budget_for, build_model
from bandit.spec import PolicySpec, parse_spec

NOW = 1_700_000_000.0


def candidates(n: int = 10) -> list[Candidate]:
    return [
        Candidate(f"item-{i}", {"length": "short"}, category=f"cat-{i % 3}", creator=f"c-{i % 4}")
        for i in range(n)
    ]


def spec(**overrides: object) -> PolicySpec:
    data: dict[str, object] = {"name": "test", "slate_size": 4}
    data.update(overrides)
    return parse_spec(data)


def ranker_for(policy: PolicySpec, prior: PopularityPrior | None = None) -> Ranker:
    return Ranker(policy, prior=prior, clock=lambda: NOW)


def request(event: str = "evt-1", **overrides: object) -> RankRequest:
    fields: dict[str, object] = {
        "event_id": event,
        "context": {"user": {"cohort": "a"}},
        "candidates": candidates(),
        "timestamp": NOW,
    }
    fields.update(overrides)
    return RankRequest(**fields)  # type: ignore[arg-type]


def test_zero_budget_is_pure_exploitation_with_probability_one() -> None:
    # Given a policy whose budget is 0 but which reserves a discovery slot
    policy = spec(exploration={"budget": 0.0, "discovery_positions": [4]})
    ranker = ranker_for(policy)
    for event in range(50):
        result = ranker.rank(request(f"evt-{event}"))
        # Then every slot is the greedy one, logged with probability 1, never exploratory
        assert [s.probability for s in result.slots] == [1.0] * 4
        assert not any(s.explored for s in result.slots)
        assert result.rate == 0.0
        assert result.discovery_positions == []


def test_discovery_slot_always_explores_and_is_reported() -> None:
    policy = spec(exploration={"budget": 0.3, "discovery_positions": [2]})
    ranker = ranker_for(policy)
    result = ranker.rank(request())
    assert result.slots[1].explored
    assert result.discovery_positions == [2]
    assert result.slots[1].probability == pytest.approx(1 / 9)  # uniform over 9 allowed


def test_excluded_items_never_appear_and_caps_hold() -> None:
    policy = spec(exploration={"budget": 1.0}, diversity={"max_per_category": 1})
    ranker = ranker_for(policy)
    for event in range(200):
        result = ranker.rank(request(f"evt-{event}", exclude=["item-0", "item-3"]))
        shown = [s.item_id for s in result.slots]
        assert "item-0" not in shown and "item-3" not in shown
        assert len(shown) == 3  # three categories, at most one each


def test_requested_slate_size_is_capped_by_candidates() -> None:
    ranker = ranker_for(spec())
    result = ranker.rank(request(candidates=candidates(2), slate_size=10))
    assert len(result.slots) == 2


def test_bad_candidates_are_rejected_naming_the_field() -> None:
    ranker = ranker_for(spec())
    with pytest.raises(FieldError) as empty:
        ranker.rank(request(candidates=[]))
    assert empty.value.field == "candidates"
    with pytest.raises(FieldError) as duplicate:
        ranker.rank(request(candidates=[Candidate("a"), Candidate("a")]))
    assert "unique" in duplicate.value.message
    with pytest.raises(FieldError) as nan:
        ranker.rank(request(context={"user": {"age": float("nan")}}))
    assert nan.value.field == "context.user.age"


def test_segment_follows_user_interactions() -> None:
    ranker = ranker_for(spec())
    assert ranker.rank(request(interactions=0)).segment == "cold"
    assert ranker.rank(request(interactions=10)).segment == "warm"
    assert ranker.rank(request(interactions=500)).segment == "mature"


def test_same_event_and_state_replays_the_same_slate() -> None:
    policy = spec(exploration={"budget": 0.5})
    first = ranker_for(policy).rank(request("evt-replay"))
    second = ranker_for(policy).rank(request("evt-replay"))
    assert first.slots == second.slots
    assert first.seed == second.seed


def test_record_carries_the_served_probabilities() -> None:
    policy = spec(exploration={"budget": 0.5})
    result = ranker_for(policy).rank(request(exclude=["item-9"], user_id="u1"))
    record = result.record(policy, model_version=3)
    assert [(s.item_id, s.probability, s.explored) for s in record.slate] == [
        (s.item_id, s.probability, s.explored) for s in result.slots
    ]
    assert record.model_version == 3
    assert record.constraints.exclude == ["item-9"]
    assert record.user_id == "u1"
    assert len(record.candidates) == 10


def test_new_policy_ranks_by_popularity_prior() -> None:
    # Given a fresh model and counters where item-7 earns the most per impression
    prior = PopularityPrior(
        {"item-7": ItemStats(200, 60), "item-2": ItemStats(200, 45), "item-5": ItemStats(200, 1)}
    )
    ranker = ranker_for(spec(exploration={"budget": 0.0}), prior=prior)
    # Then the slate starts with the popular items, unseen ones at the global rate next,
    # and the unpopular item last
    result = ranker.rank(request(interactions=100, slate_size=10))
    shown = [s.item_id for s in result.slots]
    assert shown[:2] == ["item-7", "item-2"]
    assert shown[-1] == "item-5"


def test_new_item_boost_raises_exploration_probability_exactly() -> None:
    # Given one new item among ten, boost 9, and a slot reserved for discovery
    items = [Candidate(f"old-{i}", created_at=NOW - 30 * 86400) for i in range(9)]
    items.append(Candidate("new-item", created_at=NOW - 3600))
    policy = spec(
        slate_size=1,
        exploration={"budget": 0.5, "discovery_positions": [1]},
        cold_start={"new_item": {"max_age_hours": 48, "max_impressions": None, "boost": 9.0}},
    )
    ranker = ranker_for(policy)
    result = ranker.rank(request(candidates=items))
    slot = result.slots[0]
    # Then the exploration distribution gives the new item 9/18 and each old item 1/18
    expected = 0.5 if slot.item_id == "new-item" else 1 / 18
    assert slot.probability == pytest.approx(expected)
    shown_new = sum(
        ranker.rank(request(f"evt-{i}", candidates=items)).slots[0].item_id == "new-item"
        for i in range(2000)
    )
    assert 900 < shown_new < 1100


def test_budget_helpers_follow_the_spec() -> None:
    policy = spec(exploration={"budget": 0.2, "window_seconds": 600, "bucket_seconds": 60})
    budget = budget_for(policy, clock=lambda: NOW)
    assert isinstance(budget, ExplorationBudget)
    assert budget.targets == {"cold": 0.2, "warm": 0.2, "mature": 0.2}
    assert budget.window_seconds == 600
    assert build_model(policy).explore is False
    explore_spec = spec(
        exploration={"algorithm": "vw_pmf"},
        vw={"args": ["--cb_type", "mtr", "-q", "CI"], "explore_args": ["--cover", "3"]},
    )
    assert build_model(explore_spec).explore is True
