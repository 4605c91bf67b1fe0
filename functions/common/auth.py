"""API keys (stored only hashed) -> tenant and scopes, and webhook signatures (HMAC-SHA256).

A key is ``sk_<random>``; the keys table holds its SHA-256 (the key id) with the tenant, the
scopes (``rank``, ``reward``, ``admin``) and the webhook secrets used to sign reward posts,
sealed with KMS (``functions.common.webhook_secrets``). Webhook signatures: header
``x-serendip-signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]`` where each hex is HMAC-SHA256
over ``"<t>.<raw body>"``; the timestamp must be within 5 minutes, and any of the key's active
secrets may match (rotation). Comparisons are constant-time.

A function keeps each valid key it read for ``API_KEY_CACHE_SECONDS`` (3 s by default), so a warm
container does not read the keys table on every request: a revocation or a secret's retirement
takes effect within that time in every container. A secret added by rotation signs at once (a
refused signature reads the key again before the refusal stands). Unknown and revoked keys are
never kept: they are read again on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pynamodb.exceptions import DoesNotExist, PynamoDBException, UpdateError
from pynamodb.expressions.update import Action

from functions.common.errors import (
    ForbiddenError,
    NotFoundError,
    StorageError,
    UnauthorizedError,
)
from functions.common.ids import check_tenant
from functions.common.settings import settings
from functions.common.tables import ApiKeyItem, bind
from functions.common.webhook_secrets import (
    StoredSecret,
    new_secret,
    new_secret_id,
    open_secrets,
    sealed_lists,
    stored_secrets,
)

SCOPES = frozenset({"rank", "reward", "admin"})
SIGNATURE_TOLERANCE_SECONDS = 300
KEY_PREFIX = "sk_"
MAX_TIMESTAMP_DIGITS = 12  # unix seconds until the year 33658; longer is malformed, not an int


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the tenant, the key's id and scopes, and its (sealed) webhook secrets."""

    tenant: str
    scopes: frozenset[str]
    key_id: str
    webhook_secrets: tuple[StoredSecret, ...]
    # The policy this key's Personalizer API serves (None: the tenant's "personalizer" policy).
    policy: str | None = None

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
    key_id: str
    secret_id: str


@dataclass
class PrincipalCache:
    """Valid keys' principals by key id, each kept ``API_KEY_CACHE_SECONDS`` from its read.

    At most ``capacity`` keys are kept, the oldest read dropped first.
    """

    clock: Callable[[], float] = time.monotonic
    capacity: int = 10_000
    _kept: dict[str, tuple[float, Principal]] = field(default_factory=dict)

    def get(self, key_id: str) -> Principal | None:
        """The principal read for ``key_id`` less than ``API_KEY_CACHE_SECONDS`` ago, if any."""
        kept = self._kept.get(key_id)
        if kept is None:
            return None
        if self.clock() - kept[0] >= settings().api_key_cache_seconds:
            del self._kept[key_id]
            return None
        return kept[1]

    def age(self, key_id: str) -> float | None:
        """Seconds since ``key_id``'s principal was read, if it is kept (``get``)."""
        kept = self._kept.get(key_id)
        return None if kept is None or self.get(key_id) is None else self.clock() - kept[0]

    def put(self, key_id: str, principal: Principal) -> None:
        """Keep ``principal`` from now."""
        if settings().api_key_cache_seconds <= 0:
            return
        self._kept.pop(key_id, None)
        self._kept[key_id] = (self.clock(), principal)
        while len(self._kept) > self.capacity:
            del self._kept[next(iter(self._kept))]

    def clear(self) -> None:
        """Forget every key (a new backend, or a test)."""
        self._kept.clear()


principals = PrincipalCache()


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
    policy: str | None = None,
) -> NewKey:
    """Store a new key for ``tenant``; returns the key and its webhook secret (shown once).

    ``tenant`` must be a valid tenant id (``functions.common.ids``): ``ValueError`` otherwise.
    The secret is stored sealed with KMS (``UnavailableError`` if KMS cannot seal it).
    ``policy`` binds the key's Personalizer API to one of the tenant's policies.
    """
    check_tenant(tenant)
    unknown = set(scopes) - SCOPES
    if unknown or not scopes:
        raise ValueError(f"scopes must be a non-empty subset of {sorted(SCOPES)}")
    bind()
    api_key = api_key or KEY_PREFIX + secrets.token_urlsafe(32)
    webhook_secret = webhook_secret or new_secret()
    key_id, now = hash_key(api_key), int(time.time())
    first = StoredSecret(new_secret_id(), now, plaintext=webhook_secret)
    info, sealed = sealed_lists(tenant, key_id, [first])
    ApiKeyItem(
        key_id,
        tenant=tenant,
        scopes=set(scopes),
        secret_info=info,
        sealed_secrets=sealed,
        name=name,
        created_at=now,
        policy=policy,
    ).save()
    return NewKey(api_key, webhook_secret, tenant, tuple(sorted(scopes)), key_id, first.secret_id)


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
    """Revoke a key (by its hash); ``NotFoundError`` if no key has that hash.

    Authentication reads keys consistently and keeps a valid one at most
    ``API_KEY_CACHE_SECONDS``, so within that time every request with it is refused.
    """
    _update_existing_key(api_key_hash, [ApiKeyItem.revoked.set(True)])


