"""Personalizer's exported DSJSON logs as decision records: fields, skips, errors, and that
the records evaluate and teach as Serendip's own do."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from bandit.dsjson import Conversion, read_dsjson
from bandit.evaluate.replay import evaluate
from bandit.learn.learning import learn_record
from bandit.serve.ranker import Ranker, RankRequest, build_model
from bandit.spec import load_spec
from local.stack import POLICIES_DIR

SPEC = load_spec(POLICIES_DIR / "personalizer.yaml")
# As VW's own tests write a Personalizer event (seven fractional digits, costs negative)
LINE = {
    "_label_cost": -1.0,
    "_label_probability": 0.5,
    "_label_Action": 2,
    "_labelIndex": 1,
    "o": [{"v": 1.0, "EventId": "38cbf24f", "ActionTaken": False}],
    "Timestamp": "2020-11-15T17:09:31.8350000Z",
    "Version": "1",
    "EventId": "38cbf24f",
    "a": [2, 1],
    "c": {
        "GUser": {"id": "person5", "major": "engineering"},
        "_multi": [
            {"_tag": "ski-vt", "TAction": {"topic": "SkiConditions-VT"}},
            {"TAction": {"topic": "HerbGarden"}},
        ],
    },
    "p": [0.5, 0.5],
}


def convert(*lines: Any) -> tuple[list[Any], Conversion]:
    report = Conversion()
    texts = [line if isinstance(line, str) else json.dumps(line) for line in lines]
    return list(read_dsjson(texts, "personalizer", "all", report)), report


def test_an_event_becomes_a_one_slot_record_with_its_probability_and_reward() -> None:
    [record], report = convert(LINE)
    assert report.converted == 1
    assert record.event_id == "38cbf24f" and record.policy == "personalizer"
    assert record.timestamp == pytest.approx(1605460171.835)
    assert [c.id for c in record.candidates] == ["ski-vt", "action-2"]
    assert record.candidates[1].features == {"TAction": {"topic": "HerbGarden"}}
    assert record.context == {"GUser": {"id": "person5", "major": "engineering"}}
    assert [(s.item_id, s.probability) for s in record.slate] == [("action-2", 0.5)]
    assert [(r.item_id, r.type, r.value) for r in record.rewards] == [("action-2", "reward", 1.0)]
    assert record.activated


def test_what_cannot_be_an_event_is_skipped_by_reason_and_what_is_no_dsjson_raises() -> None:
    slots = {**LINE, "c": {**LINE["c"], "_slots": [{"_id": "s"}]}}
    dangling = {"EventId": "x", "RewardValue": 1.0}
    unchosen = {**LINE, "_label_Action": 9}
    skipped = {**LINE, "_skipLearn": True}
    records, report = convert(slots, dangling, unchosen, "", skipped)
    assert [r.activated for r in records] == [False]
    assert report.skipped == {
        "multi-slot event": 1,
        "not an event (a dangling reward or a header)": 1,
        "no chosen action": 1,
    }
    with pytest.raises(ValueError, match=r"^DSJSON line 2: not JSON"):
        convert(LINE, "{nope")
    with pytest.raises(ValueError, match=r"^DSJSON line 1: Timestamp"):
        convert({**LINE, "Timestamp": "yesterday"})


def _uniform_log(events: int, seed: int = 3) -> list[dict[str, Any]]:
    """A uniform-random Personalizer log in which ``pasta`` pays at dinner, ``salad`` at lunch."""
    rng = np.random.default_rng(seed)
    actions = [{"_tag": tag, "food": {"kind": tag}} for tag in ("pasta", "salad", "soup")]
    lines = []
    for i in range(events):
        meal = "dinner" if i % 2 else "lunch"
        chosen = int(rng.integers(3))
        best = 0 if meal == "dinner" else 1
        lines.append(
            {
                "_label_cost": -1.0 if chosen == best else 0.0,
                "_label_probability": 1 / 3,
                "_label_Action": chosen + 1,
                "Timestamp": f"2024-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}.0000000Z",
                "EventId": f"e{i}",
                "a": [chosen + 1],
                "c": {"meal": {"name": meal}, "_multi": actions},
                "p": [1 / 3],
            }
        )
    return lines


def test_converted_logs_evaluate_and_warm_a_model_that_knows_the_preference() -> None:
    records, _ = convert(*_uniform_log(600))
    result = evaluate(records, {"personalizer": SPEC})
    # The log is uniform: what it observed is a third, and the replayed policy earns more
    assert result.logged_first_slot == pytest.approx(1 / 3, abs=0.06)
    assert result.candidates[0].first_slot.value > 0.6
    model = build_model(SPEC)
    for record in records:
        learn_record(model, record, SPEC)
    ranker = Ranker(SPEC, model)
    candidates = [c.to_candidate() for c in records[0].candidates]
    for meal, best in (("dinner", 0), ("lunch", 1)):
        request = RankRequest("probe", {"meal": {"name": meal}}, candidates)
        assert int(np.argmax(ranker.scores(request, "all"))) == best
