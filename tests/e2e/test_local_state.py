"""`serendip serve` keeps its state across restarts, per stack, and its moto dies with it.

Each test runs real `serendip serve` processes (real HTTP on loopback) with their state under a
temporary ``SERENDIP_STATE_DIR``; waits are on progress, with generous deadlines.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.conftest import PYTHON, ROOT, Client, child_env, wait_for_health
from tests.e2e.test_local_stack import CANDIDATES, cli

START_SECONDS = 90.0
LEARN_SECONDS = 120.0


@dataclass
class Served:
    """A running `serendip serve` and what its state file says."""

    process: subprocess.Popen[str]
    state: dict[str, Any]
    output: list[str]

    @property
    def url(self) -> str:
        return str(self.state["url"])

    def demo(self) -> Client:
        return Client(self.url, self.state["api_key"], self.state["webhook_secret"])

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=90)


def _read(stream: Any, lines: list[str], up: threading.Event) -> None:
    for line in stream:
        lines.append(line)
        if "Press Ctrl-C to stop" in line:
            up.set()


@dataclass
class _Launched:
    """A `serendip serve` started, with the reader collecting its output."""

    args: tuple[str, ...]
    process: subprocess.Popen[str]
    output: list[str]
    up: threading.Event
    reader: threading.Thread


def _launch(state_dir: Path, args: tuple[str, ...]) -> _Launched:
    process = subprocess.Popen(
        [PYTHON, "-m", "local.cli", "serve", "--port", "0", "--workers", "1", *args],
        cwd=ROOT,
        env=child_env(SERENDIP_STATE_DIR=str(state_dir)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    up = threading.Event()
    reader = threading.Thread(target=_read, args=(process.stdout, lines, up), daemon=True)
    reader.start()
    return _Launched(args, process, lines, up, reader)


def _ready(state_dir: Path, launched: _Launched) -> Served:
    """Wait until it serves; what its state file says."""
    deadline = time.monotonic() + START_SECONDS
    while not launched.up.wait(0.2):
        assert launched.process.poll() is None, "".join(launched.output)
        assert time.monotonic() < deadline, "".join(launched.output)
    args = launched.args
    name = args[args.index("--stack") + 1] if "--stack" in args else "default"
    state = json.loads((state_dir / "stacks" / f"{name}.json").read_text())
    wait_for_health(state["url"])
    return Served(launched.process, state, launched.output)


@contextmanager
def serve_all(state_dir: Path, *runs: tuple[str, ...]) -> Iterator[list[Served]]:
    """`serendip serve --port 0 ARGS` for each ARGS of ``runs``, started together, until the
    block ends (SIGTERM to all, then kill what has not exited).

    One API worker (handlers in the serve process): these tests are about state, and a small
    machine runs several stacks at once here.
    """
    launched: list[_Launched] = []
    try:
        for args in runs:
            launched.append(_launch(state_dir, args))
        yield [_ready(state_dir, one) for one in launched]
    finally:
        running = [one for one in launched if one.process.poll() is None]
        for one in running:
            one.process.send_signal(signal.SIGTERM)
        for one in running:
            try:
                one.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                one.process.kill()
                one.process.wait()
        for one in launched:
            one.reader.join(5)


@contextmanager
def serve(state_dir: Path, *args: str) -> Iterator[Served]:
    """`serendip serve --port 0 ARGS` until the block ends (see ``serve_all``)."""
    with serve_all(state_dir, args) as (served,):
        yield served


def rank(client: Client) -> dict[str, Any]:
    body = {"context": {"user": {"cohort": "a"}}, "candidates": CANDIDATES}
    status, payload, _ = client.call("POST", "/v1/policies/for-you/rank", body)
    assert status == 200, payload
    return dict(payload)


def event_status(client: Client, event_id: str) -> tuple[int, Any]:
    status, payload, _ = client.call("GET", f"/v1/events/{event_id}")
    return status, payload


def head(client: Client) -> int:
    status, payload, _ = client.call("GET", "/v1/policies/for-you/models")
    assert status == 200, payload
    return int(payload["head"])


def gone(pid: int) -> bool:
    """Whether the process has exited (a zombie nobody reaped counts as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return True
    return fields[0] in ("Z", "X")


def test_a_reward_answered_before_a_clean_stop_is_learned_after_the_restart(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    # Given a stack whose learner is off, a key made by the CLI, a catalog and a rewarded event
    with serve(tmp_path, "--stack", "kept", "--data", str(data), "--no-learn") as first:
        made = cli(
            "keys",
            *("create", "--stack", "kept", "--tenant", "demo", "--scopes", "rank,reward"),
            env=child_env(SERENDIP_STATE_DIR=str(tmp_path)),
        )
        assert made.returncode == 0, made.stderr
        assert "using local stack 'kept'" in made.stderr
        key = json.loads(made.stdout)
        client = Client(first.url, key["api_key"], key["webhook_secret"])
        items = {"items": [{"id": "item-1", "category": "sports"}]}
        assert first.demo().call("PUT", "/v1/items", items)[0] == 200
        before = head(client)
        answer = rank(client)
        rewards = {  # every slot: the event closes (and is learned) as soon as they are applied
            "rewards": [
                {"event_id": answer["event_id"], "item_id": slot["id"], "type": "click"}
                for slot in answer["slate"]
            ]
        }
        status, payload, _ = client.call("POST", "/v1/rewards", rewards, signed=True)
        assert (status, payload) == (202, {"accepted": len(answer["slate"])})
        # When it stops cleanly before anything learned the reward
        assert event_status(client, answer["event_id"])[1]["status"] == "open"
        assert head(client) == before
        assert first.stop() == 0
    assert (data / "moto.pickle").is_file()
    assert not (tmp_path / "stacks" / "kept.json").exists()
    # Then the restarted stack has the key, the demo key, the decision, and learns the reward
    with serve(tmp_path, "--stack", "kept", "--data", str(data)) as second:
        assert second.state["api_key"] == first.state["api_key"]
        client = Client(second.url, key["api_key"], key["webhook_secret"])
        rank(client)
        deadline = time.monotonic() + LEARN_SECONDS
        while event_status(client, answer["event_id"])[1]["status"] != "learned":
            assert time.monotonic() < deadline, "the queued reward was never learned"
            time.sleep(0.2)
        assert head(client) > before
        assert second.stop() == 0
    # And --fresh starts from a clean slate
    with serve(tmp_path, "--stack", "kept", "--data", str(data), "--fresh") as fresh:
        assert fresh.state["api_key"] != first.state["api_key"]
        assert Client(fresh.url, key["api_key"]).call("GET", "/v1/policies")[0] == 401
        assert event_status(fresh.demo(), answer["event_id"])[0] == 404
        assert head(fresh.demo()) == before


def test_a_killed_serve_takes_its_moto_server_with_it_and_its_state_file_is_reported_stale(
    tmp_path: Path,
) -> None:
    # Given a running stack
    with serve(tmp_path, "--stack", "doomed") as served:
        moto_pid = int(served.state["moto_pid"])
        assert moto_pid and not gone(moto_pid)
        # When `serve` is killed with SIGKILL (no chance to clean up)
        served.process.kill()
        served.process.wait(timeout=30)
        # Then its moto server exits too
        deadline = time.monotonic() + 30
        while not gone(moto_pid):
            assert time.monotonic() < deadline, f"moto {moto_pid} outlived its serve"
            time.sleep(0.1)
    # And a command aimed at it is refused, naming the stack, and the stale file is removed
    state_file = tmp_path / "stacks" / "doomed.json"
    assert state_file.exists()
    done = cli(
        *("keys", "list", "--stack", "doomed", "--tenant", "demo"),
        env=child_env(SERENDIP_STATE_DIR=str(tmp_path)),
    )
    assert done.returncode == 2, done.stderr
    assert "'doomed' was not stopped cleanly" in done.stderr
    assert "serendip serve --stack doomed" in done.stderr
    assert not state_file.exists()
    # And what moto had is there at the next start (its last snapshot, written on SIGTERM)
    with serve(tmp_path, "--stack", "doomed") as again:
        assert again.state["api_key"] == served.state["api_key"]
        rank(again.demo())


def test_two_stacks_keep_their_own_keys_and_a_stack_that_is_not_running_is_refused(
    tmp_path: Path,
) -> None:
    env = child_env(SERENDIP_STATE_DIR=str(tmp_path))
    with serve_all(tmp_path, ("--stack", "one"), ("--stack", "two")) as (one, two):
        # Given a key made on stack one
        made = cli("keys", "create", "--stack", "one", "--tenant", "demo", env=env)
        assert made.returncode == 0, made.stderr
        api_key = json.loads(made.stdout)["api_key"]
        # Then it works there and not on stack two
        rank(Client(one.url, api_key))
        assert Client(two.url, api_key).call("POST", "/v1/policies/for-you/rank", {})[0] == 401
        # And --url finds a stack by its address, and says which one it talked to
        listed = cli("keys", "list", "--url", two.url, "--tenant", "demo", env=env)
        assert listed.returncode == 0, listed.stderr
        assert f"using local stack 'two' at {two.url}" in listed.stderr
        assert len(json.loads(listed.stdout)["keys"]) == 1  # its demo key only
        # And a stack that is not running is refused, not replaced by another
        refused = cli("keys", "create", "--stack", "other", "--tenant", "demo", env=env)
        assert refused.returncode == 2
        assert "'other' is not running" in refused.stderr
        assert "serendip serve --stack other" in refused.stderr
        assert not refused.stdout
        # And a second `serve` of a running stack is refused
        again = subprocess.run(
            [PYTHON, "-m", "local.cli", "serve", "--port", "0", "--stack", "one"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert again.returncode == 2 and "'one' runs at" in again.stderr


# A parent that starts moto from a thread other than its main one: the kernel's parent-death
# signal would follow that thread, so only the child's watch of its parent id ends it.
_PARENT = """
import threading, time
from local.moto_process import MotoProcess
moto = None
def run():
    global moto
    moto = MotoProcess()
    moto.start()
thread = threading.Thread(target=run)
thread.start()
thread.join()
print(moto.pid, flush=True)
time.sleep(600)
"""


def test_a_moto_server_started_from_a_thread_still_ends_with_its_parent() -> None:
    parent = subprocess.Popen(
        [PYTHON, "-c", _PARENT], cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        moto_pid = int(parent.stdout.readline())
        assert not gone(moto_pid)
        parent.kill()
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while not gone(moto_pid):
            assert time.monotonic() < deadline, f"moto {moto_pid} outlived its parent"
            time.sleep(0.1)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
