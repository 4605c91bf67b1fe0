"""A bounded load run on loopback: many concurrent clients ranking and posting signed rewards.

Each client is a thread with its own ``SerendipClient`` and its own simulated population
(``bandit.simulate.simulation.Population``). It loops until the deadline: rank for a simulated
user, let the user click with its known probabilities, then close the event, either by reporting
every shown item (value 1 or 0) or by reporting the clicks and ending with ``final``. A small share
of posts are rewards for event ids that were never served (orphans) and purchases arriving after an
event was closed (late, unless the learner has not reached the event yet). The run stops by
itself at the deadline; then the stack's queues are drained and every reward the webhook
accepted (202) is accounted for from the stack's own storage: attached to an event that was
learned, kept as late, or an orphan (no such event, and not in the dead-letter queue). ``lost``
is whatever is left and must be 0.

The accounting reads the stack's tables, so ``load_run`` needs the ``LocalStack`` of this
process. ``load_bench`` starts one in a fresh interpreter (``python -m benchmarks.load``), as
``benchmarks.http_speed`` does, with its state file in a temporary directory.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.core_speed import percentiles
from benchmarks.fresh_process import child_environment, child_main, run_child

if TYPE_CHECKING:
    from functions.common.decision_store import StoredDecision
    from local.client import HttpResponse, SerendipClient
    from local.stack import LocalStack

OPERATIONS = ("rank", "rewards")
ORPHAN_SHARE = 0.03  # of reward posts: a reward for an event id never served
STRAGGLER_SHARE = 0.03  # of reward posts: a purchase for an event this client already closed
FINAL_SHARE = 0.3  # of events: closed by the clicks and a ``final`` reward, not by every item
SPLIT_SHARE = 0.3  # of events closed item by item: reported in two posts, not one
DRAIN_TIMEOUT_SECONDS = 300.0
FULL = {"seconds": 60.0, "clients": 16, "candidates": 30}
QUICK = {"seconds": 2.0, "clients": 4, "candidates": 30}
TENANT = "load"
POLICY = "load-for-you"


@dataclass
class _Tally:
    """What one client sent and got back."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in OPERATIONS})
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    exceptions: Counter[str] = field(default_factory=Counter)
    ranked: list[str] = field(default_factory=list)  # event ids served
    closed: set[str] = field(default_factory=set)  # events whose closing rewards were accepted
    accepted: Counter[str] = field(default_factory=Counter)  # accepted rewards per served event
    orphans: list[str] = field(default_factory=list)  # accepted orphan rewards' event ids

    def merge(self, other: _Tally) -> None:
        """Add another client's tally to this one."""
        for op in OPERATIONS:
            self.latencies[op] += other.latencies[op]
        self.statuses.update(other.statuses)
        self.exceptions.update(other.exceptions)
        self.ranked += other.ranked
        self.closed |= other.closed
        self.accepted.update(other.accepted)
        self.orphans += other.orphans


