"""The environment that points this process's AWS clients at a moto server, and its reset.

``local.stack`` sets it for the stack's handlers; ``local.target`` for CLI commands that talk to
a running stack. Every cached client, table binding and per-process handler state is dropped
when it changes, as a cold start would.
"""

from __future__ import annotations

import sys

from local.resources import DEFAULT_REGION


def moto_environment(endpoint: str, region: str = DEFAULT_REGION) -> dict[str, str | None]:
    """The environment that points boto3, pynamodb and Powertools at a moto server.

    ``None`` means unset: a named profile would win over the dummy credentials.
    """
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_PROFILE": None,
        "AWS_DEFAULT_PROFILE": None,
    }


def reset_aws_state() -> None:
    """Forget cached settings, table bindings, clients and the handlers' per-process state."""
    from functions.common.auth import principals
    from functions.common.aws import reset_clients
    from functions.common.settings import reset_settings
    from functions.common.tables import unbind

    reset_settings()
    unbind()
    reset_clients()
    principals.clear()
    # A handler module imported before (tests, a previous stack) keeps services built on the
    # old backend: drop them as a cold start would. Modules not imported yet have nothing.
    for module_name, attribute in (
        ("functions.rank.app", "_service"),
        ("functions.learn.app", "_learner"),
    ):
        module = sys.modules.get(module_name)
        if module is not None:
            setattr(module, attribute, None)
    openapi = sys.modules.get("functions.admin.openapi")
    if openapi is not None:
        openapi.openapi_document.cache_clear()
