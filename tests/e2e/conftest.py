"""End-to-end fixtures: the local stack in this process, spoken to over real HTTP on loopback.

The stack is package-scoped, not session-scoped: it runs moto's *server* in this process and
points ``AWS_ENDPOINT_URL`` at it, and ``tests/functional`` runs ``mock_aws()`` in the same
process. The two must never overlap (DESIGN.md section 7), so the stack stops when the last
e2e test is done rather than at the end of the whole session.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from functions.common.auth import sign
from local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
# Variables a child process must not inherit from the in-process stack (it finds its own way).
_STACK_VARIABLES = ("AWS_", "POWERTOOLS_", "SERENDIP_STATE_DIR")


class Client:
    """A tiny JSON-over-HTTP client (urllib, no extra dependency)."""

    def __init__(self, url: str, api_key: str | None = None, webhook_secret: str = "") -> None:
        self.url = url
        self.api_key = api_key
        self.webhook_secret = webhook_secret

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        api_key: str | None = None,
        signed: bool = False,
    ) -> tuple[int, Any, dict[str, str]]:
        raw = body if isinstance(body, bytes | None) else json.dumps(body).encode()
        sent = {"content-type": "application/json"}
        key = api_key or self.api_key
        if key:
            sent["x-api-key"] = key
        if signed:
            sent["x-serendip-signature"] = sign(raw or b"", self.webhook_secret, int(time.time()))
        sent.update(headers or {})
        request = urllib.request.Request(self.url + path, data=raw, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, data, got = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            status, data, got = error.code, error.read(), dict(error.headers)
        return status, json.loads(data) if data else None, got


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment without the in-process stack's AWS settings, plus ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_STACK_VARIABLES)
        and not name.endswith(("_TABLE", "_BUCKET", "_URL", "_KEY_ID"))
    }
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def wait_for_health(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/v1/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url}/v1/health did not answer within {timeout:.0f} s")
        time.sleep(0.1)


@pytest.fixture(scope="package")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the in-process stack writes its state file (never the real ~/.serendip)."""
    return tmp_path_factory.mktemp("serendip-state")


@pytest.fixture(scope="package")
def stack(state_dir: Path) -> Iterator[LocalStack]:
    """The local stack, started once for the e2e tests, on free ports."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SERENDIP_STATE_DIR", str(state_dir))
        with LocalStack(port=0) as running:
            yield running


@pytest.fixture
def client(stack: LocalStack) -> Client:
    """A client with the demo tenant's key and webhook secret."""
    return Client(stack.url, stack.api_key, stack.webhook_secret)
