"""Transport (urllib) and the retry rules.

What is retried, up to ``retries`` more attempts:

- ``429`` and ``503`` answers, for every route: the service did not serve the request (a 503
  accepted no reward and logged no decision). The wait is the answer's ``Retry-After`` when it
  has one, else exponential backoff (``backoff * 2**attempt``) with jitter; either is capped at
  ``max_delay``.
- connection errors and timeouts, only for requests that may be repeated: ``GET``, ``PUT``,
  ``DELETE``, ``POST /v1/rewards`` (the service deduplicates rewards: a reward is identified by
  what the app sent, so a repeated post changes nothing) and ``POST /v1/events/{id}/activate``
  (impression reports add up; a repeat changes nothing). Rank, recommend and rollback are never
  repeated after a connection error: the first attempt may have been served, and a second one
  would log a second decision or make a second copy of the model.

Every other answer (any other 4xx, a 500) is returned at once.
"""

from __future__ import annotations

import email.utils
import http.client
import math
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import Protocol

from serendip_client.errors import SerendipConnectionError

VERSION = "0.1.0"
RETRIED_STATUSES = frozenset({429, 503})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request as sent: method, absolute URL, headers, body and timeout (seconds)."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """One answer: status, headers (lower-case names) and the raw body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    """Sends one request; raises ``OSError`` (or ``http.client.HTTPException``) when no answer
    came, and returns every answer, error statuses included."""

    def send(self, request: HttpRequest) -> HttpResponse:
        """Send ``request`` once."""
        ...


class UrllibTransport:
    """The standard library's ``urllib`` (honours the ``*_proxy`` environment variables)."""

    def send(self, request: HttpRequest) -> HttpResponse:
        """Send ``request`` once; HTTP error statuses are answers, not exceptions."""
        sent = urllib.request.Request(
            request.url, data=request.body, method=request.method, headers=dict(request.headers)
        )
        try:
            with urllib.request.urlopen(sent, timeout=request.timeout) as answer:
                return HttpResponse(answer.status, _lower(answer.headers), answer.read())
        except urllib.error.HTTPError as error:
            with error:
                return HttpResponse(error.code, _lower(error.headers), error.read())


def _lower(headers: Message) -> dict[str, str]:
    return {name.lower(): str(value) for name, value in headers.items()}


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """A ``Retry-After`` header in seconds from ``now``: delta seconds or an HTTP date.

    >>> retry_after_seconds("7", 0.0), retry_after_seconds(None, 0.0)
    (7.0, None)
    >>> retry_after_seconds("Thu, 01 Jan 1970 00:01:00 GMT", 30.0)
    30.0
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


@dataclass
class Retrier:
    """Sends requests through ``transport`` under the retry rules of this module.

    ``sleep``, ``clock`` (wall time, for ``Retry-After`` dates) and ``jitter`` (a number in
    [0, 1)) are injectable so the schedule can be tested without waiting.
    """

    transport: Transport
    retries: int = 3
    backoff: float = 0.5
    max_delay: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    jitter: Callable[[], float] = random.random

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``attempt + 1``.

        ``Retry-After`` when given, else ``backoff * 2**attempt`` times a random factor in
        [0.5, 1) (so that clients refused together do not come back together); at most
        ``max_delay``.
        """
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        exponential = self.backoff * 2.0**attempt
        return min(exponential * (0.5 + 0.5 * self.jitter()), self.max_delay)

    def send(
        self, build: Callable[[], HttpRequest], *, repeatable: bool
    ) -> tuple[HttpResponse, float | None]:
        """The final answer and its ``Retry-After`` in seconds (or None).

        ``build`` makes the request for each attempt (a reward post is signed afresh).
        ``repeatable``: whether a connection error may be retried. Raises
        ``SerendipConnectionError`` when no answer came.
        """
        attempt = 0
        while True:
            request = build()
            try:
                answer = self.transport.send(request)
            except (OSError, http.client.HTTPException) as exc:
                if not repeatable or attempt >= self.retries:
                    tried = f" after {attempt + 1} attempts" if attempt else ""
                    raise SerendipConnectionError(
                        f"{request.method} {request.url}: no answer{tried} ({exc})"
                    ) from exc
                wait = self.delay(attempt, None)
            else:
                retry_after = retry_after_seconds(answer.headers.get("retry-after"), self.clock())
                if answer.status not in RETRIED_STATUSES or attempt >= self.retries:
                    return answer, retry_after
                wait = self.delay(attempt, retry_after)
            self.sleep(wait)
            attempt += 1
