"""``serendip keys``: API keys and their webhook secrets, on a local stack or a deployed one.

``create`` / ``revoke`` a key; ``rotate-secret`` adds a webhook secret (shown once) beside the
current one and ``retire-secret`` removes one; ``list`` shows a tenant's keys and secret ids,
never a key, a secret or a ciphertext. A refused request (unknown key or secret, the last
secret, a full key) exits 2 naming the argument.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any

from bandit.spec import POLICY_NAME_PATTERN
from local.target import add_target_arguments, configure_target

SCOPES = ("rank", "reward", "admin")
COMMAND = "serendip keys"
SEALING_KEY = "WEBHOOK_SECRETS_KEY_ID"


def parse_scopes(text: str) -> set[str]:
    """``rank,reward`` -> {"rank", "reward"} (ValueError on an unknown or empty list)."""
    scopes = {part.strip() for part in text.split(",") if part.strip()}
    unknown = scopes - set(SCOPES)
    if not scopes or unknown:
        raise ValueError(f"scopes must be a comma-separated subset of {','.join(SCOPES)}")
    return scopes


def _scopes_argument(text: str) -> set[str]:
    try:
        return parse_scopes(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _policy_argument(text: str) -> str:
    if not re.fullmatch(POLICY_NAME_PATTERN, text):
        raise argparse.ArgumentTypeError(f"a policy name must match {POLICY_NAME_PATTERN}")
    return text


def _tenant_argument(text: str) -> str:
    from functions.common.ids import check_tenant

    try:
        return check_tenant(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


_TENANT_HELP = "tenant the key belongs to (1-63 of a-z, 0-9, '-', '_'; no '#')"
_KEY_ID_HELP = "the key's id: its SHA-256 as stored (shown by create and list)"


def add_parser(commands: Any) -> None:
    """Register ``keys create|list|revoke|rotate-secret|retire-secret``."""
    keys_parser = commands.add_parser("keys", help="manage API keys and their webhook secrets")
    keys_commands = keys_parser.add_subparsers(dest="keys_command", required=True)
    create = keys_commands.add_parser(
        "create",
        help="create an API key (on the running local stack, or on AWS)",
        description="Create an API key on the local stack --stack NAME or --url URL (default: "
        "the running `serendip serve` stack, if any), on --cfn-stack NAME (CloudFormation "
        f"outputs), else with KEYS_TABLE and {SEALING_KEY} from the environment. The webhook "
        "secret is stored sealed with KMS.",
    )
    create.add_argument("--tenant", required=True, type=_tenant_argument, help=_TENANT_HELP)
    create.add_argument(
        "--scopes",
        type=_scopes_argument,
        default={"rank"},
        help="comma-separated: rank,reward,admin",
    )
    create.add_argument("--name", default="", help="a label for the key")
    create.add_argument(
        "--personalizer-policy",
        type=_policy_argument,
        default=None,
        help="the policy this key's Personalizer API serves (default: personalizer)",
    )
    listing = keys_commands.add_parser(
        "list",
        help="list a tenant's keys and secret ids (never a key or a secret)",
        description="A tenant's keys: id, name, scopes, created, status and the ids and dates "
        "of their webhook secrets.",
    )
    listing.add_argument("--tenant", required=True, type=_tenant_argument, help=_TENANT_HELP)
    revoke = keys_commands.add_parser(
        "revoke",
        help="revoke an API key at once (its next request gets 401)",
        description="Revoke an API key, named by its SHA-256 (as stored) or by the key itself.",
    )
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--key-hash", help="the key's SHA-256 hex digest, as stored")
    which.add_argument("--api-key", help="the key itself (hashed here, never sent anywhere)")
    rotate = keys_commands.add_parser(
        "rotate-secret",
        help="add a webhook secret to a key (printed once; the old one keeps signing)",
        description="Add a webhook secret; a key has at most two active ones. Sign with "
        "the new one, then retire the old one with `retire-secret`.",
    )
    rotate.add_argument("--key-id", required=True, help=_KEY_ID_HELP)
    retire = keys_commands.add_parser(
        "retire-secret",
        help="retire a webhook secret of a key (its next signed request gets 401)",
        description="Remove one webhook secret of a key; a key keeps at least one.",
    )
    retire.add_argument("--key-id", required=True, help=_KEY_ID_HELP)
    retire.add_argument("--secret-id", required=True, help="the secret's id (from `keys list`)")
    for parser in (create, listing, revoke, rotate, retire):
        add_target_arguments(parser)


def keys_command(args: argparse.Namespace) -> int:
    """Run one ``serendip keys`` command."""
    commands = {
        "create": keys_create,
        "list": keys_list,
        "revoke": keys_revoke,
        "rotate-secret": keys_rotate_secret,
        "retire-secret": keys_retire_secret,
    }
    return commands[args.keys_command](args)


def _sealing_target(args: argparse.Namespace) -> str:
    """``configure_target`` for commands that seal secrets (they need the KMS key too)."""
    target = configure_target(args)
    if not os.environ.get(SEALING_KEY):
        raise SystemExit(
            f"{COMMAND}: no {SEALING_KEY} for {target} (the stack's WebhookSecretsKey); "
            f"pass --cfn-stack NAME or set {SEALING_KEY}"
        )
    return target


def _refused(command: str, error: Exception) -> int:
    """Report a refused request (exit 2, naming the argument) or an outage (exit 1)."""
    from functions.common.errors import ServiceError, UnavailableError

    field = getattr(error, "field", None) if isinstance(error, ServiceError) else None
    detail = getattr(error, "detail", str(error))
    argument = f"--{field.replace('_', '-')}: " if field else ""
    print(f"{COMMAND} {command}: {argument}{detail}", file=sys.stderr)
    return 1 if isinstance(error, UnavailableError) or not field else 2


def _iso(seconds: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def keys_create(args: argparse.Namespace) -> int:
    """Create an API key and print it (with its webhook secret) as JSON."""
    from functions.common.auth import create_key
    from functions.common.errors import ServiceError

    target = _sealing_target(args)
    try:
        key = create_key(args.tenant, args.scopes, name=args.name, policy=args.personalizer_policy)
    except ServiceError as error:
        return _refused("create", error)
    print(f"created a key for tenant {key.tenant} on {target}", file=sys.stderr)
    print(
        json.dumps(
            {
                "api_key": key.api_key,
                "webhook_secret": key.webhook_secret,
                "tenant": key.tenant,
                "scopes": sorted(key.scopes),
                "key_id": key.key_id,
                "secret_id": key.secret_id,
                "personalizer_policy": args.personalizer_policy or "personalizer",
            }
        )
    )
    return 0


def keys_rotate_secret(args: argparse.Namespace) -> int:
    """Add a webhook secret to a key and print it once; the old one signs until retired."""
    from functions.common.errors import ServiceError
    from functions.common.webhook_secrets import rotate_secret

    target = _sealing_target(args)
    try:
        added = rotate_secret(args.key_id)
    except ServiceError as error:
        return _refused("rotate-secret", error)
    print(
        f"added secret {added.secret_id} to key {added.key_id} on {target}; both secrets sign "
        f"until `{COMMAND} retire-secret --key-id {added.key_id} --secret-id <old id>`",
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "key_id": added.key_id,
                "secret_id": added.secret_id,
                "webhook_secret": added.webhook_secret,
                "active_secrets": added.active,
            }
        )
    )
    return 0


def keys_retire_secret(args: argparse.Namespace) -> int:
    """Retire one webhook secret of a key: the next request signed with it gets 401."""
    from functions.common.errors import ServiceError
    from functions.common.webhook_secrets import retire_secret

    target = _sealing_target(args)
    try:
        active = retire_secret(args.key_id, args.secret_id)
    except ServiceError as error:
        return _refused("retire-secret", error)
    print(f"retired secret {args.secret_id} of key {args.key_id} on {target}", file=sys.stderr)
    print(
        json.dumps(
            {
                "key_id": args.key_id,
                "secret_id": args.secret_id,
                "retired": True,
                "active_secrets": active,
            }
        )
    )
    return 0


def keys_list(args: argparse.Namespace) -> int:
    """Print a tenant's keys as JSON: ids, scopes, dates, status and secret ids; no secrets."""
    from functions.common.errors import ServiceError
    from functions.common.webhook_secrets import list_keys

    target = configure_target(args)
    try:
        keys = list_keys(args.tenant)
    except ServiceError as error:
        return _refused("list", error)
    print(f"{len(keys)} keys of tenant {args.tenant} on {target}", file=sys.stderr)
    listed = [
        {
            "key_id": key.key_id,
            "name": key.name,
            "scopes": list(key.scopes),
            "created": _iso(key.created_at),
            "status": "revoked" if key.revoked else "active",
            "secrets": [
                {"secret_id": secret_id, "created": _iso(created)}
                for secret_id, created in key.secrets
            ],
        }
        for key in keys
    ]
    print(json.dumps({"tenant": args.tenant, "keys": listed}, indent=2))
    return 0


def keys_revoke(args: argparse.Namespace) -> int:
    """Revoke a key by its hash or by the key itself; the next request with it gets 401."""
    from functions.common.auth import hash_key, revoke_key
    from functions.common.errors import NotFoundError

    key_hash = args.key_hash or hash_key(args.api_key)
    target = configure_target(args)
    try:
        revoke_key(key_hash)
    except NotFoundError:
        print(f"no API key with hash {key_hash} on {target}", file=sys.stderr)
        return 1
    print(f"revoked the key on {target}", file=sys.stderr)
    print(json.dumps({"key_hash": key_hash, "revoked": True}))
    return 0
