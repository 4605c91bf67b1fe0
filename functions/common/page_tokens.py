"""Opaque ``next_token``s of paged routes: where a page ended, bound to the tenant that read it.

A token is the last key a page read, as two strings: the partition key (which starts with the
tenant, as every key does) and the position within it. It is URL-safe base64 of their JSON:
opaque to callers, though it carries nothing secret. What binds it to a tenant is the check on
the way back in (``decode_token``), which each route completes with its own check of the
position (a number, an item id) and of the key (its policy), refusing with ``invalid_token``.
"""

from __future__ import annotations

import base64
import binascii
import json

from functions.common.errors import ValidationFailedError

MAX_TOKEN_LENGTH = 2048


def invalid_token() -> ValidationFailedError:
    """The refusal of a token the route did not return for this tenant (422, ``next_token``)."""
    return ValidationFailedError("next_token: not a token this route returned", field="next_token")


def encode_token(key: str, position: str) -> str:
    """The token of a page that ended at ``position`` within partition ``key``.

    >>> encode_token("acme", "sku-1")
    'WyJhY21lIiwic2t1LTEiXQ'
    """
    raw = json.dumps([key, position], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, tenant: str) -> tuple[str, str]:
    """``(key, position)`` of a token whose key is ``tenant`` or starts with ``tenant#``;
    ``invalid_token()`` for anything else.

    >>> decode_token(encode_token("acme#for-you", "3"), "acme")
    ('acme#for-you', '3')
    >>> decode_token(encode_token("acme#for-you", "3"), "globex")
    Traceback (most recent call last):
    ...
    functions.common.errors.ValidationFailedError: next_token: not a token this route returned
    """
    if len(token) > MAX_TOKEN_LENGTH:
        raise invalid_token()
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        key, position = json.loads(raw)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise invalid_token() from exc
    if not (isinstance(key, str) and isinstance(position, str)):
        raise invalid_token()
    if key != tenant and not key.startswith(f"{tenant}#"):
        raise invalid_token()
    return key, position
