"""The Open Bandit Dataset benchmark's Bernoulli Thompson sampling marginals, without the data."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from bandit.evaluate.propensity_table import load_table
from benchmarks.obd import bts_exact, bts_monte_carlo, write_table

# A small production-like prior: a clear favourite, two close runners-up, a long tail
ALPHA = np.array([60.0, 20.0, 21.0, 5.0, 3.0, 2.0])
BETA = np.array([9_000.0, 9_000.0, 9_000.0, 9_000.0, 9_000.0, 9_000.0])


def test_exact_marginals_are_distributions_that_monte_carlo_agrees_with() -> None:
    exact = bts_exact(ALPHA, BETA, grid=20_000)
    assert exact.sum(axis=0) == pytest.approx(np.ones(3), abs=1e-9)
    assert np.all(exact.sum(axis=1) <= 1 + 1e-9)  # an item is at most once in the top 3
    # The favourite leads position 1; the runner-up with the larger alpha leads position 2
    assert exact[0, 0] > 0.99 and exact[2, 1] > exact[1, 1] > exact[3, 1]
    sampled = bts_monte_carlo(ALPHA, BETA, draws=200_000, seed=1)
    # 200,000 draws: each frequency within 5 standard errors of the exact probability
    error = np.sqrt(exact * (1 - exact) / 200_000)
    assert np.all(np.abs(sampled - exact) <= 5 * error + 1e-6)


def test_monte_carlo_uses_obps_generator_so_its_numbers_are_reproducible() -> None:
    first = bts_monte_carlo(ALPHA, BETA, draws=1_000, seed=12345)
    theta = np.random.RandomState(12345).beta(ALPHA, BETA, size=(1_000, 6))
    top = np.argsort(theta, axis=1)[:, ::-1][:, :3]
    assert first[:, 0].tolist() == (np.bincount(top[:, 0], minlength=6) / 1_000).tolist()


def test_the_written_table_reads_back_as_the_policy(tmp_path: Path) -> None:
    exact = bts_exact(ALPHA, BETA, grid=20_000)
    table = load_table(write_table(exact, tmp_path / "bts.csv"))
    assert table.probability("any", "2", 3) == float(exact[2, 2])
    with open(tmp_path / "bts.csv", encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == 18
