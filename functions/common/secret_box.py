"""Webhook secrets sealed with KMS, bound to their key row, and opened through a short cache.

A secret is encrypted with ``kms:Encrypt`` under the stack's ``WEBHOOK_SECRETS_KEY_ID`` with the
encryption context ``{tenant, key_id}``: KMS refuses to decrypt it under any other context, so a
ciphertext copied onto another tenant's (or another key's) row opens to nothing there.

Opening costs a KMS call, so a function keeps the plaintext of a ciphertext it opened for
``WEBHOOK_SECRET_CACHE_SECONDS`` (60 s by default). The cache is keyed by the ciphertext *and*
its context, never by key or tenant alone: the key row is still read on every request, so a
retired secret (its ciphertext gone from the row) or a revoked key stops working at once.
"""

from __future__ import annotations

import threading
import time

from botocore.exceptions import BotoCoreError, ClientError

from functions.common.aws import kms
from functions.common.errors import UnavailableError
from functions.common.observability import logger
from functions.common.settings import settings

MAX_CACHED = 1024
# KMS answers these for a ciphertext that is not this row's: data, not an outage.
_NOT_THIS_ROWS = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})

CacheKey = tuple[bytes, str, str]
_cache: dict[CacheKey, tuple[str, float]] = {}
_lock = threading.Lock()


class SecretKeyMissingError(RuntimeError):
    """No KMS key is configured to seal webhook secrets with."""


def _context(tenant: str, key_id: str) -> dict[str, str]:
    return {"tenant": tenant, "key_id": key_id}


def _key_id() -> str:
    key_id = settings().webhook_secrets_key_id
    if not key_id:
        raise SecretKeyMissingError(
            "WEBHOOK_SECRETS_KEY_ID is not set: the stack's KMS key for webhook secrets"
        )
    return key_id


def seal(plaintext: str, *, tenant: str, key_id: str) -> bytes:
    """Encrypt a webhook secret for the key row ``key_id`` of ``tenant`` (operators only).

    ``UnavailableError`` if KMS cannot be reached or refuses.
    """
    try:
        answer = kms().encrypt(
            KeyId=_key_id(),
            Plaintext=plaintext.encode(),
            EncryptionContext=_context(tenant, key_id),
        )
    except (BotoCoreError, ClientError) as exc:
        raise UnavailableError(f"KMS unavailable, nothing was stored: {exc}") from exc
    return bytes(answer["CiphertextBlob"])


def unseal(ciphertext: bytes, *, tenant: str, key_id: str) -> str | None:
    """The plaintext of a sealed secret of this key row, or ``None`` if it is not this row's.

    A KMS outage is ``UnavailableError`` (503: the caller may retry), never a refusal.
    """
    cache_key = (ciphertext, tenant, key_id)
    now = time.monotonic()
    with _lock:
        cached = _cache.get(cache_key)
    if cached is not None and cached[1] > now:
        return cached[0]
    try:
        answer = kms().decrypt(
            CiphertextBlob=ciphertext,
            KeyId=_key_id(),
            EncryptionContext=_context(tenant, key_id),
        )
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _NOT_THIS_ROWS:
            logger.error(
                "a webhook secret does not open for its key row",
                extra={"tenant": tenant, "key_id": key_id, "error": code},
            )
            return None
        logger.error("KMS refused to open a webhook secret", extra={"error": str(exc)})
        raise UnavailableError("secret store unavailable; retry", retry_after=5) from exc
    except BotoCoreError as exc:
        logger.error("KMS unreachable", extra={"error": str(exc)})
        raise UnavailableError("secret store unavailable; retry", retry_after=5) from exc
    plaintext = bytes(answer["Plaintext"]).decode()
    _remember(cache_key, plaintext, now + settings().webhook_secret_cache_seconds)
    return plaintext


def _remember(cache_key: CacheKey, plaintext: str, expires: float) -> None:
    with _lock:
        if len(_cache) >= MAX_CACHED:
            now = time.monotonic()
            for stale in [k for k, (_, until) in _cache.items() if until <= now]:
                del _cache[stale]
            while len(_cache) >= MAX_CACHED:
                del _cache[next(iter(_cache))]
        _cache[cache_key] = (plaintext, expires)


def forget() -> None:
    """Drop every cached plaintext (tests; a new stack)."""
    with _lock:
        _cache.clear()
