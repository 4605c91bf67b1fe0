"""Memory and latency of a long-lived local stack: tens of thousands of rank + reward rounds.

A fresh interpreter runs the local stack (``LocalStack``, with moto's server in a child process
of its own) and gives a tenant a key and a policy; this process drives it over loopback HTTP,
one round at a time: rank 20 candidates for a simulated user, then post one signed reward
(``final``, so the learner learns the event) for a shown item. Every ``window`` rounds it reads
the resident set size (``VmRSS``) of every process of the stack (the stack process, moto's
server and anything else they started) and the rank latencies of that window. The targets
(issue 12): after 20,000 rounds the stack's processes together stay under 1.5 GB, and the rank
p95 of the last window is within 1.5x of the first's.

``python -m benchmarks.stack_memory --rounds 3000`` runs it alone and writes
``benchmarks/results/stack_memory.json``; ``make bench`` runs it as one of its steps.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.fresh_process import ROOT, child_environment

ROUNDS = 20_000
QUICK_ROUNDS = 60
QUICK_WINDOW = 20
WINDOW = 1_000
CANDIDATES = 20
TENANT = "memory"
POLICY = "memory-for-you"
RSS_LIMIT_MB = 1_536.0  # 1.5 GB, the stack's processes summed
P95_GROWTH_LIMIT = 1.5  # last window's rank p95 over the first's
READY_TIMEOUT_SECONDS = 120.0
RESULT = ROOT / "benchmarks" / "results" / "stack_memory.json"


# ------------------------------------------------------------ the stack's process


def _serve(info_path: str, keep_data: bool, api_workers: int) -> None:
    """Child: run a local stack with a key and a policy for the benchmark until stdin closes.

    With ``keep_data`` the stack keeps its state in a data directory, as ``serendip serve`` does;
    its API runs in ``api_workers`` processes.
    """
    from bandit.spec import load_spec
    from functions.common import policy_store
    from functions.common.auth import create_key
    from local.stack import POLICIES_DIR, LocalStack

    with tempfile.TemporaryDirectory(prefix="serendip-state-") as state:
        os.environ["SERENDIP_STATE_DIR"] = state
        data_dir = Path(state) / "data" if keep_data else None
        stack = LocalStack(
            port=0,
            record_state=False,
            log_level="ERROR",
            data_dir=data_dir,
            api_workers=api_workers,
        )
        with stack:
            key = create_key(TENANT, {"rank", "reward", "admin"}, name="stack memory bench")
            spec = load_spec(POLICIES_DIR / "for-you.yaml").model_copy(update={"name": POLICY})
            policy_store.put(TENANT, spec)
            info = {"url": stack.url, "api_key": key.api_key, "secret": key.webhook_secret}
            Path(info_path + ".tmp").write_text(json.dumps(info))
            os.replace(info_path + ".tmp", info_path)
            sys.stdin.read()  # the benchmark closes our stdin when it is done


def environment() -> dict[str, str]:
    """A clean child environment, keeping the moto census settings (``local.moto_census``)."""
    env = child_environment()
    env.update({k: v for k, v in os.environ.items() if k.startswith("SERENDIP_MOTO_")})
    return env


@contextmanager
def _stack_process(
    keep_data: bool, api_workers: int, env: Mapping[str, str]
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    """The stack in a fresh interpreter; yields the process and its url, key and secret."""
    with tempfile.TemporaryDirectory(prefix="serendip-bench-") as directory:
        info_path = Path(directory) / "stack.json"
        log = (Path(directory) / "stack.log").open("w+b")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.stack_memory",
                "serve",
                str(info_path),
                str(int(keep_data)),
                str(api_workers),
            ],
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + READY_TIMEOUT_SECONDS
            while not info_path.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    tail = log.read().decode(errors="replace")[-1500:]
                    raise RuntimeError(f"the local stack did not start: {tail}")
                time.sleep(0.1)
            yield process, json.loads(info_path.read_text())
        finally:
            if process.stdin is not None:
                process.stdin.close()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            log.close()


# ------------------------------------------------------------ memory readings


def _rss_mb(pid: int) -> float:
    """``VmRSS`` of ``pid`` in MB (0.0 once it has exited)."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as stat:
                # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(entry))
    return found


