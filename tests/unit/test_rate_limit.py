"""The per-tenant token bucket and the rate settings (pure: no AWS, hand-moved clocks)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.common import rate_limit
from functions.common.errors import RateLimitedError
from functions.common.observability import metrics
from functions.common.rate_limit import TenantRateLimiter, TokenBucket
from functions.common.settings import (
    NO_LIMIT,
    RequestRate,
    rate_overrides,
    request_rate,
    reset_settings,
    settings,
)
from local.resources import load_template


@pytest.fixture(autouse=True)
def no_metrics_left() -> Iterator[None]:
    """Refusals add a metric that a handler would flush: none may reach later tests' output."""
    yield
    metrics.clear_metrics()


rates = st.floats(min_value=0.1, max_value=1_000.0)
bursts = st.integers(min_value=1, max_value=50).map(float)
gaps = st.lists(st.floats(min_value=0.0, max_value=2.0), min_size=1, max_size=200)


@given(rates, bursts, gaps)
def test_admitted_requests_never_exceed_the_burst_plus_the_rate_over_any_window(
    rate: float, burst: float, steps: list[float]
) -> None:
    bucket = TokenBucket(RequestRate(rate, burst), tokens=burst, updated=0.0)
    now, admitted = 0.0, []
    for step in steps:
        now += step
        if bucket.take(now) == 0.0:
            admitted.append(now)
    # Over every window [admitted[i], admitted[j]], at most burst + rate * length get through
    for i, start in enumerate(admitted):
        for j in range(i, len(admitted)):
            assert j - i + 1 <= burst + rate * (admitted[j] - start) + 1e-6


@given(rates, bursts, gaps)
def test_a_refused_request_is_admitted_once_its_wait_is_over(
    rate: float, burst: float, steps: list[float]
) -> None:
    bucket = TokenBucket(RequestRate(rate, burst), tokens=burst, updated=0.0)
    now = 0.0
    for step in steps:
        now += step
        wait = bucket.take(now)
        if wait > 0.0:
            # Nothing taken meanwhile: after ``wait`` seconds (a hair more for rounding) it passes
            assert wait <= 1.0 / rate + 1e-9
            assert bucket.take(now + wait * (1 + 1e-9) + 1e-9) == 0.0
            now += wait * (1 + 1e-9) + 1e-9


@given(rates, bursts, st.integers(min_value=1, max_value=100))
def test_requests_at_the_rate_are_all_admitted(rate: float, burst: float, n: int) -> None:
    bucket = TokenBucket(RequestRate(rate, burst), tokens=burst, updated=0.0)
    assert all(bucket.take(k / rate * (1 + 1e-9)) == 0.0 for k in range(n))


def test_a_clock_going_back_earns_no_tokens() -> None:
    bucket = TokenBucket(RequestRate(1.0, 1.0), tokens=1.0, updated=10.0)
    assert bucket.take(10.0) == 0.0
    assert bucket.take(5.0) == pytest.approx(1.0)
    assert bucket.take(10.5) == pytest.approx(0.5)
    assert bucket.take(11.0) == 0.0


def test_check_raises_with_whole_seconds_to_wait() -> None:
    now = [0.0]
    limiter = TenantRateLimiter(RequestRate(0.25, 1.0), clock=lambda: now[0])
    limiter.check("acme")
    now[0] = 1.0  # 3 s more to the next token
    with pytest.raises(RateLimitedError) as refused:
        limiter.check("acme")
    assert (refused.value.status, refused.value.code, refused.value.retry_after) == (
        429,
        "rate_limited",
        3,
    )
    now[0] = 1.1  # 2.9 s: still 3 whole seconds
    with pytest.raises(RateLimitedError) as again:
        limiter.check("acme")
    assert again.value.retry_after == 3


def test_memory_stays_bounded_by_dropping_full_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rate_limit, "MAX_TRACKED_TENANTS", 10)
    now = [0.0]
    limiter = TenantRateLimiter(RequestRate(1.0, 1.0), clock=lambda: now[0])
    for n in range(10):
        limiter.wait(f"t{n}")
    now[0] = 5.0  # every bucket has refilled: forgetting them changes nothing
    assert limiter.wait("t10") == 0.0
    assert len(limiter._buckets) == 1
    # A bucket still spending is kept
    assert limiter.wait("t10") > 0.0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0", NO_LIMIT),
        ("0/5", NO_LIMIT),
        ("3", RequestRate(3.0, 3.0)),
        ("0.2", RequestRate(0.2, 1.0)),
        ("50/120", RequestRate(50.0, 120.0)),
    ],
)
def test_request_rate_syntax(raw: str, expected: RequestRate) -> None:
    assert request_rate(raw, "TENANT_RATE_LIMIT") == expected


@pytest.mark.parametrize("raw", ["fast", "-1", "nan", "inf", "5/0.5", "5/x", "1/2/3"])
def test_a_bad_rate_fails_naming_the_variable(raw: str) -> None:
    with pytest.raises(ValueError, match=r"^TENANT_RATE_LIMIT: "):
        request_rate(raw, "TENANT_RATE_LIMIT")


def test_overrides_are_read_per_tenant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANT_RATE_LIMIT", "10")
    monkeypatch.setenv("TENANT_RATE_OVERRIDES", "acme=200/400, trial-co=0.5,big=0")
    reset_settings()
    try:
        current = settings()
        assert current.tenant_rate == RequestRate(10.0, 10.0)
        assert dict(current.tenant_rate_overrides) == {
            "acme": RequestRate(200.0, 400.0),
            "trial-co": RequestRate(0.5, 1.0),
            "big": NO_LIMIT,
        }
    finally:
        reset_settings()


@pytest.mark.parametrize(
    ("raw", "named"),
    [("Acme=5", "tenant 'Acme'"), ("acme", "tenant=RATE"), ("acme=fast", "RATE or RATE/BURST")],
)
def test_bad_overrides_fail_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, raw: str, named: str
) -> None:
    monkeypatch.setenv("TENANT_RATE_OVERRIDES", raw)
    reset_settings()
    try:
        with pytest.raises(ValueError, match=r"^TENANT_RATE_OVERRIDES: ") as refused:
            settings()
        assert named in str(refused.value)
    finally:
        reset_settings()


def _pattern(parameter: str) -> str:
    return str(load_template()["Parameters"][parameter]["AllowedPattern"])


@given(st.from_regex(_pattern("TenantRateLimit"), fullmatch=True))
def test_every_rate_the_template_accepts_the_functions_read(raw: str) -> None:
    rate = request_rate(raw, "TENANT_RATE_LIMIT")
    assert rate == NO_LIMIT or (rate.per_second > 0.0 and rate.burst >= 1.0)


@given(st.from_regex(_pattern("TenantRateOverrides"), fullmatch=True))
def test_every_override_list_the_template_accepts_the_functions_read(raw: str) -> None:
    overrides = rate_overrides(raw)
    assert len(overrides) == (raw.count(",") + 1 if raw else 0)


@pytest.mark.parametrize("raw", ["-1", "5/0.5", "5/0", "fast", "1/2/3"])
def test_the_template_refuses_the_rates_the_functions_would(raw: str) -> None:
    assert not re.fullmatch(_pattern("TenantRateLimit"), raw)
    assert not re.fullmatch(_pattern("TenantRateOverrides"), f"acme={raw}")
