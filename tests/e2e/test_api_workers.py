"""``serendip serve --workers 2``: the API functions in worker processes, over real HTTP.

A stack of its own in a child process (one stack per process; the package's stack runs in this
one). The ``x-serendip-worker`` response header names the worker process that handled a request;
the gateway sets it, not the handler.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local.function_pool import WORKER_HEADER
from tests.e2e.conftest import PYTHON, ROOT, Client, child_env, free_port, wait_for_health

API_KEY = "sk_e2e_workers"
SECRET = "whsec_e2e_workers"
CANDIDATES = [{"id": f"item-{i}", "category": "shoes" if i % 2 else "hats"} for i in range(8)]
CONCURRENT = 8
LEARN_SECONDS = 90.0


@dataclass
class Served:
    client: Client
    process: subprocess.Popen[bytes]


def start_serving(state: Path) -> tuple[subprocess.Popen[bytes], Client]:
    """``serendip serve --workers 2`` on a free port, with a fresh data directory in ``state``."""
    port = free_port()
    command = [PYTHON, "-m", "local.cli", "serve", "--workers", "2", "--port", str(port)]
    command += ["--stack", "workers", "--data", str(state / "data"), "--sweep-interval", "1"]
    command += ["--api-key", API_KEY, "--webhook-secret", SECRET]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=child_env(SERENDIP_STATE_DIR=str(state)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, timeout=120)
    except BaseException:
        stop_serving(process)
        raise
    return process, Client(url, API_KEY, SECRET)


def stop_serving(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, as Ctrl-C would; its exit code (killed after 30 s)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One stack serving the API from 2 workers, for the module."""
    process, client = start_serving(tmp_path_factory.mktemp("workers-state"))
    try:
        yield Served(client, process)
    finally:
        stop_serving(process)


def rank(client: Client) -> tuple[dict[str, Any], int]:
    """A rank answer and the pid of the worker that served it."""
    body = {"context": {"user": {"cohort": "a"}}, "user_id": "u-1", "candidates": CANDIDATES}
    status, payload, headers = client.call("POST", "/v1/policies/for-you/rank", body)
    assert status == 200, payload
    worker = {name.lower(): value for name, value in headers.items()}[WORKER_HEADER]
    return dict(payload), int(worker)


def concurrent_ranks(client: Client, count: int) -> list[tuple[dict[str, Any], int]]:
    with ThreadPoolExecutor(count) as threads:
        return list(threads.map(lambda _: rank(client), range(count)))


def workers_seen(client: Client, expected: int = 2, rounds: int = 20) -> set[int]:
    """The worker pids that answered rounds of concurrent ranks, once ``expected`` have.

    The pool prefers the last freed worker (as Lambda its warmest container), so a round whose
    requests happen not to overlap uses one worker; overlapping ones must use several.
    """
    pids: set[int] = set()
    for _ in range(rounds):
        pids |= {pid for _, pid in concurrent_ranks(client, CONCURRENT)}
        if len(pids) >= expected:
            break
    return pids


def gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting for its parent counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout:.0f} s")
        time.sleep(0.1)


def test_concurrent_requests_are_served_by_more_than_one_worker(served: Served) -> None:
    # When several clients rank at once
    answers = concurrent_ranks(served.client, CONCURRENT)
    # Then all are answered (each its own event), by the two workers, not by the stack's process
    assert len({answer["event_id"] for answer, _ in answers}) == CONCURRENT
    pids = {pid for _, pid in answers} | workers_seen(served.client)
    assert len(pids) == 2 and served.process.pid not in pids


def test_a_killed_worker_is_replaced(served: Served) -> None:
    # Given the two workers, one of which is killed (as the OOM killer would)
    pids = workers_seen(served.client)
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: gone(victim), 10, f"worker {victim} did not exit")
    # When clients keep ranking (each answer is checked: no request fails)
    after = workers_seen(served.client)
    # Then they are answered by the survivor and a new worker in the dead one's place
    assert victim not in after
    assert len(after) == 2 and len(after - pids) == 1


def test_rewards_posted_through_the_pool_are_learned(served: Served) -> None:
    # Given a ranked event, rewarded (and closed) through the pooled rewards function
    answer, _ = rank(served.client)
    reward = {
        "event_id": answer["event_id"],
        "item_id": answer["slate"][0]["id"],
        "value": 1.0,
        "final": True,
    }
    status, payload, _ = served.client.call("POST", "/v1/rewards", reward, signed=True)
    assert status == 202, payload
    # Then the learner in the stack's process learns it, and the pooled admin API reports it

    def learned() -> bool:
        status, models, _ = served.client.call("GET", "/v1/policies/for-you/models")
        assert status == 200, models
        return int((models.get("versions") or [{}])[0].get("events_learned", 0)) >= 1

    wait_until(learned, LEARN_SECONDS, "the reward was not learned")


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_the_workers_exit_with_the_stack(tmp_path: Path, how: signal.Signals) -> None:
    # Given a stack of its own, its workers up
    process, client = start_serving(tmp_path)
    try:
        pids = workers_seen(client)
    finally:
        # When it stops (SIGTERM, as Ctrl-C) or is killed outright (no chance to stop them)
        process.send_signal(how)
        code = process.wait(timeout=30)
    # Then its workers exit too (a clean stop exits 0)
    assert len(pids) == 2 and code == (0 if how == signal.SIGTERM else -signal.SIGKILL)
    wait_until(lambda: all(gone(pid) for pid in pids), 10, "the workers did not exit")
