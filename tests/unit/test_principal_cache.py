"""``functions.common.auth.PrincipalCache``: how long a function trusts an API key it read."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from functions.common.auth import Principal, PrincipalCache
from functions.common.settings import reset_settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cache_seconds(monkeypatch: pytest.MonkeyPatch) -> Iterator[float]:
    monkeypatch.setenv("API_KEY_CACHE_SECONDS", "3")
    reset_settings()
    yield 3.0
    reset_settings()


def principal(tenant: str) -> Principal:
    return Principal(tenant, frozenset({"rank"}), f"key-{tenant}", ())


def test_a_key_is_kept_for_the_cache_time_then_read_again(cache_seconds: float) -> None:
    clock = Clock()
    cache = PrincipalCache(clock=clock)
    cache.put("k", principal("acme"))
    clock.now += cache_seconds - 0.01
    assert cache.get("k") == principal("acme")
    clock.now += 0.01
    assert cache.get("k") is None
    assert cache.get("k") is None  # and it stays gone until read and kept again


def test_zero_seconds_keeps_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY_CACHE_SECONDS", "0")
    reset_settings()
    try:
        cache = PrincipalCache(clock=Clock())
        cache.put("k", principal("acme"))
        assert cache.get("k") is None
    finally:
        reset_settings()


def test_the_oldest_read_is_dropped_beyond_capacity(cache_seconds: float) -> None:
    clock = Clock()
    cache = PrincipalCache(clock=clock, capacity=2)
    for tenant in ("a", "b"):
        cache.put(tenant, principal(tenant))
        clock.now += 0.1
    cache.put("a", principal("a"))  # read again: now the newest
    cache.put("c", principal("c"))
    assert [cache.get(k) is not None for k in ("a", "b", "c")] == [True, False, True]
