"""A key's webhook secrets: sealed at rest, rotated, retired, listed without their values.

Each key row holds its secrets twice, in the same order: ``secret_info`` (id and date: what
``serendip keys list`` shows, projected into the ``by_tenant`` index) and ``sealed_secrets``
(the KMS ciphertexts, never projected). Every change rewrites both in one conditional update on
``secrets_rev``, so concurrent rotations cannot lose one another's secrets. A key has at most
``MAX_ACTIVE_SECRETS``: during a rotation the old and the new secret both sign, until the old one
is retired. Rows written before secrets were sealed keep a plain-text ``webhook_secrets`` list:
they still verify (as ``legacy-1``, ``legacy-2``...), and their next rotation or retirement
seals them and drops the plain text.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pynamodb.exceptions import DoesNotExist, PynamoDBException, UpdateError

from functions.common import secret_box
from functions.common.errors import ConflictError, NotFoundError, StorageError
from functions.common.ids import check_tenant
from functions.common.tables import ApiKeyItem, SealedSecret, SecretInfo, bind

MAX_ACTIVE_SECRETS = 2
SECRET_PREFIX = "whsec_"
SECRET_ID_PREFIX = "ws_"
LEGACY_ID_PREFIX = "legacy-"


@dataclass(frozen=True, slots=True)
class StoredSecret:
    """One webhook secret of a key row: sealed, or (rows from before sealing) plain text."""

    secret_id: str
    created_at: int
    ciphertext: bytes | None = None
    plaintext: str | None = None


@dataclass(frozen=True, slots=True)
class AddedSecret:
    """A secret just added to a key: the only time its value is visible."""

    key_id: str
    secret_id: str
    webhook_secret: str
    active: int


@dataclass(frozen=True, slots=True)
class KeySummary:
    """A key as ``serendip keys list`` shows it: no key, no secret, no ciphertext."""

    key_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: int
    revoked: bool
    secrets: tuple[tuple[str, int], ...]  # (secret id, created at)


def new_secret() -> str:
    """A fresh random webhook secret."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def new_secret_id() -> str:
    """A fresh id for a secret (shown by ``keys list``, named by ``keys retire-secret``)."""
    return SECRET_ID_PREFIX + secrets.token_hex(6)


def stored_secrets(item: ApiKeyItem) -> tuple[StoredSecret, ...]:
    """The secrets of a key row read from the table, sealed ones first."""
    dates = {info.secret_id: int(info.created_at) for info in item.secret_info}
    sealed = [
        StoredSecret(s.secret_id, dates.get(s.secret_id, int(item.created_at)), s.ciphertext)
        for s in item.sealed_secrets
    ]
    legacy = [
        StoredSecret(f"{LEGACY_ID_PREFIX}{n}", int(item.created_at), plaintext=str(plain))
        for n, plain in enumerate(item.webhook_secrets or [], start=1)
    ]
    return (*sealed, *legacy)


def open_secrets(tenant: str, key_id: str, stored: Sequence[StoredSecret]) -> tuple[str, ...]:
    """The plaintexts that may sign for this key row (a ciphertext not its own opens to none).

    ``UnavailableError`` when KMS is down: the caller gets 503, not 401.
    """
    opened: list[str] = []
    for secret in stored:
        if secret.plaintext is not None:
            opened.append(secret.plaintext)
        elif secret.ciphertext is not None:
            plaintext = secret_box.unseal(secret.ciphertext, tenant=tenant, key_id=key_id)
            if plaintext is not None:
                opened.append(plaintext)
    return tuple(opened)


def sealed_lists(
    tenant: str, key_id: str, secrets_: Sequence[StoredSecret]
) -> tuple[list[SecretInfo], list[SealedSecret]]:
    """The two stored lists for ``secrets_``, sealing any plain-text one on the way."""
    info, sealed = [], []
    for secret in secrets_:
        ciphertext = secret.ciphertext
        if ciphertext is None:
            ciphertext = secret_box.seal(str(secret.plaintext), tenant=tenant, key_id=key_id)
        info.append(SecretInfo(secret_id=secret.secret_id, created_at=secret.created_at))
        sealed.append(SealedSecret(secret_id=secret.secret_id, ciphertext=ciphertext))
    return info, sealed


