"""``serendip import``: another system's log into Serendip's decision log, by a mapping.

``serendip import LOG --mapping mapping.yaml [--out decisions.jsonl] [--inline]
[--skip-invalid]``; the mapping is documented in ``docs/import.md``, with the Open Bandit
Dataset's as the worked example (``examples/obd/mapping.yaml``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from bandit.decision_log import write_jsonl
from bandit.log_import import ImportReport, LogImportError, import_log, load_items, load_mapping
from bandit.log_import import read_rows as read_log_rows

PROGRESS_EVERY = 100_000  # rows between progress lines on stderr


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The ``import`` subcommand."""
    parser = commands.add_parser(
        "import",
        help="convert another system's log (CSV or JSONL) into a decision log, by a mapping",
        description="Convert a CSV or JSONL log into Serendip's decision log (docs/import.md). "
        "Candidates are written once, as catalog snapshot lines the records name, unless "
        "--inline.",
    )
    parser.add_argument("log", type=Path, help="the log to import (CSV with a header, or JSONL)")
    parser.add_argument(
        "--mapping", type=Path, required=True, help="YAML mapping of the log's columns"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="decision log to write (default: stdout)"
    )
    parser.add_argument(
        "--inline", action="store_true", help="embed the candidates in every record instead"
    )
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="leave out rows that cannot be imported (counted by reason) instead of stopping",
    )


def import_command(args: argparse.Namespace) -> int:
    """Run the import; a summary (and any rows set aside) goes to stderr."""
    try:
        mapping, base = load_mapping(args.mapping)
        items = load_items(mapping.items, base) if mapping.items else None
        report = ImportReport()
        rows = _with_progress(read_log_rows(args.log, mapping.format))
        records = import_log(rows, mapping, items, report, skip_invalid=args.skip_invalid)
        if args.out is None:
            write_jsonl(records, sys.stdout, by_reference=not args.inline)
        else:
            _write_whole(
                args.out, lambda sink: write_jsonl(records, sink, by_reference=not args.inline)
            )
    except (LogImportError, OSError) as error:
        print(f"serendip import: {error}", file=sys.stderr)
        return 2
    where = args.out or "stdout"
    print(
        f"imported {report.rows:,} rows as {report.events:,} events ({report.rewards:,} "
        f"rewards, {report.items:,} items) of policy {mapping.policy!r} into {where}",
        file=sys.stderr,
    )
    for reason, count in report.skipped.items():
        print(f"  set aside {count:,} rows: {reason}", file=sys.stderr)
    return 0


def _write_whole(path: Path, write: Callable[[IO[str]], object]) -> None:
    """Write ``path`` through a temporary file: a failed import leaves no partial log."""
    partial = path.with_name(path.name + ".partial")
    try:
        with open(partial, "w", encoding="utf-8") as sink:
            write(sink)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def _with_progress(
    rows: Iterator[tuple[int, dict[str, Any]]],
) -> Iterator[tuple[int, dict[str, Any]]]:
    for count, row in enumerate(rows, start=1):
        if count % PROGRESS_EVERY == 0:
            print(f"  {count:,} rows read", file=sys.stderr)
        yield row