class _LoadClient:
    """One simulated app instance: rank, then rewards, until the deadline."""

    def __init__(
        self, client: SerendipClient, policy: str, seed: int, candidates: int, deadline: float
    ) -> None:
        from bandit.simulate.simulation import Population

        self.client = client
        self.policy = policy
        self.population = Population(seed=seed, candidates=candidates)
        self.rng = np.random.default_rng(seed)
        self.deadline = deadline
        self.tally = _Tally()
        self.requests = 0
        self._recent: list[tuple[str, str]] = []  # (event id, a shown item) of closed events

    def run(self) -> _Tally:
        """Loop until the deadline; every call is timed and its status counted."""
        while time.monotonic() < self.deadline:
            self._round()
        return self.tally

    def _call(self, op: str, send: Callable[[], HttpResponse]) -> HttpResponse | None:
        started = time.perf_counter()
        try:
            response = send()
        except OSError as error:  # connection refused or reset, timeout: counted, not raised
            self.tally.exceptions[f"{op} {type(error).__name__}"] += 1
            return None
        finally:
            self.requests += 1
        self.tally.latencies[op].append(time.perf_counter() - started)
        self.tally.statuses[(op, response.status)] += 1
        return response

    def _post(self, rewards: list[dict[str, Any]], *, orphan: bool = False) -> bool:
        """Post signed rewards; True when every one of them was accepted (202)."""
        response = self._call("rewards", lambda: self.client.post_rewards(rewards))
        if response is None or response.status != 202:
            return False
        accepted = rewards[: int(response.body["accepted"])]
        for reward in accepted:
            if orphan:
                self.tally.orphans.append(reward["event_id"])
            else:
                self.tally.accepted[reward["event_id"]] += 1
        return len(accepted) == len(rewards)

    def _round(self) -> None:
        from local.demo import rank_body

        request = self.population.next_request()
        body = rank_body(request)
        response = self._call("rank", lambda: self.client.rank(self.policy, body))
        if response is None or response.status != 200:
            return
        event_id = str(response.body["event_id"])
        self.tally.ranked.append(event_id)
        shown = [str(slot["id"]) for slot in response.body["slate"]]
        clicks = self.population.clicks(request.user_id, shown, self.rng)
        if self._close(event_id, shown, clicks):
            self.tally.closed.add(event_id)
            self._recent = [*self._recent[-20:], (event_id, shown[0])]
        draw = self.rng.random()
        if draw < ORPHAN_SHARE:
            never_served = f"orphan-{uuid.uuid4().hex}"
            self._post([{"event_id": never_served, "item_id": shown[0]}], orphan=True)
        elif draw < ORPHAN_SHARE + STRAGGLER_SHARE and len(self._recent) > 1:
            # A purchase for an event closed before this one: late once it has been learned
            # (at most one each: the same purchase posted twice would be a duplicate).
            earlier, item = self._recent.pop(int(self.rng.integers(len(self._recent) - 1)))
            self._post([{"event_id": earlier, "item_id": item, "type": "purchase"}])

    def _close(self, event_id: str, shown: list[str], clicks: list[bool]) -> bool:
        """Post the rewards that close the event; True when all of them were accepted."""
        if self.rng.random() < FINAL_SHARE:
            clicked = [item for item, click in zip(shown, clicks, strict=True) if click]
            rewards = [{"event_id": event_id, "item_id": item, "value": 1.0} for item in clicked]
            if not rewards:
                rewards = [{"event_id": event_id, "item_id": shown[0], "value": 0.0}]
            rewards[-1]["final"] = True
            return self._post(rewards)
        rewards = [
            {"event_id": event_id, "item_id": item, "value": 1.0 if click else 0.0}
            for item, click in zip(shown, clicks, strict=True)
        ]
        if len(rewards) > 1 and self.rng.random() < SPLIT_SHARE:
            half = len(rewards) // 2
            first = self._post(rewards[:half])
            second = self._post(rewards[half:])
            return first and second
        return self._post(rewards)


