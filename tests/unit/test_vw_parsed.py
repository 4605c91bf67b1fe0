"""Scoring from cached parsed examples: VW's floats for the text, from a bounded cache per model."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.decision_log import LoggedReward
from bandit.domain import Candidate
from bandit.learn.learning import learn_record
from bandit.serve.features import ActionLines, action_lines, shared_line
from bandit.serve.ranker import Ranker, RankRequest
from bandit.serve.slate import (
    SlateConstraints,
    SlotDraw,
    allowed_mask,
    sample_slate,
    slot_distribution,
)
from bandit.serve.vw import ParsedActions, VWModel
from bandit.spec import parse_spec

# (cb_explore_adf?, args): the interactions the ranker uses, and VW's own exploration.
MODELS = {
    "quadratic": (False, ["-q", "CI"]),
    "cubic": (False, ["--cubic", "CCI", "--cb_type", "mtr"]),
    "explore": (True, ["-q", "CI", "--epsilon", "0.2"]),
    "squarecb": (True, ["-q", "CI", "--squarecb"]),
}
CATEGORIES = ("news", "sport", "film", "music")
# 60 items; requests draw from them, so some of a request's candidates are cached and some new.
ITEMS = [
    Candidate(
        f"item-{i}",
        {"length": float(i % 7) * 1.5, "tags": [f"t{i % 5}", f"t{i % 3}"]},
        category=CATEGORIES[i % 4],
        creator=f"creator-{i % 9}",
    )
    for i in range(60)
]
LINES = action_lines(ITEMS)

CACHED = 1_024  # the cache is off by default (bandit.serve.vw.PARSED_CAPACITY): on here


def context(user: int, device: int, hour: float) -> dict[str, object]:
    return {"user": {"kind": f"k{user}", "hour": hour}, "device": f"d{device}"}


def train(model: VWModel, seed: int, rounds: int) -> None:
    """Random logged slots: kind ``k`` clicks items whose index is ``k`` mod 4."""
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        user = int(rng.integers(6))
        picked = rng.choice(len(ITEMS), size=8, replace=False)
        chosen = int(rng.integers(8))
        reward = 1.0 if int(picked[chosen]) % 4 == user % 4 else 0.0
        shared = shared_line(context(user, int(rng.integers(3)), float(rng.integers(24))))
        actions = [LINES[int(i)] for i in picked]
        model.learn(shared, actions, chosen=chosen, reward=reward, probability=0.125)


@cache
def trained_blob(name: str) -> bytes:
    explore, args = MODELS[name]
    model = VWModel(args, explore=explore)
    train(model, seed=11, rounds=300)
    blob = model.to_bytes()
    model.close()
    return blob


def twins(name: str) -> tuple[VWModel, VWModel]:
    """The trained model loaded twice: scoring from cached examples, and from text."""
    blob = trained_blob(name)
    return VWModel.from_bytes(blob, parsed_capacity=CACHED), VWModel.from_bytes(
        blob, parsed_capacity=0
    )


request_step = st.tuples(
    st.integers(0, 7),  # user kind (6 and 7 never seen in training)
    st.integers(0, 3),
    st.floats(-50.0, 50.0, allow_nan=False),
    st.lists(st.integers(0, len(ITEMS) - 1), min_size=1, max_size=25, unique=True),
    st.none() | st.tuples(st.integers(0, 24), st.sampled_from([0.0, 1.0, 0.25, -0.5, 3.0])),
)


def same(first: np.ndarray, second: np.ndarray) -> bool:
    """Bit for bit the same scores."""
    return first.shape == second.shape and first.tobytes() == second.tobytes()


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(sorted(MODELS)), steps=st.lists(request_step, min_size=1, max_size=12))
def test_cached_examples_score_exactly_what_text_does(
    name: str, steps: list[tuple[int, int, float, list[int], tuple[int, float] | None]]
) -> None:
    # Given the same trained model scoring from cached examples and from text
    cached, text = twins(name)
    try:
        for user, device, hour, picked, learn in steps:
            shared = shared_line(context(user, device, hour))
            actions = [LINES[i] for i in picked]
            # When both score the request, twice (the second time every action is cached)
            first = cached.score(shared, actions)
            again = cached.score(shared, actions)
            expected = text.score(shared, actions)
            # Then the floats are identical for every candidate
            assert same(first, expected)
            assert same(again, expected)
            if learn is not None:
                # And both learn the same slot from text, so later requests meet changed weights
                chosen, reward = learn[0] % len(actions), learn[1]
                for model in (cached, text):
                    model.learn(shared, actions, chosen=chosen, reward=reward, probability=0.5)
        assert cached.parsed is not None and cached.parsed.parses <= len(ITEMS)
    finally:
        cached.close()
        text.close()


def test_learning_after_cached_scoring_matches_learning_after_text_scoring() -> None:
    # Given two fresh models, one scoring from cached examples and one from text
    cached = VWModel(["-q", "CI"], parsed_capacity=CACHED)
    text = VWModel(["-q", "CI"], parsed_capacity=0)
    rng = np.random.default_rng(3)
    shared = shared_line(context(1, 0, 8.0))
    probe = LINES[:20]
    # When both score and learn the same 400 slots
    for _ in range(400):
        user = int(rng.integers(6))
        row = shared_line(context(user, int(rng.integers(3)), 9.0))
        picked = [LINES[int(i)] for i in rng.choice(len(LINES), size=10, replace=False)]
        assert cached.score(row, picked).tolist() == text.score(row, picked).tolist()
        chosen = int(rng.integers(10))
        for model in (cached, text):
            model.learn(row, picked, chosen=chosen, reward=float(user % 2), probability=0.1)
    # Then their weights are the same: a fresh text model of each predicts the same floats
    reloaded = [VWModel.from_bytes(m.to_bytes(), parsed_capacity=0) for m in (cached, text)]
    first, second = (m.score(shared, probe) for m in reloaded)
    assert first.tolist() == second.tolist()
    assert len(set(first.tolist())) > 10  # the model learned something that tells items apart
    for model in (cached, text, *reloaded):
        model.close()


def test_cache_is_bounded_and_drops_the_oldest_first() -> None:
    # Given a model whose cache holds 5 actions
    model = VWModel(["-q", "CI"], parsed_capacity=5)
    text = VWModel(["-q", "CI"], parsed_capacity=0)
    train(model, seed=2, rounds=50)
    train(text, seed=2, rounds=50)
    parsed = model.parsed
    assert parsed is not None
    shared = shared_line(context(2, 1, 12.0))
    # When it scores 12 distinct actions, 4 at a time
    for start in range(0, 12, 4):
        actions = LINES[start : start + 4]
        assert model.score(shared, actions).tolist() == text.score(shared, actions).tolist()
    # Then it kept only the 5 most recently parsed, and re-parses an evicted one
    assert len(parsed) == 5
    assert parsed.parses == 12
    model.score(shared, LINES[7:12])  # all cached
    assert parsed.parses == 12
    model.score(shared, LINES[0:1])
    assert parsed.parses == 13
    assert len(parsed) == 5
    model.close()
    text.close()


def test_capacity_must_be_positive() -> None:
    model = VWModel([])
    with pytest.raises(ValueError, match="capacity"):
        ParsedActions(model._vw, 0)
    model.close()


def test_each_model_has_its_own_examples() -> None:
    # Given two models with different weights, scoring the same lines
    first, first_text = twins("quadratic")
    second = VWModel(["-q", "CI"], parsed_capacity=CACHED)
    second_text = VWModel(["-q", "CI"], parsed_capacity=0)
    train(second, seed=99, rounds=120)
    train(second_text, seed=99, rounds=120)
    shared = shared_line(context(3, 2, 20.0))
    actions = LINES[:15]
    # When each scores them (the second after the first has cached all of them)
    one = first.score(shared, actions)
    two = second.score(shared, actions)
    # Then each gives its own model's text scores, from examples of its own
    assert one.tolist() == first_text.score(shared, actions).tolist()
    assert two.tolist() == second_text.score(shared, actions).tolist()
    assert one.tolist() != two.tolist()
    assert first.parsed is not None and second.parsed is not None
    assert first.parsed is not second.parsed
    assert first.parsed.parses == 15 and second.parsed.parses == 15
    for model in (first, first_text, second, second_text):
        model.close()


def test_a_reloaded_version_parses_afresh_and_scores_its_own_weights() -> None:
    # Given a model that cached its actions, then learned and was saved as a new version
    model = VWModel(["-q", "CI"], parsed_capacity=CACHED)
    train(model, seed=5, rounds=100)
    shared = shared_line(context(0, 0, 1.0))
    actions = LINES[10:30]
    before = model.score(shared, actions)
    train(model, seed=6, rounds=100)
    version = VWModel.from_bytes(model.to_bytes(), parsed_capacity=CACHED)
    text = VWModel.from_bytes(model.to_bytes(), parsed_capacity=0)
    # When the new version scores the same actions
    after = version.score(shared, actions)
    # Then it parsed them itself and scores with the new weights, as text does
    assert version.parsed is not None and version.parsed.parses == 20
    assert after.tolist() == text.score(shared, actions).tolist()
    assert after.tolist() == model.score(shared, actions).tolist()
    assert after.tolist() != before.tolist()
    for m in (model, version, text):
        m.close()


def test_duplicate_lines_are_scored_from_text() -> None:
    # Given a trained model and actions naming one line twice
    cached, text = twins("quadratic")
    shared = shared_line(context(1, 1, 3.0))
    actions = [LINES[0], LINES[1], LINES[0]]
    # Then both give VW's answer for the text, and nothing was cached
    scores = cached.score(shared, actions)
    assert scores.tolist() == text.score(shared, actions).tolist()
    assert len(scores) == 3 and scores[0] == scores[2]
    assert cached.parsed is not None and len(cached.parsed) == 0
    cached.close()
    text.close()


def test_low_rank_models_keep_parsing_text() -> None:
    model = VWModel(["--lrq", "CI4"], parsed_capacity=CACHED)
    assert model.parsed is None
    train(model, seed=1, rounds=20)
    assert len(model.score(shared_line(context(0, 0, 0.0)), LINES[:4])) == 4
    model.close()


# --------------------------------------------------------------------------------------------
# The ranker: whole slates from cached examples equal slates from text
# --------------------------------------------------------------------------------------------


def _spec(explore: bool) -> dict[str, object]:
    spec: dict[str, object] = {
        "name": "parsed",
        "slate_size": 4,
        "exploration": {"budget": 0.3},
        "diversity": {"max_per_category": 2},
        "vw": {"args": ["-q", "CI", "--cubic", "CCI"]},
    }
    if explore:
        spec["exploration"] = {"budget": 0.3, "algorithm": "vw_pmf"}
        spec["vw"] = {"args": ["-q", "CI"], "explore_args": ["--epsilon", "0.3"]}
    return spec


@pytest.mark.parametrize("explore", [False, True], ids=["cb_adf", "vw_pmf"])
def test_ranker_draws_the_same_slates_from_cached_examples(explore: bool) -> None:
    # Given two rankers of one spec, one model scoring from cached examples, one from text
    spec = parse_spec(_spec(explore))
    model = VWModel(
        spec.vw_args(), explore=spec.exploration.algorithm.value == "vw_pmf", parsed_capacity=CACHED
    )
    cached = Ranker(spec, model, clock=lambda: 0.0)
    assert cached.model.parsed is not None
    text_model = VWModel(cached.model.args, explore=cached.model.explore, parsed_capacity=0)
    text = Ranker(spec, text_model, clock=lambda: 0.0, lines=ActionLines())
    rng = np.random.default_rng(8)
    # When both rank 150 requests (some with slot features, taste affinities and exclusions)
    # and learn every event's clicks
    for t in range(150):
        picked = rng.choice(len(ITEMS), size=int(rng.integers(5, 20)), replace=False)
        candidates = [ITEMS[int(i)] for i in picked]
        slot_features = [{"size": f"s{p}"} for p in range(4)] if t % 3 == 0 else None
        affinities = (
            [float(a) if a > -0.5 else None for a in rng.uniform(-1, 1, len(candidates))]
            if t % 4 == 1
            else None
        )
        request = RankRequest(
            f"evt-{t}",
            context(int(rng.integers(6)), int(rng.integers(3)), float(t % 24)),
            candidates,
            interactions=t,
            slot_features=slot_features,
            affinities=affinities,
            exclude_at={2: {candidates[0].id}} if t % 5 == 0 else {},
            keep_distributions=True,
        )
        results = [ranker.rank(request) for ranker in (cached, text)]
        # Then the slates, their probabilities and every slot's distribution are identical
        assert results[0].slots == results[1].slots
        assert [d.tolist() for d in results[0].distributions] == [
            d.tolist() for d in results[1].distributions
        ]
        clicked = results[0].slots[int(rng.integers(len(results[0].slots)))].item_id
        reward = LoggedReward(item_id=clicked, type="click", timestamp=1.0)
        for ranker, result in zip((cached, text), results, strict=True):
            record = result.record(spec, 0).model_copy(update={"rewards": [reward]})
            learn_record(ranker.model, record, spec)
    assert cached.model.examples_learned == text.model.examples_learned > 0
    cached.model.close()
    text.model.close()


# --------------------------------------------------------------------------------------------
# The sampler keeps its mask up to date: the same draws as rebuilding it every slot
# --------------------------------------------------------------------------------------------


def _rebuilt_slate(
    scores: np.ndarray,
    weights: np.ndarray,
    slate_size: int,
    rate: float,
    *,
    constraints: SlateConstraints,
    seed: int,
) -> list[SlotDraw]:
    """The sampler's rules, rebuilding each slot's mask with ``allowed_mask``."""
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    draws: list[SlotDraw] = []
    for position in range(1, slate_size + 1):
        allowed = allowed_mask(len(scores), chosen, constraints)
        if not allowed.any():
            break
        slot_rate = 1.0 if position in constraints.discovery_positions else rate
        p_explore, mixed, greedy = slot_distribution(scores, weights, allowed, slot_rate, _explore)
        explored = slot_rate > 0.0 and (slot_rate >= 1.0 or rng.random() < slot_rate)
        if explored:
            cumulative = np.cumsum(p_explore)
            pick = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
            pick = min(pick, len(scores) - 1)
            while not allowed[pick] or p_explore[pick] == 0.0:
                pick -= 1
        else:
            pick = greedy
        chosen.append(pick)
        draws.append(SlotDraw(pick, position, float(mixed[pick]), bool(explored)))
    return draws


def _explore(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return weights / weights.sum()


def _groups(draw: st.DrawFn, size: int, names: Sequence[str]) -> list[str | None]:
    return draw(st.lists(st.sampled_from([*names, None]), min_size=size, max_size=size))


@st.composite
def slate_cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int, float, SlateConstraints]:
    size = draw(st.integers(1, 30))
    scores = np.asarray(draw(st.lists(st.floats(-2, 2), min_size=size, max_size=size)))
    weights = np.asarray(draw(st.lists(st.floats(0.5, 3), min_size=size, max_size=size)))
    index = st.integers(0, size - 1)
    constraints = SlateConstraints(
        excluded=frozenset(draw(st.lists(index, max_size=5))),
        excluded_at={
            p: frozenset(ids)
            for p, ids in draw(
                st.dictionaries(st.integers(1, 8), st.lists(index, max_size=4))
            ).items()
        },
        categories=_groups(draw, size, ["a", "b", "c"]),
        creators=_groups(draw, size, ["x", "y"]),
        max_per_category=draw(st.none() | st.integers(1, 3)),
        max_per_creator=draw(st.none() | st.integers(1, 4)),
        discovery_positions=frozenset(draw(st.lists(st.integers(1, 8), max_size=2))),
    )
    return (
        scores,
        weights,
        draw(st.integers(1, 8)),
        draw(st.sampled_from([0.0, 0.2, 1.0])),
        (constraints),
    )


@settings(max_examples=200, deadline=None)
@given(case=slate_cases(), seed=st.integers(0, 2**32))
def test_sampler_draws_what_rebuilding_the_mask_each_slot_draws(
    case: tuple[np.ndarray, np.ndarray, int, float, SlateConstraints], seed: int
) -> None:
    scores, weights, slate_size, rate, constraints = case
    draws = sample_slate(
        scores,
        slate_size=slate_size,
        rate=rate,
        explore=_explore,
        rng=np.random.default_rng(seed),
        constraints=constraints,
        weights=weights,
    )
    assert draws == _rebuilt_slate(
        scores, weights, slate_size, rate, constraints=constraints, seed=seed
    )


def test_a_tiny_reward_learns_as_no_reward_instead_of_as_infinity() -> None:
    shared = shared_line(context(0, 0, 0.0))
    tiny, zero = VWModel(["-q", "CI"]), VWModel(["-q", "CI"])
    for reward_tiny, reward_zero in ((5e-126, 0.0), (-1e-54, 0.0), (1.0, 1.0)):
        tiny.learn(shared, LINES[:3], chosen=0, reward=reward_tiny, probability=0.5)
        zero.learn(shared, LINES[:3], chosen=0, reward=reward_zero, probability=0.5)
    scores = tiny.score(shared, LINES[:3])
    assert np.isfinite(scores).all()
    assert scores.tolist() == zero.score(shared, LINES[:3]).tolist()
    tiny.close()
    zero.close()
