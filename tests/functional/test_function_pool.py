"""``local.function_pool``: API functions in worker processes, one event per worker at a time."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from local.function_pool import (
    WORKER_HEADER,
    FunctionCrashedError,
    FunctionRaisedError,
    PooledFunction,
    WorkerPool,
    pool_api_functions,
)
from local.gateway import Gateway, api_routes
from local.lambda_events import LocalFunction, proxy_event, response_json

HANDLERS = "tests/functional/pool_handlers"


def function(name: str, handler: str, path: str | None = None) -> LocalFunction:
    events = (
        {"Api": {"Type": "Api", "Properties": {"Method": "POST", "Path": path}}} if path else {}
    )
    return LocalFunction(name, f"{HANDLERS}.{handler}", events=events)


@pytest.fixture
def functions() -> dict[str, LocalFunction]:
    return {
        "Who": function("Who", "whoami", "/who"),
        "Meet": function("Meet", "rendezvous", "/meet"),
        "Crash": function("Crash", "crash", "/crash"),
        "Fail": function("Fail", "fail", "/fail"),
        "Learn": function("Learn", "whoami"),  # no Api event: stays in this process
    }


@pytest.fixture
def pooled(functions: dict[str, LocalFunction]) -> Iterator[WorkerPool]:
    pool = pool_api_functions(functions, 2, {**os.environ, "POOL_TEST_MARKER": "given"})
    assert pool is not None
    try:
        yield pool
    finally:
        pool.stop()


def call(functions: dict[str, LocalFunction], name: str, body: Any = None) -> dict[str, Any]:
    response: dict[str, Any] = functions[name].invoke(proxy_event("POST", "/x", body=body))
    return response


def test_one_worker_keeps_the_handlers_in_this_process(
    functions: dict[str, LocalFunction],
) -> None:
    assert pool_api_functions(functions, 1) is None
    assert not any(isinstance(f, PooledFunction) for f in functions.values())


def test_api_functions_run_in_workers_with_the_given_environment(
    functions: dict[str, LocalFunction], pooled: WorkerPool
) -> None:
    # Given a pool of 2 serving the API functions (the learner-like one stays here)
    assert isinstance(functions["Who"], PooledFunction)
    assert not isinstance(functions["Learn"], PooledFunction)
    # When the API function is called a few times in a row
    answers = [call(functions, "Who") for _ in range(4)]
    # Then a worker (not this process) answered, as that function, with the stack's environment
    pids = {response_json(answer)["pid"] for answer in answers}
    assert pids <= set(pooled.pids) and os.getpid() not in pids
    assert len(pids) == 1  # one at a time: the warm worker serves them all
    assert {answer["headers"][WORKER_HEADER] for answer in answers} == {str(p) for p in pids}
    assert {response_json(a)["function"] for a in answers} == {"Who"}
    assert {response_json(a)["marker"] for a in answers} == {"given"}


def test_concurrent_events_are_handled_at_the_same_time(
    functions: dict[str, LocalFunction], pooled: WorkerPool, tmp_path: Path
) -> None:
    # Given two events that each wait until both have arrived in their handlers
    event = {"directory": str(tmp_path), "expected": 2}
    # When they are sent at once
    with ThreadPoolExecutor(2) as threads:
        answers = list(threads.map(lambda _: call(functions, "Meet", json.dumps(event)), range(2)))
    # Then each saw the other: two workers handled them in parallel
    assert [response_json(a)["seen"] for a in answers] == [2, 2]
    assert len({response_json(a)["pid"] for a in answers}) == 2


def test_a_crashed_worker_is_replaced_and_its_request_gets_502(
    functions: dict[str, LocalFunction], pooled: WorkerPool
) -> None:
    # Given the pool's workers
    before = set(pooled.pids)
    # When a handler kills its worker, through the gateway
    gateway = Gateway(api_routes(functions))
    reply = gateway.dispatch("POST", "/crash", [], b"")
    # Then that request gets a 502, a new worker takes the dead one's place, and the API serves
    assert reply.status == 502 and b"bad_gateway" in reply.body
    after = set(pooled.pids)
    assert len(after) == 2 and len(after - before) == 1 and pooled.replaced == 1
    assert gateway.dispatch("POST", "/who", [], b"").status == 200
    with pytest.raises(FunctionCrashedError):
        call(functions, "Crash")


def test_a_worker_killed_while_idle_is_replaced_before_the_next_event(
    functions: dict[str, LocalFunction], pooled: WorkerPool
) -> None:
    # Given the worker that served last (and so serves next), killed between requests
    victim = response_json(call(functions, "Who"))["pid"]
    os.kill(victim, signal.SIGKILL)
    # (the kill lands asynchronously: wait until the worker is really gone)
    next(w.process for w in pooled._workers if w.pid == victim).join(10)
    # When the next requests come
    answers = [response_json(call(functions, "Who"))["pid"] for _ in range(3)]
    # Then they are answered (no 502: none was in flight), and the dead worker was replaced
    assert victim not in answers and victim not in pooled.pids
    assert pooled.replaced == 1 and len(pooled.pids) == 2


def test_an_event_sent_to_a_worker_whose_death_is_not_yet_noticed_goes_to_another(
    functions: dict[str, LocalFunction], pooled: WorkerPool
) -> None:
    # Given the worker that serves next, killed, while its process still looks alive (as when
    # a kill lands after the check, or the exit is not reaped yet)
    victim = response_json(call(functions, "Who"))["pid"]
    dead = next(w for w in pooled._workers if w.pid == victim)
    os.kill(victim, signal.SIGKILL)
    dead.process.join(10)
    dead.process.is_alive = lambda: True  # type: ignore[method-assign]
    # When the next requests come, through the gateway
    gateway = Gateway(api_routes(functions))
    replies = [gateway.dispatch("POST", "/who", [], b"") for _ in range(3)]
    # Then every one is answered by a live worker (the event never reached the dead one's
    # handler), and the dead worker is replaced
    assert [reply.status for reply in replies] == [200, 200, 200]
    assert victim not in {json.loads(reply.body)["pid"] for reply in replies}
    assert pooled.replaced == 1 and victim not in pooled.pids and len(pooled.pids) == 2


def test_a_replacement_serves_once_it_is_ready(functions: dict[str, LocalFunction]) -> None:
    # Given a pool of two workers, both of which crash
    pool = pool_api_functions(functions, 2)
    assert pool is not None
    try:
        with pytest.raises(FunctionCrashedError):
            call(functions, "Crash")
        with pytest.raises(FunctionCrashedError):
            call(functions, "Crash")
        # When the next event comes while both replacements are still importing
        answer = response_json(call(functions, "Who"))
        # Then it waits for a replacement and is answered by it
        assert answer["pid"] in pool.pids and pool.replaced == 2
    finally:
        pool.stop()


def test_a_handler_that_raises_gets_500_and_keeps_its_worker(
    functions: dict[str, LocalFunction], pooled: WorkerPool
) -> None:
    before = set(pooled.pids)
    with pytest.raises(FunctionRaisedError, match="the handler failed on purpose"):
        call(functions, "Fail")
    assert Gateway(api_routes(functions)).dispatch("POST", "/fail", [], b"").status == 500
    assert set(pooled.pids) == before and pooled.replaced == 0


def test_stopped_workers_exit(functions: dict[str, LocalFunction]) -> None:
    pool = pool_api_functions(functions, 2)
    assert pool is not None
    processes = [worker.process for worker in pool._workers]
    pool.stop()
    assert all(process.exitcode == 0 for process in processes)
