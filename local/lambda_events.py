"""Lambda event shapes, built the way AWS builds them: API Gateway REST proxy, SQS, schedule.

The local stack and the tests use these to run the very handlers that AWS runs.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qs


@dataclass
class FakeLambdaContext:
    """The parts of Lambda's context object that Powertools reads."""

    function_name: str = "serendip-local"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:serendip-local"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/serendip-local"
    log_stream_name: str = "local"
    timeout_ms: int = 30_000
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the (simulated) timeout."""
        elapsed = int((time.monotonic() - self._started) * 1000)
        return max(0, self.timeout_ms - elapsed)


def match_resource(template_path: str, path: str) -> dict[str, str] | None:
    """Path parameters if ``path`` matches ``/v1/policies/{policy}``-style ``template_path``.

    A last segment ``{name+}`` is greedy, as in API Gateway: it takes one segment or more.
    """
    pattern = template_path.strip("/").split("/")
    actual = path.strip("/").split("/")
    if pattern and pattern[-1].startswith("{") and pattern[-1].endswith("+}"):
        head = len(pattern) - 1
        rest = "/".join(actual[head:])
        if len(actual) <= head or not rest:
            return None
        fixed = match_resource("/".join(pattern[:head]), "/".join(actual[:head]))
        return None if fixed is None else {**fixed, pattern[-1][1:-2]: rest}
    if len(pattern) != len(actual):
        return None
    params: dict[str, str] = {}
    for expected, value in zip(pattern, actual, strict=True):
        if expected.startswith("{") and expected.endswith("}"):
            if not value:
                return None
            params[expected[1:-1]] = value
        elif expected != value:
            return None
    return params


def proxy_event(
    method: str,
    path: str,
    *,
    resource: str | None = None,
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    query: str = "",
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event for one HTTP request."""
    raw = body.encode() if isinstance(body, str) else (body or b"")
    try:
        text: str | None = raw.decode("utf-8") if raw else None
        encoded = False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(raw).decode(), True
    resource = resource or path
    params = match_resource(resource, path) or None
    single_query = {k: v[-1] for k, v in parse_qs(query).items()} or None
    multi_query = parse_qs(query) or None
    header_map = dict(headers or {})
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method.upper(),
        "headers": header_map or None,
        "multiValueHeaders": {k: [v] for k, v in header_map.items()} or None,
        "queryStringParameters": single_query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": params,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method.upper(),
            "path": path,
            "stage": "local",
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": source_ip, "userAgent": header_map.get("user-agent", "")},
            "accountId": "123456789012",
            "apiId": "local",
            "protocol": "HTTP/1.1",
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """An SQS event for ``messages`` as returned by ReceiveMessage (FIFO attributes kept)."""
    records = []
    for message in messages:
        attributes = message.get("Attributes", {})
        fifo = {
            name: attributes[name]
            for name in ("MessageGroupId", "MessageDeduplicationId", "SequenceNumber")
            if name in attributes
        }
        records.append(
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": {
                    "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
                    "SentTimestamp": attributes.get("SentTimestamp", str(int(time.time() * 1000))),
                    "SenderId": "local",
                    "ApproximateFirstReceiveTimestamp": attributes.get(
                        "ApproximateFirstReceiveTimestamp", str(int(time.time() * 1000))
                    ),
                    **fifo,
                },
                "messageAttributes": {},
                "md5OfBody": message.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": queue_arn.split(":")[3] if queue_arn.count(":") >= 3 else "us-east-1",
            }
        )
    return {"Records": records}


