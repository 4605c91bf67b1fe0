"""Ids that become part of storage keys: a strict syntax, so no id reaches into another's keys.

Every key starts with the tenant and a ``#`` (``tenant#event``, ``tenant#policy``,
``tenant#user``, ``tenant#policy#pop#shard``): with no ``#`` allowed in a tenant id, the text
before the first ``#`` of any key is its tenant, whatever the ids after it hold. Policy names,
segment names and reward types have strict syntaxes of their own (``bandit.spec``).
"""

from __future__ import annotations

import re

TENANT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


def check_tenant(tenant: str) -> str:
    """``tenant`` if it is a valid tenant id, else ``ValueError`` naming the rule.

    >>> check_tenant("acme-eu")
    'acme-eu'
    >>> check_tenant("acme#x")
    Traceback (most recent call last):
    ...
    ValueError: tenant 'acme#x': 1-63 of a-z, 0-9, '-' and '_', starting with a-z or 0-9
    """
    if not re.fullmatch(TENANT_PATTERN, tenant):
        raise ValueError(
            f"tenant {tenant!r}: 1-63 of a-z, 0-9, '-' and '_', starting with a-z or 0-9"
        )
    return tenant
