"""Cold start: popularity prior, model/prior blend, new-item detection."""

from __future__ import annotations

import numpy as np
import pytest

from bandit.domain import Candidate
from bandit.serve.coldstart import (
    ItemStats,
    PopularityPrior,
    blend,
    exploration_weights,
    is_new_item,
    model_weight,
)
from bandit.spec import ColdStartSpec, NewItemSpec

NOW = 1_700_000_000.0


def test_prior_smooths_toward_the_global_rate() -> None:
    prior = PopularityPrior({"a": ItemStats(100, 30), "b": ItemStats(0, 0)}, smoothing=20)
    assert prior.global_rate == pytest.approx(0.3)
    assert prior.score("a") == pytest.approx(0.3)
    assert prior.score("unknown") == pytest.approx(0.3)
    prior.observe("b", 10, 0)
    # b: (0 + 20 * 30/110) / (10 + 20)
    assert prior.score("b") == pytest.approx(20 * (30 / 110) / 30)
    assert prior.impressions("b") == 10


def test_prior_with_no_data_scores_zero() -> None:
    assert PopularityPrior({}).scores(["x", "y"]).tolist() == [0.0, 0.0]


def test_model_weight_ramps_with_examples_and_keeps_prior_for_cold_users() -> None:
    spec = ColdStartSpec(prior_examples=200, cold_user_prior_weight=0.25)
    assert model_weight(spec, 0, "mature") == 0.0
    assert model_weight(spec, 100, "mature") == 0.5
    assert model_weight(spec, 10_000, "mature") == 1.0
    assert model_weight(spec, 10_000, "cold") == 0.75
    assert model_weight(ColdStartSpec(prior_examples=0), 0, "warm") == 1.0


def test_blend_is_linear() -> None:
    blended = blend(np.array([1.0, 0.0]), np.array([0.0, 1.0]), 0.25)
    assert blended.tolist() == [0.25, 0.75]


def test_new_items_by_age_or_impressions() -> None:
    spec = NewItemSpec(max_age_hours=24, max_impressions=50, boost=3)
    young = Candidate("y", created_at=NOW - 3600)
    old = Candidate("o", created_at=NOW - 10 * 86400)
    assert is_new_item(young, spec, NOW, impressions=1000)
    assert is_new_item(old, spec, NOW, impressions=10)
    assert not is_new_item(old, spec, NOW, impressions=50)
    prior = PopularityPrior({"o": ItemStats(500, 5)})
    weights = exploration_weights([young, old, Candidate("fresh")], spec, NOW, prior)
    assert weights.tolist() == [3.0, 1.0, 3.0]
