"""Offline evaluation reports the traps it meets in a log, with counts, never passing them over."""

from __future__ import annotations

import argparse
import io
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from bandit.decision_log import DecisionRecord, write_jsonl
from bandit.evaluate.log_warnings import ReplayWarnings, replayable
from bandit.evaluate.replay import evaluate
from bandit.simulate.arena import simulated_logs
from bandit.spec import parse_spec
from local.logs_cli import evaluate_command

SETTINGS = {
    "slate_size": 3,
    "exploration": {"algorithm": "epsilon_greedy", "budget": 0.4},
    "cold_start": {"segments": [{"name": "cold", "max_interactions": 4}, {"name": "mature"}]},
}
SPEC = parse_spec({"name": "small", **SETTINGS})
EVENTS = 120


@pytest.fixture(scope="module")
def logs() -> list[DecisionRecord]:
    return simulated_logs(SPEC, EVENTS, seed=4, candidates=8)


def with_slot(record: DecisionRecord, position: int, **changes: object) -> DecisionRecord:
    """``record`` with the logged slot at ``position`` changed, unvalidated like a foreign log."""
    slate = [s.model_copy(update=changes) if s.position == position else s for s in record.slate]
    return record.model_copy(update={"slate": slate})


def test_a_clean_log_gives_no_warning(logs: list[DecisionRecord]) -> None:
    # Given the logging policy's own log, replayed by it and by a variant with another algorithm
    softmax = parse_spec(
        {**SETTINGS, "name": "soft", "exploration": {"algorithm": "softmax", "budget": 0.4}}
    )
    # When it is evaluated
    result = evaluate(logs, {"small": SPEC, "soft": softmax})
    # Then there is nothing to warn about
    assert result.warnings == []
    assert result.events == EVENTS


def test_an_unknown_segment_is_reported_per_candidate_with_its_count(
    logs: list[DecisionRecord],
) -> None:
    # Given 7 events that name a segment neither candidate has
    changed = [logs[i].model_copy(update={"segment": "vip"}) for i in range(10, 17)]
    log = logs[:10] + changed + logs[17:]
    other = parse_spec({**SETTINGS, "name": "other"})
    # When the log is evaluated
    result = evaluate(log, {"small": SPEC, "other": other})
    # Then each candidate says so once, with the count and the first such event
    assert result.warnings == [
        f"7 events with segment 'vip', which the candidate '{name}' does not have: replayed at "
        "its policy-wide budget 0.4, without a segment's own budget or the cold-user prior "
        "(e.g. event 'small-10')"
        for name in ("small", "other")
    ]
    assert result.events == EVENTS


def test_an_item_missing_from_the_candidates_leaves_the_event_out(
    logs: list[DecisionRecord],
) -> None:
    # Given 3 events whose second slot shows an item that is not among their candidates
    log = list(logs)
    for i in (5, 40, 41):
        log[i] = with_slot(log[i], 2, item_id="ghost")
    # When the log is evaluated
    result = evaluate(log, {"small": SPEC})
    # Then those events are left out, and the warning says how many and names one
    assert result.events == EVENTS - 3
    assert result.warnings == [
        "3 events showing an item that is not among their candidates: left out of the "
        "evaluation (e.g. event 'small-5', item 'ghost')"
    ]


@pytest.mark.parametrize("probability", [1.5, 0.0, -0.2, float("nan")])
def test_a_probability_outside_the_unit_interval_leaves_the_event_out(
    logs: list[DecisionRecord], probability: float
) -> None:
    log = list(logs)
    log[3] = with_slot(log[3], 1, probability=probability)
    log[9] = with_slot(log[9], 3, probability=probability)
    result = evaluate(log, {"small": SPEC})
    assert result.events == EVENTS - 2
    assert result.warnings == [
        "2 events with a slot probability outside (0, 1]: left out of the evaluation "
        f"(e.g. event 'small-3', slot 1 logged {probability!r})"
    ]


def test_an_only_allowed_candidate_logged_below_1_is_kept_and_reported(
    logs: list[DecisionRecord],
) -> None:
    # Given an event whose constraints exclude every candidate not on the slate: its last slot
    # had one allowed candidate, yet was logged with the epsilon-mixed probability
    record = logs[20]
    shown = set(record.shown_ids())
    exclude = [c.id for c in record.candidates if c.id not in shown]
    constraints = record.constraints.model_copy(update={"exclude": exclude})
    last = max(record.slate, key=lambda s: s.position)
    assert last.probability < 1.0
    log = [*logs[:20], record.model_copy(update={"constraints": constraints}), *logs[21:]]
    # When the log is evaluated
    result = evaluate(log, {"small": SPEC})
    # Then the event is kept, and the warning names the slot and its probability
    assert result.events == EVENTS
    assert result.warnings == [
        "1 event with a slot whose only allowed candidate was logged with probability below 1: "
        f"kept as logged (e.g. event 'small-20', slot 3 logged {last.probability:g})"
    ]


