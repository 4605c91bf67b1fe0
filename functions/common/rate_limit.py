"""Per-tenant request rates: one token bucket per tenant in each container, no storage call.

Every authenticated ``/v1`` request takes a token from its tenant's bucket, which refills at
the tenant's rate (``TENANT_RATE_LIMIT``, or its entry in ``TENANT_RATE_OVERRIDES``) up to its
burst. An empty bucket answers 429 ``rate_limited`` with ``Retry-After`` (whole seconds until a
token is back) and counts one ``RequestsRateLimited``. A rate of 0 is no limit.

The buckets live in the container. Lambda runs one request at a time per container and adds
containers as traffic grows, so the rate bounds what one tenant makes one container do; across
the stack a tenant's ceiling is its rate times the containers that serve it (reserved concurrency
caps those). docs/operations.md, "Rate limits", compares it with API Gateway's usage plans.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from functions.common.errors import RateLimitedError
from functions.common.observability import metrics
from functions.common.settings import RequestRate, Settings, settings

# Buckets kept per container before full ones (the same as new) are dropped.
MAX_TRACKED_TENANTS = 10_000


@dataclass(slots=True)
class TokenBucket:
    """Up to ``rate.burst`` tokens, refilled at ``rate.per_second``; starts full.

    >>> bucket = TokenBucket(RequestRate(2.0, 2.0), tokens=2.0, updated=0.0)
    >>> [bucket.take(0.0), bucket.take(0.0), bucket.take(0.0), bucket.take(0.5)]
    [0.0, 0.0, 0.5, 0.0]
    """

    rate: RequestRate
    tokens: float
    updated: float

    def refill(self, now: float) -> None:
        """Add the tokens earned since the last call (a clock going back earns none)."""
        if now > self.updated:
            earned = (now - self.updated) * self.rate.per_second
            self.tokens = min(self.rate.burst, self.tokens + earned)
            self.updated = now

    def take(self, now: float) -> float:
        """Take one token at ``now``: 0.0 when taken, else the seconds until one is back."""
        self.refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate.per_second

    def full(self, now: float) -> bool:
        """Whether the bucket is full at ``now`` (forgetting it changes nothing)."""
        self.refill(now)
        return self.tokens >= self.rate.burst


class TenantRateLimiter:
    """A token bucket per tenant, with a default rate and per-tenant overrides.

    >>> exempt = {"big": RequestRate(0.0, 0.0)}
    >>> limiter = TenantRateLimiter(RequestRate(1.0, 2.0), exempt, clock=lambda: 0.0)
    >>> [limiter.wait("acme") for _ in range(3)], limiter.wait("big")
    ([0.0, 0.0, 1.0], 0.0)
    """

    def __init__(
        self,
        default: RequestRate,
        overrides: Mapping[str, RequestRate] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.default = default
        self.overrides = dict(overrides or {})
        self.clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def rate_of(self, tenant: str) -> RequestRate:
        """The rate ``tenant`` may call at."""
        return self.overrides.get(tenant, self.default)

    def wait(self, tenant: str) -> float:
        """Take one of ``tenant``'s tokens: 0.0 when taken, else the seconds until one is back."""
        rate = self.rate_of(tenant)
        if rate.per_second <= 0.0:
            return 0.0
        now = self.clock()
        bucket = self._buckets.get(tenant)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED_TENANTS:
                self._forget_full(now)
            bucket = self._buckets[tenant] = TokenBucket(rate, tokens=rate.burst, updated=now)
        return bucket.take(now)

    def check(self, tenant: str) -> None:
        """Raise ``RateLimitedError`` (with the whole seconds to wait) when over the rate."""
        wait = self.wait(tenant)
        if wait > 0.0:
            metrics.add_metric(name="RequestsRateLimited", unit="Count", value=1)
            rate = self.rate_of(tenant)
            raise RateLimitedError(
                f"over this tenant's rate of {rate.per_second:g} requests per second "
                f"(burst {rate.burst:g}); retry after the Retry-After seconds",
                retry_after=max(1, math.ceil(wait)),
            )

    def _forget_full(self, now: float) -> None:
        for tenant in [t for t, bucket in self._buckets.items() if bucket.full(now)]:
            del self._buckets[tenant]


_limiter: tuple[Settings, TenantRateLimiter] | None = None


def limiter() -> TenantRateLimiter:
    """The process-wide limiter, built from ``settings()`` (again when they are reset)."""
    global _limiter  # noqa: PLW0603
    current = settings()
    if _limiter is None or _limiter[0] is not current:
        overrides = dict(current.tenant_rate_overrides)
        _limiter = (current, TenantRateLimiter(current.tenant_rate, overrides))
    return _limiter[1]


def check_rate(tenant: str) -> None:
    """Raise ``RateLimitedError`` when ``tenant`` is over its rate in this container."""
    limiter().check(tenant)
