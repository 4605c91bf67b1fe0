"""``serendip export`` (decision log out of DynamoDB) and ``serendip evaluate`` (offline).

- ``serendip export --policy P [--tenant T] [--since T] [--by-reference] [--stack NAME]
  > decisions.jsonl``
  (or ``--url URL`` / ``--cfn-stack NAME``: see ``local.target``)
- ``serendip evaluate --logs decisions.jsonl --policy A.yaml --policy B.yaml [--method dr]
  [--interval el]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bandit.decision_log import read_jsonl, write_jsonl
from bandit.evaluate.intervals import INTERVALS, IntervalMethod
from bandit.evaluate.ope import Estimate, Method
from bandit.evaluate.propensity_table import PropensityTable, load_table
from bandit.evaluate.replay import Evaluation, evaluate
from bandit.spec import PolicySpec, load_spec
from local.target import add_target_arguments

EVALUATE_METHODS = ("snips", "ips", "dm", "dr")


def export(args: argparse.Namespace) -> int:
    """Write the policy's decision records as JSONL to stdout."""
    from functions.common import decision_store
    from local.target import configure_target

    target = configure_target(args, required="DECISIONS_TABLE", command="serendip export")
    records = decision_store.export(args.tenant, args.policy, args.since)
    count = write_jsonl(records, sys.stdout, by_reference=getattr(args, "by_reference", False))
    print(
        f"exported {count} decisions of {args.tenant}/{args.policy} from {target}", file=sys.stderr
    )
    return 0


def candidates(paths: list[Path]) -> dict[str, PolicySpec]:
    """Candidate specs by name (the file name when two specs share a policy name)."""
    specs = [(path, load_spec(path)) for path in paths]
    names = [spec.name for _, spec in specs]
    return {(spec.name if names.count(spec.name) == 1 else path.stem): spec for path, spec in specs}


def propensity_tables(given: list[str]) -> dict[str, PropensityTable]:
    """``NAME=FILE`` arguments as named propensity tables (``bandit.evaluate.propensity_table``)."""
    tables = {}
    for text in given:
        name, sep, path = text.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"serendip evaluate: --propensities wants NAME=FILE, got {text!r}")
        try:
            tables[name] = load_table(path)
        except (OSError, ValueError) as error:
            raise SystemExit(f"serendip evaluate: {error}") from error
    return tables


def _interval(value: Estimate) -> str:
    return f"{value.value:.4f}  [{value.low:.4f}, {value.high:.4f}]"


def reliability_lines(result: Evaluation) -> list[str]:
    """Per candidate: its first-slot interval method and diagnostics, then any warning."""
    lines = []
    for value in result.candidates:
        first = value.first_slot
        line = f"{value.name}: first-slot interval {first.interval}"
        if first.ess is not None:
            line += (
                f", effective sample size {first.ess:,.0f} of {first.n:,} events, the "
                f"{min(10, first.n)} largest weighted rewards carry {first.top_10_share:.0%} of "
                "the estimate (top 1%: "
                f"{first.top_1pct_share:.0%})"
            )
        lines.append(line)
        if first.warning:
            lines.append(f"  [yellow]{first.warning}[/yellow]")
    return lines