def _read(key_id: str) -> ApiKeyItem:
    bind()
    try:
        return ApiKeyItem.get(key_id, consistent_read=True)
    except DoesNotExist as exc:
        raise NotFoundError(f"no API key with id {key_id}", field="key_id") from exc
    except PynamoDBException as exc:
        raise StorageError(f"key store unavailable: {exc.msg}") from exc


Change = Callable[[list[StoredSecret]], list[StoredSecret]]


def _change_secrets(key_id: str, change: Change) -> list[StoredSecret]:
    """Read a key's secrets, apply ``change``, store the result sealed; returns it."""
    item = _read(key_id)
    if item.revoked:
        raise ConflictError(f"API key {key_id} is revoked", field="key_id")
    result = change(list(stored_secrets(item)))
    info, sealed = sealed_lists(item.tenant, key_id, result)
    rev = int(item.secrets_rev)
    unchanged = ApiKeyItem.secrets_rev == rev
    if rev == 0:
        unchanged = unchanged | ApiKeyItem.secrets_rev.does_not_exist()
    try:
        item.update(
            actions=[
                ApiKeyItem.secret_info.set(info),
                ApiKeyItem.sealed_secrets.set(sealed),
                ApiKeyItem.secrets_rev.set(rev + 1),
                ApiKeyItem.webhook_secrets.remove(),
            ],
            condition=ApiKeyItem.pk.exists() & unchanged,
        )
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            raise ConflictError(
                f"the secrets of API key {key_id} changed meanwhile; try again", field="key_id"
            ) from exc
        raise StorageError(f"key store unavailable: {exc.msg}") from exc
    return result


def rotate_secret(key_id: str, webhook_secret: str | None = None) -> AddedSecret:
    """Add a webhook secret to a key (shown once); the key's other secret keeps signing.

    ``NotFoundError`` for an unknown key, ``ConflictError`` if it is revoked or already has
    ``MAX_ACTIVE_SECRETS`` (retire one first).
    """
    plaintext = webhook_secret or new_secret()
    added = StoredSecret(new_secret_id(), int(time.time()), plaintext=plaintext)

    def add(current: list[StoredSecret]) -> list[StoredSecret]:
        if len(current) >= MAX_ACTIVE_SECRETS:
            raise ConflictError(
                f"API key {key_id} already has {len(current)} active secrets "
                f"(at most {MAX_ACTIVE_SECRETS}); retire one first",
                field="key_id",
            )
        return [*current, added]

    result = _change_secrets(key_id, add)
    return AddedSecret(key_id, added.secret_id, plaintext, len(result))


def retire_secret(key_id: str, secret_id: str) -> int:
    """Remove one secret of a key; signatures made with it fail from the next request on.

    Returns how many secrets stay active. ``NotFoundError`` for an unknown key or secret id,
    ``ConflictError`` for the key's last secret (rotate first).
    """

    def drop(current: list[StoredSecret]) -> list[StoredSecret]:
        kept = [secret for secret in current if secret.secret_id != secret_id]
        if len(kept) == len(current):
            known = ", ".join(secret.secret_id for secret in current) or "none"
            raise NotFoundError(
                f"API key {key_id} has no secret {secret_id} (it has: {known})",
                field="secret_id",
            )
        if not kept:
            raise ConflictError(
                f"{secret_id} is the last secret of API key {key_id}; rotate first",
                field="secret_id",
            )
        return kept

    return len(_change_secrets(key_id, drop))


def list_keys(tenant: str) -> list[KeySummary]:
    """A tenant's keys, oldest first, from the ``by_tenant`` index (which holds no secret)."""
    check_tenant(tenant)
    bind()
    try:
        items = list(ApiKeyItem.by_tenant.query(tenant))
    except PynamoDBException as exc:
        raise StorageError(f"key store unavailable: {exc.msg}") from exc
    summaries = []
    for item in items:
        listed = tuple((info.secret_id, int(info.created_at)) for info in item.secret_info)
        if not listed:  # a row from before sealing: its secrets are not in the index
            listed = tuple((s.secret_id, s.created_at) for s in stored_secrets(_read(item.pk)))
        summaries.append(
            KeySummary(
                key_id=item.pk,
                name=item.name,
                scopes=tuple(sorted(item.scopes or ())),
                created_at=int(item.created_at),
                revoked=bool(item.revoked),
                secrets=listed,
            )
        )
    return sorted(summaries, key=lambda summary: (summary.created_at, summary.key_id))
