"""The event sources of the local stack: an SQS poller and a schedule, as Lambda runs them.

``SqsPoller`` does what Lambda's SQS event-source mapping does: long-poll the queue, gather a
batch of up to ``BatchSize`` messages within ``MaximumBatchingWindowInSeconds`` (10 per receive
call, as SQS allows), hand it to the function in the SQS event shape, delete what succeeded and
leave the rest for redelivery. With ``ReportBatchItemFailures`` only the ``batchItemFailures``
stay; a handler that raises keeps the whole batch. Left messages come back after the visibility
timeout, and the queue's redrive policy moves them to the DLQ after ``maxReceiveCount``
receives. Locally the receive call asks for a short visibility timeout (2 s, not the queue's
360 s) so retries happen while you watch.

``Scheduler`` calls a function with an EventBridge scheduled event every interval (the
template's ``rate(1 minute)`` unless told otherwise).

Both are threads that stop promptly on ``stop()`` and log every failure with its context.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from local.lambda_events import LocalFunction, schedule_event, sqs_event

log = logging.getLogger("serendip.workers")

EventHandler = Callable[[dict[str, Any]], Any]
DEFAULT_SWEEP_SECONDS = 60.0
IDLE_GAP_SECONDS = 0.2  # an empty queue for this long ends a batching window early
GATHER_PAUSE_SECONDS = 0.1  # between receives of a batching window once the queue is empty
MAX_RECEIVE = 10  # messages per ReceiveMessage (SQS's limit)
_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass
class PollerStats:
    """What a poller has done so far."""

    batches: int = 0
    messages: int = 0
    deleted: int = 0
    failures: int = 0  # messages reported in batchItemFailures (or in a batch that raised)
    errors: int = 0  # handler exceptions and failed SQS calls


class _Worker:
    """A named background thread that runs ``_run`` until ``stop()``."""

    name: str
    _stop: threading.Event
    _thread: threading.Thread | None

    def start(self) -> None:
        """Start on a background thread."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name} is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the call in progress; wait for the thread (up to ``timeout``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("%s did not stop within %.0f s", self.name, timeout)
            self._thread = None

    def _run(self) -> None:
        raise NotImplementedError


