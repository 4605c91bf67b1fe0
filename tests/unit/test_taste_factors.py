"""``bandit.learn.taste_factors``: taste factors from rewards, namespace ``T``, logged exactly."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bandit.decision_log import LoggedReward
from bandit.domain import Candidate
from bandit.errors import SpecError
from bandit.evaluate.replay import observe
from bandit.evaluate.slot_draws import slot_probabilities
from bandit.learn.history import Rewarded
from bandit.learn.learning import slot_examples
from bandit.learn.taste_factors import (
    affinity,
    fit,
    item_tokens,
    taste_lines,
    taste_namespace,
    user_vector,
)
from bandit.serve.cost import slot_work
from bandit.serve.ranker import Ranker, RankRequest
from bandit.serve.vw_args import validate_vw_args
from bandit.spec import parse_spec

TOKEN = re.compile(r"^(affinity:-?[0-9.e+-]+|band=[0-5])$")


def _clustered_histories(
    users: int, clusters: int, per_cluster: int, picks: int, *, noise: float, seed: int
) -> tuple[list[list[Rewarded]], dict[str, int]]:
    """Users who each reward items of one cluster (and, with ``noise``, of any)."""
    rng = np.random.default_rng(seed)
    cluster_of = {f"i{c}-{k}": c for c in range(clusters) for k in range(per_cluster)}
    items = list(cluster_of)
    histories = []
    for u in range(users):
        liked = u % clusters
        own = [f"i{liked}-{k}" for k in rng.choice(per_cluster, size=picks, replace=False)]
        stray = [items[int(i)] for i in rng.integers(len(items), size=int(picks * noise))]
        histories.append([Rewarded(i, f"cat-{cluster_of[i]}") for i in own + stray])
    return histories, cluster_of


def test_items_the_same_users_reward_point_the_same_way() -> None:
    histories, cluster_of = _clustered_histories(400, 8, 30, 6, noise=0.3, seed=1)
    factors = fit(histories, kinds=("item",), dims=12)
    rows = factors.rows()
    known = [i for i in cluster_of if f"item:{i}" in rows]
    vectors = {i: factors.item_vector(rows, i, None, None) for i in known}
    same, other = [], []
    for a in known[::3]:
        for b in known[1::7]:
            if a == b:
                continue
            cosine = float(vectors[a] @ vectors[b])  # type: ignore[operator]
            (same if cluster_of[a] == cluster_of[b] else other).append(cosine)
    assert len(known) > 200
    assert np.mean(same) > 0.5
    assert abs(np.mean(other)) < 0.15
    # The user's taste ranks the items of their cluster first.
    user = user_vector([vectors[r.item_id] for r in histories[3][:6]], decay=0.9)
    scores = {i: affinity(user, v) for i, v in vectors.items()}
    top = sorted(scores, key=lambda i: -(scores[i] or -2.0))[:20]
    assert sum(cluster_of[i] == 3 % 8 for i in top) >= 18


def test_a_new_item_has_a_vector_through_its_category() -> None:
    histories, _ = _clustered_histories(200, 4, 20, 5, noise=0.0, seed=2)
    factors = fit(histories, kinds=("item", "category"), dims=6)
    rows = factors.rows()
    new = factors.item_vector(rows, "never-rewarded", "cat-2", None)
    old = factors.item_vector(rows, "i2-0", "cat-2", None)
    stranger = factors.item_vector(rows, "never-rewarded", "cat-unknown", None)
    assert new is not None and old is not None
    assert float(new @ old) > 0.5
    assert stranger is None


def test_too_little_data_gives_empty_factors_and_no_signal() -> None:
    factors = fit([[Rewarded("a")]], kinds=("item",))
    assert factors.tokens == ()
    assert user_vector([None, None], 0.9) is None
    assert affinity(None, None) is None
    with pytest.raises(ValueError, match="unknown token kinds"):
        fit([], kinds=("user",))


@given(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)))
def test_any_affinity_renders_wellformed_tokens_or_none(value: float | None) -> None:
    namespace = taste_namespace(value)
    if value is None or not np.isfinite(value):
        assert namespace is None
        assert taste_lines(["|I id=a"], [value]) == ["|I id=a"]
    else:
        assert namespace is not None and namespace[0] == "T"
        assert all(TOKEN.match(token) for token in namespace[1])
        assert -1.0 <= float(namespace[1][0].split(":")[1]) <= 1.0
        (line,) = taste_lines(["|I id=a"], [value])
        assert line.startswith("|I id=a |T affinity:")


def test_affinities_must_match_the_candidates() -> None:
    with pytest.raises(ValueError, match="2 affinities for 1 candidates"):
        taste_lines(["|I id=a"], [0.1, 0.2])
    assert item_tokens("x", None, "acme", ("item", "creator")) == ["item:x", "creator:acme"]


def _spec() -> object:
    return parse_spec(
        {
            "name": "collab",
            "slate_size": 2,
            "collaborative": {"enabled": True},
            "vw": {"args": ["--cb_type", "mtr", "-q", "CI"]},
        }
    )


def test_the_record_logs_affinities_and_learning_and_replay_use_them_exactly() -> None:
    spec = _spec()
    ranker = Ranker(spec, clock=lambda: 1_700_000_000.0)  # type: ignore[arg-type]
    candidates = [Candidate(f"c{i}", category="x") for i in range(4)]
    affinities = [0.9, None, -0.3, 0.1]
    for step in range(30):  # some learning, so the scores depend on T
        request = RankRequest(f"e{step}", {"u": "a"}, candidates, "u1", affinities=affinities)
        record = ranker.rank(request).record(spec, 0)  # type: ignore[arg-type]
        clicks = [1.0 if s.item_id == "c0" else 0.0 for s in record.slate]
        rewards = [
            LoggedReward(item_id=s.item_id, type="click", timestamp=1_700_000_000.0)
            for s, c in zip(record.slate, clicks, strict=True)
            if c
        ]
        observe(ranker, record.model_copy(update={"rewards": rewards}), clicks)
    request = RankRequest("last", {"u": "a"}, candidates, "u1", affinities=affinities)
    record = ranker.rank(request).record(spec, 0)  # type: ignore[arg-type]
    assert record.affinities == affinities
    examples = slot_examples(record, spec)  # type: ignore[arg-type]
    first = examples[0].actions
    assert "|T affinity:0.9 band=5" in first[0]
    assert "|T" not in first[1]
    logged = [s.probability for s in record.slate]
    assert slot_probabilities(ranker, record) == pytest.approx(logged, abs=1e-12)
    # Without the logged affinities the replayed probabilities differ: T is in the model.
    stripped = record.model_copy(update={"affinities": None})
    assert slot_probabilities(ranker, stripped) != pytest.approx(logged, abs=1e-9)


def test_low_rank_quadratics_are_allowed_capped_and_costed() -> None:
    assert validate_vw_args(["--lrq", "HI8", "--lrqdropout"]) == ["--lrq", "HI8", "--lrqdropout"]
    with pytest.raises(SpecError, match="invalid value 'HI65'"):
        validate_vw_args(["--lrq", "HI65"])
    with pytest.raises(SpecError, match="at most 8 interaction terms"):
        validate_vw_args([*["-q", "CI"] * 8, "--lrq", "HI4"])
    shared, actions = "shared |H a b c", ["|I x y"]
    plain = slot_work([], shared, actions)
    # 3 x 2 pairs, through 8 latent weights, both ways round.
    assert slot_work(["--lrq", "HI8"], shared, actions) == plain + 2 * 8 * 3 * 2
