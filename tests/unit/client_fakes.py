"""A scripted transport and a fake clock for the Python client's unit tests (no sockets)."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from serendip_client import HttpRequest, HttpResponse, Serendip

URL = "https://serendip.example"
API_KEY = "sk_test"
SECRET = "whsec_test"
T0 = 1_700_000_000.0

Answer = HttpResponse | BaseException | Callable[[HttpRequest], HttpResponse]


def answer(status: int, body: Any = None, **headers: str) -> HttpResponse:
    """An answer with a JSON body; header names as keywords (``retry_after`` -> retry-after)."""
    raw = b"" if body is None else json.dumps(body).encode()
    names = {name.replace("_", "-").lower(): value for name, value in headers.items()}
    return HttpResponse(status, names, raw)


@dataclass
class FakeClock:
    """Wall time that only moves when the client sleeps."""

    now: float = T0
    sleeps: list[float] = field(default_factory=list)

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class FakeTransport:
    """Answers from a script, one per request, and keeps every request it was sent."""

    script: list[Answer] = field(default_factory=list)
    default: Answer | None = None
    sent: list[HttpRequest] = field(default_factory=list)
    clock: FakeClock | None = None
    sent_at: list[float] = field(default_factory=list)

    def send(self, request: HttpRequest) -> HttpResponse:
        self.sent.append(request)
        self.sent_at.append(self.clock.now if self.clock else 0.0)
        step = self.script.pop(0) if self.script else self.default
        if step is None:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, HttpResponse):
            return step
        return step(request)

    def paths(self) -> list[str]:
        """``METHOD path`` of every request, without the query."""
        return [f"{r.method} {urllib.parse.urlsplit(r.url).path}" for r in self.sent]

    def queries(self) -> list[dict[str, str]]:
        """The query of every request."""
        return [dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.url).query)) for r in self.sent]

    def bodies(self) -> list[Any]:
        """The JSON body of every request (None without one)."""
        return [None if r.body is None else json.loads(r.body) for r in self.sent]


def client_with(
    transport: FakeTransport,
    clock: FakeClock | None = None,
    *,
    retries: int = 3,
    backoff: float = 0.5,
    jitter: float = 0.5,
    secret: str | list[str] | None = SECRET,
) -> Serendip:
    """A ``Serendip`` on the fake transport and clock, with a fixed jitter draw."""
    clock = clock or FakeClock()
    transport.clock = clock
    return Serendip(
        URL,
        API_KEY,
        secret,
        retries=retries,
        backoff=backoff,
        transport=transport,
        sleep=clock.sleep,
        clock=clock.time,
        jitter=lambda: jitter,
    )
