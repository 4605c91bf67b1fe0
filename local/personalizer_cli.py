"""``serendip personalizer import``: Azure Personalizer's exported logs (DSJSON) into Serendip.

- ``--out decisions.jsonl`` writes them as Serendip decision records, for ``serendip evaluate``
  and ``serendip report``;
- ``--warm`` learns them, oldest first, into the policy's model and saves the result as its new
  model version (on the running local stack, ``--stack`` / ``--url``, or ``--cfn-stack``): a
  warm start for an app that moves from Personalizer. The policy is created from
  ``policies/personalizer.yaml`` if the tenant does not have it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bandit.decision_log import DecisionRecord, write_jsonl
from bandit.dsjson import REWARD_TYPE, Conversion, read_dsjson
from local.target import add_target_arguments

PROGRESS_EVERY = 10_000


def add_parser(commands: Any) -> None:
    """The ``personalizer import`` subcommand."""
    parser = commands.add_parser(
        "personalizer", help="bring Azure Personalizer's exported logs into Serendip"
    )
    sub = parser.add_subparsers(dest="personalizer_command", required=True)
    imported = sub.add_parser(
        "import",
        help="convert a DSJSON log; write it as decision records and/or learn it (warm start)",
    )
    imported.add_argument("--logs", type=Path, required=True, help="Personalizer's DSJSON file")
    imported.add_argument("--out", type=Path, help="write Serendip decision records (JSONL)")
    imported.add_argument(
        "--warm", action="store_true", help="learn them into the policy's model as a new version"
    )
    imported.add_argument("--tenant", default="demo", help="tenant (default: demo)")
    imported.add_argument("--policy", default="personalizer", help="policy (default: personalizer)")
    add_target_arguments(imported)


def personalizer_command(args: argparse.Namespace) -> int:
    """Run ``serendip personalizer import``."""
    if not args.out and not args.warm:
        print("serendip personalizer import: give --out FILE, --warm, or both", file=sys.stderr)
        return 2
    report = Conversion()
    try:
        with open(args.logs, encoding="utf-8") as handle:
            records = list(read_dsjson(handle, args.policy, "all", report))
    except (OSError, ValueError) as error:
        print(f"serendip personalizer import: {error}", file=sys.stderr)
        return 2
    skipped = ", ".join(f"{count} {why}" for why, count in sorted(report.skipped.items()))
    print(
        f"read {report.converted} events from {args.logs}"
        + (f"; skipped {skipped}" if skipped else ""),
        file=sys.stderr,
    )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as sink:
            write_jsonl(records, sink)
        print(f"wrote {len(records)} decision records to {args.out}", file=sys.stderr)
    if args.warm:
        return _warm(args, records)
    return 0


def _warm(args: argparse.Namespace, records: list[DecisionRecord]) -> int:
    """Learn ``records`` into the policy's head model and save it as the next version."""
    from bandit.errors import SerendipError
    from bandit.learn.learning import learn_record
    from bandit.serve.ranker import build_model
    from functions.common import model_store
    from functions.common.errors import ServiceError
    from functions.common.personalizer.resource import create_default
    from local.target import configure_target

    target = configure_target(args, required="MODELS_TABLE", command="serendip personalizer")
    try:
        stored = create_default(args.tenant, args.policy)
    except ServiceError as error:
        print(f"serendip personalizer import: {error.detail}", file=sys.stderr)
        return 2
    spec = stored.spec
    if REWARD_TYPE not in spec.rewards.types:
        print(
            f"serendip personalizer import: policy '{spec.name}' values no '{REWARD_TYPE}' "
            "rewards (set them with PUT /configurations/service or in its spec)",
            file=sys.stderr,
        )
        return 2
    records = [r.model_copy(update={"segment": spec.cold_start.segments[0].name}) for r in records]
    if stored.head_version:
        model = model_store.load(args.tenant, spec.name, stored.head_version)
    else:
        model = build_model(spec)
    learned, refused = 0, 0
    for count, record in enumerate(sorted(records, key=lambda r: r.timestamp), start=1):
        if not record.activated:
            continue
        try:
            learn_record(model, record, spec)
            learned += 1
        except SerendipError:
            refused += 1
        if count % PROGRESS_EVERY == 0:
            print(f"  learned {learned} of {count} events", file=sys.stderr)
    try:
        version = model_store.save(args.tenant, spec.name, model, expected_head=stored.head_version)
    except model_store.HeadMovedError:
        print(
            "serendip personalizer import: the policy learned meanwhile; run it again",
            file=sys.stderr,
        )
        return 1
    finally:
        model.close()
    print(
        f"learned {learned} events into {args.tenant}/{spec.name} on {target}: model version "
        f"{version}" + (f" ({refused} events could not be learned)" if refused else ""),
        file=sys.stderr,
    )
    return 0
