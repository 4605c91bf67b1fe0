"""Marginal-propensity logs: per-position marginals, propensity tables, and their estimates."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.decision_log import (
    DecisionRecord,
    ExplorationLog,
    LoggedCandidate,
    LoggedReward,
    LoggedSlot,
)
from bandit.evaluate.marginals import position_marginals
from bandit.evaluate.propensity_table import load_table
from bandit.evaluate.replay import evaluate
from bandit.evaluate.slot_draws import slot_distributions
from bandit.serve.ranker import Ranker
from bandit.spec import parse_spec
from local.cli import main as cli

ITEMS = 6
POSITIONS = 3
UNIFORM = parse_spec(
    {
        "name": "uniform",
        "slate_size": POSITIONS,
        "exploration": {"algorithm": "epsilon_greedy", "budget": 1.0},
        "cold_start": {"segments": [{"name": "all"}]},
    }
)


def _softmax_without(weights: np.ndarray) -> object:
    """Draws without repetition, each slot in proportion to ``weights`` over what is left."""

    def conditional(prefix: tuple[int, ...]) -> np.ndarray:
        left = weights.copy()
        left[list(prefix)] = 0.0
        return left / left.sum() if left.sum() > 0 else left

    return conditional


def _exact(weights: np.ndarray, positions: int) -> np.ndarray:
    """Marginals by enumerating every ordered prefix."""
    conditional = _softmax_without(weights)
    out = np.zeros((positions, len(weights)))
    for k in range(positions):
        for prefix in itertools.permutations(range(len(weights)), k):
            chance = 1.0
            for depth in range(k):
                chance *= conditional(prefix[:depth])[prefix[depth]]  # type: ignore[operator]
            out[k] += chance * conditional(prefix)  # type: ignore[operator]
    return out


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0.05, 5.0), min_size=3, max_size=5), st.integers(0, 2**31))
def test_position_one_is_exact_and_every_position_sums_to_one(
    weights: list[float], seed: int
) -> None:
    array = np.asarray(weights)
    marginals = position_marginals(
        _softmax_without(array), POSITIONS, len(array), 16, np.random.default_rng(seed)
    )
    assert marginals[0] == pytest.approx(array / array.sum())
    assert marginals.sum(axis=1) == pytest.approx(np.ones(POSITIONS))


def test_later_positions_are_unbiased_estimates_of_the_exact_marginals() -> None:
    # Given a policy that strongly prefers some items (so later positions differ from the first)
    weights = np.array([8.0, 4.0, 2.0, 1.0, 0.5])
    exact = _exact(weights, POSITIONS)
    # When the Monte Carlo marginals of many independent runs are averaged
    runs = [
        position_marginals(_softmax_without(weights), POSITIONS, 5, 32, np.random.default_rng(s))
        for s in range(400)
    ]
    mean = np.mean(runs, axis=0)
    spread = np.std(runs, axis=0) / np.sqrt(len(runs))
    # Then they agree with enumeration within 4 standard errors, entry by entry
    assert np.all(np.abs(mean - exact) <= 4 * spread + 1e-12)
    assert exact[2, 0] < exact[0, 0] / 2  # the favourite is rarely still there at position 3


def test_a_deterministic_policy_has_exact_marginals_at_every_position() -> None:
    def greedy(prefix: tuple[int, ...]) -> np.ndarray:
        out = np.zeros(4)
        out[next(i for i in (2, 0, 3, 1) if i not in prefix)] = 1.0
        return out

    marginals = position_marginals(greedy, 3, 4, 8, np.random.default_rng(0))
    assert marginals.tolist() == [[0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]]


def _marginal_log(events: int, seed: int) -> list[DecisionRecord]:
    """A per-position log: each event one slot at a random position, drawn uniformly (1 / 6);
    item ``0`` is clicked half the time, the others a tenth."""
    rng = np.random.default_rng(seed)
    candidates = [LoggedCandidate(id=str(i), features={"n": i}) for i in range(ITEMS)]
    records = []
    for event in range(events):
        item, position = int(rng.integers(ITEMS)), int(rng.integers(1, POSITIONS + 1))
        clicked = rng.random() < (0.5 if item == 0 else 0.1)
        records.append(
            DecisionRecord(
                event_id=f"e{event}",
                policy="log",
                timestamp=float(event),
                segment="all",
                candidates=candidates,
                slate=[
                    LoggedSlot(
                        item_id=str(item), position=position, probability=1 / ITEMS, explored=True
                    )
                ],
                rewards=[LoggedReward(item_id=str(item), type="click", timestamp=float(event))]
                if clicked
                else [],
                seed=0,
                exploration=ExplorationLog(budget=1.0, rate=1.0),
                propensities="marginal",
            )
        )
    return records


def test_a_candidate_is_valued_by_its_marginal_at_the_logged_position() -> None:
    record = _marginal_log(1, seed=3)[0].model_copy(
        update={"slate": [LoggedSlot(item_id="2", position=3, probability=1 / 6, explored=True)]}
    )
    probabilities, distribution = slot_distributions(Ranker(UNIFORM, clock=lambda: 0.0), record)
    # Uniform without repetition puts each item at position 3 with probability 1/6: estimated
    # from 256 prefixes, each the exact 1/4 over what is left
    assert probabilities[0] == pytest.approx(1 / ITEMS, rel=0.1)
    assert distribution.sum() == pytest.approx(1.0)
    # The estimate is the same on every run (seeded by the event)
    again, _ = slot_distributions(Ranker(UNIFORM, clock=lambda: 0.0), record)
    assert again == probabilities


def test_uniform_random_on_a_uniform_marginal_log_matches_the_observed_value() -> None:
    records = _marginal_log(3000, seed=1)
    result = evaluate(records, {"uniform": UNIFORM}, interval="el")
    value = result.candidates[0].first_slot
    assert result.propensities == "marginal"
    assert value.low <= result.logged_first_slot <= value.high
    assert value.value == pytest.approx(result.logged_first_slot, rel=0.03)
    assert value.ess == pytest.approx(3000, rel=0.02)


def _table(path: Path, rows: list[tuple[object, ...]]) -> Path:
    lines = ["item_id,position,probability,event_id"]
    lines += [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_propensity_table_is_estimated_by_ips_and_snips_as_by_hand(tmp_path: Path) -> None:
    records = _marginal_log(2000, seed=4)
    # A context-free policy: item 0 at every position with probability 0.5, item 1 with 0.5
    rows: list[tuple[object, ...]] = [(i, k, 0.5, "") for i in (0, 1) for k in (1, 2, 3)]
    table = load_table(_table(tmp_path / "t.csv", [*rows, (3, 1, 1.0, "e7")]))
    assert table.probability("e7", "3", 1) == 1.0 and table.probability("e8", "3", 1) == 0.0
    ips = evaluate(records, {}, method="ips", tables={"half": table}).candidates[0]
    snips = evaluate(records, {}, method="snips", tables={"half": table}).candidates[0]
    rewards = np.array([float(bool(r.rewards)) for r in records])
    target = np.array([table.slot_probabilities(r)[0] for r in records])
    weights = target * ITEMS
    assert ips.first_slot.value == pytest.approx(float(np.mean(weights * rewards)))
    assert snips.first_slot.value == pytest.approx(
        float(np.sum(weights * rewards) / np.sum(weights))
    )
    # Its true value is (0.5 + 0.1) / 2 = 0.3
    assert snips.first_slot.low <= 0.3 <= snips.first_slot.high


def test_a_table_that_cannot_be_a_policy_is_refused_naming_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"position 1's probabilities sum to 1\.200000 > 1"):
        load_table(_table(tmp_path / "a.csv", [(0, 1, 0.6, ""), (1, 1, 0.6, "")]))
    with pytest.raises(ValueError, match="line 2: position must be >= 1"):
        load_table(_table(tmp_path / "b.csv", [(0, 0, 0.5, "")]))
    (tmp_path / "c.csv").write_text("item,probability\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no column 'item_id'"):
        load_table(tmp_path / "c.csv")


def test_serendip_evaluate_takes_a_propensity_table_next_to_specs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bandit.decision_log import write_jsonl

    logs = tmp_path / "log.jsonl"
    with open(logs, "w", encoding="utf-8") as sink:
        write_jsonl(_marginal_log(600, seed=5), sink, by_reference=True)
    table = _table(tmp_path / "t.csv", [(0, k, 1.0, "") for k in (1, 2, 3)])
    spec = tmp_path / "uniform.yaml"
    spec.write_text(UNIFORM.model_dump_json(), encoding="utf-8")
    argv = ["evaluate", "--logs", str(logs), "--policy", str(spec)]
    assert cli([*argv, "--propensities", f"always-0={table}"]) == 0
    out = capsys.readouterr().out
    assert "first logged" in out and "always-0" in out
    assert "propensities: marginal (per position)" in out
    with pytest.raises(SystemExit, match="--propensities wants NAME=FILE"):
        cli([*argv, "--propensities", str(table)])
    with pytest.raises(SystemExit, match="--propensities takes --method snips or ips, not dr"):
        cli([*argv, "--propensities", f"t={table}", "--method", "dr"])
    # A log that cannot be read is a clear error, not a traceback
    capsys.readouterr()
    missing = ["evaluate", "--logs", str(tmp_path / "none.jsonl"), "--propensities", f"t={table}"]
    assert cli(missing) == 2
    assert "serendip evaluate: [Errno 2] No such file" in capsys.readouterr().err


def test_dr_on_a_marginal_log_uses_the_marginal_distribution_and_recovers_the_value() -> None:
    records = _marginal_log(1500, seed=6)
    result = evaluate(records, {"uniform": UNIFORM}, method="dr")
    value = result.candidates[0]
    assert value.terms is not None and value.terms.reward_hat_target is not None
    # Uniform's true value: (0.5 + 5 * 0.1) / 6 = 1/6
    assert value.first_slot.low <= 1 / 6 <= value.first_slot.high
    assert value.first_slot.value == pytest.approx(1 / 6, abs=0.03)
