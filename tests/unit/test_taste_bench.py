"""``benchmarks.taste``: the history comparison on the taste world runs and is well-formed."""

from __future__ import annotations

from benchmarks.taste import taste_bench


def test_a_short_run_reports_every_policy_below_the_oracle() -> None:
    result = taste_bench(400, seed=3, users=100)
    names = ("for-you", "for-you + history", "context only (best)")
    oracle = result["oracle"]
    for name in names:
        figures = result[name]
        assert 0.0 < figures["first_slot_ctr"] <= oracle["first_slot_ctr"]
        assert 0.0 < figures["clicks_per_slate"] <= oracle["clicks_per_slate"]
    assert result["world"] == {"n_users": 100, "base_ctr": 0.06}
