"""``benchmarks.taste``: the taste-world table runs, lists every contender and is well-formed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from bandit.learn.history import Rewarded
from bandit.simulate.simulation import SimRequest
from benchmarks.taste import TastePolicy, policies, run, taste_bench
from benchmarks.taste_peers import GRID
from benchmarks.taste_report import NAMES, markdown

ROUNDS = 400
# One SquareCB and one epsilon setting per feature set keeps the test short.
SMALL_GRID = tuple(
    s
    for s in GRID
    if s.learning_rate == 0.1
    and s.exploration in ("squarecb gamma_scale 100", "epsilon 0.05")
    and s.cb_type == "mtr"
)


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return taste_bench(ROUNDS, seed=3, users=100, grid_rounds=200, grid=SMALL_GRID)


def test_every_contender_appears_with_sane_figures(result: dict[str, Any]) -> None:
    contenders = result["contenders"]
    expected = {
        *policies(),
        *NAMES.values(),
        "plain VW (context + item)",
        "plain VW (context + item + history)",
    }
    assert set(contenders) == expected
    oracle = contenders[NAMES["oracle"]]
    for name, row in contenders.items():
        assert 0.0 < row["first_slot_ctr"] <= oracle["first_slot_ctr"], name
        assert row["first_slot_ctr"] <= row["clicks_per_slate"] <= oracle["clicks_per_slate"] + 1e-9
        assert row["seconds"] >= 0.0
        assert row["setup"]
    assert contenders[NAMES["uniform"]]["first_slot_ctr"] < oracle["first_slot_ctr"]
    assert oracle["oracle_ratio"] == 1.0
    assert contenders[NAMES["popularity"]]["popularity_ratio"] == 1.0
    assert result["world"] == {"n_users": 100, "base_ctr": 0.06}


def test_the_grid_is_listed_and_the_best_setting_runs_the_full_stream(
    result: dict[str, Any],
) -> None:
    assert result["grid_rounds"] == 200
    assert len(result["vw_grid"]) == len(SMALL_GRID)
    for features in ("context + item", "context + item + history"):
        searched = [row for row in result["vw_grid"] if row["features"] == features]
        best = max(searched, key=lambda row: row["first_slot_ctr"])
        setup = result["contenders"][f"plain VW ({features})"]["setup"]
        assert " ".join(best["args"]) in setup


def test_targets_and_markdown_name_every_policy(result: dict[str, Any]) -> None:
    targets = result["targets"]
    assert {t["policy"] for t in targets} == set(policies())
    assert all(isinstance(t["pass"], bool) for t in targets)
    text = "\n".join(markdown(result))
    for name in result["contenders"]:
        assert f"| {name} |" in text
    assert "PASS" in text or "FAIL" in text


def test_the_same_seed_gives_the_same_stream_and_clicks() -> None:
    spec = policies()["for-you"]
    first = run(spec, 200, 5, n_users=50, base_ctr=0.06)
    again = run(spec, 200, 5, n_users=50, base_ctr=0.06)
    assert first["first_slot_ctr"] == again["first_slot_ctr"]
    assert first["clicks_per_slate"] == again["clicks_per_slate"]


def test_a_signals_hook_reaches_the_candidates_every_round() -> None:
    seen: list[int] = []

    def hook(
        request: SimRequest, profiles: Mapping[str, Sequence[Rewarded]]
    ) -> Mapping[str, Mapping[str, Any]]:
        seen.append(sum(len(p) for p in profiles.values()))
        return {c.id: {"cf": {"score": 0.5}} for c in request.candidates}

    figures = run(policies()["for-you"], 50, 1, signals=hook, n_users=20, base_ctr=0.06)
    assert len(seen) == 50
    assert seen == sorted(seen)  # profiles only grow
    assert figures["first_slot_ctr"] > 0.0


def test_an_extra_row_is_listed_and_judged_like_the_policies() -> None:
    spec = policies()["for-you"]
    result = taste_bench(
        60,
        seed=2,
        users=20,
        grid_rounds=40,
        grid=SMALL_GRID[:1] + SMALL_GRID[-1:],
        extra={"for-you, a subclass": lambda world, profiles: TastePolicy(spec, world, profiles)},
    )
    assert "for-you, a subclass" in result["contenders"]
    assert {t["policy"] for t in result["targets"]} == {*policies(), "for-you, a subclass"}
