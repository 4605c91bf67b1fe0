"""API functions served by worker processes, one event at a time each, as Lambda runs them.

Lambda runs one request per container and starts more containers for concurrent requests. In one
process the API functions must take turns (Powertools keeps the current request in class state,
and a handler's Vowpal Wabbit workspaces are not thread-safe), so under concurrent clients the
local stack would serve one request at a time. A ``WorkerPool`` runs ``size`` worker processes
instead ("spawn" context: no forked locks or threads); each imports the API handlers once, with
the stack's environment (moto's endpoint, table and queue names), and handles one event at a
time. ``PooledFunction`` is a ``LocalFunction`` whose ``invoke`` hands the event to a free worker
and waits for its proxy response, so the gateway serves it like any other function.

A worker acknowledges each event before it runs the handler. One that dies before that (found
dead, or killed between two events however late its death is noticed) never ran the event: it
is replaced and the event goes to another worker, so its caller sees nothing of it. One that dies
after the acknowledgement is replaced and the event's caller gets ``FunctionCrashedError`` (the
gateway answers 502, as API Gateway does when a Lambda runtime exits). A replacement serves only
once it has imported the handlers; until then the other workers serve. Workers exit when the
pool stops, when their pipe to the stack closes (the stack's process died), and, being daemon
processes, when the stack's interpreter exits.

Handlers run in the workers, so ``local.lambda_events.current_function`` (and the AWS-call
recording built on it) only sees the functions that stay in the stack's process: the learner,
the router and the sweep, which the stack's pollers and scheduler run on threads of their own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import threading
import traceback
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from local.lambda_events import LocalFunction

log = logging.getLogger("serendip.function_pool")

CONTEXT = get_context("spawn")
# The response header naming the worker process that served a request (local only).
WORKER_HEADER = "x-serendip-worker"
STOP_SECONDS = 5.0
READY_SECONDS = 120.0  # a worker's imports on a busy machine
# How long an event waits for a free worker: every worker busy (or all being replaced) so long
# means the pool cannot serve, and the caller gets an answer instead of waiting forever.
FREE_WORKER_SECONDS = 300.0
RESPAWN_ATTEMPTS = 3  # replacements of one worker that die while importing, then the pool shrinks


def default_api_workers() -> int:
    """``serendip serve``'s worker processes: one per CPU, at most 4 (about 190 MB each).

    More workers than CPUs measured slower (``python -m benchmarks.api_workers``, figures in
    docs/architecture.md): moto's server, the stack's process and the workers share the CPUs.

    >>> 1 <= default_api_workers() <= 4
    True
    """
    return max(1, min(4, os.cpu_count() or 1))


class FunctionCrashedError(RuntimeError):
    """The worker process died while handling the event (Lambda: ``Runtime.ExitError``)."""


class FunctionRaisedError(RuntimeError):
    """The handler raised in its worker; the message carries the worker's traceback."""


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """What a worker needs to run a function: a picklable copy of its ``LocalFunction``."""

    name: str
    handler_spec: str
    timeout_seconds: float
    memory_mb: int

    @classmethod
    def of(cls, function: LocalFunction) -> FunctionSpec:
        """The spec of ``function``."""
        return cls(
            function.name, function.handler_spec, function.timeout_seconds, function.memory_mb
        )


def is_api_function(function: LocalFunction) -> bool:
    """True if an ``Api`` event of the template routes HTTP requests to ``function``."""
    return any(event.get("Type") == "Api" for event in function.events.values())


def worker_main(
    connection: Connection, environment: Mapping[str, str], specs: list[FunctionSpec]
) -> None:
    """A worker process: import the handlers, then answer ``(name, event)`` until told to stop.

    Sends ``("ready", None)`` once the handlers are imported, then answers each event with
    ``("started", None)`` before running it and ``("ok", response)`` or ``("raised",
    traceback)`` after; ``None`` or a closed pipe ends the worker.
    """
    # Ctrl-C reaches the whole process group: the stack stops its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.update(environment)
    if os.environ.get("POWERTOOLS_METRICS_DISABLED") == "true":
        warnings.filterwarnings("ignore", message="No application metrics to publish")
    functions = {
        spec.name: LocalFunction(spec.name, spec.handler_spec, spec.timeout_seconds, spec.memory_mb)
        for spec in specs
    }
    for function in functions.values():
        function.handler()  # imported once, before the first event: a warm container
    connection.send(("ready", None))
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return  # the stack's end of the pipe is closed: the stack is gone
        if message is None:
            return
        name, event = message
        try:
            connection.send(("started", None))
        except OSError:
            return
        try:
            reply: tuple[str, Any] = ("ok", functions[name].invoke(event))
        except Exception:
            reply = ("raised", traceback.format_exc())
        try:
            connection.send(reply)
        except (TypeError, ValueError, AttributeError):  # an unpicklable response
            connection.send(("raised", traceback.format_exc()))


