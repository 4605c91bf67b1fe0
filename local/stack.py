"""The embedded stack: the whole service on one laptop, on moto, with the handlers AWS runs.

``LocalStack`` starts moto's server on loopback, points every AWS client of this process at it
(``AWS_ENDPOINT_URL`` and dummy credentials, set before any client exists), creates every table,
queue and bucket of ``template.yaml``, seeds the shipped policies for tenant ``demo`` with a key of
every scope, then runs what AWS would run around the functions:

- an HTTP gateway turning requests into API Gateway proxy events (``local.gateway``) for the
  API functions, run in this process or, with ``api_workers`` > 1, in that many worker
  processes (``local.function_pool``),
- an SQS poller per ``SQS`` event delivering batches to the learner (``local.workers``),
- a scheduler per ``Schedule`` event (the sweep, every minute unless told otherwise; the catalog
  index builder every ``LOCAL_INDEX_SECONDS``),
- ``GET /dashboard``: the tenant's live dashboard (``local.dashboard``: is each policy learning,
  its latencies as the gateway measured them, the queues, the decision log's metrics and
  plots; no API key, as the stack serves loopback; the gateway answers it, no Lambda does).

While it runs, ``~/.serendip/stacks/<name>.json`` (see ``local.state``) tells other commands
where it is. Given a data directory (``serendip serve`` always gives one), its tables, queues,
buckets and keys survive a restart (``local.stack_data``, ``local.moto_snapshot``); without
one (tests, benchmarks, ``serendip demo``) it starts empty and forgets everything when it stops.

It changes this process's environment and moto's process-wide backends, so only one stack runs
per process, and never together with ``mock_aws()``. ``stop()`` puts the environment back.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import boto3

from local.aws_env import moto_environment, reset_aws_state
from local.function_pool import WorkerPool, pool_api_functions, pool_learner
from local.gateway import Gateway, GatewayServer, api_routes
from local.gateway_latency import LatencyWindows
from local.lambda_events import LocalFunction, template_functions
from local.moto_process import MotoProcess
from local.resources import DEFAULT_REGION, QUEUE, ROOT, TEMPLATE, load_template, resource_name
from local.stack_data import StackData
from local.state import DEFAULT_STACK, LocalState, check_stack_name, clear_state, write_state
from local.workers import (
    DEFAULT_SWEEP_SECONDS,
    Scheduler,
    SqsPoller,
    queue_sources,
    rate_seconds,
    schedule_sources,
)

if TYPE_CHECKING:
    from local.dashboard import LiveDashboard

# moto_environment: imported from here by benchmarks and tests (it lived here).
__all__ = ["LocalStack", "moto_environment"]

log = logging.getLogger("serendip.stack")

DEFAULT_STACK_NAME = "serendip-local"
DEMO_TENANT = "demo"
ALL_SCOPES = frozenset({"rank", "reward", "admin"})
POLICIES_DIR = ROOT / "policies"
# Locally a failed message comes back after this many seconds, not the queue's 360.
LOCAL_VISIBILITY_TIMEOUT = 2
INDEX_FUNCTION = "IndexFunction"
LOCAL_INDEX_SECONDS = 15.0  # the catalog index builder's period on the local stack
SWEEP_PASSES_ON_AWS = 2  # the sweep's passes per scheduled minute (functions.common.settings)


def _metrics_noise_filter() -> None:
    """With metrics disabled, Powertools still warns on every invocation that adds none."""
    warnings.filterwarnings("ignore", message="No application metrics to publish")


class LocalStack:
    """The service on loopback: moto, the API on ``url``, the learner and the sweep."""

    _running: LocalStack | None = None
    _running_lock = threading.Lock()

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 3000,
        api_key: str | None = None,
        webhook_secret: str | None = None,
        tenant: str = DEMO_TENANT,
        sweep_interval: float | None = None,
        index_interval: float = LOCAL_INDEX_SECONDS,
        visibility_timeout: int = LOCAL_VISIBILITY_TIMEOUT,
        stack_name: str = DEFAULT_STACK_NAME,
        template_path: Path = TEMPLATE,
        policies_dir: Path = POLICIES_DIR,
        log_level: str | None = None,
        metrics: bool = False,
        record_state: bool = True,
        name: str = DEFAULT_STACK,
        data_dir: Path | None = None,
        fresh: bool = False,
        learn: bool = True,
        api_workers: int = 1,
    ) -> None:
        self.host = host
        self.port = port
        self.tenant = tenant
        self.name = check_stack_name(name)  # what --stack NAME calls it (its state file)
        self.data = StackData(data_dir) if data_dir is not None else None
        self.fresh = fresh
        self.learn = learn  # False: rewards stay queued (no SQS pollers)
        # > 1: the API functions run in that many worker processes (local.function_pool)
        self.api_workers = api_workers
        self.pool: WorkerPool | None = None
        # With pooled API functions, the learner runs in a worker process of its own too.
        self.learner_pool: WorkerPool | None = None
        self._given_secret = webhook_secret is not None
        self.api_key = api_key or "sk_local_" + secrets.token_urlsafe(24)
        self.webhook_secret = webhook_secret or "whsec_local_" + secrets.token_urlsafe(24)
        self._given_key = (api_key, webhook_secret)
        self.sweep_interval = sweep_interval
        self.index_interval = index_interval
        self.visibility_timeout = visibility_timeout
        self.stack_name = stack_name
        self.template_path = template_path
        self.policies_dir = policies_dir
        self.log_level = log_level or os.environ.get("POWERTOOLS_LOG_LEVEL") or "WARNING"
        self.metrics = metrics
        self.record_state = record_state
        self.region = DEFAULT_REGION
        self.moto_endpoint = ""
        self.url = ""
        self.resources: dict[str, str] = {}
        self.functions: dict[str, LocalFunction] = {}
        self.pollers: list[SqsPoller] = []
        self.schedulers: list[Scheduler] = []
        self._moto: Any = None
        self._server: GatewayServer | None = None
        self.dashboard: LiveDashboard | None = None  # GET /dashboard (local.dashboard)
        self._saved_env: dict[str, str | None] = {}
        self._saved_log_level: int | None = None
        self._started = False

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> LocalStack:
        """Start everything; on any failure, stop what was started and raise."""
        with LocalStack._running_lock:
            if LocalStack._running is not None:
                raise RuntimeError("a LocalStack already runs in this process")
            LocalStack._running = self
        self._started = True
        try:
            self._open_data()
            self._start_moto()
            self._configure_environment()
            self._create_resources()
            self._seed()
            self.functions = self._local_functions()
            self.pool = pool_api_functions(self.functions, self.api_workers)
            if self.pool is not None and self.learn:
                self.learner_pool = pool_learner(self.functions)
            self._start_gateway()
            self._start_workers()
            if self.record_state:
                write_state(self.state())
        except BaseException:
            self.stop()
            raise
        log.info("local stack up at %s (moto at %s)", self.url, self.moto_endpoint)
        return self

    def stop(self) -> None:
        """Stop the gateway, the workers and moto; forget the state file; restore the env."""
        if not self._started:
            return
        self._started = False
        try:
            if self._server is not None:
                self._server.stop()
                self._server = None
            if self.pool is not None:
                self.pool.stop()
                self.pool = None
            for scheduler in self.schedulers:
                scheduler.stop()
            for poller in self.pollers:
                poller.stop()
            self.schedulers, self.pollers = [], []
            if self.learner_pool is not None:  # after its poller: no batch is in flight
                self.learner_pool.stop()
                self.learner_pool = None
            if self.record_state:
                clear_state(self.name, pid=os.getpid())
            if self._moto is not None:
                self._moto.stop()  # after every writer: it writes the last snapshot
                self._moto = None
        finally:
            if self.data is not None:
                self.data.unlock()
            self._restore_environment()
            with LocalStack._running_lock:
                LocalStack._running = None
        log.info("local stack stopped")

    def state(self) -> LocalState:
        """What the state file records about this stack."""
        return LocalState(
            url=self.url,
            moto_endpoint=self.moto_endpoint,
            api_key=self.api_key,
            webhook_secret=self.webhook_secret,
            pid=os.getpid(),
            region=self.region,
            resources=dict(self.resources),
            name=self.name,
            data_dir=str(self.data.directory) if self.data is not None else "",
            moto_pid=(self._moto.pid or 0) if self._moto is not None else 0,
        )

    # ------------------------------------------------------------ waiting

    def drain(self, timeout: float = 30.0) -> None:
        """Block until every queue is empty and no learn batch is in flight.

        Messages that failed count as not drained until they are learned or reach the DLQ.
        ``timeout`` bounds the wait for *progress*, not the whole drain: a slow machine that
        keeps learning keeps waiting (up to ten times ``timeout`` in all). Raises
        ``TimeoutError`` naming what was still queued once no queue moved for ``timeout`` s.
        """
        started = last_progress = time.monotonic()
        last: list[tuple[int, int]] | None = None
        while True:
            depths = [poller.queue_depth() for poller in self.pollers]
            if all(depth == (0, 0) for depth in depths) and all(p.idle() for p in self.pollers):
                return
            now = time.monotonic()
            if depths != last:
                last, last_progress = depths, now
            if now - last_progress > timeout or now - started > 10 * timeout:
                pending = zip(self.pollers, depths, strict=True)
                queues = {poller.name: depth for poller, depth in pending}
                raise TimeoutError(
                    f"queues not drained after {now - started:.0f} s, the last "
                    f"{now - last_progress:.0f} s without progress; still queued "
                    f"(visible, in flight): {queues}"
                )
            time.sleep(0.05)

    # ------------------------------------------------------------ steps of start()

    def _open_data(self) -> None:
        """Lock the data directory; forget its state if fresh; pick the demo key."""
        if self.data is None:
            return
        self.data.lock()
        if self.fresh:
            self.data.clear()
        self.api_key, self.webhook_secret = self.data.demo_key(*self._given_key)

    def _start_moto(self) -> None:
        data = self.data
        self._moto = MotoProcess(
            "127.0.0.1",
            data_dir=data.directory if data is not None else None,
            lock_fd=data.lock_fd() if data is not None else None,
        )
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.moto_endpoint = f"http://{host}:{port}"

    def _configure_environment(self) -> None:
        """Point every client of this process at moto, before any client is created."""
        self._set_env(
            {
                **moto_environment(self.moto_endpoint, self.region),
                "POWERTOOLS_TRACE_DISABLED": "true",
                "POWERTOOLS_SERVICE_NAME": "serendip",
                "POWERTOOLS_METRICS_NAMESPACE": "Serendip",
                "POWERTOOLS_METRICS_DISABLED": "false" if self.metrics else "true",
                "POWERTOOLS_LOG_LEVEL": self.log_level,
                # One pass per scheduled call, called twice as often (see _start_workers): a
                # pass never sleeps in the sweep's thread, so the stack stops promptly.
                "SWEEP_PASSES": "1",
            }
        )
        if not self.metrics:
            _metrics_noise_filter()
        reset_aws_state()

    def _create_resources(self) -> None:
        from local.resources import create_resources

        self.resources = create_resources(self.stack_name, self.template_path)
        self._set_env(dict(self.resources))
        reset_aws_state()
        # The handlers' Logger may exist already (it reads POWERTOOLS_LOG_LEVEL when built).
        from functions.common.observability import logger

        self._saved_log_level = logger.log_level
        logger.setLevel(self.log_level.upper())

    def _seed(self) -> None:
        from functions.common import policy_store
        from functions.common.auth import create_key, key_exists

        policy_store.seed(self.tenant, self.policies_dir)
        if not self._given_secret and key_exists(self.api_key):
            return  # kept from the last run (with its secrets, or revoked, as it was left)
        create_key(
            self.tenant,
            set(ALL_SCOPES),
            name="local demo key",
            api_key=self.api_key,
            webhook_secret=self.webhook_secret,
        )

    def _local_functions(self) -> dict[str, LocalFunction]:
        functions = template_functions(load_template(self.template_path))
        # Event-source functions (router, learner, sweep) share no state: each runs one
        # invocation at a time on its own lock, as a function with one warm instance would.
        # Powertools' resolvers keep the current request in class state shared by every
        # resolver in the process (one request per process on Lambda): API functions must
        # therefore take turns here, or one function could read another's request.
        api = threading.Lock()
        for route in api_routes(functions):
            route.function.lock = api
        return functions

    def _start_gateway(self) -> None:
        from local.dashboard import LiveDashboard

        latency = LatencyWindows()
        self.dashboard = LiveDashboard(self.tenant, self.resources, latency, region=self.region)
        gateway = Gateway(api_routes(self.functions), self.dashboard.pages(), latency)
        self._server = GatewayServer(gateway, self.host, self.port)
        self._server.start()
        shown = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        self.url = f"http://{shown}:{self._server.port}"

    def _start_workers(self) -> None:
        sqs = boto3.client("sqs", region_name=self.region)
        template_resources = load_template(self.template_path).get("Resources", {})
        for source in queue_sources(self.functions) if self.learn else []:
            name = resource_name(self.stack_name, source.queue, QUEUE)
            if template_resources.get(source.queue, {}).get("Properties", {}).get("FifoQueue"):
                name += ".fifo"  # as create_queue names FIFO queues
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            poller = SqsPoller(
                url,
                source.function.invoke,
                batch_size=source.batch_size,
                batch_window=source.batch_window,
                visibility_timeout=self.visibility_timeout,
                report_batch_item_failures=source.report_batch_item_failures,
                client=sqs,
                name=f"{source.function.name}-poller",
            )
            poller.start()
            self.pollers.append(poller)
        for schedule in schedule_sources(self.functions):
            if schedule.function.name == INDEX_FUNCTION:
                # Builds skip unchanged tenants, so locally the index follows the catalog and
                # the rewards within a few seconds rather than AWS's ten minutes.
                interval = self.index_interval
            else:
                interval = (
                    self.sweep_interval or _interval(schedule.expression) / SWEEP_PASSES_ON_AWS
                )
            scheduler = Scheduler(interval, schedule.function.invoke, name=schedule.name)
            scheduler.start()
            self.schedulers.append(scheduler)

    # ------------------------------------------------------------ environment

    def _set_env(self, values: dict[str, str | None]) -> None:
        for name, value in values.items():
            if name not in self._saved_env:
                self._saved_env[name] = os.environ.get(name)
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def _restore_environment(self) -> None:
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = {}
        if self._saved_log_level is not None:
            from functions.common.observability import logger

            logger.setLevel(self._saved_log_level)
            self._saved_log_level = None
        reset_aws_state()


def _interval(expression: str) -> float:
    try:
        return rate_seconds(expression)
    except ValueError as error:
        log.warning("%s; running it every %.0f s", error, DEFAULT_SWEEP_SECONDS)
        return DEFAULT_SWEEP_SECONDS
