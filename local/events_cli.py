"""``serendip events show ID`` and ``serendip events failed --policy P``: what became of events.

Like ``serendip export``, both read the decision store of a local stack (``--stack NAME``,
``--url URL``; the running default one unless told), a deployed stack (``--cfn-stack NAME``)
or the ambient configuration (``local.target``). ``failed`` lists the events the learner
set aside (their data could not be learned: an undecodable record, a deleted policy, a record
that contradicts its own constraints), each with its reason.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from local.target import add_target_arguments

COMMAND = "serendip events"


def add_parser(commands: Any) -> None:
    """Register ``events show`` and ``events failed``."""
    events_parser = commands.add_parser("events", help="an event's state; events set aside")
    events_commands = events_parser.add_subparsers(dest="events_command", required=True)
    show = events_commands.add_parser(
        "show", help="one event: open, learned, expired or failed (and why)"
    )
    show.add_argument("event_id", help="the event id rank returned")
    failed = events_commands.add_parser(
        "failed", help="a policy's events that were set aside, with their reasons"
    )
    failed.add_argument("--policy", required=True, help="policy name")
    failed.add_argument("--since", type=float, default=0.0, help="unix seconds")
    for parser in (show, failed):
        parser.add_argument("--tenant", default="demo", help="tenant (default: demo)")
        add_target_arguments(parser)


def events_command(args: argparse.Namespace) -> int:
    """Run ``events show`` or ``events failed``; exit 1 when the event is unknown."""
    from functions.common import decision_store
    from functions.common.errors import NotFoundError
    from local.target import configure_target

    configure_target(args, required="DECISIONS_TABLE", command=COMMAND)
    if args.events_command == "show":
        try:
            shown = decision_store.status(args.tenant, args.event_id)
        except NotFoundError as exc:
            print(f"{COMMAND} show: {exc.detail} for tenant {args.tenant}", file=sys.stderr)
            return 1
        print(json.dumps(shown, indent=2))
        return 0
    count = 0
    for event in decision_store.failed(args.tenant, args.policy, args.since):
        print(json.dumps(event))
        count += 1
    print(f"{count} failed events of {args.tenant}/{args.policy}", file=sys.stderr)
    return 0