def schedule_event(
    rule_arn: str = "arn:aws:events:us-east-1:123456789012:rule/sweep",
) -> dict[str, Any]:
    """An EventBridge scheduled event."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": "us-east-1",
        "resources": [rule_arn],
        "detail": {},
    }


def response_json(response: dict[str, Any]) -> Any:
    """The JSON body of a Lambda proxy response."""
    body = response.get("body") or "null"
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return json.loads(body)


# ---------------------------------------------------------------- running handlers locally

Handler = Callable[[dict[str, Any], Any], Any]
# The logical id of the function whose handler runs in this context (``LocalFunction.invoke``
# sets it); ``None`` outside any function. ``local.aws_calls`` attributes AWS calls by it.
current_function: ContextVar[str | None] = ContextVar("current_function", default=None)
DEFAULT_TIMEOUT_SECONDS = 3  # Lambda's default when neither the function nor Globals set one
SAM_FUNCTION = "AWS::Serverless::Function"


def load_handler(spec: str) -> Handler:
    """Import a template ``Handler`` such as ``functions/rank/app.lambda_handler``.

    >>> load_handler("local/lambda_events.schedule_event").__name__
    'schedule_event'
    """
    module_name, _, attribute = spec.rpartition(".")
    if not module_name or not attribute:
        raise ValueError(f"malformed handler {spec!r}: expected 'path/to/module.function'")
    module = importlib.import_module(module_name.replace("/", "."))
    handler = getattr(module, attribute)
    if not callable(handler):
        raise TypeError(f"{spec} is not callable")
    return cast(Handler, handler)


@dataclass
class LocalFunction:
    """One function of the template, run in this process the way one warm Lambda instance runs.

    A Lambda instance handles one event at a time; ``lock`` keeps it that way here, which also
    matters for correctness: a handler's cached Vowpal Wabbit workspaces are not thread-safe.
    Functions that share module state (the sweep reuses the learner's ``Learner``) must share one
    lock. The handler is imported on first use, after the stack has set up the environment.
    """

    name: str
    handler_spec: str
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    memory_mb: int = 128
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # SAM Events, by name
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _handler: Handler | None = field(default=None, repr=False)

    def handler(self) -> Handler:
        """The handler function (imported on first call)."""
        if self._handler is None:
            self._handler = load_handler(self.handler_spec)
        return self._handler

    def context(self) -> FakeLambdaContext:
        """A fresh context for one invocation of this function."""
        return FakeLambdaContext(
            function_name=self.name,
            memory_limit_in_mb=self.memory_mb,
            invoked_function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{self.name}",
            log_group_name=f"/aws/lambda/{self.name}",
            timeout_ms=int(self.timeout_seconds * 1000),
        )

    def invoke(self, event: dict[str, Any]) -> Any:
        """Run the handler on ``event`` (one invocation at a time); exceptions propagate."""
        handler = self.handler()
        with self.lock:
            running = current_function.set(self.name)
            try:
                return handler(event, self.context())
            finally:
                current_function.reset(running)
                _discard_unpublished_metrics()


def _discard_unpublished_metrics() -> None:
    """With metrics disabled, Powertools keeps every value and prints them anyway every 100."""
    if os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() not in ("1", "true", "yes", "on"):
        return
    observability = sys.modules.get("functions.common.observability")
    metrics = getattr(observability, "metrics", None)
    if metrics is not None:
        metrics.clear_metrics()


def template_functions(template: dict[str, Any]) -> dict[str, LocalFunction]:
    """Every ``AWS::Serverless::Function`` of a SAM template: handler, timeout, events."""
    defaults = template.get("Globals", {}).get("Function", {})
    functions: dict[str, LocalFunction] = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != SAM_FUNCTION:
            continue
        properties = resource.get("Properties", {})
        handler = properties.get("Handler", defaults.get("Handler"))
        if not isinstance(handler, str):
            raise ValueError(f"{logical_id} has no Handler")
        timeout = properties.get("Timeout", defaults.get("Timeout", DEFAULT_TIMEOUT_SECONDS))
        memory = properties.get("MemorySize", defaults.get("MemorySize", 128))
        functions[logical_id] = LocalFunction(
            name=logical_id,
            handler_spec=handler,
            timeout_seconds=float(timeout),
            memory_mb=int(memory),
            events=dict(properties.get("Events") or {}),
        )
    return functions
