"""Impressions: unseen slots are not learned, not counted in metrics, skipped by replay."""

from __future__ import annotations

import io
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.decision_log import (
    Constraints,
    DecisionRecord,
    ExplorationLog,
    LoggedCandidate,
    LoggedReward,
    LoggedSlot,
    read_jsonl,
)
from bandit.evaluate.metrics import compute
from bandit.evaluate.replay import evaluate
from bandit.learn.learning import learn_record, slot_examples
from bandit.serve.ranker import build_model
from bandit.spec import PolicySpec, parse_spec

NOW = 1_700_000_000.0
SPEC = parse_spec(
    {
        "name": "shop",
        "slate_size": 5,
        "rewards": {"types": {"click": 1.0, "purchase": 5.0}, "default": -0.25},
        "diversity": {"max_per_category": 2},
    }
)
CATEGORIES = ["shoes", "shoes", "hats", "hats", "bags", "bags", "caps"]
SLATE = ["i0", "i2", "i1", "i4", "i6"]  # the second shoe comes after a hat: a capped draw


def record(
    seen: list[int] | None = None,
    rewards: list[LoggedReward] | None = None,
    event_id: str = "evt-1",
    timestamp: float = NOW,
) -> DecisionRecord:
    return DecisionRecord(
        event_id=event_id,
        policy="shop",
        timestamp=timestamp,
        context={"user": {"tier": "gold"}},
        segment="mature",
        candidates=[
            LoggedCandidate(id=f"i{i}", category=category) for i, category in enumerate(CATEGORIES)
        ],
        slate=[
            LoggedSlot(item_id=item, position=k, probability=0.5 / k, explored=k % 2 == 0)
            for k, item in enumerate(SLATE, start=1)
        ],
        rewards=rewards or [],
        seed=1,
        exploration=ExplorationLog(budget=0.1, rate=0.1),
        constraints=Constraints(exclude=["i5"], max_per_category=2),
        seen=seen,
    )


def click(item: str, late: bool = False) -> LoggedReward:
    return LoggedReward(item_id=item, type="click", timestamp=NOW + 5, late=late)


def test_without_a_report_every_shown_slot_is_learned_as_before() -> None:
    examples = slot_examples(record(), SPEC)
    assert len(examples) == 5
    assert [e.reward for e in examples] == [-0.25] * 5
    # Reporting every position seen changes nothing, byte for byte.
    assert slot_examples(record(seen=[1, 2, 3, 4, 5]), SPEC) == examples


def test_an_old_record_without_the_field_reads_as_all_seen() -> None:
    line = record().model_dump(mode="json")
    del line["seen"]
    (old,) = read_jsonl(io.StringIO(json.dumps(line)))
    assert old.seen is None
    assert [s.position for s in old.seen_slots()] == [1, 2, 3, 4, 5]


def test_seen_through_two_learns_two_slots_and_a_reward_implies_seen() -> None:
    examples = slot_examples(record(seen=[1, 2], rewards=[click("i0"), click("i4")]), SPEC)
    # Slots 1 and 2 were reported; slot 4 got a click, so it was seen too.
    assert [e.actions[e.chosen] for e in examples] == [
        "|I id=i0 category=shoes",
        "|I id=i2 category=hats",
        "|I id=i4 category=bags",
    ]
    assert [e.reward for e in examples] == [1.0, -0.25, 1.0]
    assert [e.probability for e in examples] == [0.5, 0.25, 0.125]


def test_a_reward_flagged_late_does_not_make_a_slot_seen() -> None:
    examples = slot_examples(record(seen=[1], rewards=[click("i4", late=True)]), SPEC)
    assert len(examples) == 1


def test_a_later_slot_is_learned_over_its_own_candidates_when_earlier_ones_are_unseen() -> None:
    everything = slot_examples(record(), SPEC)
    (third,) = slot_examples(record(seen=[3]), SPEC)
    # Slot 3 (the second shoe) was drawn without i0 and i2, whether or not slots 1-2 were seen.
    assert third == everything[2]
    assert "|I id=i0 category=shoes" not in third.actions


@settings(max_examples=60, deadline=None)
@given(
    seen=st.sets(st.integers(1, 5), min_size=1),
    clicked=st.sets(st.sampled_from(SLATE), max_size=3),
)
def test_learned_examples_are_exactly_the_seen_slots_with_unchanged_rewards(
    seen: set[int], clicked: set[str]
) -> None:
    rewards = [click(item) for item in sorted(clicked)]
    everything = slot_examples(record(rewards=rewards), SPEC)
    partial = slot_examples(record(seen=sorted(seen), rewards=rewards), SPEC)
    expected = {k for k, item in enumerate(SLATE, start=1) if k in seen or item in clicked}
    assert partial == [everything[k - 1] for k in sorted(expected)]


def test_metrics_count_only_seen_slots() -> None:
    spec = PolicySpec(name="shop", rewards=SPEC.rewards)
    records = [record(seen=[1, 2], rewards=[click("i0")]), record(event_id="e2", timestamp=NOW + 1)]
    metrics = compute(records, spec)
    assert (metrics.n_events, metrics.n_slots, metrics.unseen_slots) == (2, 7, 3)
    assert metrics.ctr == 1 / 7
    only_partial = compute(records[:1], spec)
    assert (only_partial.n_slots, only_partial.ctr) == (2, 0.5)
    # Coverage counts items seen (i0 and i2 of the 6 offered); exposure only seen slots.
    assert only_partial.coverage == 2 / 7
    assert sum(item.impressions for item in only_partial.exposure.top_items) == 2
    assert only_partial.diversity == 1.0


def test_metrics_without_reports_are_unchanged() -> None:
    spec = PolicySpec(name="shop", rewards=SPEC.rewards)
    plain = compute([record(rewards=[click("i0")])], spec)
    reported = compute([record(seen=[1, 2, 3, 4, 5], rewards=[click("i0")])], spec)
    assert plain == reported
    assert (plain.n_slots, plain.unseen_slots, plain.ctr) == (5, 0, 0.2)


def test_replay_skips_unseen_slots_as_learning_does() -> None:
    spec = SPEC.model_copy(update={"name": "shop"})
    base = [record(event_id=f"e{i}", timestamp=NOW + i, rewards=[click("i0")]) for i in range(4)]
    seen_two = [r.model_copy(update={"seen": [1, 2]}) for r in base]
    full = evaluate(base, {"same": spec})
    partial = evaluate(seen_two, {"same": spec})
    # The first slot is seen everywhere: its value is the same; the slate loses its unseen slots.
    assert partial.logged_first_slot == full.logged_first_slot == 1.0
    assert full.logged_slate == 1.0 - 4 * 0.25
    assert partial.logged_slate == 1.0 - 0.25
    assert partial.candidates[0].first_slot.value == full.candidates[0].first_slot.value


def test_replay_leaves_events_with_an_unseen_first_slot_out_of_the_first_slot_value() -> None:
    records = [
        record(event_id="e0", seen=[2], rewards=[click("i2")]),
        record(event_id="e1", timestamp=NOW + 1, rewards=[click("i0")]),
    ]
    result = evaluate(records, {"same": SPEC})
    assert result.logged_first_slot == 1.0
    assert result.candidates[0].first_slot.n == 1


def test_a_replaying_model_learns_only_seen_slots() -> None:
    model = build_model(SPEC)
    assert learn_record(model, record(seen=[1, 2]), SPEC) == 2
    assert model.examples_learned == 2
