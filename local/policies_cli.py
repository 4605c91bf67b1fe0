"""``serendip policies put|get|list``: a tenant's policy specs, through the HTTP API.

``put FILE`` sends the file as it is (YAML as ``application/yaml``, a ``.json`` file as JSON)
to ``PUT /v1/policies/{name}``; the name is ``--name``, else the file's ``name:``, else the
file's stem. ``get NAME`` prints the stored spec as YAML (or ``--format json``), ready to edit
and put back; ``list`` prints the tenant's policies with their spec and model versions.

They call the API of a local stack (``--stack NAME``, ``--url URL``; the running default one
unless told) or a deployed one (``--cfn-stack NAME``: its ``ApiUrl``), with the API key of
``--api-key``, else ``$SERENDIP_API_KEY``, else a local stack's demo key (``local.target``). A
refusal prints the API's error with the field it names and exits 2; an outage, or an API that
cannot be reached, exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from local.client import HttpResponse, SerendipClient
from local.target import add_target_arguments, api_endpoint

COMMAND = "serendip policies"
API_KEY_ENV = "SERENDIP_API_KEY"
YAML_TYPE = "application/yaml"
JSON_TYPE = "application/json"


def add_parser(commands: Any) -> None:
    """Register ``policies put|get|list``."""
    policies_parser = commands.add_parser(
        "policies", help="a tenant's policy specs: put a YAML file, get one back, list them"
    )
    policies_commands = policies_parser.add_subparsers(dest="policies_command", required=True)
    put = policies_commands.add_parser(
        "put",
        help="create or replace a policy from a spec file (YAML, or .json)",
        description="PUT the file, as it is, to /v1/policies/NAME (needs a key with scope "
        "admin). A file with a `name:` must agree with --name.",
    )
    put.add_argument("file", type=Path, help="the policy spec, e.g. policies/for-you.yaml")
    put.add_argument(
        "--name", help="the policy's name (default: the file's `name:`, else its stem)"
    )
    get = policies_commands.add_parser("get", help="print a policy's spec (to edit and put back)")
    get.add_argument("name", help="the policy's name")
    get.add_argument("--format", choices=("yaml", "json"), default="yaml", help="default yaml")
    listing = policies_commands.add_parser(
        "list", help="the tenant's policies with their spec and model versions"
    )
    for parser in (put, get, listing):
        parser.add_argument(
            "--api-key",
            help=f"the API key to call with (default: ${API_KEY_ENV}, else a local stack's "
            "demo key)",
        )
        add_target_arguments(parser)


def policies_command(args: argparse.Namespace) -> int:
    """Run one ``serendip policies`` command; its exit code."""
    action = f"{COMMAND} {args.policies_command}"
    body = b""
    if args.policies_command == "put":
        try:
            body = args.file.read_bytes()
        except OSError as error:
            print(f"{action}: cannot read {args.file}: {error.strerror}", file=sys.stderr)
            return 2
    endpoint = api_endpoint(args, action)
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or endpoint.demo_key
    if not api_key:
        print(f"{action}: no API key: pass --api-key or set {API_KEY_ENV}", file=sys.stderr)
        return 2
    client = SerendipClient(endpoint.url, api_key)
    try:
        if args.policies_command == "put":
            return _put(client, args, body, action)
        if args.policies_command == "get":
            return _get(client, args, action)
        return _list(client, action)
    except OSError as error:
        print(f"{action}: {endpoint.url} cannot be reached: {error}", file=sys.stderr)
        return 1


def _refused(action: str, response: HttpResponse) -> int:
    """Print the API's error (status, code, field, detail, request id); exit 2, or 1 for 5xx."""
    error = response.body if isinstance(response.body, dict) else {}
    field = f" (field {error['field']})" if error.get("field") else ""
    detail = error.get("detail") or str(response.body)
    request_id = {k.lower(): v for k, v in response.headers.items()}.get("x-request-id")
    quoted = f" [request id {request_id}]" if request_id else ""
    print(
        f"{action}: {response.status} {error.get('error', 'error')}{field}: {detail}{quoted}",
        file=sys.stderr,
    )
    return 1 if response.status >= 500 else 2


def policy_name(file: Path, body: bytes, given: str | None) -> str:
    """The name to put ``file`` under: ``given``, else the spec's ``name``, else the stem.

    >>> policy_name(Path("p/x.yaml"), b"name: explore", None)
    'explore'
    >>> policy_name(Path("p/x.yaml"), b"budget: [", None)
    'x'
    """
    if given:
        return given
    try:
        spec = yaml.safe_load(body)
    except yaml.YAMLError:
        spec = None  # the API says what is wrong with it, and where
    name = spec.get("name") if isinstance(spec, dict) else None
    return name if isinstance(name, str) and name else file.stem


def _put(client: SerendipClient, args: argparse.Namespace, body: bytes, action: str) -> int:
    name = policy_name(args.file, body, args.name)
    media_type = JSON_TYPE if args.file.suffix.lower() == ".json" else YAML_TYPE
    response = client.request(
        "PUT",
        f"/v1/policies/{quote(name, safe='')}",
        raw=body,
        headers={"content-type": media_type},
    )
    if response.status != 200:
        return _refused(action, response)
    stored = response.body
    reset = " with a fresh model" if stored.get("model_reset") else ""
    print(
        f"{action}: stored {stored['name']} (spec version {stored['spec_version']}, model "
        f"version {stored['model_version']}){reset}",
        file=sys.stderr,
    )
    print(json.dumps(stored))
    return 0


def _get(client: SerendipClient, args: argparse.Namespace, action: str) -> int:
    response = client.request("GET", f"/v1/policies/{quote(args.name, safe='')}")
    if response.status != 200:
        return _refused(action, response)
    stored = response.body
    print(
        f"{action}: {stored['name']}, spec version {stored['spec_version']}, model version "
        f"{stored['model_version']}",
        file=sys.stderr,
    )
    if args.format == "json":
        print(json.dumps(stored["spec"], indent=2))
    else:
        sys.stdout.write(yaml.safe_dump(stored["spec"], sort_keys=False, allow_unicode=True))
    return 0


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def _list(client: SerendipClient, action: str) -> int:
    response = client.request("GET", "/v1/policies")
    if response.status != 200:
        return _refused(action, response)
    listed = [
        {
            "name": policy["name"],
            "spec_version": policy["spec_version"],
            "model_version": policy["model_version"],
            "updated_at": _iso(policy["updated_at"]),
        }
        for policy in response.body["policies"]
    ]
    print(f"{action}: {len(listed)} policies", file=sys.stderr)
    print(json.dumps({"policies": listed}, indent=2))
    return 0