@dataclass
class _Worker:
    process: BaseProcess
    connection: Connection

    @property
    def pid(self) -> int:
        return self.process.pid or 0


class WorkerPool:
    """``size`` worker processes running the given functions, one event per worker at a time.

    Example::

        pool = WorkerPool([rank_function], size=2, environment=dict(os.environ)).start()
        response, pid = pool.invoke("RankFunction", event)
        pool.stop()
    """

    def __init__(
        self, functions: Iterable[LocalFunction], size: int, environment: Mapping[str, str]
    ) -> None:
        if size < 1:
            raise ValueError(f"a worker pool needs at least one worker, not {size}")
        self.specs = [FunctionSpec.of(function) for function in functions]
        self.size = size
        self.environment = dict(environment)
        self.replaced = 0  # workers started in place of dead ones
        self._workers: list[_Worker] = []
        # Last freed, first used, as Lambda prefers its warmest container: under light load
        # one worker serves everything with warm caches (policies, models, popularity).
        self._free: queue.LifoQueue[_Worker] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def pids(self) -> list[int]:
        """The process ids of the current workers."""
        with self._lock:
            return [worker.pid for worker in self._workers]

    def start(self, timeout: float = READY_SECONDS) -> WorkerPool:
        """Start the workers and wait until each has imported the handlers (in parallel)."""
        workers = [self._spawn() for _ in range(self.size)]
        for worker in workers:
            if not worker.connection.poll(timeout):
                raise TimeoutError(f"API worker {worker.pid} not ready after {timeout:.0f} s")
            worker.connection.recv()  # ("ready", None); EOFError if it died importing
            self._free.put(worker)
        return self

    def invoke(self, name: str, event: dict[str, Any]) -> tuple[Any, int]:
        """Run function ``name`` on ``event`` in a free worker; its response and the worker's pid.

        Waits for a free worker. Raises ``FunctionRaisedError`` if the handler raised (the
        worker stays) and ``FunctionCrashedError`` if the worker died while running the event
        (it is replaced). A worker that died before it took the event is replaced and another
        one runs the event. The function's timeout is not enforced: a handler that never
        returns keeps its worker.
        """
        for _ in range(self.size + RESPAWN_ATTEMPTS):
            worker = self._take()
            if worker.process.is_alive() and self._hand_over(worker, name, event):
                break
            self._replace(worker, "before an event")
        else:
            raise FunctionCrashedError(f"{name}: no worker could take the event")
        try:
            status, payload = worker.connection.recv()
        except (EOFError, OSError) as error:
            pid = worker.pid
            self._replace(worker, f"while handling {name}")
            raise FunctionCrashedError(
                f"{name}: worker {pid} exited with code {worker.process.exitcode} "
                "while handling the event"
            ) from error
        self._free.put(worker)
        if status == "raised":
            raise FunctionRaisedError(f"{name} raised in worker {worker.pid}:\n{payload}")
        return payload, worker.pid

    def _take(self) -> _Worker:
        """A free worker (the last freed), or ``FunctionCrashedError`` after a long wait."""
        try:
            worker = self._free.get(timeout=FREE_WORKER_SECONDS)
        except queue.Empty:
            raise FunctionCrashedError(
                f"no API worker was free for {FREE_WORKER_SECONDS:.0f} s "
                f"({len(self.pids)} of {self.size} running)"
            ) from None
        if self._stopped:
            self._free.put(worker)
            raise RuntimeError("the worker pool is stopped")
        return worker

    @staticmethod
    def _hand_over(worker: _Worker, name: str, event: dict[str, Any]) -> bool:
        """Send the event and wait for the worker's acknowledgement; False if it is dead."""
        try:
            worker.connection.send((name, event))
            status, _ = worker.connection.recv()
        except (EOFError, OSError):
            return False
        if status != "started":
            raise RuntimeError(f"worker {worker.pid} answered {status!r} to an event")
        return True

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """Tell every worker to exit; terminate those still running after ``timeout``."""
        self._stopped = True
        with self._lock:
            workers, self._workers = self._workers, []
        for worker in workers:
            with contextlib.suppress(OSError):  # dead already
                worker.connection.send(None)
        for worker in workers:
            worker.process.join(timeout)
            if worker.process.is_alive():
                log.warning("worker %d still runs after %.0f s; terminating", worker.pid, timeout)
                worker.process.terminate()
                worker.process.join(timeout)
            worker.connection.close()

    def _spawn(self) -> _Worker:
        ours, theirs = CONTEXT.Pipe()
        process = CONTEXT.Process(
            target=worker_main,
            args=(theirs, self.environment, self.specs),
            name="serendip-api-worker",
            daemon=True,
        )
        process.start()
        theirs.close()  # only the worker holds its end: its death closes the pipe
        worker = _Worker(process, ours)
        with self._lock:
            self._workers.append(worker)
        return worker

    def _replace(self, dead: _Worker, when: str) -> None:
        """Start a worker in place of ``dead``; it joins the free workers once it is ready."""
        dead.process.join(1.0)
        dead.connection.close()
        with self._lock:
            if dead in self._workers:
                self._workers.remove(dead)
        log.error(
            "API worker %d exited (code %s) %s; starting another",
            dead.pid,
            dead.process.exitcode,
            when,
        )
        self.replaced += 1
        threading.Thread(
            target=self._admit, args=(self._spawn(),), name="serendip-worker-start", daemon=True
        ).start()

    def _admit(self, worker: _Worker, attempt: int = 1) -> None:
        """Make ``worker`` free once it has imported the handlers; respawn it if it died."""
        try:
            ready = worker.connection.poll(READY_SECONDS) and worker.connection.recv()
        except (EOFError, OSError):
            ready = None
        if ready and ready[0] == "ready":
            if self._stopped:
                with contextlib.suppress(OSError):
                    worker.connection.send(None)
                return
            log.info("API worker %d started", worker.pid)
            self._free.put(worker)
            return
        worker.process.join(1.0)
        with self._lock:
            if worker in self._workers:
                self._workers.remove(worker)
        if self._stopped:
            return
        if attempt >= RESPAWN_ATTEMPTS:
            log.error(
                "API worker %d did not start (code %s); %d attempts, giving up: the pool has %d",
                worker.pid,
                worker.process.exitcode,
                attempt,
                len(self.pids),
            )
            return
        log.error(
            "API worker %d did not start (code %s); retrying", worker.pid, worker.process.exitcode
        )
        self._admit(self._spawn(), attempt + 1)


