"""Learning from decision records: exact action sets, rewards per slot, warm start."""

from __future__ import annotations

import numpy as np
import pytest

from bandit.decision_log import (
    Constraints,
    DecisionRecord,
    ExplorationLog,
    LoggedCandidate,
    LoggedReward,
    LoggedSlot,
)
from bandit.domain import Candidate
from bandit.learn.learning import learn_record, slot_examples, warm_start
from bandit.serve.ranker import Ranker, RankRequest, build_model
from bandit.spec import parse_spec

NOW = 1_700_000_000.0
SPEC = parse_spec(
    {
        "name": "shop",
        "slate_size": 3,
        "rewards": {"types": {"click": 1.0, "purchase": 5.0}, "aggregation": "max"},
        "diversity": {"max_per_category": 1},
    }
)


def record(rewards: list[LoggedReward] | None = None) -> DecisionRecord:
    categories = ["shoes", "shoes", "hats", "hats", "bags"]
    return DecisionRecord(
        event_id="evt-1",
        policy="shop",
        timestamp=NOW,
        context={"user": {"tier": "gold"}},
        segment="mature",
        candidates=[
            LoggedCandidate(id=f"i{i}", category=category) for i, category in enumerate(categories)
        ],
        slate=[
            LoggedSlot(item_id="i1", position=1, probability=0.8, explored=False),
            LoggedSlot(item_id="i2", position=2, probability=0.1, explored=True),
            LoggedSlot(item_id="i4", position=3, probability=1.0, explored=False),
        ],
        rewards=rewards or [],
        seed=1,
        exploration=ExplorationLog(budget=0.1, rate=0.1),
        constraints=Constraints(exclude=["i3"], max_per_category=1),
    )


def test_each_slot_learns_over_exactly_the_candidates_it_was_drawn_from() -> None:
    examples = slot_examples(record(), SPEC)
    # Slot 1: all but the excluded i3. Slot 2: shoes are capped, i1 taken. Slot 3: only bags left.
    assert [len(e.actions) for e in examples] == [4, 2, 1]
    assert [e.actions[e.chosen] for e in examples] == [
        "|I id=i1 category=shoes",
        "|I id=i2 category=hats",
        "|I id=i4 category=bags",
    ]
    assert [e.probability for e in examples] == [0.8, 0.1, 1.0]
    assert all(e.shared == "shared |Cuser tier=gold" for e in examples)


def test_rewards_are_valued_aggregated_and_defaulted_per_slot() -> None:
    rewards = [
        LoggedReward(item_id="i1", type="click", timestamp=NOW + 5),
        LoggedReward(item_id="i1", type="purchase", timestamp=NOW + 60),
        LoggedReward(item_id="i2", type="click", timestamp=NOW + 10_000),  # after the wait
        LoggedReward(item_id="i4", type="click", timestamp=NOW + 5, late=True),  # flagged late
        LoggedReward(item_id="i0", type="click", timestamp=NOW + 5),  # not shown
    ]
    examples = slot_examples(record(rewards), SPEC)
    assert [e.reward for e in examples] == [5.0, 0.0, 0.0]


def test_learning_an_event_counts_its_slots_once() -> None:
    model = build_model(SPEC)
    assert learn_record(model, record(), SPEC) == 3
    assert (model.examples_learned, model.events_learned) == (3, 1)


def test_a_record_contradicting_its_constraints_is_refused() -> None:
    broken = record().model_copy(
        update={
            "slate": [
                LoggedSlot(item_id="i0", position=1, probability=0.5, explored=False),
                LoggedSlot(item_id="i1", position=2, probability=0.5, explored=False),
            ]
        }
    )
    with pytest.raises(ValueError, match="slot 2 was not allowed"):
        slot_examples(broken, SPEC)


def test_warm_start_from_logs_learns_the_logged_preference() -> None:
    # Given logs of a uniform-random policy where gold users click hats and silver users shoes
    spec = parse_spec({"name": "shop", "slate_size": 1, "exploration": {"budget": 1.0}})
    items = [
        Candidate(f"{kind}-{i}", category=kind) for kind in ("hats", "shoes") for i in range(3)
    ]
    logger = Ranker(spec, clock=lambda: NOW)
    rng = np.random.default_rng(4)
    logs = []
    for t in range(1500):
        tier = "gold" if rng.random() < 0.5 else "silver"
        result = logger.rank(RankRequest(f"log-{t}", {"user": {"tier": tier}}, items))
        shown = result.slots[0].item_id
        liked = "hats" if tier == "gold" else "shoes"
        clicked = shown.startswith(liked) and rng.random() < 0.6
        rewards = [LoggedReward(item_id=shown, type="click", timestamp=NOW)] if clicked else []
        logs.append(result.record(spec, 0).model_copy(update={"rewards": rewards}))
    # When a new policy warm-starts from them
    target = parse_spec({"name": "shop", "slate_size": 1, "exploration": {"budget": 0.0}})
    model = build_model(target)
    assert warm_start(model, logs, target) == 1500
    # Then it exploits the preference from its first request
    ranker = Ranker(target, model, clock=lambda: NOW)
    gold = ranker.rank(RankRequest("g", {"user": {"tier": "gold"}}, items, interactions=99))
    silver = ranker.rank(RankRequest("s", {"user": {"tier": "silver"}}, items, interactions=99))
    assert gold.slots[0].item_id.startswith("hats")
    assert silver.slots[0].item_id.startswith("shoes")
    assert model.examples_learned == 1500
