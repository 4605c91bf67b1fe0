"""Count the AWS requests of this process, per function of the template.

``record_aws_calls()`` wraps ``botocore.client.BaseClient._make_api_call`` for the duration of a
block. Every AWS call of the process goes through that method: boto3's clients, Powertools' and
pynamodb's alike (pynamodb 6 builds its own botocore client from a botocore session, bypassing
boto3, and calls ``_make_api_call`` on it). Each call becomes an ``AwsCall``: service, operation,
the tables, queues or buckets it touches (transactions and batches expanded into one ``Touch`` per
table and action, with item counts), whether it failed, and which function made it: the logical
id that ``LocalFunction.invoke`` puts in ``local.lambda_events.current_function`` while a handler
runs, and the round of the rank path it was made in (``functions.common.rounds``). Calls
outside any function (the local stack's SQS pollers receiving and deleting messages, as Lambda's
event-source mapping does, or a harness checking queue depths) have ``function`` ``None``; their
``thread`` tells them apart.

A call is one API call: botocore's own retries of it are counted in ``AwsCall.retries``. Example::

    with record_aws_calls() as calls:
        stack.functions["RankFunction"].invoke(event)
    calls.by_operation()[("RankFunction", "dynamodb", "PutItem")]
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from botocore.client import BaseClient

from functions.common.rounds import current_round
from local.lambda_events import current_function

SinkT = TypeVar("SinkT", bound="CallSink")
NO_FUNCTION = "(no function)"  # how summaries name calls made outside any function
# Which key of a TransactWriteItems entry is which action.
_TRANSACT_WRITE_ACTIONS = ("Put", "Update", "Delete", "ConditionCheck")
_BATCH_WRITE_ACTIONS = {"PutRequest": "Put", "DeleteRequest": "Delete"}
_SQS_BATCHES = ("SendMessageBatch", "DeleteMessageBatch", "ChangeMessageVisibilityBatch")


@dataclass(frozen=True, slots=True)
class Touch:
    """One table, queue or bucket a call touches, how (``action``) and for how many items.

    ``action`` is the operation (``GetItem``, ``SendMessage``), or within a transaction or batch
    the kind of entry (``Put``, ``Update``, ``Delete``, ``ConditionCheck``, ``Get``). ``items``
    counts the items the request names; for ``Query``, ``Scan`` and ``ReceiveMessage``, the
    items or messages that came back.
    """

    resource: str
    action: str
    items: int


@dataclass(frozen=True, slots=True)
class Permission:
    """One IAM authorization a call needs: ``action`` on ``resource`` of ``service``.

    ``resource`` names the table, queue, bucket or key as the call did (a physical name), and
    ``path`` what inside it: ``/index/<name>`` for an index query, ``/<key>`` for an S3 object,
    ``""`` for the resource itself. ``local.iam`` turns these into ARNs of the template.
    """

    action: str
    service: str
    resource: str
    path: str = ""


@dataclass(frozen=True, slots=True)
class AwsCall:
    """One AWS API call made in this process."""

    function: str | None
    service: str
    operation: str
    touches: tuple[Touch, ...]
    thread: str
    seconds: float
    error: str | None = None  # the error code of a call that failed
    retries: int = 0
    # What IAM authorizes the call on: (action, resource) pairs, see ``permissions``.
    permissions: tuple[Permission, ...] = ()
    # The round of the rank path the call was made in (``functions.common.rounds``), if any.
    round: int | None = None


class AwsCallLog:
    """The calls recorded so far (thread-safe), with summaries."""

    def __init__(self, calls: Collection[AwsCall] = ()) -> None:
        self._calls = list(calls)
        self._lock = threading.Lock()

    def add(self, call: AwsCall) -> None:
        """Record one call."""
        with self._lock:
            self._calls.append(call)

    def calls(self) -> list[AwsCall]:
        """A copy of every call so far, in order."""
        with self._lock:
            return list(self._calls)

    def clear(self) -> None:
        """Forget the calls so far."""
        with self._lock:
            self._calls.clear()

    def where(self, keep: Callable[[AwsCall], bool]) -> AwsCallLog:
        """A log of the calls ``keep`` accepts (a snapshot).

        >>> log = AwsCallLog([AwsCall("RankFunction", "sqs", "SendMessage", (), "t", 0.0)])
        >>> len(log.where(lambda call: call.function is None))
        0
        """
        return AwsCallLog([call for call in self.calls() if keep(call)])

    def of(self, functions: Collection[str | None]) -> AwsCallLog:
        """A log of the calls made by ``functions`` (``None``: outside any function)."""
        return self.where(lambda call: call.function in functions)

    def __len__(self) -> int:
        with self._lock:
            return len(self._calls)

    def count(self, service: str | None = None, operation: str | None = None) -> int:
        """Calls of ``service`` (and ``operation``), or all calls."""
        return sum(
            1
            for call in self.calls()
            if (service is None or call.service == service)
            and (operation is None or call.operation == operation)
        )

    def by_service(self) -> Counter[tuple[str | None, str]]:
        """Calls by (function, service)."""
        return Counter((call.function, call.service) for call in self.calls())

    def by_operation(self) -> Counter[tuple[str | None, str, str]]:
        """Calls by (function, service, operation)."""
        return Counter((call.function, call.service, call.operation) for call in self.calls())

    def by_resource(self) -> dict[str, dict[str, dict[str, int]]]:
        """Per table, queue or bucket, per action: the calls (``requests``) and ``items``.

        A transaction touching a table twice counts one request and two items for it.
        """
        uses: dict[str, dict[str, dict[str, int]]] = {}
        for call in self.calls():
            for touch in call.touches:
                use = uses.setdefault(touch.resource, {}).setdefault(
                    touch.action, {"requests": 0, "items": 0}
                )
                use["requests"] += 1
                use["items"] += touch.items
        return uses

    def summary(self) -> dict[str, Any]:
        """Everything above as JSON-ready dicts (``None`` functions named ``NO_FUNCTION``)."""
        by_function: dict[str, dict[str, int]] = {}
        for (function, service), count in sorted(self.by_service().items(), key=_sort_key):
            by_function.setdefault(function or NO_FUNCTION, {})[service] = count
        by_operation: dict[str, dict[str, dict[str, int]]] = {}
        for (function, service, operation), count in sorted(
            self.by_operation().items(), key=_sort_key
        ):
            services = by_operation.setdefault(function or NO_FUNCTION, {})
            services.setdefault(service, {})[operation] = count
        calls = self.calls()
        return {
            "calls": len(calls),
            "errors": sum(1 for call in calls if call.error is not None),
            "retries": sum(call.retries for call in calls),
            "by_function": by_function,
            "by_operation": by_operation,
            "by_resource": self.by_resource(),
        }


def _sort_key(entry: tuple[tuple[str | None, ...], int]) -> tuple[str, ...]:
    return tuple(part or "" for part in entry[0])


# ---------------------------------------------------------------- what a call touches


def touches(
    service: str, operation: str, params: Mapping[str, Any], response: Mapping[str, Any] | None
) -> tuple[Touch, ...]:
    """The resources a call touches, from its parameters (and response, for reads).

    >>> touches("dynamodb", "BatchGetItem", {"RequestItems": {"t": {"Keys": [{}, {}]}}}, None)
    (Touch(resource='t', action='Get', items=2),)
    >>> touches("sqs", "SendMessage", {"QueueUrl": "http://h/123/q"}, None)
    (Touch(resource='q', action='SendMessage', items=1),)
    """
    if service == "dynamodb":
        return _dynamodb(operation, params, response or {})
    if service == "sqs":
        return _sqs(operation, params, response or {})
    bucket = params.get("Bucket")
    if service == "s3" and isinstance(bucket, str):
        objects = params.get("Delete", {}).get("Objects") if operation == "DeleteObjects" else None
        return (Touch(bucket, operation, len(objects) if objects is not None else 1),)
    return ()


def _dynamodb(
    operation: str, params: Mapping[str, Any], response: Mapping[str, Any]
) -> tuple[Touch, ...]:
    counts: Counter[tuple[str, str]] = Counter()
    if operation == "TransactWriteItems":
        for entry in params.get("TransactItems", []):
            for action in _TRANSACT_WRITE_ACTIONS:
                if action in entry:
                    counts[(entry[action]["TableName"], action)] += 1
    elif operation == "TransactGetItems":
        for entry in params.get("TransactItems", []):
            counts[(entry["Get"]["TableName"], "Get")] += 1
    elif operation == "BatchGetItem":
        for table, request in params.get("RequestItems", {}).items():
            counts[(table, "Get")] += len(request.get("Keys", []))
    elif operation == "BatchWriteItem":
        for table, requests in params.get("RequestItems", {}).items():
            for request in requests:
                for key, action in _BATCH_WRITE_ACTIONS.items():
                    if key in request:
                        counts[(table, action)] += 1
    elif isinstance(params.get("TableName"), str):
        returned = operation in ("Query", "Scan")
        items = int(response.get("Count", 0)) if returned else 1
        return (Touch(params["TableName"], operation, items),)
    return tuple(Touch(table, action, items) for (table, action), items in counts.items())


def _sqs(
    operation: str, params: Mapping[str, Any], response: Mapping[str, Any]
) -> tuple[Touch, ...]:
    url, name = params.get("QueueUrl"), params.get("QueueName")
    queue = url.rstrip("/").rsplit("/", 1)[-1] if isinstance(url, str) else name
    if not isinstance(queue, str):
        return ()
    if operation in _SQS_BATCHES:
        items = len(params.get("Entries", []))
    elif operation == "ReceiveMessage":
        items = len(response.get("Messages", []))
    else:
        items = 1
    return (Touch(queue, operation, items),)


# ---------------------------------------------------------------- what IAM checks

# DynamoDB: the IAM action of each entry of a transaction (IAM authorizes each entry).
_TRANSACT_WRITE_IAM = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
# SQS batch calls are authorized as the single action; S3 reads of metadata as GetObject.
_IAM_ACTION = {
    ("sqs", "SendMessageBatch"): "SendMessage",
    ("sqs", "DeleteMessageBatch"): "DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "ChangeMessageVisibility",
    ("s3", "HeadObject"): "GetObject",
    ("s3", "ListObjectsV2"): "ListBucket",
    ("s3", "ListObjects"): "ListBucket",
    ("s3", "DeleteObjects"): "DeleteObject",
}


def permissions(
    service: str, operation: str, params: Mapping[str, Any], response: Mapping[str, Any] | None
) -> tuple[Permission, ...]:
    """The IAM authorizations a call needs (per table and entry kind for transactions).

    >>> permissions("dynamodb", "Query", {"TableName": "t", "IndexName": "by_x"}, None)
    (Permission(action='dynamodb:Query', service='dynamodb', resource='t', path='/index/by_x'),)
    >>> [p.action for p in permissions("sqs", "SendMessageBatch", {"QueueUrl": "h/1/q"}, None)]
    ['sqs:SendMessage']
    """
    if service == "dynamodb":
        return _dynamodb_permissions(operation, params)
    action = f"{service}:{_IAM_ACTION.get((service, operation), operation)}"
    if service == "sqs":
        url, name = params.get("QueueUrl"), params.get("QueueName")
        queue = url.rstrip("/").rsplit("/", 1)[-1] if isinstance(url, str) else name
        return (Permission(action, service, queue if isinstance(queue, str) else "*"),)
    if service == "s3":
        return _s3_permissions(operation, action, params)
    if service == "kms":
        key = params.get("KeyId") or (response or {}).get("KeyId") or "*"
        return (Permission(action, service, str(key)),)
    return (Permission(action, service, "*"),)


def _dynamodb_permissions(operation: str, params: Mapping[str, Any]) -> tuple[Permission, ...]:
    wanted: list[Permission] = []
    if operation == "TransactWriteItems":
        for entry in params.get("TransactItems", []):
            for kind, action in _TRANSACT_WRITE_IAM.items():
                if kind in entry:
                    table = entry[kind]["TableName"]
                    wanted.append(Permission(f"dynamodb:{action}", "dynamodb", table))
    elif operation == "TransactGetItems":
        for entry in params.get("TransactItems", []):
            wanted.append(Permission("dynamodb:GetItem", "dynamodb", entry["Get"]["TableName"]))
    elif operation in ("BatchGetItem", "BatchWriteItem"):
        for table in params.get("RequestItems", {}):
            wanted.append(Permission(f"dynamodb:{operation}", "dynamodb", table))
    else:
        table = params.get("TableName")
        index = params.get("IndexName")
        path = f"/index/{index}" if isinstance(index, str) else ""
        wanted.append(Permission(f"dynamodb:{operation}", "dynamodb", str(table or "*"), path))
    return tuple(dict.fromkeys(wanted))


def _s3_permissions(
    operation: str, action: str, params: Mapping[str, Any]
) -> tuple[Permission, ...]:
    bucket = str(params.get("Bucket", "*"))
    if action in ("s3:ListBucket", "s3:ListObjectVersions"):
        return (Permission(action, "s3", bucket),)
    if operation == "DeleteObjects":
        keys = [entry["Key"] for entry in params.get("Delete", {}).get("Objects", [])]
        return tuple(Permission(action, "s3", bucket, f"/{key}") for key in keys)
    if operation == "CopyObject":
        source = params.get("CopySource")
        source_bucket, source_key = (
            (source.get("Bucket"), source.get("Key"))
            if isinstance(source, Mapping)
            else str(source).lstrip("/").split("/", 1)
        )
        return (
            Permission("s3:GetObject", "s3", str(source_bucket), f"/{source_key}"),
            Permission("s3:PutObject", "s3", bucket, f"/{params.get('Key', '')}"),
        )
    if "VersionId" in params and action == "s3:GetObject":
        action = "s3:GetObjectVersion"
    return (Permission(action, "s3", bucket, f"/{params.get('Key', '')}"),)


# ---------------------------------------------------------------- the hook

_logs: list[CallSink] = []
_hook_lock = threading.Lock()
_original: Callable[..., Any] | None = None
# Whether ``_recording_call`` is in the chain of ``_make_api_call``: it stays there, passing
# calls through, when something patched the method over it meanwhile (a test's fault injector).
_in_chain = False


def _recording_call(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
    """``BaseClient._make_api_call`` that also records the call in every active log."""
    assert _original is not None
    logs = list(_logs)  # a snapshot: a recorder may stop on another thread meanwhile
    if not logs:
        return _original(client, operation, params)
    function = current_function.get()
    service = client.meta.service_model.service_name
    started = time.perf_counter()
    response: dict[str, Any] | None = None
    error: str | None = None
    try:
        response = _original(client, operation, params)
        return response
    except Exception as exc:
        failed = getattr(exc, "response", None)
        error = (failed or {}).get("Error", {}).get("Code") or type(exc).__name__
        response = failed if isinstance(failed, dict) else None
        raise
    finally:
        metadata = (response or {}).get("ResponseMetadata", {})
        call = AwsCall(
            function=function,
            service=service,
            operation=operation,
            touches=touches(service, operation, params, response),
            thread=threading.current_thread().name,
            seconds=time.perf_counter() - started,
            error=error,
            retries=int(metadata.get("RetryAttempts", 0)),
            permissions=permissions(service, operation, params, response),
            round=current_round.get(),
        )
        for log in logs:
            log.add(call)


class CallSink(Protocol):
    """Where the hook hands each call: an ``AwsCallLog``, or an aggregate of calls."""

    def add(self, call: AwsCall) -> None:
        """Take one call (from any thread)."""


@contextmanager
def record_aws_calls() -> Iterator[AwsCallLog]:
    """Record every AWS call of this process (every thread) during the block.

    Recorders may nest or overlap (each sees every call made while it is active); the hook is
    installed by the first and removed by the last.
    """
    with record_into(AwsCallLog()) as log:
        yield log


@contextmanager
def record_into(sink: SinkT) -> Iterator[SinkT]:
    """Hand every AWS call of this process to ``sink`` during the block (see above).

    For a long run, a sink that aggregates keeps no list of calls.
    """
    global _original, _in_chain  # noqa: PLW0603
    with _hook_lock:
        if not _in_chain:
            _original = BaseClient._make_api_call
            BaseClient._make_api_call = _recording_call
            _in_chain = True
        _logs.append(sink)
    try:
        yield sink
    finally:
        with _hook_lock:
            _logs.remove(sink)
            if not _logs and BaseClient._make_api_call is _recording_call:
                BaseClient._make_api_call = _original
                _in_chain = False
