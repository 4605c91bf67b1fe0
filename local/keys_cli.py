"""``serendip keys create`` / ``revoke``: API keys on the running local stack, a stack, or AWS."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

SCOPES = ("rank", "reward", "admin")


def moto_answers(endpoint: str, timeout: float = 1.0) -> bool:
    """Whether a server answers HTTP at ``endpoint`` (any status will do)."""
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def output_variables(template: dict[str, Any]) -> dict[str, str]:
    """Output -> the function env var with the same value: ``KeysTableName`` -> ``KEYS_TABLE``."""
    from local.resources import function_environment

    environment = function_environment(template)
    mapping = {}
    for output, spec in (template.get("Outputs") or {}).items():
        value = spec.get("Value") if isinstance(spec, dict) else None
        for variable, reference in environment.items():
            if value is not None and reference == value:
                mapping[output] = variable
    return mapping


def stack_environment(stack_name: str) -> dict[str, str]:
    """The functions' resource env vars of a deployed stack, from its CloudFormation outputs."""
    import boto3

    from local.resources import load_template

    described = boto3.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described[0].get("Outputs", [])}
    return {
        variable: outputs[output]
        for output, variable in output_variables(load_template()).items()
        if output in outputs
    }


def _set_environment(values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def configure_target(
    stack_name: str | None, required: str = "KEYS_TABLE", command: str = "serendip keys"
) -> str:
    """Point this process at the stack to act on; returns a description of it.

    ``--stack NAME`` -> that CloudFormation stack's outputs; else a running local stack (its state
    file, if its moto server answers); else the ambient configuration (``KEYS_TABLE`` & co).
    """
    from functions.common.aws import reset_clients
    from functions.common.settings import reset_settings
    from functions.common.tables import unbind
    from local.stack import moto_environment
    from local.state import read_state, state_path

    if stack_name:
        _set_environment(dict(stack_environment(stack_name)))
        target = f"CloudFormation stack {stack_name}"
    else:
        state = read_state()
        if state is not None and moto_answers(state.moto_endpoint):
            _set_environment(
                {**moto_environment(state.moto_endpoint, state.region), **state.resources}
            )
            target = f"the local stack at {state.url}"
        else:
            if state is not None:
                print(
                    f"ignoring {state_path()}: nothing answers at {state.moto_endpoint}",
                    file=sys.stderr,
                )
            target = "the ambient AWS configuration"
    if not os.environ.get(required):
        raise SystemExit(
            f"{command}: no {required} for {target}; start `serendip serve`, "
            f"pass --stack NAME, or set {required}"
        )
    reset_settings()
    unbind()
    reset_clients()
    return target


def parse_scopes(text: str) -> set[str]:
    """``rank,reward`` -> {"rank", "reward"} (ValueError on an unknown or empty list)."""
    scopes = {part.strip() for part in text.split(",") if part.strip()}
    unknown = scopes - set(SCOPES)
    if not scopes or unknown:
        raise ValueError(f"scopes must be a comma-separated subset of {','.join(SCOPES)}")
    return scopes


def keys_create(args: argparse.Namespace) -> int:
    """Create an API key and print it (with its webhook secret) as JSON."""
    from functions.common.auth import create_key

    target = configure_target(args.stack)
    key = create_key(args.tenant, args.scopes, name=args.name)
    print(f"created a key for tenant {key.tenant} on {target}", file=sys.stderr)
    print(
        json.dumps(
            {
                "api_key": key.api_key,
                "webhook_secret": key.webhook_secret,
                "tenant": key.tenant,
                "scopes": sorted(key.scopes),
            }
        )
    )
    return 0


def keys_revoke(args: argparse.Namespace) -> int:
    """Revoke a key by its hash or by the key itself; the next request with it gets 401."""
    from functions.common.auth import hash_key, revoke_key
    from functions.common.errors import NotFoundError

    key_hash = args.key_hash or hash_key(args.api_key)
    target = configure_target(args.stack)
    try:
        revoke_key(key_hash)
    except NotFoundError:
        print(f"no API key with hash {key_hash} on {target}", file=sys.stderr)
        return 1
    print(f"revoked the key on {target}", file=sys.stderr)
    print(json.dumps({"key_hash": key_hash, "revoked": True}))
    return 0