def test_an_exploited_slot_below_the_exploration_floor_is_reported(
    logs: list[DecisionRecord],
) -> None:
    # Given an event whose exploited first slot is logged below 1 - rate
    index = next(i for i, r in enumerate(logs) if 0.0 < r.exploration.rate < 0.9)
    rate = logs[index].exploration.rate
    log = list(logs)
    log[index] = with_slot(logs[index], 1, probability=0.05, explored=False)
    # When the log is evaluated
    result = evaluate(log, {"small": SPEC})
    # Then it is reported, kept as logged
    assert result.events == EVENTS
    assert result.warnings == [
        "1 event with an exploited slot logged below 1 - rate, the least the logged exploration "
        f"rate leaves the greedy pick: kept as logged (e.g. event 'small-{index}', slot 1 logged "
        f"0.05 at rate {rate:g})"
    ]


def test_borrowing_the_logged_pacing_with_other_discovery_slots_is_reported(
    logs: list[DecisionRecord],
) -> None:
    # Given a candidate with the logged budget but a discovery slot the logging policy lacked
    discovery = parse_spec(
        {
            **SETTINGS,
            "name": "discovery",
            "exploration": {
                "algorithm": "epsilon_greedy",
                "budget": 0.4,
                "discovery_positions": [3],
            },
        }
    )
    # When the log is evaluated
    result = evaluate(logs, {"small": SPEC, "discovery": discovery})
    # Then each segment's events are counted: the candidate followed rates paced without it
    segments = Counter(record.segment for record in logs)
    first = {s: next(r for r in logs if r.segment == s) for s in segments}
    expected = {
        (
            f"{segments[s]} {'event' if segments[s] == 1 else 'events'} in segment '{s}', where "
            "the candidate 'discovery' has the logged budget 0.4 but discovery slots [3] instead "
            "of []: replayed at the logged pacing rate, paced for the logged discovery slots, not "
            f"at its own base rate 0.1 (e.g. event '{first[s].event_id}', logged rate "
            f"{first[s].exploration.rate:g})"
        )
        for s in segments
    }
    assert set(result.warnings) == expected
    assert sum(segments.values()) == EVENTS


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, EVENTS - 1), unique=True, max_size=30))
def test_each_kind_counts_its_events_once_and_names_the_first(
    logs: list[DecisionRecord], picked: list[int]
) -> None:
    log = logs
    marked = set(picked)
    warnings = ReplayWarnings()
    kept = [
        record
        for i, record in enumerate(log)
        if replayable(with_slot(record, 1, item_id="ghost") if i in marked else record, warnings)
    ]
    assert len(kept) == EVENTS - len(marked)
    if not marked:
        assert warnings.messages() == []
        return
    count = len(marked)
    assert warnings.messages() == [
        f"{count} {'event' if count == 1 else 'events'} showing an item that is not among their "
        f"candidates: left out of the evaluation (e.g. event 'small-{min(marked)}', item 'ghost')"
    ]


def test_serendip_evaluate_prints_each_warning_to_stderr(
    logs: list[DecisionRecord], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a log file with two events that name an unknown segment, and a candidate spec file
    path = tmp_path / "decisions.jsonl"
    log = [
        r.model_copy(update={"segment": "vip"}) if i in (2, 8) else r for i, r in enumerate(logs)
    ]
    with path.open("w", encoding="utf-8") as sink:
        write_jsonl(log, sink)
    spec_path = tmp_path / "small.yaml"
    spec_path.write_text(yaml.safe_dump({"name": "small", **SETTINGS}), encoding="utf-8")
    args = argparse.Namespace(logs=path, policy=[spec_path], alpha=0.05)
    table = io.StringIO()
    # When ``serendip evaluate`` runs on it
    assert evaluate_command(args, Console(file=table, width=200)) == 0
    # Then the warning is on stderr, not lost in the table
    assert capsys.readouterr().err == (
        "warning: 2 events with segment 'vip', which the candidate 'small' does not have: "
        "replayed at its policy-wide budget 0.4, without a segment's own budget or the cold-user "
        "prior (e.g. event 'small-2')\n"
    )
    assert "warning" not in table.getvalue()
