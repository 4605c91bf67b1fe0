"""Acceptance: logs produced by the local stack, exported and evaluated offline.

Simulated users go through the HTTP API under a for-you variant that explores half of its slots
(one segment, budget 0.5), so the log supports both candidates well; ``serendip export`` reads
the decision log back from the running stack, and ``serendip evaluate`` compares, on that log,
the same model with a 5% budget against uniform random: the 5% policy must win with
non-overlapping 95% intervals. Replaying the logging policy itself must reproduce what it
observed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from bandit.decision_log import read_jsonl
from bandit.evaluate.replay import evaluate
from bandit.spec import ExplorationAlgorithm, PolicySpec, SegmentSpec, load_spec
from functions.common import policy_store
from functions.common.auth import create_key
from local.client import SerendipClient
from local.demo import run_demo
from local.stack import LocalStack
from tests.e2e.conftest import PYTHON, ROOT, child_env

TENANT = "e2e-evaluate"
EVENTS = 1000
LOGGING = "steady"


def variant(name: str, budget: float) -> PolicySpec:
    """for-you with one segment at ``budget``, uniform exploration, no popularity prior.

    The stack's popularity counters move on their own clock (after each save), so a policy
    that blends them in cannot be replayed exactly; without them the replay reproduces the
    served probabilities and the comparison measures the policies, not the replay.
    """
    for_you = load_spec(ROOT / "policies" / "for-you.yaml")
    cold_start = for_you.cold_start.model_copy(
        update={
            "prior_examples": 0,
            "cold_user_prior_weight": 0.0,
            "segments": (SegmentSpec(name="all"),),
        }
    )
    exploration = for_you.exploration.model_copy(
        update={"algorithm": ExplorationAlgorithm.EPSILON_GREEDY, "budget": budget}
    )
    return for_you.model_copy(
        update={"name": name, "cold_start": cold_start, "exploration": exploration}
    )


def write_spec(spec: PolicySpec, folder: Path) -> Path:
    path = folder / f"{spec.name}.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    return path


@pytest.fixture(scope="module")
def exported(stack: LocalStack, state_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = create_key(TENANT, {"rank", "reward", "admin"})
    policy_store.put(TENANT, variant(LOGGING, 0.5))
    client = SerendipClient(stack.url, key.api_key, key.webhook_secret)
    run = run_demo(client, policy=LOGGING, decisions=EVENTS, seconds=900, candidates=20, seed=11)
    assert run.errors == 0, run.failures
    stack.drain(timeout=120)
    out = tmp_path_factory.mktemp("logs") / "decisions.jsonl"
    with out.open("w") as sink:
        done = subprocess.run(
            [PYTHON, "-m", "local.cli", "export", "--policy", LOGGING, "--tenant", TENANT],
            cwd=ROOT,
            env=child_env(SERENDIP_STATE_DIR=str(state_dir)),
            stdout=sink,
            stderr=subprocess.PIPE,
            text=True,
            timeout=900,  # a safety cap for a hung child, not a deadline to meet
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert f"exported {EVENTS} decisions" in done.stderr
    return out


def test_export_writes_every_decision_with_its_rewards(exported: Path) -> None:
    records = list(read_jsonl(exported))
    assert len(records) == EVENTS
    assert all(len(r.rewards) == len(r.slate) for r in records)  # every shown item reported


def test_replaying_the_logging_policy_reproduces_what_it_observed(exported: Path) -> None:
    result = evaluate(read_jsonl(exported), {LOGGING: variant(LOGGING, 0.5)})
    (replayed,) = result.candidates
    assert replayed.unsupported == 0
    assert replayed.first_slot.contains(result.logged_first_slot)
    assert replayed.first_slot.value == pytest.approx(result.logged_first_slot, abs=0.01)


def test_evaluate_names_the_better_policy_with_non_overlapping_intervals(
    exported: Path, tmp_path: Path
) -> None:
    exploit, uniform = variant("budget-5pct", 0.05), variant("uniform", 1.0)
    result = evaluate(read_jsonl(exported), {exploit.name: exploit, uniform.name: uniform})
    best, confident = result.best("first_slot")
    assert best.name == exploit.name and confident
    values = {v.name: v for v in result.candidates}
    assert values[exploit.name].first_slot.low > values[uniform.name].first_slot.high
    done = subprocess.run(
        [
            PYTHON,
            "-m",
            "local.cli",
            "evaluate",
            "--logs",
            str(exported),
            "--policy",
            str(write_spec(exploit, tmp_path)),
            "--policy",
            str(write_spec(uniform, tmp_path)),
        ],
        cwd=ROOT,
        env=child_env(COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=900,  # a safety cap for a hung child, not a deadline to meet
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"better by first-slot value (unbiased): {exploit.name}" in done.stdout
