"""Which policy a Personalizer "resource" is, and its creation on first use.

An API key names its tenant and may name a policy (``serendip keys create
--personalizer-policy NAME``); without one, the resource is the tenant's ``personalizer``
policy. A resource that does not exist yet is created from ``policies/personalizer.yaml``
(Personalizer's defaults) the first time its key is used, as a new Personalizer resource
answered its first rank without any setup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from bandit.spec import load_spec
from functions.common import policy_store
from functions.common.auth import Principal
from functions.common.observability import logger
from functions.common.settings import settings

DEFAULT_POLICY = "personalizer"
DEFAULTS_FILE = "personalizer.yaml"
T = TypeVar("T")


def policy_name(principal: Principal) -> str:
    """The policy the caller's Personalizer API serves."""
    return principal.policy or DEFAULT_POLICY


def create_default(tenant: str, name: str) -> policy_store.StoredPolicy:
    """Store Personalizer's default policy as ``name`` unless the tenant has it already."""
    try:
        return policy_store.get(tenant, name)
    except policy_store.PolicyNotFoundError:
        pass
    spec = load_spec(settings().policies_dir / DEFAULTS_FILE).model_copy(update={"name": name})
    logger.info("created the Personalizer policy", extra={"tenant": tenant, "policy": name})
    return policy_store.put(tenant, spec)


def with_policy(principal: Principal, action: Callable[[str], T]) -> T:
    """``action(policy)``, creating the policy first if ``action`` found it missing."""
    name = policy_name(principal)
    try:
        return action(name)
    except policy_store.PolicyNotFoundError as missing:
        if missing.policy != name:
            raise
    create_default(principal.tenant, name)
    return action(name)


def stored(principal: Principal) -> policy_store.StoredPolicy:
    """The resource's policy as stored (created first if missing)."""
    return with_policy(principal, lambda name: policy_store.get(principal.tenant, name))
