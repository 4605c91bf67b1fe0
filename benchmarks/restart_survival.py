"""Rewards accepted before a restart of the local stack are learned after it.

A stack with a data directory (as ``serendip serve`` runs) and no learner ranks ``events``
events and accepts a final reward for each (202: queued, not yet learned); it stops cleanly.
A second stack on the same data directory, with its learner, restores the tables and queues;
every event whose reward was accepted must then be learned. Runs in a fresh interpreter (one
local stack per process): ``python -m benchmarks.restart_survival [--events N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarks.fresh_process import ROOT, child_environment

EVENTS = 200
TENANT = "restart-bench"
POLICY = "for-you"
CANDIDATES = [{"id": f"item-{n}", "features": {"n": n}} for n in range(8)]


def _run(events: int) -> dict[str, Any]:
    """In this process: accept rewards, stop, restart, learn; the counts."""
    from functions.common import policy_store
    from functions.common.auth import create_key
    from local.client import SerendipClient
    from local.stack import POLICIES_DIR, LocalStack

    with tempfile.TemporaryDirectory(prefix="serendip-restart-") as state:
        os.environ["SERENDIP_STATE_DIR"] = state
        data = Path(state) / "data"
        accepted: list[str] = []
        with LocalStack(
            port=0, record_state=False, log_level="ERROR", data_dir=data, learn=False
        ) as stack:
            key = create_key(TENANT, {"rank", "reward", "admin"}, name="restart bench")
            policy_store.seed(TENANT, POLICIES_DIR)
            client = SerendipClient(stack.url, key.api_key, key.webhook_secret)
            for _ in range(events):
                ranked = client.rank(
                    POLICY, {"context": {"user": {"a": 1}}, "candidates": CANDIDATES}
                )
                if ranked.status != 200:
                    continue
                slot = ranked.body["slate"][0]["id"]
                reward = {
                    "event_id": ranked.body["event_id"],
                    "item_id": slot,
                    "value": 1.0,
                    "final": True,
                }
                if client.post_rewards([reward]).status == 202:
                    accepted.append(ranked.body["event_id"])
        stopped = time.perf_counter()
        with LocalStack(port=0, record_state=False, log_level="ERROR", data_dir=data) as stack:
            restarted = time.perf_counter() - stopped
            client = SerendipClient(stack.url, key.api_key, key.webhook_secret)
            began = time.perf_counter()
            stack.drain(timeout=120)
            drained = time.perf_counter() - began
            learned = sum(
                1
                for event_id in accepted
                if client.request("GET", f"/v1/events/{event_id}").body.get("status") == "learned"
            )
    return {
        "events": events,
        "accepted": len(accepted),
        "learned_after_restart": learned,
        "lost": len(accepted) - learned,
        "restart_seconds": restarted,
        "learn_seconds": drained,
    }


def restart_survival(events: int = EVENTS, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run the scenario in a fresh interpreter and return its figures.

    ``env``: the child's environment (default: ``child_environment()`` of this process now).
    """
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.restart_survival", "--events", str(events), "--json"],
        cwd=ROOT,
        env=dict(env) if env is not None else child_environment(),
        capture_output=True,
        text=True,
        timeout=1800,  # a safety cap for a hung child
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"restart benchmark failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def markdown(result: dict[str, Any]) -> list[str]:
    """The section of docs/performance.md."""
    verdict = "all learned" if result["lost"] == 0 else f"{result['lost']} lost"
    return [
        "## Restart survival",
        "",
        f"{result['accepted']:,} final rewards answered 202 by a local stack with no learner, "
        f"which then stopped cleanly (SIGTERM-like `stop()`); restarted on the same data "
        f"directory in {result['restart_seconds']:.1f} s, its learner learned "
        f"{result['learned_after_restart']:,} of them in {result['learn_seconds']:.1f} s: "
        f"**{verdict}**. Command: `.venv/bin/python -m benchmarks.restart_survival`.",
        "",
    ]


def main() -> None:
    """``--events N``; ``--json`` prints only the figures (the parent reads them)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=EVENTS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = _run(args.events)
    if args.json:
        print(json.dumps(result))
    else:
        print("\n".join(markdown(result)))


if __name__ == "__main__":
    main()
