"""Webhook signatures for ``POST /v1/rewards``.

The header is ``x-serendip-signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]``, each hex the
HMAC-SHA256 of ``"<t>.<raw body>"`` under one webhook secret of the API key. The service accepts
a timestamp within 5 minutes of its clock and any ``v1`` that matches one of the key's active
secrets, so during a secret rotation a post may carry one signature per secret.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

SIGNATURE_HEADER = "x-serendip-signature"


def signature(body: bytes, secret: str, timestamp: int) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret``.

    >>> signature(b"{}", "whsec_test", 1700000000)[:16]
    '35495024f4ef3f94'
    """
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(body: bytes, secrets: str | Sequence[str], timestamp: int | None = None) -> str:
    """The ``x-serendip-signature`` value for ``body``: one ``v1`` per secret, in order.

    ``timestamp`` defaults to now (unix seconds). Sign the exact bytes that are sent.

    >>> sign(b"{}", "whsec_test", 1700000000)[:13]
    't=1700000000,'
    >>> sign(b"{}", ["whsec_old", "whsec_new"], 1700000000).count(",v1=")
    2
    """
    chosen = [secrets] if isinstance(secrets, str) else list(secrets)
    if not chosen or not all(chosen):
        raise ValueError("signing needs at least one non-empty webhook secret")
    when = int(time.time()) if timestamp is None else int(timestamp)
    values = ",".join(f"v1={signature(body, secret, when)}" for secret in chosen)
    return f"t={when},{values}"
