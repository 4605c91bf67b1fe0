"""Acceptance: logs produced by the local stack, exported and evaluated offline.

Simulated users go through the HTTP API under for-you (budget 0.05, 0.10 for new users);
``serendip export`` reads the decision log back from the running stack, and ``serendip
evaluate`` compares for-you with uniform random on it: for-you must win with non-overlapping
95% intervals.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bandit.decision_log import read_jsonl
from bandit.replay import evaluate
from bandit.spec import load_spec
from functions.common import policy_store
from functions.common.auth import create_key
from local.client import SerendipClient
from local.demo import run_demo
from local.stack import LocalStack
from tests.e2e.conftest import PYTHON, ROOT, child_env

TENANT = "e2e-evaluate"
EVENTS = 800
UNIFORM_SPEC = """\
name: uniform
slate_size: 5
exploration: {algorithm: epsilon_greedy, budget: 1.0}
cold_start:
  segments: [{name: all}]
"""


@pytest.fixture(scope="module")
def exported(stack: LocalStack, state_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = create_key(TENANT, {"rank", "reward", "admin"})
    policy_store.seed(TENANT, ROOT / "policies")
    client = SerendipClient(stack.url, key.api_key, key.webhook_secret)
    run = run_demo(client, decisions=EVENTS, seconds=300, candidates=20, seed=11)
    assert run.errors == 0, run.failures
    stack.drain(timeout=120)
    out = tmp_path_factory.mktemp("logs") / "decisions.jsonl"
    import subprocess

    with out.open("w") as sink:
        done = subprocess.run(
            [PYTHON, "-m", "local.cli", "export", "--policy", "for-you", "--tenant", TENANT],
            cwd=ROOT,
            env=child_env(SERENDIP_STATE_DIR=str(state_dir)),
            stdout=sink,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert f"exported {EVENTS} decisions" in done.stderr
    return out


def test_export_writes_every_decision_with_its_rewards(exported: Path) -> None:
    records = list(read_jsonl(exported))
    assert len(records) == EVENTS
    assert all(len(r.rewards) == len(r.slate) for r in records)  # every shown item reported


def test_evaluate_names_the_better_policy_with_non_overlapping_intervals(
    exported: Path, tmp_path: Path
) -> None:
    uniform = tmp_path / "uniform.yaml"
    uniform.write_text(UNIFORM_SPEC)
    for_you = ROOT / "policies" / "for-you.yaml"
    result = evaluate(
        read_jsonl(exported), {"for-you": load_spec(for_you), "uniform": load_spec(uniform)}
    )
    best, confident = result.best("first_slot")
    assert best.name == "for-you" and confident
    values = {v.name: v for v in result.candidates}
    assert values["for-you"].first_slot.low > values["uniform"].first_slot.high
    import subprocess

    done = subprocess.run(
        [
            PYTHON,
            "-m",
            "local.cli",
            "evaluate",
            "--logs",
            str(exported),
            "--policy",
            str(for_you),
            "--policy",
            str(uniform),
        ],
        cwd=ROOT,
        env=child_env(COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "better by first-slot value (unbiased): for-you" in done.stdout
