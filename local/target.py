"""Which stack a CLI command acts on: a local stack by name or URL, a deployed one, or the env.

Every command that talks to a stack (``keys``, ``dlq``, ``events``, ``export``) takes one of

- ``--stack NAME``: the local stack ``serendip serve --stack NAME`` runs (its state file);
- ``--url URL``: the local stack whose API is at ``URL`` (looked up among the recorded ones);
- ``--cfn-stack NAME``: a deployed CloudFormation stack (its outputs name the resources);

and, with none, the local stack ``default`` if it is recorded, else the ambient configuration
(``KEYS_TABLE`` & co, as on AWS). Commands that call the HTTP API instead (``policies``) take
the same arguments (``api_endpoint``): ``--url`` is then any endpoint, and a deployed stack's
is its ``ApiUrl`` output. A named local stack that is not running, or does not answer,
is refused (exit 2, saying how to start it), never silently replaced by another. A stale
state file (its ``serve`` was killed) is removed and reported. The stack acted on is named on
stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Any

from local.state import (
    DEFAULT_STACK,
    LocalState,
    check_stack_name,
    clear_stale,
    find_by_url,
    liveness,
    read_state,
    state_dir,
    state_path,
)


def _stack_name(text: str) -> str:
    try:
        return check_stack_name(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """``--stack NAME`` | ``--url URL`` | ``--cfn-stack NAME``."""
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--stack",
        type=_stack_name,
        help=f"the local stack of `serendip serve --stack NAME` (default: {DEFAULT_STACK!r} "
        "if it runs, else the ambient configuration)",
    )
    which.add_argument("--url", help="the local stack whose API is at this URL")
    which.add_argument(
        "--cfn-stack", help="a deployed CloudFormation stack to read table and key names from"
    )


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


def stack_outputs(stack_name: str) -> dict[str, str]:
    """A deployed CloudFormation stack's outputs, by name."""
    import boto3

    described = boto3.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in described[0].get("Outputs", [])}


def stack_environment(stack_name: str) -> dict[str, str]:
    """The functions' resource env vars of a deployed stack, from its CloudFormation outputs."""
    from local.resources import load_template

    outputs = stack_outputs(stack_name)
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


def _refuse(command: str, message: str) -> SystemExit:
    print(f"{command}: {message}", file=sys.stderr)
    return SystemExit(2)


def _start_hint(name: str) -> str:
    return "`serendip serve`" if name == DEFAULT_STACK else f"`serendip serve --stack {name}`"


def _local_stack(args: argparse.Namespace, command: str) -> LocalState | None:
    """The local stack to act on (checked up), None for none, or a refusal (exit 2)."""
    if getattr(args, "url", None):
        state = find_by_url(args.url)
        if state is None:
            raise _refuse(
                command,
                f"no local stack is recorded at {args.url} (under {state_dir()}); "
                "start one with `serendip serve`, or pass --stack NAME",
            )
    else:
        name = getattr(args, "stack", None) or DEFAULT_STACK
        state = read_state(name)
        if state is None:
            if getattr(args, "stack", None) is None:
                return None
            raise _refuse(
                command,
                f"local stack {name!r} is not running (no {state_path(name)}); "
                f"start it with {_start_hint(name)}",
            )
    status = liveness(state)
    if status == "stale":
        clear_stale(state)
        message = (
            f"local stack {state.name!r} was not stopped cleanly (process {state.pid} is gone); "
            f"removed its stale state file {state_path(state.name)}"
        )
        if getattr(args, "stack", None) is None and not getattr(args, "url", None):
            print(f"{command}: {message}", file=sys.stderr)
            return None
        raise _refuse(command, f"{message}; start it with {_start_hint(state.name)}")
    if status == "silent":
        raise _refuse(
            command,
            f"local stack {state.name!r} (process {state.pid}) does not answer at "
            f"{state.url}/v1/health; stop it and start it again with {_start_hint(state.name)}",
        )
    return state


def configure_target(
    args: argparse.Namespace, required: str = "KEYS_TABLE", command: str = "serendip keys"
) -> str:
    """Point this process at the stack to act on; returns a description of it (see module)."""
    from functions.common.aws import reset_clients
    from functions.common.settings import reset_settings
    from functions.common.tables import unbind
    from local.aws_env import moto_environment

    cfn_stack = getattr(args, "cfn_stack", None)
    if cfn_stack:
        _set_environment(dict(stack_environment(cfn_stack)))
        target = f"CloudFormation stack {cfn_stack}"
    else:
        state = _local_stack(args, command)
        if state is not None:
            _set_environment(
                {**moto_environment(state.moto_endpoint, state.region), **state.resources}
            )
            target = f"local stack {state.name!r} at {state.url}"
        else:
            target = "the ambient AWS configuration"
    if not os.environ.get(required):
        raise SystemExit(
            f"{command}: no {required} for {target}; start `serendip serve`, "
            f"pass --stack NAME, --url URL or --cfn-stack NAME, or set {required}"
        )
    print(f"{command}: using {target}", file=sys.stderr)
    reset_settings()
    unbind()
    reset_clients()
    return target


@dataclass(frozen=True, slots=True)
class ApiEndpoint:
    """Where a command that calls the HTTP API sends its requests."""

    url: str
    description: str
    demo_key: str | None = None  # a local stack's demo key (tenant demo), when it is one


def api_endpoint(args: argparse.Namespace, command: str) -> ApiEndpoint:
    """The HTTP API to call: ``--url`` as given, a deployed stack's ``ApiUrl`` output, or a
    local stack's URL (``--stack NAME``, else the running default one; refused as for
    ``configure_target`` when it is not running). Named on stderr."""
    cfn_stack = getattr(args, "cfn_stack", None)
    url = getattr(args, "url", None)
    if cfn_stack:
        api_url = stack_outputs(cfn_stack).get("ApiUrl")
        if not api_url:
            raise _refuse(command, f"CloudFormation stack {cfn_stack} has no ApiUrl output")
        endpoint = ApiEndpoint(api_url.rstrip("/"), f"CloudFormation stack {cfn_stack}")
    elif url:
        state = find_by_url(url)
        key = None if state is None else state.api_key
        endpoint = ApiEndpoint(url.rstrip("/"), f"the API at {url}", key)
    else:
        local = _local_stack(args, command)
        if local is None:
            raise _refuse(
                command,
                "no local stack is running; start one with `serendip serve`, or pass "
                "--stack NAME, --url URL or --cfn-stack NAME",
            )
        endpoint = ApiEndpoint(
            local.url, f"local stack {local.name!r} at {local.url}", local.api_key
        )
    print(f"{command}: using {endpoint.description}", file=sys.stderr)
    return endpoint
