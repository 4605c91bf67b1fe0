"""The Bake-off harness runs on a small data set and returns sane, reproducible numbers."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.bakeoff import SETTINGS, UNIFORM, bakeoff, markdown, run_count


def _losses(result: dict[str, Any]) -> dict[str, float]:
    return {name: row["pv_loss"] for name, row in result["results"]["0/1"]["wine"].items()}


@pytest.fixture(scope="module")
def wine() -> dict[str, Any]:
    calls: list[int] = []
    result = bakeoff(("wine",), seed=3, progress=calls.append, shuffles=2, encodings=("0/1",))
    assert calls == list(range(1, run_count(("wine",), 2, ("0/1",)) + 1))
    return result


def test_every_setting_reports_a_loss_in_range(wine: dict[str, Any]) -> None:
    rows = wine["results"]["0/1"]["wine"]
    assert set(rows) == {setting.name for setting in SETTINGS} | {UNIFORM}
    for name, row in rows.items():
        assert 0.0 <= row["pv_loss"] <= 1.0, name
        if name != UNIFORM:
            assert row["examples"] == 178
            assert row["runs"] == 2
            assert row["seconds_per_run"] > 0.0


def test_greedy_clearly_beats_uniform_random(wine: dict[str, Any]) -> None:
    losses = _losses(wine)
    assert losses[UNIFORM] == pytest.approx(2 / 3)
    assert losses["VW greedy"] < 0.5
    assert losses["serendip greedy, mtr"] < 0.5


def test_same_seed_same_losses(wine: dict[str, Any]) -> None:
    again = bakeoff(("wine",), seed=3, shuffles=2, encodings=("0/1",))
    assert _losses(again) == _losses(wine)


def test_markdown_marks_the_best_row(wine: dict[str, Any]) -> None:
    lines = markdown(wine)
    assert "| algorithm | wine |" in lines
    table = [line for line in lines if line.startswith("| ") and "±" in line]
    assert len(table) == len(SETTINGS)
    assert any("**" in line for line in table)


def test_unknown_data_set_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown data set"):
        bakeoff(("iris-typo",), shuffles=1)