def evaluation_table(result: Evaluation) -> Table:
    """Each candidate's estimated value per first slot and per slate, with 95% intervals."""
    table = Table(title=f"Counterfactual evaluation on {result.events:,} logged events")
    # Marginal logs' first logged slot may be at any position (one row per position): its value
    # is the value per logged slot.
    first = "first slot" if result.propensities == "conditional" else "first logged slot"
    for column in ("policy", f"{first}: value [95% CI]", "slate: value [95% CI]", "unsupported"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for value in result.candidates:
        table.add_row(
            value.name, _interval(value.first_slot), _interval(value.slate), str(value.unsupported)
        )
    table.add_row(
        "logging policy (observed)",
        f"{result.logged_first_slot:.4f}",
        f"{result.logged_slate:.4f}",
        "-",
    )
    return table


def evaluate_command(args: argparse.Namespace, console: Console) -> int:
    """Replay the log through each candidate and say which is better, if any is with confidence.

    Traps found in the log (``Evaluation.warnings``) are printed to stderr, one line per kind.
    """
    specs = candidates(args.policy or [])
    tables = propensity_tables(getattr(args, "propensities", None) or [])
    if not specs and not tables:
        raise SystemExit("serendip evaluate: give at least one --policy or --propensities")
    method: Method = getattr(args, "method", "snips")  # namespaces from before --method
    interval: IntervalMethod | None = getattr(args, "interval", None)
    if tables and method not in ("snips", "ips"):
        raise SystemExit(
            f"serendip evaluate: --propensities takes --method snips or ips, not {method}"
        )
    try:
        result = evaluate(
            read_jsonl(args.logs),
            specs,
            alpha=args.alpha,
            method=method,
            interval=interval,
            tables=tables,
        )
    except (OSError, ValueError) as error:  # a log, spec or setting that cannot be evaluated
        print(f"serendip evaluate: {error}", file=sys.stderr)
        return 2
    console.print(evaluation_table(result))
    for line in reliability_lines(result):
        console.print(line)
    console.print(f"first-slot estimator: {method}")
    if result.propensities != "conditional":
        console.print(
            f"propensities: {result.propensities} (per position): each slot is valued by the "
            "candidate's marginal probability of its item at its position (docs/evaluation.md)"
        )
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if len(result.candidates) < 2:
        only = result.candidates[0]
        console.print(f"{only.name}: estimated first-slot value {only.first_slot.value:.4f}")
        return 0
    first_label = (
        "first-slot value (reward model)" if method == "dm" else "first-slot value (unbiased)"
    )
    for basis, label in (("first_slot", first_label), ("slate", "slate value")):
        best, confident = result.best(basis)
        if confident:
            console.print(
                f"better by {label}: [bold]{best.name}[/bold] (its 95% interval lies above "
                "every other candidate's)"
            )
        else:
            console.print(f"by {label}: highest {best.name}, but the intervals overlap")
    return 0


def add_parsers(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The ``export`` and ``evaluate`` subcommands."""
    export_parser = commands.add_parser("export", help="write a policy's decision log as JSONL")
    export_parser.add_argument("--policy", required=True, help="policy name")
    export_parser.add_argument("--tenant", default="demo", help="tenant (default: demo)")
    export_parser.add_argument("--since", type=float, default=0.0, help="unix seconds")
    export_parser.add_argument(
        "--by-reference",
        action="store_true",
        help="write each distinct candidate list once, as a snapshot line the records name "
        "(docs/decision-log.md); every reader of the log reads both forms",
    )
    add_target_arguments(export_parser)
    evaluate_parser = commands.add_parser(
        "evaluate", help="estimate what candidate policies would have earned on a decision log"
    )
    evaluate_parser.add_argument("--logs", type=Path, required=True, help="decisions JSONL")
    evaluate_parser.add_argument(
        "--policy", type=Path, action="append", help="candidate spec (repeat)"
    )
    evaluate_parser.add_argument(
        "--propensities",
        action="append",
        metavar="NAME=FILE",
        help="a policy given by its probabilities: a CSV of item_id, position, probability "
        "[, event_id] (repeat; snips or ips)",
    )
    evaluate_parser.add_argument("--alpha", type=float, default=0.05, help="1 - confidence")
    evaluate_parser.add_argument(
        "--method",
        choices=EVALUATE_METHODS,
        default="snips",
        help="first-slot estimator; dm and dr fit a cross-fitted reward model on the log "
        "(default: snips)",
    )
    evaluate_parser.add_argument(
        "--interval",
        choices=INTERVALS,
        default=None,
        help="first-slot interval: normal (CLT, bounded), el (empirical likelihood; snips and "
        "ips only) or bootstrap (default: normal)",
    )
