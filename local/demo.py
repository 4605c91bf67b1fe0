"""``serendip demo``: the simulated population served through the real HTTP API.

It starts the local stack, then for each simulated request ranks over HTTP, lets the simulated
user click with its known probabilities, and reports every shown item to the signed webhook
(click value 1 or 0), which closes the event so the learner picks it up from the queue. A
uniform-random baseline is scored on the same requests. Ranks and reward posts run a few at a
time, as an app's traffic would. At the end, once the queues are drained, the report of the
stack's decision log (``local.report``) is written to ``report`` (default
``serendip-report.html``) before the stack stops.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress

from bandit.domain import Candidate
from bandit.simulate.simulation import Population, SimRequest
from local.client import HttpResponse, SerendipClient
from local.simulate_cli import PROGRESS_COLUMNS, ctr_table

IN_FLIGHT = 4


@dataclass
class DemoRun:
    """Per-request outcomes of the served policy and of the uniform baseline."""

    clicks: list[int] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)
    baseline_clicks: list[int] = field(default_factory=list)
    model_versions: list[int] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def errors(self) -> int:
        """How many calls did not answer as expected."""
        return sum(self.failures.values())

    def windows(self, count: int) -> list[tuple[int, int, float, float]]:
        """``(first, last, policy CTR, uniform CTR)`` over ``count`` equal windows of requests."""
        size = max(1, len(self.slots) // count)
        rows = []
        for start in range(0, size * count, size):
            stop = start + size
            slots = max(1, sum(self.slots[start:stop]))
            mine = sum(self.clicks[start:stop]) / slots
            rows.append((start + 1, stop, mine, sum(self.baseline_clicks[start:stop]) / slots))
        return rows


def candidate_json(candidate: Candidate) -> dict[str, Any]:
    """A candidate as the rank API takes it."""
    return {
        "id": candidate.id,
        "features": dict(candidate.features),
        "category": candidate.category,
        "creator": candidate.creator,
        "created_at": candidate.created_at,
    }


def rank_body(request: SimRequest, slate_size: int | None = None) -> dict[str, Any]:
    """The rank API's body for a simulated request (the policy's slate size unless given)."""
    body: dict[str, Any] = {
        "context": request.context,
        "user_id": request.user_id,
        "candidates": [candidate_json(c) for c in request.candidates],
    }
    if slate_size is not None:
        body["slate_size"] = slate_size
    return body


def _rank(client: SerendipClient, policy: str, request: SimRequest) -> HttpResponse:
    return client.rank(policy, rank_body(request))


def _error_code(response: HttpResponse) -> str:
    body = response.body if isinstance(response.body, dict) else {}
    return f"{body.get('error', '')}: {body.get('detail', '')}"


def run_demo(
    client: SerendipClient,
    *,
    policy: str = "for-you",
    decisions: int = 3000,
    seconds: float = 90.0,
    seed: int = 1,
    candidates: int = 30,
    progress: Callable[[int], None] | None = None,
) -> DemoRun:
    """Serve up to ``decisions`` requests over HTTP, stopping after ``seconds``."""
    population = Population(seed=seed, candidates=candidates)
    rng = np.random.default_rng(seed)
    run = DemoRun()
    started = time.monotonic()
    posts: list[Future[HttpResponse]] = []
    with ThreadPoolExecutor(max_workers=2 * IN_FLIGHT) as pool:
        pending: list[tuple[SimRequest, Future[HttpResponse]]] = []
        issued = 0
        while issued < decisions or pending:
            while issued < decisions and len(pending) < IN_FLIGHT:
                if time.monotonic() - started > seconds:
                    decisions = issued
                    break
                request = population.next_request()
                pending.append((request, pool.submit(_rank, client, policy, request)))
                issued += 1
            if not pending:
                break
            request, future = pending.pop(0)
            response = future.result()
            if response.status != 200:
                run.failures[f"rank {response.status} {_error_code(response)}"] += 1
                continue
            shown = [slot["id"] for slot in response.body["slate"]]
            clicks = population.clicks(request.user_id, shown, rng)
            rewards = [
                {
                    "event_id": response.body["event_id"],
                    "item_id": item,
                    "type": "click",
                    "value": 1.0 if clicked else 0.0,
                }
                for item, clicked in zip(shown, clicks, strict=True)
            ]
            posts.append(pool.submit(client.post_rewards, rewards))
            picks = rng.choice(len(request.candidates), len(shown), replace=False)
            baseline = [request.candidates[i].id for i in picks]
            run.clicks.append(sum(clicks))
            run.slots.append(len(shown))
            run.baseline_clicks.append(sum(population.clicks(request.user_id, baseline, rng)))
            run.model_versions.append(int(response.body["model_version"]))
            if progress:
                progress(len(run.slots))
    for post in posts:
        posted = post.result()
        if posted.status != 202:
            run.failures[f"rewards {posted.status} {_error_code(posted)}"] += 1
    run.seconds = time.monotonic() - started
    return run


def _write_report(stack: Any, path: Path, console: Console) -> Path | None:
    """Drain the queues (rewards reach the log), then write the stack's report to ``path``."""
    from local.report_cli import write_live_report

    try:
        stack.drain(timeout=60.0)
    except TimeoutError as error:
        console.print(f"[yellow]report: {error}; some rewards may be missing[/yellow]")
    try:
        return write_live_report(path, stack.dashboard)
    except Exception as error:  # the demo's result stands without its report
        console.print(f"[red]report: could not write {path}: {error}[/red]")
        return None


def demo(
    policy: str,
    decisions: int,
    seconds: float,
    seed: int,
    console: Console,
    *,
    report: Path | None = Path("serendip-report.html"),
) -> int:
    """Start the local stack and show ``policy`` learning through the HTTP API.

    ``report``: where to write the HTML report at the end (None: none).
    """
    from local.stack import LocalStack

    console.print(
        f"[bold]serendip demo[/bold]: simulated users through the HTTP API, policy "
        f"[cyan]{policy}[/cyan] vs uniform random (up to {decisions:,} requests or "
        f"{seconds:g} s)"
    )
    with LocalStack(port=0, record_state=False) as stack:
        console.print(f"local stack up at {stack.url} (moto at {stack.moto_endpoint})")
        client = SerendipClient(stack.url, stack.api_key, stack.webhook_secret)
        with Progress(*PROGRESS_COLUMNS, console=console, transient=True) as bar:
            task = bar.add_task("ranking, rewarding, learning", total=decisions)
            run = run_demo(
                client,
                policy=policy,
                decisions=decisions,
                seconds=seconds,
                seed=seed,
                progress=lambda done: bar.update(task, completed=done),
            )
        models = client.request("GET", f"/v1/policies/{policy}/models").body or {}
        written = None if report is None else _write_report(stack, report, console)
    console.print(ctr_table(policy, run.windows(6)))
    versions = models.get("versions") or [{}]
    failures = ", ".join(f"{kind}: {count}" for kind, count in run.failures.items())
    console.print(
        f"{len(run.slots):,} requests in {run.seconds:.0f} s over HTTP, {run.errors} errors"
        f"{f' ({failures})' if failures else ''}; "
        f"model version {models.get('head', 0)} has learned "
        f"{versions[0].get('events_learned', 0):,} events."
    )
    first, last = run.windows(6)[0], run.windows(6)[-1]
    console.print(
        f"CTR went from {first[2]:.3f} to {last[2]:.3f}; uniform random stayed near "
        f"{sum(run.baseline_clicks) / max(1, sum(run.slots)):.3f}."
    )
    if written is not None:
        console.print(f"report (open it in a browser): {written}")
    return 0 if run.errors == 0 else 1
