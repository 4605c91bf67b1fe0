"""``serendip report``, the live ``/dashboard`` page and the report ``serendip demo`` writes.

- ``serendip report --logs decisions.jsonl --out report.html [--policy spec.yaml ...]`` writes
  the page (``local.report.build_report``) from an exported decision log.
- ``live_records(tenant)`` reads the running stack's decision log, bounded, for the live
  dashboard (``local.dashboard``, served by the gateway at ``GET /dashboard``).
- ``write_live_report(path, dashboard)`` writes the dashboard's page as one self-contained file
  (the end of ``serendip demo``).

plotly is imported only when a page is built, so other commands start as fast as before.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bandit.decision_log import DecisionRecord, read_jsonl
from bandit.spec import PolicySpec, load_spec

if TYPE_CHECKING:
    from local.dashboard import LiveDashboard

DEFAULT_REPORT = Path("serendip-report.html")
# The dashboard runs in the local stack, under no Lambda timeout, so it reads more of the log
# than one page of the metrics endpoint (``metrics_service.MAX_RECORDS``).
MAX_RECORDS = 50_000


def add_parser(commands: Any) -> None:
    """Register ``serendip report`` on the CLI's subcommands."""
    parser = commands.add_parser(
        "report",
        help="write an HTML report (plots and metrics) from an exported decision log",
        description="Write one self-contained HTML page (plotly.js inlined, no network needed): "
        "per policy whether it is learning (its first slot against a random pick, from the "
        "log's learned events), then CTR, exploration budget, coverage, diversity, creator "
        "exposure and cold vs warm users over time, and the metrics beside the product brief's "
        "ranges. A decision log keeps no latencies: the page says so.",
    )
    parser.add_argument(
        "--logs", type=Path, required=True, help="decision log (JSONL, oldest first)"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_REPORT, help=f"page to write (default {DEFAULT_REPORT})"
    )
    parser.add_argument(
        "--policy",
        type=Path,
        action="append",
        default=[],
        help="a policy spec (YAML) to value its rewards; repeat for several (default: defaults)",
    )
    parser.add_argument("--title", default=None, help="the page's title")


def report_command(args: argparse.Namespace) -> int:
    """Run ``serendip report``: read the log and the specs, write the page, print its path."""
    from local.report import DEFAULT_TITLE, build_report

    try:
        specs = {spec.name: spec for spec in (load_spec(path) for path in args.policy)}
        records = list(read_jsonl(args.logs))
    except (OSError, ValueError) as error:
        print(f"serendip report: {error}", file=sys.stderr)
        return 2
    page = build_report(records, specs, title=args.title or DEFAULT_TITLE)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    print(out.resolve())
    return 0


def live_records(
    tenant: str, specs: Mapping[str, PolicySpec] | None = None
) -> tuple[list[DecisionRecord], dict[str, PolicySpec], list[str]]:
    """Every policy's records of ``tenant`` from the decision store (this process's settings).

    ``specs``: the tenant's policies, if already read. Reads at most ``MAX_RECORDS`` per policy,
    oldest first; the notes say when a policy was cut short.
    """
    from functions.common import decision_store, policy_store

    if specs is None:
        specs = {stored.spec.name: stored.spec for stored in policy_store.list_policies(tenant)}
    records: list[DecisionRecord] = []
    notes: list[str] = []
    for name in specs:
        logged = list(islice(decision_store.export(tenant, name), MAX_RECORDS + 1))
        if len(logged) > MAX_RECORDS:
            notes.append(f"{name}: only the oldest {MAX_RECORDS:,} decisions are shown")
            logged = logged[:MAX_RECORDS]
        records.extend(logged)
    return records, dict(specs), notes


def write_live_report(path: Path, dashboard: LiveDashboard) -> Path:
    """Write the dashboard's page as one self-contained file to ``path``; return its absolute
    path."""
    page = dashboard.page(live=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path.resolve()
