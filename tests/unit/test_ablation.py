"""``benchmarks.ablation``: valid one-change variants of for-you, the news run, the table."""

from __future__ import annotations

from benchmarks.ablation import (
    BASELINE,
    SHIPPED,
    baseline,
    markdown,
    news_run,
    shipped_variants,
    variants,
)
from benchmarks.taste import policies


def test_every_variant_is_a_valid_spec_that_differs_from_its_base() -> None:
    shipped = policies()["for-you"]
    base = baseline(shipped)
    assert base.vw.args == ("--cb_type", "dm", "-q", "CI", "--learning_rate", "0.1")
    assert not base.history.enabled
    for first, found in ((BASELINE, variants(base)), (SHIPPED, shipped_variants(shipped))):
        names = [name for name, _ in found]
        assert names[0] == first
        assert len(set(names)) == len(names)
        for name, spec in found[1:]:
            assert spec != found[0][1], name
    assert shipped_variants(shipped)[0][1] == shipped


def test_the_news_run_learns_the_liked_article() -> None:
    figures = news_run(policies()["for-you"], 600, seed=1)
    assert 0.0 <= figures["ctr"] <= 1.0
    assert figures["ctr_last_quarter"] > 1.0 / 7.0  # better than a random article


def test_the_table_has_one_row_per_variant() -> None:
    row = {
        "taste": {"first_slot_ctr": 0.1, "clicks_per_slate": 0.3},
        "news": {"ctr": 0.5, "ctr_last_quarter": 0.6},
        "taste_ratio": 1.0,
        "news_ratio": 1.0,
    }
    result = {
        "rounds": 10,
        "news_rounds": 10,
        "seeds": [1],
        "world": {"n_users": 5, "base_ctr": 0.06},
        "variants": {BASELINE: row, "other": row, SHIPPED: row},
    }
    text = "\n".join(markdown(result))
    assert f"| {BASELINE} |" in text and f"| {SHIPPED} |" in text
    assert "| other |" in text
