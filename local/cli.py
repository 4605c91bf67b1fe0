"""The ``serendip`` command line.

- ``serendip demo``: simulated users served through the local stack's HTTP API, learning.
- ``serendip simulate``: the same population against the core in process (fast, no stack).
- ``serendip serve``: the whole service on this machine (moto, the HTTP API, learner, sweep).
- ``serendip keys create`` / ``list``: API keys of a tenant, on the running local stack or AWS.
- ``serendip keys rotate-secret`` / ``retire-secret``: webhook secret rotation, one key at a time.
- ``serendip dlq list`` / ``serendip dlq redrive``: the reward dead-letter queue.
- ``serendip keys revoke``: revoke a key (by its hash or the key itself) at once.
- ``serendip export`` / ``serendip evaluate``: the decision log out, and offline evaluation.
- ``serendip import``: another system's CSV or JSONL log into a decision log, by a mapping.
- ``serendip report``: an HTML page of plots and metrics from an exported decision log.
- ``serendip personalizer import``: Azure Personalizer's exported logs, converted or learned.
- ``serendip policies put|get|list``: a tenant's policy specs, through the HTTP API.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from local.demo import demo
from local.dlq_cli import add_parser as add_dlq_parser
from local.dlq_cli import dlq_command
from local.events_cli import add_parser as add_events_parser
from local.events_cli import events_command
from local.function_pool import default_api_workers
from local.import_cli import add_parser as add_import_parser
from local.import_cli import import_command
from local.keys_cli import add_parser as add_keys_parser
from local.keys_cli import keys_command
from local.logs_cli import add_parsers as add_log_parsers
from local.logs_cli import evaluate_command, export
from local.personalizer_cli import add_parser as add_personalizer_parser
from local.personalizer_cli import personalizer_command
from local.policies_cli import add_parser as add_policies_parser
from local.policies_cli import policies_command
from local.report_cli import DEFAULT_REPORT, report_command
from local.report_cli import add_parser as add_report_parser
from local.serve_cli import serve, worker_count
from local.simulate_cli import simulate

POLICIES = Path(__file__).resolve().parent.parent / "policies"

# ---------------------------------------------------------------- parsing


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _stack_name(text: str) -> str:
    from local.state import check_stack_name

    try:
        return check_stack_name(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _add_demo(commands: Any) -> None:
    demo_parser = commands.add_parser(
        "demo", help="start the local stack and show a policy learning over HTTP"
    )
    demo_parser.add_argument("--policy", default="for-you", help="policy name (for-you, explore)")
    demo_parser.add_argument("--decisions", type=int, default=4000, help="most requests to serve")
    demo_parser.add_argument(
        "--seconds", type=_positive, default=90.0, help="stop serving after this long"
    )
    demo_parser.add_argument("--seed", type=int, default=1, help="simulation seed")
    demo_parser.add_argument(
        "--report",
        type=Path,
        default=DEFAULT_REPORT,
        help=f"write the HTML report of the run here (default {DEFAULT_REPORT})",
    )


def _add_simulate(commands: Any) -> None:
    parser = commands.add_parser(
        "simulate", help="show a policy learning on simulated users, in process (no stack)"
    )
    parser.add_argument("--decisions", type=int, default=6000, help="requests to serve")
    parser.add_argument(
        "--policy", type=Path, default=POLICIES / "for-you.yaml", help="policy spec (YAML)"
    )
    parser.add_argument("--seed", type=int, default=1, help="simulation seed")


def _add_serve(commands: Any) -> None:
    serve_parser = commands.add_parser(
        "serve",
        help="run the whole service locally (moto, HTTP API, learner, sweep)",
        description="Run the whole service on this machine. Its state (keys, policies, "
        "catalog, models, decisions and queued rewards) is kept in a data directory and "
        "restored at the next start: a stop (Ctrl-C, SIGTERM, even a SIGKILL of serve, which "
        "its moto server outlives only to save) loses nothing moto answered; a SIGKILL of the "
        "moto process itself, or a crash, loses up to the last 5 s (it saves every 5 s, less "
        "often when its state is big). "
        "--fresh starts empty. Each stack has a name (--stack); other commands reach it with "
        "--stack NAME or --url URL.",
    )
    serve_parser.add_argument("--host", default="127.0.0.1", help="address of the HTTP API")
    serve_parser.add_argument(
        "--port", type=int, default=3000, help="port of the HTTP API (0: any)"
    )
    serve_parser.add_argument(
        "--api-key", help="the demo tenant's API key (default: the last run's, else random)"
    )
    serve_parser.add_argument(
        "--webhook-secret", help="its webhook secret (default: the last run's, else random)"
    )
    serve_parser.add_argument(
        "--sweep-interval",
        type=_positive,
        default=None,
        help="seconds between sweeps (default: the template's schedule, every minute)",
    )
    serve_parser.add_argument(
        "--metrics", action="store_true", help="print Powertools EMF metrics (off by default)"
    )
    serve_parser.add_argument(
        "--stack",
        metavar="NAME",
        type=_stack_name,
        default="default",
        help="this stack's name: its state file is ~/.serendip/stacks/NAME.json (default: "
        "default); other commands reach it with --stack NAME",
    )
    serve_parser.add_argument(
        "--data",
        metavar="DIR",
        type=Path,
        default=None,
        help="directory that keeps the stack's state across restarts (default: "
        "~/.serendip/stacks/NAME/data; $SERENDIP_STATE_DIR replaces ~/.serendip)",
    )
    serve_parser.add_argument(
        "--fresh",
        action="store_true",
        help="start from a clean slate: delete the stack's saved state first",
    )
    serve_parser.add_argument(
        "--workers",
        type=worker_count,
        default=default_api_workers(),
        metavar="N",
        help="worker processes serving the API, each one request at a time, as Lambda runs "
        "one per container; with more than 1 the learner runs in a process of its own too "
        f"(default: one per CPU, at most 4: {default_api_workers()} here; 1 runs every handler "
        "in this process)",
    )
    serve_parser.add_argument(
        "--no-learn",
        dest="learn",
        action="store_false",
        help="accept rewards but leave them queued (no learner); a later serve learns them",
    )


def _add_openapi(commands: Any) -> None:
    commands.add_parser(
        "openapi", help="print the API's OpenAPI document (docs/openapi.json is this output)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``serendip`` argument parser."""
    parser = argparse.ArgumentParser(prog="serendip", description="Serendip explore service")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_demo(commands)
    _add_simulate(commands)
    _add_serve(commands)
    add_keys_parser(commands)
    _add_openapi(commands)
    add_dlq_parser(commands)
    add_events_parser(commands)
    add_log_parsers(commands)
    add_import_parser(commands)
    add_report_parser(commands)
    add_personalizer_parser(commands)
    add_policies_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``serendip`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("demo", "simulate") and args.decisions < 8:
        parser.error("--decisions must be at least 8")
    if args.command == "demo":
        return demo(
            args.policy, args.decisions, args.seconds, args.seed, Console(), report=args.report
        )
    if args.command == "simulate":
        return simulate(args.decisions, args.policy, args.seed, Console())
    if args.command == "serve":
        if not 0 <= args.port <= 65535:
            parser.error("--port must be between 0 and 65535")
        return serve(args)
    if args.command == "export":
        return export(args)
    if args.command == "evaluate":
        return evaluate_command(args, Console())
    if args.command == "import":
        return import_command(args)
    if args.command == "report":
        return report_command(args)
    if args.command == "keys":
        return keys_command(args)
    if args.command == "openapi":
        from functions.admin.openapi import openapi_json

        sys.stdout.write(openapi_json())
        return 0
    if args.command == "dlq":
        return dlq_command(args)
    if args.command == "events":
        return events_command(args)
    if args.command == "personalizer":
        return personalizer_command(args)
    if args.command == "policies":
        return policies_command(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
