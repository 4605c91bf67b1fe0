"""A learner invocation never outlives its timeout: saves are bounded by work, and no save starts
when time runs short; what was saved stays, the rest is handed back and learned once later."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from functions.common import decision_store, learn_service, model_store
from functions.common.settings import reset_settings
from functions.learn.app import learner
from functions.rank.app import lambda_handler as rank_handler
from tests.functional.conftest import Api

RANK = "/v1/policies/{policy}/rank"
CANDIDATES = [{"id": f"item-{i}", "features": {"n": i}} for i in range(8)]


def rank_events(api: Api, count: int) -> list[str]:
    body = {"context": {"user": {"cohort": "a"}}, "candidates": CANDIDATES}
    ids = []
    for _ in range(count):
        status, payload, _ = api.call(
            rank_handler, "POST", "/v1/policies/for-you/rank", body, resource=RANK
        )
        assert status == 200, payload
        ids.append(payload["event_id"])
    return ids


def a_day_after(event_id: str) -> float:
    return decision_store.get("acme", event_id).record.timestamp + 86_400


@pytest.fixture
def two_per_save(monkeypatch: pytest.MonkeyPatch, aws: dict[str, str]) -> Iterator[None]:
    monkeypatch.setenv("LEARN_EVENTS_PER_SAVE", "2")
    reset_settings()
    yield
    learner().time_left = None


def test_no_save_starts_when_time_runs_short_and_the_rest_is_learned_once_later(
    api: Api, two_per_save: None
) -> None:
    # Given six due events, two per save, and an invocation whose time runs short after its
    # first save (40 s left when it starts, then 10 s: under the 15 s margin)
    ids = rank_events(api, 6)
    left = iter([40.0, 10.0])
    learner().time_left = lambda: next(left, 10.0)
    # When the sweep hands them to the learner
    first = learner().sweep(now=a_day_after(ids[-1]))
    # Then one save was made, and the policy's work was handed back, not failed
    assert (first.events_learned, first.versions) == (2, [1])
    assert first.failed_groups == {("acme", "for-you")}
    assert (
        sorted(decision_store.get("acme", i).status for i in ids) == ["learned"] * 2 + ["open"] * 4
    )
    # And when it is delivered again with time enough, the other four are learned, each once
    learner().time_left = None
    second = learner().sweep(now=a_day_after(ids[-1]))
    assert (second.events_learned, second.versions, second.failed_groups) == (4, [2, 3], set())
    versions = {v.version: v.events_learned for v in model_store.versions("acme", "for-you")}
    assert versions == {1: 2, 2: 4, 3: 6}  # events learned into each version, in all
    assert all(decision_store.get("acme", i).status == "learned" for i in ids)


def test_a_batch_whose_learning_is_too_much_work_for_one_save_is_split(
    api: Api, aws: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a save's work budget smaller than one event's work
    monkeypatch.setattr(learn_service, "SAVE_WORK", 1)
    ids = rank_events(api, 3)
    # When the three are learned
    report = learner().sweep(now=a_day_after(ids[-1]))
    # Then each got a save of its own
    assert (report.events_learned, report.versions) == (3, [1, 2, 3])


def test_with_no_time_left_a_group_is_not_started(api: Api, two_per_save: None) -> None:
    ids = rank_events(api, 2)
    learner().time_left = lambda: 5.0
    report = learner().sweep(now=a_day_after(ids[-1]))
    assert (report.events_learned, report.failed_groups) == (0, {("acme", "for-you")})
    assert all(decision_store.get("acme", i).status == "open" for i in ids)
