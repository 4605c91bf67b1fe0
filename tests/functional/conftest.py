"""Functional fixtures: every resource of template.yaml on in-process moto, and a tenant."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from functions.common import policy_store
from functions.common.auth import NewKey, create_key, principals, sign
from functions.common.aws import reset_clients
from functions.common.settings import reset_settings, settings
from functions.common.tables import unbind
from local.lambda_events import FakeLambdaContext, proxy_event, response_json
from local.resources import create_resources

ROOT = Path(__file__).resolve().parents[2]
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Fresh moto with the template's tables, queues and bucket; env pointing at them."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "Serendip",
        "POWERTOOLS_DEV": "false",
        "MODEL_CACHE_SECONDS": "0",
        "INDEX_CACHE_SECONDS": "0",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        environment = create_resources("serendip-test")
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        reset_settings()
        unbind()
        reset_clients()
        _reset_handler_state()
        yield environment
        reset_settings()
        unbind()
        reset_clients()
        _reset_handler_state()


def _reset_handler_state() -> None:
    """Forget per-process caches of the handlers (a new moto means new data)."""
    import functions.learn.app as learn
    import functions.personalizer.app as personalizer
    import functions.rank.app as rank
    from functions.admin.openapi import openapi_document
    from functions.common import secret_box

    principals.clear()

    rank._service = None
    personalizer._service = None
    learn._learner = None
    openapi_document.cache_clear()
    secret_box.forget()


@pytest.fixture
def tenant(aws: dict[str, str]) -> NewKey:
    """Tenant ``acme`` with a key of every scope and the shipped policies."""
    key = create_key("acme", {"rank", "reward", "admin"})
    policy_store.seed("acme", ROOT / "policies")
    return key


@pytest.fixture
def other_tenant(aws: dict[str, str]) -> NewKey:
    """Tenant ``globex`` with its own key and policies."""
    key = create_key("globex", {"rank", "reward", "admin"})
    policy_store.seed("globex", ROOT / "policies")
    return key


class Api:
    """Calls the API handlers with API Gateway proxy events, as AWS would."""

    def __init__(self, key: NewKey) -> None:
        self.key = key

    def call(
        self,
        handler: Handler,
        method: str,
        path: str,
        body: Any = None,
        *,
        resource: str | None = None,
        headers: dict[str, str] | None = None,
        sign_body: bool = False,
        api_key: str | None = None,
        query: str = "",
    ) -> tuple[int, Any, dict[str, str]]:
        raw = body if isinstance(body, bytes | str) or body is None else json.dumps(body)
        all_headers = {"content-type": "application/json", "x-api-key": api_key or self.key.api_key}
        if sign_body:
            data = raw.encode() if isinstance(raw, str) else (raw or b"")
            all_headers["x-serendip-signature"] = sign(
                data, self.key.webhook_secret, int(time.time())
            )
        all_headers.update(headers or {})
        event = proxy_event(
            method, path, resource=resource, body=raw, headers=all_headers, query=query
        )
        response = handler(event, FakeLambdaContext())
        # REST responses carry their headers in ``multiValueHeaders``.
        sent = {k: v[-1] for k, v in (response.get("multiValueHeaders") or {}).items() if v}
        sent.update(response.get("headers") or {})
        return response["statusCode"], response_json(response), sent


@pytest.fixture
def api(tenant: NewKey) -> Api:
    return Api(tenant)


class KeyClock:
    """The clock of the functions' API key cache, moved by hand."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now

    def pass_cache_time(self) -> None:
        """Let ``API_KEY_CACHE_SECONDS`` pass: every kept key is read again."""
        self.now += settings().api_key_cache_seconds


@pytest.fixture
def key_clock(monkeypatch: pytest.MonkeyPatch) -> KeyClock:
    """A hand-moved clock for the API key cache (``functions.common.auth.principals``)."""
    clock = KeyClock()
    monkeypatch.setattr(principals, "clock", clock)
    principals.clear()
    return clock


def queue_depth(url: str) -> int:
    """Messages on an SQS queue, visible or in flight."""
    attributes = boto3.client("sqs", region_name="us-east-1").get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )
