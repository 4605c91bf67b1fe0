"""Impressions on moto: the app says which slots were seen; only those are learned and counted."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.common import counters, decision_store, impressions, model_store
from functions.common.auth import NewKey
from functions.common.learn_service import Learner
from functions.rewards.app import lambda_handler as rewards_handler
from tests.functional.conftest import Api
from tests.functional.test_learning_loop import deliver, rank
from tests.functional.test_metrics_endpoint import get_metrics

ACTIVATE = "/v1/events/{event_id}/activate"
LATER = 10**10  # far past every reward wait


def activate(api: Api, event_id: str, body: Any = None) -> tuple[int, Any]:
    status, payload, _ = api.call(
        rewards_handler, "POST", f"/v1/events/{event_id}/activate", body, resource=ACTIVATE
    )
    return status, payload


def click(api: Api, event_id: str, item_id: str) -> None:
    body = json.dumps({"event_id": event_id, "item_id": item_id, "type": "click"})
    status, payload, _ = api.call(rewards_handler, "POST", "/v1/rewards", body, sign_body=True)
    assert (status, payload) == (202, {"accepted": 1})


def test_only_the_seen_slots_of_a_carousel_are_learned_and_counted(
    aws: dict[str, str], api: Api, tenant: NewKey
) -> None:
    # Given a slate of 5 of which the user saw the first two, and clicked the first
    event = rank(api)
    assert len(event["slate"]) == 5
    status, answer = activate(api, event["event_id"], {"seen_through": 2})
    assert (status, answer) == (
        202,
        {"event_id": event["event_id"], "activated": False, "seen": [1, 2], "late": False},
    )
    click(api, event["event_id"], event["slate"][0]["id"])
    assert deliver(aws)["failures"] == []
    # When the event closes
    report = Learner().sweep(now=LATER)
    # Then exactly the two seen slots were learned
    assert (report.events_learned, report.slot_examples) == (1, 2)
    (version,) = model_store.versions("acme", "for-you")
    assert (version.events_learned, version.examples_learned) == (1, 2)
    stored = decision_store.get("acme", event["event_id"])
    assert stored.status == "learned" and stored.record.seen == [1, 2]
    # And the popularity counters got two impressions, not five
    shown = [slot["id"] for slot in event["slate"]]
    stats, totals = counters.popularity("acme", "for-you", shown)
    assert totals is not None and (totals.impressions, totals.reward) == (2.0, 1.0)
    assert sorted(stats) == sorted(shown[:2])
    # And the metrics count the two seen slots: CTR 1/2
    status, body = get_metrics(tenant)
    assert status == 200, body
    found = body["metrics"]
    assert (found["n_slots"], found["unseen_slots"], found["ctr"]) == (2, 3, 0.5)


def test_reports_add_up_and_a_reward_implies_its_slot_was_seen(
    aws: dict[str, str], api: Api
) -> None:
    # Given a deferred event activated with slot 2 seen, then slot 4, then slot 2 again
    event = rank(api, defer_activation=True)
    first = activate(api, event["event_id"], {"seen": [2]})
    assert first == (
        202,
        {"event_id": event["event_id"], "activated": True, "seen": [2], "late": False},
    )
    assert activate(api, event["event_id"], {"seen": [4, 2]})[1]["seen"] == [2, 4]
    assert activate(api, event["event_id"], {"seen": [2]})[1]["seen"] == [2, 4]
    # And a click on slot 5, which no report named
    click(api, event["event_id"], event["slate"][4]["id"])
    assert deliver(aws)["failures"] == []
    # When it closes, slots 2, 4 and 5 are learned
    assert Learner().sweep(now=LATER).slot_examples == 3
    assert model_store.versions("acme", "for-you")[0].examples_learned == 3


def test_without_a_report_every_shown_slot_is_learned_as_before(
    aws: dict[str, str], api: Api
) -> None:
    event = rank(api, defer_activation=True)
    assert activate(api, event["event_id"]) == (
        202,
        {"event_id": event["event_id"], "activated": True},
    )
    assert activate(api, event["event_id"], {}) == (
        202,
        {"event_id": event["event_id"], "activated": False},
    )
    assert Learner().sweep(now=LATER).slot_examples == 5
    assert decision_store.get("acme", event["event_id"]).record.seen is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"seen": [1, 6]}, "seen[1]"),
        ({"seen_through": 6}, "seen_through"),
        ({"seen_through": 0}, "seen_through"),
        ({"seen": []}, "seen"),
        ({"seen": [1], "seen_through": 1}, "seen_through"),
        ({"seen": ["1"]}, "seen[0]"),
        ({"seen_items": ["a"]}, "seen_items"),
    ],
)
def test_positions_off_the_slate_get_422_naming_the_field_and_change_nothing(
    aws: dict[str, str], api: Api, body: dict[str, Any], field: str
) -> None:
    # Given a deferred event with a slate of 5
    event = rank(api, defer_activation=True)
    before = decision_store.status("acme", event["event_id"])
    # When it is activated with impressions that are not on its slate
    status, payload = activate(api, event["event_id"], body)
    # Then the answer is 422 naming the field, and the event is as it was (not even activated)
    assert status == 422, payload
    assert (payload["error"], payload["field"]) == ("validation_error", field)
    assert decision_store.status("acme", event["event_id"]) == before
    assert before["activated"] is False and before["seen"] is None


def test_impressions_after_the_event_closed_are_counted_and_not_learned_again(
    aws: dict[str, str], api: Api
) -> None:
    # Given an event learned with slot 1 seen
    event = rank(api)
    activate(api, event["event_id"], {"seen": [1]})
    assert Learner().sweep(now=LATER).slot_examples == 1
    # When the app reports more slots after it closed
    status, answer = activate(api, event["event_id"], {"seen_through": 5})
    # Then the report is late: counted, not added, and nothing is learned again
    assert (status, answer["seen"], answer["late"]) == (202, [1], True)
    state = decision_store.status("acme", event["event_id"])
    assert (state["status"], state["seen"], state["late_impressions"]) == ("learned", [1], 1)
    assert Learner().sweep(now=LATER + 1).events_learned == 0
    (version,) = model_store.versions("acme", "for-you")
    assert (version.events_learned, version.examples_learned) == (1, 1)


def test_a_report_while_the_learner_saves_is_learned_with_the_event(
    aws: dict[str, str], api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an event with slot 1 seen, and a report of slot 2 that lands after the learner read
    # the event but before it saved
    event = rank(api)
    activate(api, event["event_id"], {"seen": [1]})
    save = model_store.save
    raced: list[bool] = []

    def save_after_a_report(*args: Any, **kwargs: Any) -> int:
        if not raced:
            raced.append(True)
            impressions.record("acme", event["event_id"], [2])
        return save(*args, **kwargs)

    monkeypatch.setattr(model_store, "save", save_after_a_report)
    # When the learner closes the event
    report = Learner().sweep(now=LATER)
    # Then its first save was refused, and the retry learned both seen slots
    assert (report.events_learned, report.slot_examples) == (1, 2)
    assert decision_store.get("acme", event["event_id"]).record.seen == [1, 2]
    assert model_store.versions("acme", "for-you")[0].examples_learned == 2
