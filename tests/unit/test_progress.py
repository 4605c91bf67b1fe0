"""Learning progress sums and the "is it learning?" verdict, against direct computation."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.decision_log import (
    Constraints,
    DecisionRecord,
    ExplorationLog,
    LoggedCandidate,
    LoggedReward,
    LoggedSlot,
)
from bandit.evaluate.progress import ProgressSums, event_progress, total, verdict
from bandit.evaluate.sums import Sums
from bandit.spec import RewardSpec

NOW = 1_800_000_000.0
SPEC = RewardSpec(types={"click": 1.0}, aggregation="max", default=0.0)


def record(
    number: int,
    shown: list[tuple[str, float, bool]],
    clicked: set[str],
    *,
    exclude: tuple[str, ...] = (),
    baseline: list[str] | None = None,
    seen: list[int] | None = None,
) -> DecisionRecord:
    """An event over candidates c0..c4 showing ``shown`` (item, probability, explored)."""
    return DecisionRecord(
        event_id=f"evt-{number}",
        policy="p",
        timestamp=NOW + number,
        segment="all",
        candidates=[LoggedCandidate(id=f"c{i}") for i in range(5)],
        slate=[
            LoggedSlot(item_id=item, position=i, probability=p, explored=explored)
            for i, (item, p, explored) in enumerate(shown, start=1)
        ],
        rewards=[
            LoggedReward(item_id=item, type="click", value=1.0, timestamp=NOW + number)
            for item in sorted(clicked)
        ],
        seed=number,
        exploration=ExplorationLog(budget=0.25, rate=0.25),
        constraints=Constraints(exclude=list(exclude)),
        baseline=baseline,
        seen=seen,
    )


events = st.lists(
    st.tuples(
        st.permutations([f"c{i}" for i in range(5)]),
        st.lists(st.floats(0.01, 1.0), min_size=2, max_size=2),
        st.lists(st.booleans(), min_size=2, max_size=2),
        st.sets(st.sampled_from([f"c{i}" for i in range(5)])),
    ),
    min_size=1,
    max_size=40,
)


def _records(
    drawn: list[tuple[list[str], list[float], list[bool], set[str]]],
) -> list[DecisionRecord]:
    return [
        record(n, list(zip(order[:2], ps, explored, strict=True)), clicked, baseline=order[2:])
        for n, (order, ps, explored, clicked) in enumerate(drawn)
    ]


@settings(max_examples=60, deadline=None)
@given(events, st.randoms(use_true_random=False))
def test_sums_add_up_to_the_same_estimates_in_any_grouping(drawn: list, rng: random.Random) -> None:
    records = _records(drawn)
    whole = total(event_progress(r, SPEC) for r in records)
    shuffled = records[:]
    rng.shuffle(shuffled)
    cut = rng.randint(0, len(shuffled))
    halves = total(event_progress(r, SPEC) for r in shuffled[:cut]) + total(
        event_progress(r, SPEC) for r in shuffled[cut:]
    )
    for name in ("served", "first", "uniform", "baseline"):
        assert halves.estimate(name) == pytest.approx(whole.estimate(name), nan_ok=True)
    assert halves.counts == pytest.approx(whole.counts)
    stored = ProgressSums.from_dict(whole.as_dict())
    assert stored.estimate("uniform") == pytest.approx(whole.estimate("uniform"), nan_ok=True)


@settings(max_examples=60, deadline=None)
@given(events)
def test_each_estimate_is_the_snips_value_computed_by_hand(drawn: list) -> None:
    records = _records(drawn)
    sums = total(event_progress(r, SPEC) for r in records)
    firsts = [(r.slate[0].item_id, r.slate[0].probability, r) for r in records]
    rewards = [1.0 if item in {x.item_id for x in r.rewards} else 0.0 for item, _, r in firsts]
    weights = [(1 / 5) / p for _, p, _ in firsts]
    assert sums.estimate("uniform")[0] == pytest.approx(  # type: ignore[index]
        sum(w * x for w, x in zip(weights, rewards, strict=True)) / sum(weights)
    )
    app = [(1 / p if item == r.baseline[0] else 0.0) for item, p, r in firsts]  # type: ignore[index]
    if sum(app):
        assert sums.estimate("baseline")[0] == pytest.approx(  # type: ignore[index]
            sum(w * x for w, x in zip(app, rewards, strict=True)) / sum(app)
        )
    served = [
        1.0 if slot.item_id in {x.item_id for x in r.rewards} else 0.0
        for r in records
        for slot in r.slate
    ]
    assert sums.estimate("served")[0] == pytest.approx(sum(served) / len(served))  # type: ignore[index]
    explored = sum(slot.explored for r in records for slot in r.slate)
    assert sums.realised_share == pytest.approx(explored / len(served))
    assert sums.target_share == pytest.approx(0.25)


def test_the_uniform_pick_is_over_the_candidates_the_first_slot_allowed() -> None:
    # c0 and c1 are excluded: a random first pick is one of three
    sums = event_progress(record(0, [("c2", 0.5, False)], {"c2"}, exclude=("c0", "c1")), SPEC)
    assert sums.estimates["uniform"] == Sums.one((1 / 3) / 0.5, 1.0)
    # The app's first choice that the slot allowed: c1 is excluded, so c3
    sums = event_progress(
        record(1, [("c3", 0.25, True)], {"c3"}, exclude=("c1",), baseline=["c1", "c3"]), SPEC
    )
    assert sums.estimates["baseline"] == Sums.one(4.0, 1.0)


def test_unseen_slots_add_nothing_and_an_unseen_first_slot_leaves_the_first_slot_out() -> None:
    shown = [("c0", 0.5, False), ("c1", 0.5, False)]
    sums = event_progress(record(0, shown, set(), seen=[2]), SPEC)
    assert sums.counts == {"events": 1, "slots": 1}
    assert "first" not in sums.estimates and "uniform" not in sums.estimates


def _policy(first_rate: float, uniform_rate: float, n: int) -> ProgressSums:
    """Sums of ``n`` events whose first slot earned ``first_rate``, logged at p = 1/5 (so that
    the uniform estimate is the same events, weight 1) with ``uniform_rate`` for the random
    pick's events."""
    rng = random.Random(7)
    sums = ProgressSums()
    for _ in range(n):
        earned = 1.0 if rng.random() < first_rate else 0.0
        sums.add("served", Sums.one(1.0, earned))
        sums.add("first", Sums.one(1.0, earned))
        sums.add("uniform", Sums.one(1.0, 1.0 if rng.random() < uniform_rate else 0.0))
        sums.count("events")
        sums.count("slots")
    sums.count("versions", 10)
    return sums


def test_the_verdict_tells_learning_from_random_and_worse_and_too_early() -> None:
    learning = verdict("p", _policy(0.4, 0.1, 1000), "the last 24 h")
    assert learning.state == "learning" and learning.lift is not None and learning.lift[1] > 0
    assert learning.sentence.startswith("Yes, p is learning in the last 24 h: its first slot")
    assert "1,000 events (1,000 slots) learned into 10 model versions" in learning.sentence
    flat = verdict("p", _policy(0.2, 0.2, 1000), "the last 24 h")
    assert flat.state == "not_learning", flat
    assert flat.sentence.startswith("Not yet: p is no better than a random pick")
    assert verdict("p", _policy(0.05, 0.4, 1000), "w").state == "worse"
    assert verdict("p", _policy(0.2, 0.2, 50), "w").state == "too_early"
    assert verdict("p", _policy(0.0, 0.0, 500), "w").state == "no_rewards"
    assert verdict("p", ProgressSums(), "w").state == "no_rewards"
