"""Acceptance: logs produced by the local stack, exported and evaluated offline.

Simulated users go through the HTTP API under a for-you variant (budget 0.05, 0.10 for new
users); ``serendip export`` reads the decision log back from the running stack, and ``serendip
evaluate`` compares it with uniform random on that log: it must win with non-overlapping 95%
intervals.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bandit.decision_log import read_jsonl
from bandit.replay import evaluate
from bandit.spec import PolicySpec, load_spec
from functions.common import policy_store
from functions.common.auth import create_key
from local.client import SerendipClient
from local.demo import run_demo
from local.stack import LocalStack
from tests.e2e.conftest import PYTHON, ROOT, child_env

TENANT = "e2e-evaluate"
EVENTS = 800
POLICY = "steady"


def logging_spec() -> PolicySpec:
    """for-you (budget 0.05, 0.10 for new users) without the popularity prior.

    The stack's popularity counters move on their own clock (after each save), so a policy
    that blends them in cannot be replayed exactly; without them the replay reproduces the
    served probabilities and the comparison measures the policies, not the replay.
    """
    for_you = load_spec(ROOT / "policies" / "for-you.yaml")
    cold_start = for_you.cold_start.model_copy(
        update={"prior_examples": 0, "cold_user_prior_weight": 0.0}
    )
    return for_you.model_copy(update={"name": POLICY, "cold_start": cold_start})


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
    policy_store.put(TENANT, logging_spec())
    client = SerendipClient(stack.url, key.api_key, key.webhook_secret)
    run = run_demo(client, policy=POLICY, decisions=EVENTS, seconds=300, candidates=20, seed=11)
    assert run.errors == 0, run.failures
    stack.drain(timeout=120)
    out = tmp_path_factory.mktemp("logs") / "decisions.jsonl"
    import subprocess

    with out.open("w") as sink:
        done = subprocess.run(
            [PYTHON, "-m", "local.cli", "export", "--policy", POLICY, "--tenant", TENANT],
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
    for_you = tmp_path / "steady.yaml"
    for_you.write_text(yaml.safe_dump(logging_spec().model_dump(mode="json")))
    result = evaluate(
        read_jsonl(exported), {POLICY: load_spec(for_you), "uniform": load_spec(uniform)}
    )
    best, confident = result.best("first_slot")
    assert best.name == POLICY and confident
    values = {v.name: v for v in result.candidates}
    assert values[POLICY].first_slot.low > values["uniform"].first_slot.high
    # Replaying the logging policy reproduces what it observed
    assert values[POLICY].first_slot.contains(result.logged_first_slot)
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
    assert f"better by first-slot value (unbiased): {POLICY}" in done.stdout
