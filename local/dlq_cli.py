"""``serendip dlq list`` and ``serendip dlq redrive``: the reward dead-letter queue.

Both act on a local stack (``--stack NAME``, ``--url URL``; the running default one unless
told), a deployed stack (``--cfn-stack NAME``) or the ambient configuration (``REWARD_DLQ_URL``
and ``REWARD_QUEUE_URL``), like ``serendip keys`` (``local.target``).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from local.target import add_target_arguments

COMMAND = "serendip dlq"


def add_parser(commands: Any) -> None:
    """Register ``dlq list`` and ``dlq redrive``."""
    dlq_parser = commands.add_parser("dlq", help="show and redrive the reward dead-letter queue")
    dlq_commands = dlq_parser.add_subparsers(dest="dlq_command", required=True)
    listing = dlq_commands.add_parser(
        "list",
        help="show the messages in the reward DLQ (they stay in it)",
        description="List dead letters: message id, receive count (each listing adds one), "
        "when it was first sent, and the start of its body.",
    )
    listing.add_argument("--limit", type=_at_least_one, default=50, help="most messages to show")
    redrive = dlq_commands.add_parser(
        "redrive",
        help="move the DLQ's messages back to the reward queue",
        description="Receive each dead letter, send it to the reward queue, delete it from the "
        "DLQ. Rewards are applied once, so redriving twice is harmless.",
    )
    redrive.add_argument("--limit", type=_at_least_one, default=1000, help="most messages to move")
    for parser in (listing, redrive):
        add_target_arguments(parser)
        parser.add_argument(
            "--queue",
            choices=("reward", "learn"),
            default="reward",
            help="the reward queue's DLQ (default) or the learn queue's",
        )


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def dlq_command(args: argparse.Namespace) -> int:
    """Run ``dlq list`` or ``dlq redrive``."""
    from functions.common import dlq
    from local.target import configure_target

    target = configure_target(args, required="REWARD_DLQ_URL", command=COMMAND)
    queue = args.queue
    if args.dlq_command == "redrive":
        report = dlq.redrive(limit=args.limit, queue=queue)
        print(f"moved {report.moved} messages from the DLQ to the {queue} queue on {target}")
        if report.failed:
            print(f"{report.failed} could not be sent; they stay in the DLQ", file=sys.stderr)
        return 1 if report.failed else 0
    letters = dlq.peek(limit=args.limit, queue=queue)
    print(f"{len(letters)} messages in the {queue} DLQ of {target}", file=sys.stderr)
    if letters:
        print(f"{'message id':<36}  {'receives':>8}  {'first sent (UTC)':<19}  body")
    for letter in letters:
        sent = datetime.fromtimestamp(letter.sent_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{letter.message_id:<36}  {letter.receive_count:>8}  {sent:<19}  {letter.excerpt()}")
    return 0
