"""API keys (stored only hashed) -> tenant and scopes, and webhook signatures (HMAC-SHA256).

A key is ``sk_<random>``; the keys table holds its SHA-256 with the tenant, the scopes
(``rank``, ``reward``, ``admin``) and the webhook secrets used to sign reward posts. Webhook
signatures: header ``x-serendip-signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]`` where each
hex is HMAC-SHA256 over ``"<t>.<raw body>"``; the timestamp must be within 5 minutes, and any of
the tenant's secrets may match (rotation). Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from pynamodb.exceptions import DoesNotExist, PynamoDBException, UpdateError
from pynamodb.expressions.update import Action

from functions.common.errors import (
    ForbiddenError,
    NotFoundError,
    StorageError,
    UnauthorizedError,
)
from functions.common.ids import check_tenant
from functions.common.tables import ApiKeyItem, bind

SCOPES = frozenset({"rank", "reward", "admin"})
SIGNATURE_TOLERANCE_SECONDS = 300
KEY_PREFIX = "sk_"
SECRET_PREFIX = "whsec_"
MAX_TIMESTAMP_DIGITS = 12  # unix seconds until the year 33658; longer is malformed, not an int


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the tenant, the key's scopes and the tenant's webhook secrets."""

    tenant: str
    scopes: frozenset[str]
    webhook_secrets: tuple[str, ...]

    def require(self, scope: str) -> None:
        """Raise ``ForbiddenError`` unless the key carries ``scope``."""
        if scope not in self.scopes:
            raise ForbiddenError(f"this API key lacks the '{scope}' scope")


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly created key: the only time the key itself is visible."""

    api_key: str
    webhook_secret: str
    tenant: str
    scopes: tuple[str, ...]


def hash_key(api_key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def create_key(
    tenant: str,
    scopes: frozenset[str] | set[str],
    *,
    name: str = "",
    api_key: str | None = None,
    webhook_secret: str | None = None,
) -> NewKey:
    """Store a new key for ``tenant``; returns the key and its webhook secret (shown once).

    ``tenant`` must be a valid tenant id (``functions.common.ids``): ``ValueError`` otherwise.
    """
    check_tenant(tenant)
    unknown = set(scopes) - SCOPES
    if unknown or not scopes:
        raise ValueError(f"scopes must be a non-empty subset of {sorted(SCOPES)}")
    bind()
    api_key = api_key or KEY_PREFIX + secrets.token_urlsafe(32)
    webhook_secret = webhook_secret or SECRET_PREFIX + secrets.token_urlsafe(32)
    ApiKeyItem(
        hash_key(api_key),
        tenant=tenant,
        scopes=set(scopes),
        webhook_secrets=[webhook_secret],
        name=name,
        created_at=int(time.time()),
    ).save()
    return NewKey(api_key, webhook_secret, tenant, tuple(sorted(scopes)))


def _update_existing_key(api_key_hash: str, actions: list[Action]) -> None:
    """Apply ``actions`` to a stored key; ``NotFoundError`` rather than creating a stray item."""
    bind()
    item = ApiKeyItem(api_key_hash)
    try:
        item.update(actions=actions, condition=ApiKeyItem.pk.exists())
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            raise NotFoundError(f"no API key with hash {api_key_hash}") from exc
        raise StorageError(f"key store unavailable: {exc.msg}") from exc


def revoke_key(api_key_hash: str) -> None:
    """Revoke a key at once (by its hash); ``NotFoundError`` if no key has that hash.

    Authentication reads the key consistently, so the very next request with it is refused.
    """
    _update_existing_key(api_key_hash, [ApiKeyItem.revoked.set(True)])


def add_webhook_secret(api_key_hash: str, webhook_secret: str | None = None) -> str:
    """Append a webhook secret to a key (secret rotation); returns it (shown once).

    Signatures made with any of the key's secrets verify until the old one is retired.
    """
    webhook_secret = webhook_secret or SECRET_PREFIX + secrets.token_urlsafe(32)
    secrets_ = ApiKeyItem.webhook_secrets
    _update_existing_key(api_key_hash, [secrets_.set(secrets_.append([webhook_secret]))])
    return webhook_secret


def authenticate(api_key: str | None) -> Principal:
    """Resolve an ``x-api-key`` value to its principal, or raise ``UnauthorizedError``."""
    if not api_key:
        raise UnauthorizedError("missing x-api-key header")
    bind()
    try:
        item = ApiKeyItem.get(hash_key(api_key), consistent_read=True)
    except DoesNotExist as exc:
        raise UnauthorizedError("unknown API key") from exc
    except PynamoDBException as exc:
        raise StorageError(f"key store unavailable: {exc.msg}") from exc
    if item.revoked:
        raise UnauthorizedError("this API key was revoked")
    return Principal(item.tenant, frozenset(item.scopes), tuple(item.webhook_secrets))


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The ``x-serendip-signature`` header value for ``body``.

    >>> sign(b"{}", "whsec_test", 1700000000)[:13]
    't=1700000000,'
    """
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify_signature(
    header: str | None,
    body: bytes,
    secrets_: tuple[str, ...],
    *,
    now: float | None = None,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
) -> None:
    """Raise ``UnauthorizedError`` unless one ``v1`` matches one secret within the tolerance."""
    if not header:
        raise UnauthorizedError("missing x-serendip-signature header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        # ASCII only: str.isdigit() accepts "²" (int() then fails) and compare_digest refuses
        # non-ASCII str; either would crash the handler instead of answering 401.
        if not value.isascii():
            continue
        if key == "t" and value.isdigit() and len(value) <= MAX_TIMESTAMP_DIGITS:
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise UnauthorizedError("malformed x-serendip-signature header")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise UnauthorizedError("signature timestamp outside the 5-minute tolerance")
    signed = f"{timestamp}.".encode() + body
    matched = False
    for secret in secrets_:
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        for candidate in candidates:
            # Check every pair so that timing does not reveal which one matched.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise UnauthorizedError("signature does not match")
