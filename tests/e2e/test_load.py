"""A small bounded load run over HTTP on the shared local stack (``benchmarks.load``).

Several clients rank and post signed rewards at once for a few seconds, on a tenant and policy
of their own; the run stops by itself, the queues drain, and every accepted reward must be
accounted for. Latencies are reported, never judged: this machine's load is not ours to know.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bandit.spec import load_spec
from benchmarks.load import OPERATIONS, load_run, markdown
from functions.common import policy_store
from functions.common.auth import create_key
from local.stack import LocalStack
from tests.e2e.conftest import ROOT

TENANT = "e2e-load"
POLICY = "load-for-you"
SECONDS = 8.0
CLIENTS = 6
MIN_REQUESTS = 40  # about a quarter of what a busy 2-core machine does
CLIENT_TIMEOUT = 30.0  # a request in flight at the deadline ends within this
PATHS = {"rank": ("/v1/policies/{policy}/rank", "post"), "rewards": ("/v1/rewards", "post")}


@pytest.fixture(scope="module")
def loaded(stack: LocalStack) -> dict[str, Any]:
    """One load run of ``CLIENTS`` clients for ``SECONDS``, accounted after the drain."""
    key = create_key(TENANT, {"rank", "reward", "admin"})
    spec = load_spec(ROOT / "policies" / "for-you.yaml").model_copy(update={"name": POLICY})
    policy_store.put(TENANT, spec)
    ticks: list[int] = []
    result = load_run(
        stack,
        key.api_key,
        key.webhook_secret,
        POLICY,
        seconds=SECONDS,
        clients=CLIENTS,
        seed=7,
        progress=ticks.append,
    )
    return {**result, "progress": ticks}


def test_the_run_stops_by_itself_after_real_work(loaded: dict[str, Any]) -> None:
    assert SECONDS <= loaded["elapsed_s"] < SECONDS + CLIENT_TIMEOUT
    assert loaded["requests"] >= MIN_REQUESTS
    assert loaded["operations"]["rank"]["requests"] > 0
    assert loaded["operations"]["rewards"]["requests"] > 0
    ticks = loaded["progress"]
    assert len(ticks) >= SECONDS and ticks == sorted(ticks) and ticks[-1] == loaded["requests"]
    print(f"\nload: {json.dumps({k: v for k, v in loaded.items() if k != 'progress'})}")


def test_no_server_error_and_only_documented_statuses(loaded: dict[str, Any]) -> None:
    document = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert loaded["server_errors"] == 0
    assert loaded["exceptions"] == {}
    for op, (path, method) in PATHS.items():
        documented = set(document["paths"][path][method]["responses"])
        assert set(loaded["operations"][op]["statuses"]) <= documented - {"503"}, op


def test_every_accepted_reward_is_learned_late_or_orphan(loaded: dict[str, Any]) -> None:
    rewards, events = loaded["rewards"], loaded["events"]
    assert rewards["accepted"] > 0
    assert rewards["lost"] == 0, rewards
    assert rewards["duplicated"] == 0
    assert rewards["accepted"] == rewards["learned"] + rewards["late"] + rewards["orphan"]
    assert rewards["learned"] > 0
    # Every served event was closed, learned once, and counted by the model head
    assert events["ranked"] == events["closed"] == rewards["events_learned"]
    assert events["head_events_learned"] == events["closed"]


def test_latency_percentiles_are_reported_in_order(loaded: dict[str, Any]) -> None:
    for op in OPERATIONS:
        timing = loaded["operations"][op]
        assert 0 < timing["p50_ms"] <= timing["p95_ms"] <= timing["p99_ms"] <= timing["max_ms"]
    assert loaded["throughput_rps"] > 0


def test_markdown_section_shows_the_run(loaded: dict[str, Any]) -> None:
    lines = markdown(loaded)
    assert lines[0] == "## Load on the local stack"
    text = "\n".join(lines)
    assert f"| {loaded['requests']:,} | {CLIENTS} |" in text
    assert "| rank |" in text and "| rewards |" in text