def _label(pid: int, root: int) -> str:
    if pid == root:
        return "stack"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        command = ""
    if "moto_main" in command:
        return "moto"
    # worker processes of the stack's function pools (multiprocessing's spawned children)
    return "workers" if "multiprocessing" in command else f"other {pid}"


def stack_rss_mb(root: int) -> dict[str, float]:
    """RSS in MB of ``root`` ("stack") and of all its descendants, summed by label: "moto" for
    moto's server, "workers" for processes started by ``multiprocessing``."""
    readings: dict[str, float] = {}
    pending = [root]
    while pending:
        pid = pending.pop()
        label = _label(pid, root)
        readings[label] = readings.get(label, 0.0) + _rss_mb(pid)
        pending += _children(pid)
    return readings


# ------------------------------------------------------------ the rounds


def _window_figures(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1e3

    return {"p50_ms": at(0.50), "p95_ms": at(0.95), "max_ms": ordered[-1] * 1e3}


def stack_memory(
    rounds: int = ROUNDS,
    window: int = WINDOW,
    progress: Callable[[str], None] | None = None,
    seed: int = 1,
    keep_data: bool = True,
    *,
    api_workers: int | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Drive ``rounds`` rank + reward rounds through a fresh local stack; figures per window.

    Returns a row per ``window`` rounds (rounds done, rounds/s, rank p50/p95/max, reward p50,
    RSS by process and summed), the statuses seen, and the verdicts on the two targets.
    ``api_workers``: the stack's API worker processes (default: as many as ``serendip serve``
    runs); ``env``: the stack process's environment (default: ``environment()`` now).
    """
    import numpy as np

    from bandit.simulate.simulation import Population
    from local.client import SerendipClient
    from local.demo import rank_body
    from local.function_pool import default_api_workers

    population = Population(seed=seed, candidates=CANDIDATES)
    rng = np.random.default_rng(seed)
    windows: list[dict[str, Any]] = []
    statuses: dict[str, int] = {}
    workers = api_workers or default_api_workers()  # default: as ``serendip serve`` runs
    with _stack_process(keep_data, workers, env or environment()) as (process, info):
        client = SerendipClient(info["url"], info["api_key"], info["secret"])
        start_rss = stack_rss_mb(process.pid)
        ranks: list[float] = []
        rewards: list[float] = []
        began = time.perf_counter()
        for done in range(1, rounds + 1):
            request = population.next_request()
            started = time.perf_counter()
            ranked = client.rank(POLICY, rank_body(request))
            ranks.append(time.perf_counter() - started)
            statuses[f"rank {ranked.status}"] = statuses.get(f"rank {ranked.status}", 0) + 1
            if ranked.status == 200:
                shown = [str(slot["id"]) for slot in ranked.body["slate"]]
                clicks = population.clicks(request.user_id, shown, rng)
                item = int(rng.integers(len(shown)))
                reward = {
                    "event_id": ranked.body["event_id"],
                    "item_id": shown[item],
                    "value": 1.0 if clicks[item] else 0.0,
                    "final": True,
                }
                started = time.perf_counter()
                posted = client.post_rewards([reward])
                rewards.append(time.perf_counter() - started)
                key = f"rewards {posted.status}"
                statuses[key] = statuses.get(key, 0) + 1
            if done % window == 0 or done == rounds:
                elapsed = time.perf_counter() - began
                rss = stack_rss_mb(process.pid)
                row: dict[str, Any] = {
                    "rounds": done,
                    "rounds_per_s": len(ranks) / elapsed,
                    "rank": _window_figures(ranks),
                    "rewards_p50_ms": _window_figures(rewards)["p50_ms"] if rewards else 0.0,
                    "rss_mb": rss,
                    "total_rss_mb": sum(rss.values()),
                    # the machine's load: other work on it slows the rounds down too
                    "load_1m": os.getloadavg()[0],
                }
                windows.append(row)
                if progress is not None:
                    by_process = ", ".join(f"{name} {mb:,.0f} MB" for name, mb in rss.items())
                    progress(
                        f"{done:,} rounds: {row['rounds_per_s']:.1f} rounds/s, rank p50 "
                        f"{row['rank']['p50_ms']:.0f} ms p95 {row['rank']['p95_ms']:.0f} ms max "
                        f"{row['rank']['max_ms']:.0f} ms; RSS {by_process}"
                    )
                ranks, rewards = [], []
                began = time.perf_counter()
    first, last = windows[0], windows[-1]
    peak = max(row["total_rss_mb"] for row in windows)
    growth = last["rank"]["p95_ms"] / first["rank"]["p95_ms"]
    return {
        "rounds": rounds,
        "window": window,
        "data_dir": keep_data,
        "api_workers": workers,
        "candidates": CANDIDATES,
        "start_rss_mb": start_rss,
        "windows": windows,
        "statuses": statuses,
        "peak_total_rss_mb": peak,
        "p95_growth": growth,
        "rss_ok": peak < RSS_LIMIT_MB,
        "p95_ok": growth <= P95_GROWTH_LIMIT,
    }


# ------------------------------------------------------------ the performance document


def markdown(result: dict[str, Any]) -> list[str]:
    """The "Memory and latency of a long-lived local stack" section, as lines."""
    windows = result["windows"]
    first, last = windows[0], windows[-1]
    processes = sorted({name for row in windows for name in row["rss_mb"]})
    lines = [
        "## Memory and latency of a long-lived local stack",
        "",
        f"{result['rounds']:,} rounds over loopback HTTP, one at a time: rank "
        f"{result['candidates']} candidates for a simulated user, then one signed `final` reward "
        "for a shown item (so the learner learns every event and saves models as it goes). "
        + (
            "The stack keeps its state in a data directory, as `serendip serve` does (moto's "
            "backends are pickled to disk in the background). "
            if result.get("data_dir")
            else ""
        )
        + f"Every {result['window']:,} rounds: RSS (`VmRSS`) of every process of the stack, the "
        "rank latencies of those rounds and the machine's 1-minute load average (other work on "
        "the machine slows rounds down too). At start the stack's processes held "
        + ", ".join(f"{name} {mb:.0f} MB" for name, mb in sorted(result["start_rss_mb"].items()))
        + ".",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        f"| the stack's processes together under {RSS_LIMIT_MB / 1024:g} GB RSS after "
        f"{result['rounds']:,} rounds | peak {result['peak_total_rss_mb']:,.0f} MB | "
        f"{'met' if result['rss_ok'] else 'NOT met'} |",
        f"| rank p95 of the last {result['window']:,} rounds within {P95_GROWTH_LIMIT:g}x of "
        f"the first's | {last['rank']['p95_ms']:.0f} ms / {first['rank']['p95_ms']:.0f} ms = "
        f"{result['p95_growth']:.2f}x | {'met' if result['p95_ok'] else 'NOT met'} |",
        "",
        "| rounds | rounds/s | rank p50 | rank p95 | rank max | "
        + " | ".join(f"{name} RSS" for name in processes)
        + " | total RSS | load (1 min) |",
        "|---:|---:|---:|---:|---:|" + "---:|" * len(processes) + "---:|---:|",
    ]
    for row in windows:
        rank = row["rank"]
        cells = [
            f"{row['rounds']:,}",
            f"{row['rounds_per_s']:.1f}",
            f"{rank['p50_ms']:.0f} ms",
            f"{rank['p95_ms']:.0f} ms",
            f"{rank['max_ms']:.0f} ms",
            *(f"{row['rss_mb'].get(name, 0.0):,.0f} MB" for name in processes),
            f"{row['total_rss_mb']:,.0f} MB",
            f"{row['load_1m']:.1f}" if "load_1m" in row else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.stack_memory [--rounds N]``: run, print progress, write JSON."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        _serve(argv[1], argv[2] == "1", int(argv[3]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stack_memory", description=__doc__)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rank + reward rounds")
    parser.add_argument("--window", type=int, default=WINDOW, help="rounds per reading")
    parser.add_argument("--out", type=Path, default=RESULT, help="where the JSON result goes")
    parser.add_argument(
        "--no-data",
        action="store_true",
        help="no data directory (no snapshots of moto's state), as tests and the demo run it",
    )
    args = parser.parse_args(argv)
    from benchmarks.machine import describe

    def note(message: str) -> None:
        print(f"  {message}", file=sys.stderr, flush=True)

    result = stack_memory(args.rounds, args.window, progress=note, keep_data=not args.no_data)
    payload = {
        "machine": describe(),
        "command": f"python -m benchmarks.stack_memory --rounds {args.rounds}",
        **result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
