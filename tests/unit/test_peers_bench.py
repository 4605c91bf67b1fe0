"""The peer benchmark runs end to end with sane numbers, and its numpy LinUCB is exact."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from mabwiser.mab import MAB, LearningPolicy

from bandit.domain import Candidate
from benchmarks.linucb import FeatureIndex, JointEncoder, SharedLinUCB
from benchmarks.peers import (
    MABWISER,
    ORACLE,
    QUICK_DECISIONS,
    SERENDIP,
    SIZES,
    markdown,
    peers,
    stream_decisions,
)


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    calls: list[int] = []
    data = peers(quick=True, progress=calls.append)
    assert calls == list(range(1, stream_decisions(True) + 1))
    return data


def _ridge(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    a = l2 * np.eye(x.shape[1]) + x.T @ x
    return np.linalg.solve(a, x.T @ y), np.linalg.inv(a)


def test_floor_reports_every_size_with_positive_ratios(result: dict[str, Any]) -> None:
    sizes = result["floor"]["sizes"]
    assert [(row["candidates"], row["slots"]) for row in sizes] == list(SIZES)
    for row in sizes:
        assert row["prebuilt_matches_text"] is True
        for part in ("core_rank", "vw_text", "vw_prebuilt"):
            assert 0.0 < row[part]["p50_ms"] <= row[part]["p95_ms"] <= row[part]["p99_ms"]
        for ratio in ("ratio_p50", "ratio_p95", "ratio_p99", "ratio_text_p50"):
            assert row[ratio] > 0.0


def test_every_policy_served_the_same_requests(result: dict[str, Any]) -> None:
    stream = result["stream"]
    policies = stream["policies"]
    assert {SERENDIP, ORACLE, *MABWISER} <= set(policies)
    assert stream["common_decisions"] == QUICK_DECISIONS
    for name, row in policies.items():
        assert row["decisions"] == QUICK_DECISIONS, name
        assert row["common"]["decisions"] == QUICK_DECISIONS, name


def test_ctrs_are_probabilities_and_the_oracle_is_best(result: dict[str, Any]) -> None:
    policies = result["stream"]["policies"]
    for name, row in policies.items():
        for window in ("common", "all"):
            for key, value in row[window].items():
                if "ctr" in key:
                    assert 0.0 <= value <= 1.0, (name, window, key)
        assert row["decision"]["p50_ms"] > 0.0
        assert row["learn_ms_per_decision"] >= 0.0
        assert row["decision_p50_vs_serendip"] > 0.0
    best = policies[ORACLE]["common"]["expected_ctr"]
    assert all(row["common"]["expected_ctr"] <= best for row in policies.values())


def test_targets_and_markdown_carry_the_numbers(result: dict[str, Any]) -> None:
    assert len(result["targets"]) == 3
    assert all(isinstance(row["met"], bool) for row in result["targets"])
    lines = markdown(result)
    text = "\n".join(lines)
    for row in result["targets"]:
        assert f"| {row['target']} | {row['measured']} | " in text
    for name in result["stream"]["policies"]:
        assert sum(line.startswith(f"| {name} |") for line in lines) == 1
    assert sum(line.startswith(f"| {c} x {s} |") for c, s in SIZES for line in lines) == 3


def test_numpy_linucb_is_the_ridge_solution_and_its_bound() -> None:
    rng = np.random.default_rng(4)
    dims, l2, alpha = 12, 0.5, 0.7
    model = SharedLinUCB(dims, alpha=alpha, l2=l2)
    dense_rows, rewards = [], []
    for width in (3, 5):  # two batches; the second reaches columns the first never touched
        columns = np.stack([rng.choice(width * 2, 4, replace=False) for _ in range(30)])
        values = rng.normal(size=columns.shape)
        y = rng.random(30)
        model.update((columns, values), y)
        model.refit()
        dense = np.zeros((30, dims))
        np.add.at(dense, (np.arange(30)[:, None], columns), values)
        dense_rows.append(dense)
        rewards.append(y)
    x, y = np.vstack(dense_rows), np.concatenate(rewards)
    theta, a_inv = _ridge(x, y, l2)
    np.testing.assert_allclose(model.theta, theta, atol=1e-10)
    probe = (np.array([[0, 3, 9, 11], [1, 2, 4, 6]]), rng.normal(size=(2, 4)))
    dense_probe = np.zeros((2, dims))
    np.add.at(dense_probe, (np.arange(2)[:, None], probe[0]), probe[1])
    bonus = np.sqrt(np.einsum("rd,de,re->r", dense_probe, a_inv, dense_probe))
    np.testing.assert_allclose(model.scores(probe), dense_probe @ theta + alpha * bonus)


def test_numpy_linucb_scores_as_mabwiser_linucb_does() -> None:
    rng = np.random.default_rng(8)
    columns = np.stack([rng.choice(10, 3, replace=False) for _ in range(40)])
    values = np.ones(columns.shape)
    rewards = (rng.random(40) < 0.3).astype(float)
    model = SharedLinUCB(10, alpha=1.0)
    model.update((columns, values), rewards)
    model.refit()
    dense = np.zeros((40, 10))
    np.add.at(dense, (np.arange(40)[:, None], columns), values)
    mab = MAB(["x"], LearningPolicy.LinUCB(alpha=1.0, l2_lambda=1.0))
    mab.fit(["x"] * 40, rewards, dense)
    theirs = [row["x"] for row in mab.predict_expectations(dense[:5])]
    np.testing.assert_allclose(model.scores((columns[:5], values[:5])), theirs)


def test_feature_index_is_exact_then_hashes_into_its_capacity() -> None:
    index = FeatureIndex(3)
    assert [index.column(name) for name in ("a", "b", "c", "a")] == [0, 1, 2, 0]
    late = index.column("d")
    assert 0 <= late < 3
    assert index.column("d") == late
    assert (index.size, index.overflowed) == (3, 2)


def test_joint_rows_hold_context_item_and_crossed_tokens() -> None:
    encoder = JointEncoder(64)
    context = {"user": {"cohort": "c1", "device": "ios"}}
    item = Candidate("item-1", {"length": "short"}, category="cat-1", creator="cr-1")
    columns, values = encoder.rows(context, [item, Candidate("item-2")])
    # bias + 2 context + 4 item (id, category, creator, length) + 2 x 2 crosses
    assert columns.shape == (2, 11)
    assert values[0].tolist() == [1.0] * 11
    # the second candidate has only an id: bias + 2 context + 1 item, padded with zeros
    assert values[1].tolist() == [1.0] * 4 + [0.0] * 7
    dense = encoder.dense((columns, values))
    assert dense.sum(axis=1).tolist() == [11.0, 4.0]
    assert dense[:, 0].tolist() == [1.0, 1.0]
