"""The rank API over HTTP on the local stack, against the same handler called directly.

A fresh process starts ``LocalStack`` (moto's server in its own process, the HTTP gateway on
loopback, the learner's poller; the sweep held off so it does not land in the timings) with its
state file in a temporary directory, then times ``POST /v1/policies/for-you/rank`` three ways on
that moto server: back to back over one keep-alive loopback connection (as an app's HTTP client
pool does), over a new connection per call, and the very same handler called in process with
the same proxy events (no HTTP). The ways take turns in blocks of ``BLOCK`` calls, so all of
them see the same machine load and table sizes while each block runs back to back. HTTP minus
direct is the gateway's cost; direct against ``handler_speed``'s figure is moto's server
against in-process moto.
"""

from __future__ import annotations

import http.client
import json
import os
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from benchmarks.cold_start import RANK_PATH
from benchmarks.fresh_process import child_environment, child_main, run_child

if TYPE_CHECKING:
    from local.stack import LocalStack

WARMUP_CALLS = 20
BLOCK = 20
SWEEP_HELD_OFF_SECONDS = 3600.0
PATH = "/v1/policies/for-you/rank"


def _bodies(count: int, candidates: int, slots: int) -> list[bytes]:
    from bandit.simulate.simulation import Population
    from local.demo import rank_body

    population = Population(seed=3, candidates=candidates)
    bodies = []
    for _ in range(count):
        body = rank_body(population.next_request(), slots)
        bodies.append(json.dumps(body).encode())
    return bodies


class _Ways:
    """The three ways of calling the rank handler of a running local stack."""

    def __init__(self, url: str, api_key: str) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.headers = {"content-type": "application/json", "x-api-key": api_key}
        self.connection = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def keep_alive(self, body: bytes) -> float:
        return self._post(self.connection, body)

    def new_connection(self, body: bytes) -> float:
        client = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            return self._post(client, body)
        finally:
            client.close()

    def direct(self, body: bytes) -> float:
        from functions.rank import app
        from local.lambda_events import FakeLambdaContext, proxy_event

        event = proxy_event("POST", PATH, resource=RANK_PATH, body=body, headers=self.headers)
        started = time.perf_counter()
        answer = app.lambda_handler(event, FakeLambdaContext())  # type: ignore[arg-type]
        elapsed = time.perf_counter() - started
        if answer["statusCode"] != 200:
            raise RuntimeError(f"rank handler answered {answer['statusCode']}: {answer['body']}")
        return elapsed

    def _post(self, client: http.client.HTTPConnection, body: bytes) -> float:
        started = time.perf_counter()
        client.request("POST", PATH, body=body, headers=self.headers)
        response = client.getresponse()
        payload = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"rank over HTTP answered {response.status}: {payload!r}")
        return elapsed


def _measure(args: list[str]) -> dict[str, Any]:
    """Child: start a local stack, time ranks over HTTP and directly, stop it."""
    calls, candidates, slots, warmup = (int(a) for a in args)
    from local.stack import LocalStack

    with tempfile.TemporaryDirectory(prefix="serendip-state-") as state:
        os.environ["SERENDIP_STATE_DIR"] = state
        with LocalStack(
            port=0, record_state=False, sweep_interval=SWEEP_HELD_OFF_SECONDS, log_level="ERROR"
        ) as stack:
            return ways_on(stack, calls, candidates, slots, warmup)


def ways_on(
    stack: LocalStack, calls: int, candidates: int, slots: int, warmup: int
) -> dict[str, Any]:
    """Time ranks of ``stack`` (its sweep held off) over HTTP and directly, in turns."""
    from benchmarks.core_speed import percentiles

    bodies = _bodies(calls + warmup, candidates, slots)
    ways = _Ways(stack.url, stack.api_key)
    calls_of: dict[str, Callable[[bytes], float]] = {
        "http_keep_alive": ways.keep_alive,
        "http_new_connection": ways.new_connection,
        "direct": ways.direct,
    }
    times: dict[str, list[float]] = {name: [] for name in calls_of}
    for call in calls_of.values():
        for body in bodies[:warmup]:
            call(body)
    measured = bodies[warmup:]
    for start in range(0, len(measured), BLOCK):
        for name, call in calls_of.items():
            times[name] += [call(body) for body in measured[start : start + BLOCK]]
    ways.connection.close()
    return {
        "calls": calls,
        "candidates": candidates,
        "slots": slots,
        "warmup_calls": warmup,
        **{name: percentiles(samples) for name, samples in times.items()},
    }


def http_rank_latency(
    calls: int = 200,
    candidates: int = 100,
    slots: int = 10,
    warmup: int = WARMUP_CALLS,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """p50/p95/p99 of ranks over loopback HTTP on a local stack, and of direct handler calls.

    Each way serves ``calls`` requests after ``warmup`` warm-up requests.
    """
    if progress is not None:
        progress(f"local stack: {calls:,} ranks each over keep-alive HTTP, new connections, direct")
    result, _ = run_child(
        "benchmarks.http_speed",
        "measure",
        [str(calls), str(candidates), str(slots), str(warmup)],
        child_environment(),
    )
    return result


if __name__ == "__main__":
    raise SystemExit(child_main({"measure": _measure}))
