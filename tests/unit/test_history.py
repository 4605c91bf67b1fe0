"""``bandit.learn.history``: a user's history as namespace ``H``, logged and learned exactly."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from bandit.decision_log import LoggedReward
from bandit.domain import Candidate
from bandit.evaluate.replay import observe
from bandit.evaluate.slot_draws import slot_probabilities
from bandit.learn.history import History, Rewarded, history_namespace, snapshot
from bandit.learn.learning import slot_examples
from bandit.serve.features import shared_line
from bandit.serve.ranker import Ranker, RankRequest
from bandit.spec import parse_spec

TOKEN = re.compile(r"^(item|category|creator)=[A-Za-z0-9_/+%~-]+(:[0-9.e-]+)?$")
SPEC = parse_spec(
    {
        "name": "with-history",
        "slate_size": 2,
        "history": {"enabled": True, "items": 3, "categories": 2, "creators": 1},
        "vw": {"args": ["--cb_type", "dm", "-q", "HI", "-q", "CI"]},
        "exploration": {"algorithm": "squarecb", "budget": 0.5},
    }
)
CANDIDATES = [
    Candidate(f"item-{i}", {}, "shoes" if i % 2 else "hats", f"maker-{i % 3}") for i in range(6)
]


def test_a_snapshot_keeps_the_most_recent_items_and_the_heaviest_categories_and_creators() -> None:
    # Given rewarded items, oldest first, one item rewarded twice
    rewarded = [
        Rewarded("a", "shoes", "acme"),
        Rewarded("b", "hats", "acme"),
        Rewarded("c", "hats", "zed"),
        Rewarded("a", "shoes", "acme"),
    ]
    # When a snapshot takes 2 items, 2 categories and 1 creator with decay 0.5
    history = snapshot(rewarded, items=2, categories=2, creators=1, decay=0.5)
    # Then items are newest first without repeats; weights are shares of the decayed counts
    assert history.items == ["a", "c"]
    # shoes: 1 + 0.125, hats: 0.5 + 0.25 -> shares of 1.875
    assert history.categories == {"shoes": 0.6, "hats": 0.4}
    assert history.creators == {"acme": 1.0}  # acme 1 + 0.25 + 0.125 beats zed 0.5
    assert snapshot([], items=5, categories=5, creators=5, decay=0.9).empty


def test_the_namespace_is_h_and_absent_when_there_is_no_history() -> None:
    assert history_namespace(None) is None
    assert history_namespace(History()) is None
    line = shared_line({"user": {"cohort": "a"}}, history_namespace(History(items=["x"])))
    assert line == "shared |Cuser cohort=a |H item=x"


@given(
    items=st.lists(st.text(max_size=20), max_size=5),
    categories=st.dictionaries(st.text(max_size=20), st.floats(0.0, 1.0), max_size=4),
    creators=st.dictionaries(st.text(max_size=20), st.floats(0.0, 1.0), max_size=4),
)
def test_no_history_can_inject_vw_syntax(
    items: list[str], categories: dict[str, float], creators: dict[str, float]
) -> None:
    namespace = history_namespace(History(items=items, categories=categories, creators=creators))
    tokens = [] if namespace is None else namespace[1]
    assert all(TOKEN.fullmatch(token) for token in tokens), tokens
    assert len(tokens) == len(items) + len(categories) + len(creators)


@pytest.mark.parametrize("weight", [float("nan"), float("inf"), -0.1, 1.5])
def test_a_logged_weight_must_be_a_share(weight: float) -> None:
    with pytest.raises(ValidationError, match="share between 0 and 1"):
        History(categories={"shoes": weight})


def test_rank_logs_the_snapshot_and_learning_and_replay_use_it_exactly() -> None:
    # Given a policy with history on, and a user's snapshot
    history = snapshot(
        [Rewarded("item-1", "shoes", "maker-1")], items=3, categories=2, creators=1, decay=0.9
    )
    ranker = Ranker(SPEC, clock=lambda: 0.0)
    request = RankRequest("evt-1", {"user": {"cohort": "a"}}, CANDIDATES, "u1", history=history)
    # When it ranks
    record = ranker.rank(request).record(SPEC, model_version=1)
    # Then the record carries the snapshot, survives a JSON round trip, and the examples the
    # learner builds from it have the very shared line rank scored with
    assert record.history == history
    again = type(record).model_validate_json(record.model_dump_json())
    rank_shared = shared_line(request.context, history_namespace(history))
    assert "|H item=item-1 category=shoes:1.0 creator=maker-1:1.0" in rank_shared
    assert {example.shared for example in slot_examples(again, SPEC)} == {rank_shared}
    # And replaying it with the same ranker gives each slot its logged probability
    logged = [slot.probability for slot in sorted(record.slate, key=lambda s: s.position)]
    assert slot_probabilities(ranker, again) == pytest.approx(logged)


def test_history_changes_what_a_learned_model_scores() -> None:
    # Given a model that learned from users whose history says "shoes" that they click shoes,
    # and from those whose history says "hats" that they click hats (same context for all)
    ranker = Ranker(SPEC, clock=lambda: 0.0)
    shoes = History(categories={"shoes": 1.0})
    hats = History(categories={"hats": 1.0})
    category = {c.id: c.category for c in CANDIDATES}
    for step in range(300):
        history, liked = (shoes, "shoes") if step % 2 else (hats, "hats")
        request = RankRequest(f"evt-{step}", {}, CANDIDATES, history=history)
        record = ranker.rank(request).record(SPEC, model_version=1)
        shown = record.shown_ids()
        rewards = [
            LoggedReward(item_id=item, type="click", timestamp=1.0)
            for item in shown
            if category[item] == liked
        ]
        record = record.model_copy(update={"rewards": rewards})
        observe(ranker, record, [float(category[item] == liked) for item in shown])

    # Then the same request scores a shoe first for a shoes history and a hat for a hats one
    def best(history: History) -> str | None:
        scores = ranker.model.score(
            shared_line({}, history_namespace(history)), ranker.lines(CANDIDATES)
        )
        return CANDIDATES[int(scores.argmax())].category

    assert (best(shoes), best(hats)) == ("shoes", "hats")