@dataclass
class PooledFunction(LocalFunction):
    """A ``LocalFunction`` whose events run in a ``WorkerPool`` instead of this process."""

    pool: WorkerPool | None = field(default=None, repr=False)

    def invoke(self, event: dict[str, Any]) -> Any:
        """The worker's response (a proxy response names the worker in ``x-serendip-worker``)."""
        if self.pool is None:
            raise RuntimeError(f"{self.name} has no worker pool")
        response, pid = self.pool.invoke(self.name, event)
        if isinstance(response, dict) and "statusCode" in response:  # a proxy response
            response["headers"] = {**(response.get("headers") or {}), WORKER_HEADER: str(pid)}
        return response


def pool_api_functions(
    functions: dict[str, LocalFunction],
    workers: int,
    environment: Mapping[str, str] | None = None,
) -> WorkerPool | None:
    """With ``workers`` > 1, serve the API functions of ``functions`` from a started pool.

    Replaces each API function in ``functions`` by a ``PooledFunction`` on one pool of
    ``workers`` processes (each can run any API function) and returns the pool, to be stopped
    with the stack; with 1, leaves ``functions`` alone and returns None (handlers in-process).
    The workers get ``environment`` (default: this process's, which the stack has pointed at
    moto by now).
    """
    if workers <= 1:
        return None
    api = [function for function in functions.values() if is_api_function(function)]
    return _pooled(
        functions, api, workers, dict(os.environ) if environment is None else environment
    )


# The event function that runs in a process of its own beside pooled API functions: the learner
# (Vowpal Wabbit learning and model saves, the heaviest work of the stack). The router and the
# sweep are light and stay in the stack's process.
OWN_PROCESS_FUNCTIONS = ("LearnFunction",)


def pool_learner(
    functions: dict[str, LocalFunction], environment: Mapping[str, str] | None = None
) -> WorkerPool | None:
    """Run the learner in a worker process of its own, as Lambda runs it in its own container.

    Replaces ``LearnFunction`` in ``functions`` by a ``PooledFunction`` on a started pool of one
    worker and returns the pool (stopped with the stack); None if there is no learner. The SQS
    poller stays in the stack's process and hands each batch to the worker, so the learner's
    CPU work no longer shares an interpreter with the gateway.
    """
    own = [functions[name] for name in OWN_PROCESS_FUNCTIONS if name in functions]
    if not own:
        return None
    return _pooled(functions, own, 1, dict(os.environ) if environment is None else environment)


def _pooled(
    functions: dict[str, LocalFunction],
    chosen: list[LocalFunction],
    workers: int,
    environment: Mapping[str, str],
) -> WorkerPool:
    pool = WorkerPool(chosen, workers, environment)
    try:
        pool.start()
    except BaseException:
        pool.stop()
        raise
    for function in chosen:
        functions[function.name] = PooledFunction(
            name=function.name,
            handler_spec=function.handler_spec,
            timeout_seconds=function.timeout_seconds,
            memory_mb=function.memory_mb,
            events=function.events,
            pool=pool,
        )
    return pool