def key_exists(api_key: str) -> bool:
    """Whether a key is stored (revoked or not), e.g. a local stack's demo key after a restart."""
    bind()
    try:
        ApiKeyItem.get(hash_key(api_key), consistent_read=True)
    except DoesNotExist:
        return False
    except PynamoDBException as exc:
        raise StorageError(f"key store unavailable: {exc.msg}") from exc
    return True


def authenticate(api_key: str | None, *, fresh: bool = False) -> Principal:
    """Resolve an ``x-api-key`` value to its principal, or raise ``UnauthorizedError``.

    A valid key read less than ``API_KEY_CACHE_SECONDS`` ago is not read again unless
    ``fresh``.
    """
    if not api_key:
        raise UnauthorizedError("missing x-api-key header")
    key_id = hash_key(api_key)
    kept = None if fresh else principals.get(key_id)
    if kept is not None:
        return kept
    bind()
    try:
        item = ApiKeyItem.get(key_id, consistent_read=True)
    except DoesNotExist as exc:
        raise UnauthorizedError("unknown API key") from exc
    except PynamoDBException as exc:
        raise StorageError(f"key store unavailable: {exc.msg}") from exc
    if item.revoked:
        raise UnauthorizedError("this API key was revoked")
    principal = Principal(
        item.tenant, frozenset(item.scopes), item.pk, stored_secrets(item), item.policy
    )
    principals.put(key_id, principal)
    return principal


Revalidation = Callable[[], Principal]


def authenticate_deferred(api_key: str | None) -> tuple[Principal, Revalidation | None]:
    """``authenticate``, for a path that can read the key alongside its own first reads.

    A key kept for less than ``API_KEY_REVALIDATE_SECONDS`` is trusted as kept. One kept longer
    (but less than ``API_KEY_CACHE_SECONDS``, past which ``authenticate`` reads it inline) comes
    with a revalidation: a fresh read of the key, raising as ``authenticate`` does when it was
    revoked, to run before anything is answered. So a revocation refuses the rank path's
    requests within ``API_KEY_REVALIDATE_SECONDS`` without a read on its critical path.
    """
    if api_key:
        key_id = hash_key(api_key)
        age = principals.age(key_id)
        kept = principals.get(key_id)
        if age is not None and kept is not None:
            if age < settings().api_key_revalidate_seconds:
                return kept, None
            return kept, lambda: authenticate(api_key, fresh=True)
    return authenticate(api_key), None


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The ``x-serendip-signature`` header value for ``body``.

    >>> sign(b"{}", "whsec_test", 1700000000)[:13]
    't=1700000000,'
    """
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def _signed_and_candidates(
    header: str | None, body: bytes, now: float | None, tolerance: int
) -> tuple[bytes, list[str]]:
    """What was signed and the ``v1`` values, or ``UnauthorizedError`` (malformed, too old)."""
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
    return f"{timestamp}.".encode() + body, candidates


def _check_match(signed: bytes, candidates: list[str], secrets_: tuple[str, ...]) -> None:
    matched = False
    for secret in secrets_:
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        for candidate in candidates:
            # Check every pair so that timing does not reveal which one matched.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise UnauthorizedError("signature does not match")


def verify_signature(
    header: str | None,
    body: bytes,
    secrets_: tuple[str, ...],
    *,
    now: float | None = None,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
) -> None:
    """Raise ``UnauthorizedError`` unless one ``v1`` matches one secret within the tolerance."""
    signed, candidates = _signed_and_candidates(header, body, now, tolerance)
    _check_match(signed, candidates, secrets_)


def verify_webhook(
    principal: Principal, header: str | None, body: bytes, *, now: float | None = None
) -> None:
    """``verify_signature`` with the caller's key's active secrets, opened only if needed.

    A malformed or stale header is refused before any KMS call; a KMS outage is
    ``UnavailableError`` (503), never a 401.
    """
    signed, candidates = _signed_and_candidates(header, body, now, SIGNATURE_TOLERANCE_SECONDS)
    opened = open_secrets(principal.tenant, principal.key_id, principal.webhook_secrets)
    _check_match(signed, candidates, opened)
