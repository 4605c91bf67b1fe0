"""Settings read from the environment, lazily and once, so tests can set it up first.

Nothing here runs at import time: ``settings()`` reads the environment on first call and caches
the result; ``reset_settings()`` forgets it (tests pointing at a fresh moto).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import NamedTuple

from functions.common.ids import check_tenant


class RequestRate(NamedTuple):
    """A token bucket's refill rate (requests per second; 0 is no limit) and its size."""

    per_second: float
    burst: float


NO_LIMIT = RequestRate(0.0, 0.0)


@dataclass(frozen=True, slots=True)
class Settings:
    """Names of the stack's resources and service-wide limits."""

    region: str
    decisions_table: str
    policies_table: str
    models_table: str
    items_table: str
    users_table: str
    counters_table: str
    keys_table: str
    model_bucket: str
    reward_queue_url: str
    reward_dlq_url: str
    learn_queue_url: str
    learn_dlq_url: str
    policies_dir: Path
    # How long the rank path trusts its copies of a policy's head and of popularity counts.
    model_cache_seconds: float
    inline_model_bytes: int
    # How many closed events one model version takes at most (the save cadence of a busy
    # policy; a transaction holds 100 items: the version, the head and the events).
    events_per_save: int
    # Passes per sweep invocation, PASS_SECONDS apart (the local stack runs one per tick).
    sweep_passes: int
    # The KMS key that seals webhook secrets, and how long a function keeps a secret it opened.
    webhook_secrets_key_id: str = ""
    webhook_secret_cache_seconds: float = 60.0
    # How long a function trusts an API key it read: revocation, retirement and a key's new
    # scopes take effect within this time (0 reads the key on every request).
    api_key_cache_seconds: float = 3.0
    # How long the rank path trusts a kept key before it reads it again alongside its own first
    # reads (``functions.common.auth.authenticate_deferred``): revocation refuses ranks this fast.
    api_key_revalidate_seconds: float = 1.0
    # How long a container trusts its copy of a tenant's catalog index and taste factors.
    index_cache_seconds: float = 60.0
    # The taste factors the index builder fits for every tenant (bandit.learn.taste_factors).
    taste_kinds: tuple[str, ...] = ("item", "category")
    taste_dims: int = 24
    # The rate each container lets one tenant call the /v1 API at (functions.common.rate_limit),
    # and tenants with rates of their own.
    tenant_rate: RequestRate = NO_LIMIT
    tenant_rate_overrides: tuple[tuple[str, RequestRate], ...] = ()


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, default)
    return value if value else default


@cache
def settings() -> Settings:
    """The settings of this process (read from the environment on first call).

    >>> settings() is settings()
    True
    """
    root = Path(__file__).resolve().parents[2]
    return Settings(
        region=_env("AWS_REGION", _env("AWS_DEFAULT_REGION", "us-east-1")),
        decisions_table=_env("DECISIONS_TABLE", "serendip-decisions"),
        policies_table=_env("POLICIES_TABLE", "serendip-policies"),
        models_table=_env("MODELS_TABLE", "serendip-models"),
        items_table=_env("ITEMS_TABLE", "serendip-items"),
        users_table=_env("USERS_TABLE", "serendip-users"),
        counters_table=_env("COUNTERS_TABLE", "serendip-counters"),
        keys_table=_env("KEYS_TABLE", "serendip-keys"),
        model_bucket=_env("MODEL_BUCKET", "serendip-models"),
        reward_queue_url=_env("REWARD_QUEUE_URL", ""),
        reward_dlq_url=_env("REWARD_DLQ_URL", ""),
        learn_queue_url=_env("LEARN_QUEUE_URL", ""),
        learn_dlq_url=_env("LEARN_DLQ_URL", ""),
        policies_dir=Path(_env("POLICIES_DIR", str(root / "policies"))),
        model_cache_seconds=float(_env("MODEL_CACHE_SECONDS", "1")),
        inline_model_bytes=int(_env("INLINE_MODEL_BYTES", str(350 * 1024))),
        events_per_save=_events_per_save(_env("LEARN_EVENTS_PER_SAVE", "90")),
        sweep_passes=max(1, int(_env("SWEEP_PASSES", "2"))),
        webhook_secrets_key_id=_env("WEBHOOK_SECRETS_KEY_ID", ""),
        webhook_secret_cache_seconds=float(_env("WEBHOOK_SECRET_CACHE_SECONDS", "60")),
        api_key_cache_seconds=float(_env("API_KEY_CACHE_SECONDS", "3")),
        api_key_revalidate_seconds=float(_env("API_KEY_REVALIDATE_SECONDS", "1")),
        index_cache_seconds=float(_env("INDEX_CACHE_SECONDS", "60")),
        taste_kinds=_taste_kinds(_env("TASTE_KINDS", "item,category")),
        taste_dims=max(2, min(128, int(_env("TASTE_DIMS", "24")))),
        tenant_rate=request_rate(_env("TENANT_RATE_LIMIT", "0"), "TENANT_RATE_LIMIT"),
        tenant_rate_overrides=rate_overrides(_env("TENANT_RATE_OVERRIDES", "")),
    )


