"""Rewards (valuing, aggregating, closing events) and the JSONL decision log."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from bandit.decision_log import (
    FORMAT_VERSION,
    Constraints,
    DecisionRecord,
    ExplorationLog,
    LoggedCandidate,
    LoggedReward,
    LoggedSlot,
    read_jsonl,
    write_jsonl,
)
from bandit.domain import Candidate, Reward
from bandit.errors import FieldError
from bandit.learn.rewards import aggregate, is_closed, is_late, reward_value, slot_rewards
from bandit.spec import RewardSpec

DECIDED_AT = 1_000.0
WAIT = 600  # rewards after t=1600 are late


def spec(aggregation: str = "sum", **overrides: object) -> RewardSpec:
    settings: dict[str, object] = {
        "types": {"click": 1.0, "purchase": 5.0, "watch_seconds": 0.01},
        "aggregation": aggregation,
        "default": -0.25,
        "wait_seconds": WAIT,
        "max_reward": 10.0,
    }
    settings.update(overrides)
    return RewardSpec.model_validate(settings)


def reward(item: str, kind: str, at: float, value: float = 1.0, final: bool = False) -> Reward:
    return Reward(item_id=item, type=kind, value=value, timestamp=at, final=final)


# --------------------------------------------------------------------------------------------
# Valuing one reward
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "worth"),
    [
        ("click", None, 1.0),
        ("click", 1.0, 1.0),
        ("purchase", None, 5.0),
        ("purchase", 1.5, 7.5),
        ("purchase", 3.0, 10.0),  # 15 capped at max_reward
        ("watch_seconds", 90, 0.9),
        ("watch_seconds", 5000, 10.0),  # 50 capped
        ("click", 0.0, 0.0),
    ],
)
def test_reward_value_is_weight_times_value_capped(
    kind: str, value: float | None, worth: float
) -> None:
    assert reward_value(spec(), kind, value) == pytest.approx(worth)


def test_without_max_reward_nothing_is_capped() -> None:
    assert reward_value(spec(max_reward=None), "purchase", 3.0) == 15.0


def test_negative_weights_are_not_capped_from_below() -> None:
    dislikes = spec(types={"dislike": -2.0})
    assert reward_value(dislikes, "dislike") == -2.0
    assert reward_value(dislikes, "dislike", 100.0) == -200.0


def test_unknown_reward_type_names_the_type_field() -> None:
    with pytest.raises(FieldError) as caught:
        reward_value(spec(), "like")
    assert caught.value.field == "type"
    assert "'like'" in caught.value.message
    assert "click, purchase, watch_seconds" in caught.value.message
    assert str(caught.value).startswith("type: unknown reward type")
    assert isinstance(caught.value, ValueError)


# --------------------------------------------------------------------------------------------
# Aggregating several rewards of one item
# --------------------------------------------------------------------------------------------

VALUES = [(1020.0, 1.0), (1010.0, 5.0), (1300.0, 0.5)]


@pytest.mark.parametrize(("how", "expected"), [("earliest", 5.0), ("sum", 6.5), ("max", 5.0)])
def test_aggregate(how: str, expected: float) -> None:
    assert aggregate(VALUES, how) == expected


def test_aggregate_earliest_ignores_size_and_takes_first_in_time() -> None:
    assert aggregate([(30.0, 9.0), (10.0, 0.1), (20.0, 3.0)], "earliest") == 0.1


def test_aggregate_single_value_is_itself() -> None:
    for how in ("earliest", "sum", "max"):
        assert aggregate([(5.0, -1.5)], how) == -1.5


# --------------------------------------------------------------------------------------------
# Per-slot rewards of an event
# --------------------------------------------------------------------------------------------

SHOWN = ["a", "b", "c"]
POSTED = [
    reward("a", "click", 1010.0),  # 1.0
    reward("a", "purchase", 1100.0),  # 5.0
    reward("a", "watch_seconds", 1200.0, value=30.0),  # 0.3
    reward("b", "click", 1700.0),  # late: after 1600
    reward("z", "click", 1050.0),  # orphan: z was not shown
    reward("c", "click", 1020.0),  # flagged late by the caller (index 5)
    reward("b", "click", 1600.0),  # exactly at the end of the wait: on time
]


@pytest.mark.parametrize(
    ("how", "a_worth"),
    [("sum", 6.3), ("max", 5.0), ("earliest", 1.0)],
)
def test_slot_rewards_aggregate_and_default_per_shown_item(how: str, a_worth: float) -> None:
    # When the posted rewards of an event are collected
    outcome = slot_rewards(SHOWN, POSTED, DECIDED_AT, spec(how), late_ids=frozenset({5}))

    # Then a earns its aggregate, b its on-time click, c the default (its click was flagged late)
    assert outcome.per_item == pytest.approx({"a": a_worth, "b": 1.0, "c": -0.25})
    assert list(outcome.per_item) == SHOWN

    # And the late (b after the wait, c flagged) and orphan (z) rewards are counted, not learned
    assert outcome.late == 2
    assert outcome.orphan == 1


def test_unrewarded_slots_get_the_default() -> None:
    outcome = slot_rewards(["x", "y"], [], DECIDED_AT, spec(default=0.0))
    assert outcome.per_item == {"x": 0.0, "y": 0.0}
    assert (outcome.late, outcome.orphan) == (0, 0)


def test_late_orphans_count_as_late_only() -> None:
    outcome = slot_rewards(["x"], [reward("z", "click", 5000.0)], DECIDED_AT, spec())
    assert (outcome.late, outcome.orphan) == (1, 0)


def test_unknown_type_on_a_shown_item_is_counted_and_not_learned() -> None:
    # A type the spec does not (or no longer) value: the slot keeps the default, and the
    # event stays learnable (one bad reward must not stop learning).
    rewards = [reward("x", "like", 1010.0), reward("y", "click", 1011.0)]
    outcome = slot_rewards(["x", "y"], rewards, DECIDED_AT, spec())
    assert outcome.per_item == {"x": -0.25, "y": 1.0}
    assert (outcome.unknown, outcome.late, outcome.orphan) == (1, 0, 0)


def test_unknown_types_do_not_close_an_event() -> None:
    rewards = [reward(item, "like", 1010.0, final=True) for item in SHOWN]
    assert not is_closed(SHOWN, rewards, DECIDED_AT, now=1100.0, spec=spec())


@pytest.mark.parametrize(
    ("at", "late"),
    [(DECIDED_AT, False), (DECIDED_AT + WAIT, False), (DECIDED_AT + WAIT + 0.001, True)],
)
def test_is_late_boundary(at: float, late: bool) -> None:
    assert is_late(at, DECIDED_AT, spec()) is late


# --------------------------------------------------------------------------------------------
# Closing events
# --------------------------------------------------------------------------------------------


def test_event_with_a_final_reward_is_closed_before_the_wait() -> None:
    rewards = [reward("a", "purchase", 1010.0, final=True)]
    assert is_closed(SHOWN, rewards, DECIDED_AT, now=1011.0, spec=spec())


def test_event_with_every_slot_rewarded_is_closed() -> None:
    rewards = [reward("a", "click", 1010.0), reward("b", "click", 1011.0)]
    rewards.append(reward("c", "click", 1012.0))
    assert is_closed(SHOWN, rewards, DECIDED_AT, now=1013.0, spec=spec())


def test_a_spec_that_does_not_close_early_waits_for_a_final_reward_or_the_wait() -> None:
    waiting = spec().model_copy(update={"close_early": False})
    rewards = [reward(item, "click", 1010.0) for item in SHOWN]
    assert not is_closed(SHOWN, rewards, DECIDED_AT, now=1013.0, spec=waiting)
    assert is_closed(SHOWN, rewards, DECIDED_AT, now=DECIDED_AT + WAIT, spec=waiting)
    final = [*rewards, reward("a", "purchase", 1011.0, final=True)]
    assert is_closed(SHOWN, final, DECIDED_AT, now=1013.0, spec=waiting)


def test_event_is_closed_once_the_wait_is_over() -> None:
    assert not is_closed(SHOWN, [], DECIDED_AT, now=DECIDED_AT + WAIT - 1, spec=spec())
    assert is_closed(SHOWN, [], DECIDED_AT, now=DECIDED_AT + WAIT, spec=spec())


def test_event_with_some_slots_rewarded_stays_open() -> None:
    rewards = [reward("a", "click", 1010.0), reward("b", "click", 1011.0)]
    rewards.append(reward("z", "click", 1012.0))  # an orphan does not stand in for c
    assert not is_closed(SHOWN, rewards, DECIDED_AT, now=1100.0, spec=spec())


def test_late_rewards_do_not_close_an_event() -> None:
    # (a clock-skewed reward stamped after the wait, seen while now is still inside it)
    rewards = [reward("a", "purchase", 2000.0, final=True)]
    rewards += [reward(item, "click", 2000.0) for item in SHOWN]
    assert not is_closed(SHOWN, rewards, DECIDED_AT, now=1100.0, spec=spec())


def test_far_future_rewards_neither_close_nor_count() -> None:
    # One lateness rule for closing and learning: a reward stamped far past the wait is late.
    future = 1e12
    rewards = [reward("a", "purchase", future, final=True), reward("b", "click", 1010.0)]
    assert not is_closed(SHOWN, rewards, DECIDED_AT, now=1100.0, spec=spec())
    outcome = slot_rewards(SHOWN, rewards, DECIDED_AT, spec())
    assert outcome.per_item == {"a": -0.25, "b": 1.0, "c": -0.25}
    assert outcome.late == 1


def test_flagged_late_rewards_do_not_close_an_event() -> None:
    rewards = [reward("a", "purchase", 1010.0, final=True)]
    assert is_closed(SHOWN, rewards, DECIDED_AT, now=1100.0, spec=spec())
    closed = is_closed(SHOWN, rewards, DECIDED_AT, now=1100.0, spec=spec(), late_ids=frozenset({0}))
    assert not closed


def test_event_that_showed_nothing_closes_only_by_time() -> None:
    assert not is_closed([], [], DECIDED_AT, now=1100.0, spec=spec())
    assert is_closed([], [], DECIDED_AT, now=1600.0, spec=spec())


def test_rewards_are_frozen_values() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        reward("a", "click", 1.0).value = 2.0  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# Decision log
# --------------------------------------------------------------------------------------------


def full_record(event_id: str = "evt-1") -> DecisionRecord:
    """A record with every field set away from its default."""
    return DecisionRecord(
        event_id=event_id,
        policy="explore",
        model_version=7,
        spec_version=3,
        timestamp=1_700_000_000.125,
        context={"user": {"age": 31, "tags": ["sci fi", "é|:"]}, "device": "ios", "x": None},
        user_id="u-42",
        segment="warm",
        candidates=[
            LoggedCandidate(
                id="m1",
                features={"price": 9.5, "stats": {"views": 10}},
                category="film",
                creator="studio",
                created_at=1_699_999_000.0,
            ),
            LoggedCandidate(id="m2"),
            LoggedCandidate(id="m3", category="doc"),
        ],
        slate=[
            LoggedSlot(item_id="m3", position=2, probability=0.125, explored=True),
            LoggedSlot(item_id="m1", position=1, probability=0.9, explored=False),
        ],
        rewards=[
            LoggedReward(item_id="m1", type="click", value=None, timestamp=1_700_000_010.0),
            LoggedReward(
                item_id="m3", type="purchase", value=2.5, timestamp=1_700_009_000.0, late=True
            ),
            LoggedReward(item_id="m1", type="click", timestamp=1_700_000_020.0, final=True),
        ],
        seed=2**63 - 1,
        exploration=ExplorationLog(budget=0.3, rate=0.2875, discovery_positions=[2]),
        constraints=Constraints(exclude=["m9"], max_per_category=2, max_per_creator=1),
        deferred=True,
        activated=False,
    )


def test_full_record_round_trips_through_jsonl() -> None:
    # Given two full records
    records = [full_record("evt-1"), full_record("evt-2")]

    # When they are written and read back
    sink = io.StringIO()
    assert write_jsonl(records, sink) == 2
    text = sink.getvalue()

    # Then there is one line per record and reading gives equal records
    assert text.count("\n") == 2
    assert text.endswith("\n")
    assert list(read_jsonl(io.StringIO(text))) == records


def test_round_trip_through_a_file_path(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        write_jsonl([full_record()], handle)
    assert list(read_jsonl(path)) == [full_record()]
    assert list(read_jsonl(str(path))) == [full_record()]


def test_written_line_keeps_nulls_and_exact_probabilities() -> None:
    sink = io.StringIO()
    write_jsonl([full_record()], sink)
    data = json.loads(sink.getvalue())
    assert data["format"] == FORMAT_VERSION
    assert data["rewards"][0]["value"] is None
    assert data["context"]["x"] is None
    assert [slot["probability"] for slot in data["slate"]] == [0.125, 0.9]


def test_blank_lines_are_skipped() -> None:
    sink = io.StringIO()
    write_jsonl([full_record("a"), full_record("b")], sink)
    first, second = sink.getvalue().splitlines()
    records = list(read_jsonl(io.StringIO(f"\n{first}\n   \n\n{second}\n\n")))
    assert [record.event_id for record in records] == ["a", "b"]


@pytest.mark.parametrize(
    "bad_line",
    [
        "{not json",
        '{"event_id": "x"}',
        "[]",
        "null",
    ],
    ids=["invalid-json", "missing-fields", "array", "null"],
)
def test_malformed_line_error_names_its_line_number(bad_line: str) -> None:
    good = full_record().model_dump_json()
    stream = io.StringIO(f"{good}\n\n{good}\n{bad_line}\n{good}\n")
    reader = read_jsonl(stream)
    assert next(reader) == full_record()
    assert next(reader) == full_record()
    with pytest.raises(ValueError, match=r"^decision log line 4: "):
        next(reader)


def test_record_with_an_impossible_probability_in_the_log_names_the_line() -> None:
    line = full_record().model_dump_json().replace('"probability":0.9', '"probability":1.5')
    assert "1.5" in line
    with pytest.raises(ValueError, match=r"(?s)^decision log line 1: .*slate\.1\.probability"):
        list(read_jsonl(io.StringIO(line + "\n")))


@pytest.mark.parametrize("probability", [0.0, -0.5, 1.0000001, 2.0])
def test_slot_probability_must_be_in_zero_one(probability: float) -> None:
    with pytest.raises(ValidationError, match="probability"):
        LoggedSlot(item_id="a", position=1, probability=probability, explored=False)


def test_slot_probability_one_is_allowed_and_position_starts_at_one() -> None:
    assert LoggedSlot(item_id="a", position=1, probability=1.0, explored=False).probability == 1.0
    with pytest.raises(ValidationError, match="position"):
        LoggedSlot(item_id="a", position=0, probability=0.5, explored=False)


def test_unknown_record_fields_are_rejected() -> None:
    data = json.loads(full_record().model_dump_json())
    data["surprise"] = 1
    with pytest.raises(ValueError, match="decision log line 1"):
        list(read_jsonl(io.StringIO(json.dumps(data) + "\n")))


def test_shown_ids_follow_slot_positions() -> None:
    assert full_record().shown_ids() == ["m1", "m3"]


def test_logged_reward_converts_with_value_defaulting_to_one() -> None:
    record = full_record()
    assert record.rewards[0].to_reward() == Reward("m1", "click", 1.0, 1_700_000_010.0, False)
    assert record.rewards[2].to_reward().final is True
    assert record.rewards[1].to_reward().value == 2.5


def test_logged_candidate_round_trips_the_core_candidate() -> None:
    candidate = Candidate("m1", {"price": 9.5}, "film", "studio", 12.0)
    logged = LoggedCandidate.of(candidate)
    assert logged.to_candidate() == candidate
    assert LoggedCandidate.of(Candidate("m2")).to_candidate() == Candidate("m2")


def test_logged_rewards_feed_slot_rewards() -> None:
    # The log keeps late rewards with late=True; learning passes their indices as late_ids.
    record = full_record()
    late_ids = frozenset(i for i, r in enumerate(record.rewards) if r.late)
    outcome = slot_rewards(
        record.shown_ids(),
        [r.to_reward() for r in record.rewards],
        decided_at=record.timestamp,
        spec=spec("sum", wait_seconds=7 * 86400),
        late_ids=late_ids,
    )
    assert outcome.per_item == {"m1": 2.0, "m3": -0.25}
    assert (outcome.late, outcome.orphan) == (1, 0)