class SqsPoller(_Worker):
    """Delivers a queue's messages to a handler in Lambda's SQS event shape, on a thread."""

    def __init__(
        self,
        queue_url: str,
        handler: EventHandler,
        *,
        queue_arn: str | None = None,
        batch_size: int = 10,
        batch_window: float = 0.0,
        wait_seconds: int = 1,
        visibility_timeout: int = 2,
        report_batch_item_failures: bool = True,
        client: Any = None,
        name: str = "sqs-poller",
        error_backoff: float = 1.0,
    ) -> None:
        if not 1 <= batch_size <= 10_000:
            raise ValueError("batch_size must be between 1 and 10,000")
        self.queue_url = queue_url
        self.handler = handler
        self.batch_size = batch_size
        self.batch_window = batch_window
        self.wait_seconds = wait_seconds
        self.visibility_timeout = visibility_timeout
        self.report_batch_item_failures = report_batch_item_failures
        self.name = name
        self.error_backoff = error_backoff
        self.stats = PollerStats()
        self._client = client or boto3.client(
            "sqs", config=Config(read_timeout=wait_seconds + 10, retries={"max_attempts": 2})
        )
        self.queue_arn = queue_arn or self._attributes(["QueueArn"])["QueueArn"]
        self.max_receive_count = self._max_receive_count()
        self._stop = threading.Event()
        self._state = threading.Condition()
        self._busy = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def idle(self) -> bool:
        """True when no batch is being handled (received, not yet deleted)."""
        with self._state:
            return not self._busy

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no batch is in flight; False on timeout."""
        with self._state:
            return self._state.wait_for(lambda: not self._busy, timeout)

    def queue_depth(self) -> tuple[int, int]:
        """(visible, in flight or waiting out a visibility timeout) messages of the queue."""
        attributes = self._attributes(
            ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )
        return (
            int(attributes.get("ApproximateNumberOfMessages", 0)),
            int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        )

    # ------------------------------------------------------------ polling

    def _run(self) -> None:
        log.debug("%s polling %s", self.name, self.queue_url)
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                self.stats.errors += 1
                log.exception("%s: polling %s failed; retrying", self.name, self.queue_url)
                self._stop.wait(self.error_backoff)

    def poll_once(self) -> int:
        """One receive (long poll) and, if it got messages, one handled batch. Returns its size."""
        messages = self._receive()
        if not messages:
            return 0
        try:
            self._handle(messages)
        finally:
            with self._state:
                self._busy = False
                self._state.notify_all()
        return len(messages)

    def _receive(self) -> list[dict[str, Any]]:
        messages = self._receive_once(self.wait_seconds)
        if messages:
            with self._state:
                self._busy = True
        deadline = time.monotonic() + self.batch_window
        idle_since = time.monotonic()
        seen = {message["MessageId"] for message in messages}
        received = len(messages)
        while (
            messages
            and len(messages) < self.batch_size
            and time.monotonic() < deadline
            and not self._stop.is_set()
        ):
            # A receive short of 10 emptied the queue: let messages gather before asking again
            # (one receive per message would cost the server more than the handler's work).
            if received < MAX_RECEIVE:
                self._stop.wait(GATHER_PAUSE_SECONDS)
            # A message already in the batch can come back (a visibility timeout of 0): a
            # batch never holds one twice. Lambda waits out the window; locally a queue that
            # stayed empty for ``IDLE_GAP_SECONDS`` ends the gathering, for a short
            # reward-to-model time that still batches a burst.
            answer = self._receive_once(0)
            received = len(answer)
            more = [m for m in answer if m["MessageId"] not in seen]
            if more:
                messages += more
                seen.update(m["MessageId"] for m in more)
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= IDLE_GAP_SECONDS:
                break
        return messages

    def _receive_once(self, wait_seconds: int) -> list[dict[str, Any]]:
        response = self._client.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(MAX_RECEIVE, self.batch_size),
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=self.visibility_timeout,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    def _handle(self, messages: list[dict[str, Any]]) -> None:
        self.stats.batches += 1
        self.stats.messages += len(messages)
        event = sqs_event(messages, self.queue_arn)
        ids = [message["MessageId"] for message in messages]
        try:
            result = self.handler(event)
        except Exception:
            self.stats.errors += 1
            self.stats.failures += len(messages)
            log.exception(
                "%s: the handler raised on a batch of %d (%s); all of it returns after %d s",
                self.name,
                len(messages),
                ", ".join(ids),
                self.visibility_timeout,
            )
            self._warn_dead_letters(messages)
            return
        failed = self._failed_ids(result, ids)
        if failed:
            self.stats.failures += len(failed)
            log.warning(
                "%s: %d of %d messages failed (%s); they return after %d s",
                self.name,
                len(failed),
                len(messages),
                ", ".join(sorted(failed)),
                self.visibility_timeout,
            )
            self._warn_dead_letters([m for m in messages if m["MessageId"] in failed])
        self._delete([m for m in messages if m["MessageId"] not in failed])

    def _failed_ids(self, result: Any, ids: list[str]) -> set[str]:
        """The messages to keep, by Lambda's rules for ``ReportBatchItemFailures``."""
        if not self.report_batch_item_failures:
            return set()
        if result is None:
            return set()
        failures = result.get("batchItemFailures") if isinstance(result, Mapping) else None
        if failures is None:
            return set()
        reported = (
            [f.get("itemIdentifier") if isinstance(f, Mapping) else None for f in failures]
            if isinstance(failures, list)
            else [None]
        )
        if any(i not in ids for i in reported):
            # Lambda treats an unparseable failure list as a failure of the whole batch.
            log.error("%s: malformed batchItemFailures %r; keeping the batch", self.name, failures)
            return set(ids)
        return {str(i) for i in reported}

    def _warn_dead_letters(self, messages: Iterable[dict[str, Any]]) -> None:
        if self.max_receive_count is None:
            return
        for message in messages:
            count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            if count >= self.max_receive_count:
                log.error(
                    "%s: message %s failed on receive %d of %d; it goes to the DLQ",
                    self.name,
                    message["MessageId"],
                    count,
                    self.max_receive_count,
                )

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            response = self._client.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(chunk)
                ],
            )
            self.stats.deleted += len(response.get("Successful", []))
            for failure in response.get("Failed", []):
                self.stats.errors += 1
                log.error("%s: could not delete a handled message: %s", self.name, failure)

    # ------------------------------------------------------------ queue attributes

    def _attributes(self, names: list[str]) -> dict[str, str]:
        response = self._client.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=names)
        attributes: dict[str, str] = response.get("Attributes", {})
        return attributes

    def _max_receive_count(self) -> int | None:
        policy = self._attributes(["RedrivePolicy"]).get("RedrivePolicy")
        if not policy:
            return None
        try:
            return int(json.loads(policy)["maxReceiveCount"])
        except (ValueError, KeyError, TypeError):
            return None