MAX_EVENTS_PER_SAVE = 98


def _taste_kinds(raw: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in raw.split(",") if k.strip())
    unknown = set(kinds) - {"item", "category", "creator"}
    if not kinds or unknown:
        raise ValueError(f"TASTE_KINDS: use item, category and/or creator, got {raw!r}")
    return kinds


def _events_per_save(raw: str) -> int:
    """``LEARN_EVENTS_PER_SAVE``: 1 to 98 (a DynamoDB transaction holds 100 items)."""
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_EVENTS_PER_SAVE:
        raise ValueError(f"LEARN_EVENTS_PER_SAVE must be 1 to {MAX_EVENTS_PER_SAVE}, not {raw!r}")
    return value


def request_rate(raw: str, variable: str) -> RequestRate:
    """``RATE`` or ``RATE/BURST`` (requests per second, bucket size; the burst defaults to one
    second's worth, at least 1); ``0`` is no limit. ``ValueError`` names ``variable``.

    >>> request_rate("20", "TENANT_RATE_LIMIT")
    RequestRate(per_second=20.0, burst=20.0)
    >>> request_rate("0.5/3", "TENANT_RATE_LIMIT")
    RequestRate(per_second=0.5, burst=3.0)
    """
    rate_text, _, burst_text = raw.strip().partition("/")
    try:
        rate = float(rate_text)
        burst = float(burst_text) if burst_text else max(1.0, rate)
    except ValueError:
        rate = burst = math.nan
    if not (math.isfinite(rate) and math.isfinite(burst) and rate >= 0.0):
        raise ValueError(f"{variable}: use RATE or RATE/BURST (requests per second), not {raw!r}")
    if rate == 0.0:
        return NO_LIMIT
    if burst < 1.0:
        raise ValueError(f"{variable}: the burst must be at least 1 request, not {raw!r}")
    return RequestRate(rate, burst)


def rate_overrides(raw: str) -> tuple[tuple[str, RequestRate], ...]:
    """``TENANT_RATE_OVERRIDES``: ``tenant=RATE[/BURST]``, comma-separated.

    >>> rate_overrides("acme=200/400, trial=0")
    (('acme', RequestRate(per_second=200.0, burst=400.0)),
     ('trial', RequestRate(per_second=0.0, burst=0.0)))
    """
    overrides = []
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        tenant, equals, rate = entry.partition("=")
        try:
            check_tenant(tenant.strip())
        except ValueError as exc:
            raise ValueError(f"TENANT_RATE_OVERRIDES: {exc}") from exc
        if not equals:
            raise ValueError(f"TENANT_RATE_OVERRIDES: use tenant=RATE[/BURST], not {entry!r}")
        overrides.append((tenant.strip(), request_rate(rate, "TENANT_RATE_OVERRIDES")))
    return tuple(overrides)


def reset_settings() -> None:
    """Forget cached settings (the next ``settings()`` reads the environment again)."""
    settings.cache_clear()