def load_run(
    stack: LocalStack,
    api_key: str,
    webhook_secret: str,
    policy: str,
    *,
    seconds: float,
    clients: int,
    seed: int = 1,
    candidates: int = 30,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run ``clients`` concurrent clients against ``stack`` for ``seconds``, then account.

    ``progress`` is called about twice a second with the number of requests done so far.
    Returns requests, status codes, errors and latency percentiles per operation, throughput,
    and the reward accounting (``lost`` must be 0). Example::

        with LocalStack(port=0, record_state=False) as stack:
            result = load_run(stack, stack.api_key, stack.webhook_secret, "for-you",
                              seconds=5, clients=4)
            assert result["rewards"]["lost"] == 0
    """
    from local.client import SerendipClient

    head_before = _events_learned(stack.url, api_key, policy)
    started = time.monotonic()
    deadline = started + seconds
    workers = [
        _LoadClient(
            SerendipClient(stack.url, api_key, webhook_secret),
            policy,
            seed * 1000 + index,
            candidates,
            deadline,
        )
        for index in range(clients)
    ]
    tally = _Tally()
    with ThreadPoolExecutor(max_workers=clients, thread_name_prefix="load-client") as pool:
        futures = [pool.submit(worker.run) for worker in workers]
        _wait(futures, workers, progress)
        for future in futures:
            tally.merge(future.result())
    elapsed = time.monotonic() - started
    drain_started = time.monotonic()
    stack.drain(timeout=DRAIN_TIMEOUT_SECONDS)
    drained = time.monotonic() - drain_started
    head_after = _events_learned(stack.url, api_key, policy)
    return {
        "clients": clients,
        "seconds": seconds,
        "elapsed_s": elapsed,
        "drain_s": drained,
        "candidates": candidates,
        **_traffic(tally, elapsed),
        "events": {
            "ranked": len(tally.ranked),
            "closed": len(tally.closed),
            "head_events_learned": head_after - head_before,
        },
        "rewards": _account(api_key, tally),
    }


def _wait(
    futures: list[Future[_Tally]],
    workers: list[_LoadClient],
    progress: Callable[[int], None] | None,
) -> None:
    """Until every client is done, report the requests done about twice a second."""
    while wait(futures, timeout=0.5).not_done:
        if progress is not None:
            progress(sum(worker.requests for worker in workers))
    if progress is not None:
        progress(sum(worker.requests for worker in workers))


def _traffic(tally: _Tally, elapsed: float) -> dict[str, Any]:
    """Requests, statuses, errors and latencies, per operation and in total."""
    operations: dict[str, Any] = {}
    for op in OPERATIONS:
        statuses = {str(s): n for (o, s), n in sorted(tally.statuses.items()) if o == op}
        samples = tally.latencies[op]
        timing: dict[str, float] = {}
        if samples:
            figures = percentiles(samples)
            timing = {name: figures[name] for name in ("p50_ms", "p95_ms", "p99_ms")}
            timing["max_ms"] = max(samples) * 1e3
        exceptions = sum(n for kind, n in tally.exceptions.items() if kind.startswith(op + " "))
        operations[op] = {
            "requests": sum(statuses.values()) + exceptions,
            "statuses": statuses,
            **timing,
        }
    requests = sum(op["requests"] for op in operations.values())
    codes: Counter[int] = Counter()
    for (_, status), count in tally.statuses.items():
        codes[status] += count
    exceptions = sum(tally.exceptions.values())
    return {
        "requests": requests,
        "throughput_rps": requests / elapsed if elapsed > 0 else 0.0,
        "operations": operations,
        "statuses": {str(status): count for status, count in sorted(codes.items())},
        "server_errors": sum(n for status, n in codes.items() if status >= 500),
        "errors": sum(n for status, n in codes.items() if status >= 400) + exceptions,
        "exceptions": dict(tally.exceptions),
    }


def _events_learned(url: str, api_key: str, policy: str) -> int:
    """The policy head's count of events learned (0 before the first model is saved)."""
    from local.client import SerendipClient

    answer = SerendipClient(url, api_key).request("GET", f"/v1/policies/{policy}/models")
    if answer.status != 200:
        raise RuntimeError(f"models of '{policy}' answered {answer.status}: {answer.body}")
    versions = answer.body.get("versions") or [{}]
    return int(versions[0].get("events_learned", 0))


def _account(api_key: str, tally: _Tally) -> dict[str, int]:
    """Every accepted reward: learned with its event, kept as late, or an orphan; else lost.

    ``open`` counts rewards attached to events that were not learned (part of ``lost``: the
    sweep would learn them once their reward wait ends); ``duplicated`` counts rewards stored
    more often than they were accepted (must be 0 too).
    """
    from functions.common.auth import authenticate

    tenant = authenticate(api_key).tenant
    served = _stored(tenant, tally.accepted)
    learned = late = still_open = duplicated = events_learned = 0
    for event, sent in tally.accepted.items():
        decision = served.get(event)
        if decision is None:
            continue
        late_here = sum(1 for reward in decision.record.rewards if reward.late)
        on_time = len(decision.record.rewards) - late_here
        duplicated += max(0, on_time + late_here - sent)
        late += late_here
        if decision.status == "learned":
            learned += on_time
            events_learned += 1
        else:
            still_open += on_time
    orphans = set(tally.orphans)
    orphan = len(orphans - set(_stored(tenant, orphans)) - _dead_lettered(tenant, orphans))
    accepted = sum(tally.accepted.values()) + len(tally.orphans)
    return {
        "accepted": accepted,
        "learned": learned,
        "late": late,
        "orphan": orphan,
        "lost": accepted - learned - late - orphan,
        "open": still_open,
        "duplicated": duplicated,
        "events_learned": events_learned,
    }


def _stored(tenant: str, events: Iterable[str]) -> dict[str, StoredDecision]:
    """The stored decisions of those of ``events`` that exist, by event id."""
    from functions.common import decision_store

    by_key = {decision_store.event_key(tenant, event): event for event in events}
    keys = list(by_key)
    found: dict[str, StoredDecision] = {}
    for start in range(0, len(keys), 100):
        for decision in decision_store.get_many(keys[start : start + 100])[0]:
            found[by_key[decision.key]] = decision
    return found


def _dead_lettered(tenant: str, events: Iterable[str]) -> set[str]:
    """Those of ``events`` with a reward in the dead-letter queue."""
    from functions.common import dlq

    wanted = set(events)
    dead: set[str] = set()
    for letter in dlq.peek(limit=1000, wait_seconds=0):
        try:
            message = json.loads(letter.body)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("tenant") == tenant:
            dead |= {r.get("event_id") for r in message.get("rewards", [])} & wanted
    return dead


def load_bench(
    quick: bool = False, api_workers: int = 1, seconds: float | None = None
) -> dict[str, Any]:
    """The load run on a fresh local stack in a fresh interpreter, with its configuration.

    Full: 60 s, 16 clients; quick: 2 s, 4 clients; 30 candidates per rank either way.
    ``api_workers`` > 1 serves the API from that many worker processes
    (``LocalStack(api_workers=...)``); ``seconds`` overrides the duration.

    >>> load_bench(quick=True)["rewards"]["lost"]  # doctest: +SKIP
    0
    """
    config = {**(QUICK if quick else FULL), "api_workers": api_workers}
    if seconds is not None:
        config["seconds"] = seconds
    names = ("seconds", "clients", "candidates", "api_workers")
    args = [str(config[name]) for name in names]
    result, wall = run_child("benchmarks.load", "load", args, child_environment())
    return {**result, "wall_s": wall}


def _child_load(args: list[str]) -> dict[str, Any]:
    """Child: start a local stack, give the load tenant a key and a policy, run, stop."""
    seconds, clients, candidates = float(args[0]), int(args[1]), int(args[2])
    api_workers = int(args[3]) if len(args) > 3 else 1
    from local.stack import LocalStack

    with tempfile.TemporaryDirectory(prefix="serendip-state-") as state:
        os.environ["SERENDIP_STATE_DIR"] = state
        stack = LocalStack(port=0, record_state=False, log_level="ERROR", api_workers=api_workers)
        with stack:
            return load_on(stack, seconds=seconds, clients=clients, candidates=candidates)


def load_on(stack: LocalStack, *, seconds: float, clients: int, candidates: int) -> dict[str, Any]:
    """Give the load tenant a key and a policy on ``stack``, run, account; with CPU seconds."""
    from bandit.spec import load_spec
    from functions.common import policy_store
    from functions.common.auth import create_key
    from local.stack import POLICIES_DIR

    key = create_key(TENANT, {"rank", "reward", "admin"}, name="load bench")
    spec = load_spec(POLICIES_DIR / "for-you.yaml").model_copy(update={"name": POLICY})
    policy_store.put(TENANT, spec)
    cpu_before = cpu_split(stack)
    result = load_run(
        stack,
        key.api_key,
        key.webhook_secret,
        POLICY,
        seconds=seconds,
        clients=clients,
        candidates=candidates,
    )
    cpu = {name: cpu_split(stack)[name] - cpu_before.get(name, 0.0) for name in cpu_before}
    return {**result, "api_workers": stack.api_workers, "cpu_s": cpu}


def cpu_split(stack: LocalStack) -> dict[str, float]:
    """CPU seconds used so far by moto, the stack's process, its API workers and its learner.

    Read from ``/proc/PID/stat`` (Linux); empty where there is none. Workers replaced during
    the run are not counted.
    """
    pids = {"moto": [stack.state().moto_pid], "stack": [os.getpid()]}
    pids["api_workers"] = stack.pool.pids if stack.pool is not None else []
    pids["learner"] = stack.learner_pool.pids if stack.learner_pool is not None else []
    split: dict[str, float] = {}
    try:
        for name, group in pids.items():
            split[name] = sum(_cpu_seconds(pid) for pid in group)
    except OSError:
        return {}
    return split


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def markdown(result: dict[str, Any]) -> list[str]:
    """The "Load on the local stack" section of the benchmarks document, as lines."""
    rewards = result["rewards"]
    lines = [
        "## Load on the local stack",
        "",
        f"{result['clients']} concurrent clients, each ranking {result['candidates']} "
        f"candidates for a simulated user and posting signed rewards for the shown items "
        f"(about {ORPHAN_SHARE:.0%} of posts for unknown events, {STRAGGLER_SHARE:.0%} after "
        f"the event closed), over loopback HTTP for {result['seconds']:g} s; then the queues "
        f"were drained ({result['drain_s']:.1f} s) and every accepted reward accounted for "
        "from the stack's storage.",
        "",
        "| requests | concurrency | duration | throughput | errors | 5xx |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {result['requests']:,} | {result['clients']} | {result['elapsed_s']:.1f} s "
        f"| {result['throughput_rps']:.1f}/s | {result['errors']} | {result['server_errors']} |",
        "",
        "| rewards accepted | learned | late | orphan | lost |",
        "|---:|---:|---:|---:|---:|",
        f"| {rewards['accepted']:,} | {rewards['learned']:,} | {rewards['late']:,} "
        f"| {rewards['orphan']:,} | {rewards['lost']:,} |",
        "",
        "| operation | requests | p50 | p95 | p99 | max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, op in result["operations"].items():
        timing = " | ".join(
            f"{op[key]:.1f} ms" if key in op else "-"
            for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms")
        )
        lines.append(f"| {name} | {op['requests']:,} | {timing} |")
    return lines


if __name__ == "__main__":
    sys.exit(child_main({"load": _child_load}))