# ---------------------------------------------------------------- schedule


def rate_seconds(expression: str) -> float:
    """Seconds between runs of an EventBridge ``rate(...)`` expression.

    >>> rate_seconds("rate(1 minute)"), rate_seconds("rate(2 hours)")
    (60.0, 7200.0)
    """
    match = _RATE.match(expression.strip())
    if not match:
        raise ValueError(f"only rate(N minute|hour|day) schedules run locally, not {expression!r}")
    count, unit = int(match.group(1)), match.group(2).rstrip("s")
    if count < 1:
        raise ValueError(f"a rate must be at least 1 {unit}: {expression!r}")
    return float(count * _UNIT_SECONDS[unit])


class Scheduler(_Worker):
    """Calls a handler with a scheduled event every ``interval_seconds``, on a thread."""

    def __init__(
        self,
        interval_seconds: float,
        handler: EventHandler,
        *,
        name: str = "scheduler",
        rule_arn: str = "arn:aws:events:us-east-1:123456789012:rule/serendip-local",
    ) -> None:
        if interval_seconds <= 0:
            raise ValueError("interval_seconds must be positive")
        self.interval_seconds = interval_seconds
        self.handler = handler
        self.name = name
        self.rule_arn = rule_arn
        self.runs = 0
        self.errors = 0
        self.last_result: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            self.tick()

    def tick(self) -> Any:
        """Call the handler once now (errors are logged, counted and swallowed)."""
        try:
            self.last_result = self.handler(schedule_event(self.rule_arn))
        except Exception:
            self.errors += 1
            log.exception(
                "%s: the scheduled call failed; next try in %.0f s",
                self.name,
                self.interval_seconds,
            )
            return None
        finally:
            self.runs += 1
        return self.last_result


# ---------------------------------------------------------------- the template's event sources


@dataclass(frozen=True, slots=True)
class QueueSource:
    """An ``SQS`` event of a function: which queue (logical id) and how batches are shaped."""

    function: LocalFunction
    queue: str
    batch_size: int
    report_batch_item_failures: bool
    batch_window: float = 0.0


@dataclass(frozen=True, slots=True)
class ScheduleSource:
    """A ``Schedule`` event of a function."""

    function: LocalFunction
    expression: str
    name: str


def queue_sources(functions: Mapping[str, LocalFunction]) -> list[QueueSource]:
    """Every ``Type: SQS`` event of the functions."""
    sources = []
    for function in functions.values():
        for name, event in function.events.items():
            if event.get("Type") != "SQS":
                continue
            properties = event.get("Properties", {})
            queue = _logical_id(properties.get("Queue"))
            if queue is None:
                raise ValueError(f"{function.name} event {name}: Queue must be !GetAtt Q.Arn")
            sources.append(
                QueueSource(
                    function=function,
                    queue=queue,
                    batch_size=int(properties.get("BatchSize", 10)),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in (properties.get("FunctionResponseTypes") or []),
                    batch_window=float(properties.get("MaximumBatchingWindowInSeconds", 0)),
                )
            )
    return sources


def schedule_sources(functions: Mapping[str, LocalFunction]) -> list[ScheduleSource]:
    """Every ``Type: Schedule`` (or ``ScheduleV2``) event of the functions."""
    sources = []
    for function in functions.values():
        for name, event in function.events.items():
            if event.get("Type") not in ("Schedule", "ScheduleV2"):
                continue
            properties = event.get("Properties", {})
            expression = properties.get("Schedule") or properties.get("ScheduleExpression")
            if not isinstance(expression, str):
                raise ValueError(f"{function.name} event {name}: no schedule expression")
            sources.append(ScheduleSource(function, expression, f"{function.name}-{name}"))
    return sources


def _logical_id(reference: Any) -> str | None:
    """``RewardQueue`` from ``{"Fn::GetAtt": ["RewardQueue", "Arn"]}`` or ``"RewardQueue.Arn"``."""
    if not isinstance(reference, dict) or set(reference) != {"Fn::GetAtt"}:
        return None
    target = reference["Fn::GetAtt"]
    parts = target.split(".", 1) if isinstance(target, str) else list(target)
    if len(parts) != 2 or parts[1] != "Arn":
        return None
    return str(parts[0])
