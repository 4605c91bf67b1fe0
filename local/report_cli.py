"""``serendip report``, the live ``/dashboard`` page and the report ``serendip demo`` writes.

- ``serendip report --logs decisions.jsonl --out report.html [--policy spec.yaml ...]`` writes
  the page (``local.report.build_report``) from an exported decision log.
- ``dashboard_reply(tenant)`` is what the local gateway answers on ``GET /dashboard``: the same
  page built on each request from the running stack's decision store, every policy of the
  tenant, with a 30-second meta refresh. It is a local-stack convenience served by the gateway
  itself, not a Lambda route, and asks for no API key: the local stack listens on loopback.
- ``write_live_report(path, tenant)`` writes that page to a file (the end of ``serendip demo``).

plotly is imported only when a page is built, so other commands start as fast as before.
"""

from __future__ import annotations

import argparse
import sys
from itertools import islice
from pathlib import Path
from typing import Any

from bandit.decision_log import DecisionRecord, read_jsonl
from bandit.spec import PolicySpec, load_spec
from local.gateway import Reply

DASHBOARD_PATH = "/dashboard"
DEFAULT_REPORT = Path("serendip-report.html")
REFRESH_SECONDS = 30
# The dashboard runs in the local stack, under no Lambda timeout, so it reads more of the log
# than one page of the metrics endpoint (``metrics_service.MAX_RECORDS``).
MAX_RECORDS = 50_000


def add_parser(commands: Any) -> None:
    """Register ``serendip report`` on the CLI's subcommands."""
    parser = commands.add_parser(
        "report",
        help="write an HTML report (plots and metrics) from an exported decision log",
        description="Write one self-contained HTML page (plotly.js inlined, no network needed) "
        "with CTR, exploration budget, coverage, diversity, creator exposure and cold vs warm "
        "users over time, and the metrics beside the product brief's ranges.",
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


def live_records(tenant: str) -> tuple[list[DecisionRecord], dict[str, PolicySpec], list[str]]:
    """Every policy's records of ``tenant`` from the decision store (this process's settings).

    Reads at most ``MAX_RECORDS`` per policy, oldest first; the notes say when a policy was cut
    short.
    """
    from functions.common import decision_store, policy_store

    records: list[DecisionRecord] = []
    specs: dict[str, PolicySpec] = {}
    notes: list[str] = []
    for stored in policy_store.list_policies(tenant):
        name = stored.spec.name
        specs[name] = stored.spec
        logged = list(islice(decision_store.export(tenant, name), MAX_RECORDS + 1))
        if len(logged) > MAX_RECORDS:
            notes.append(f"{name}: only the oldest {MAX_RECORDS:,} decisions are shown")
            logged = logged[:MAX_RECORDS]
        records.extend(logged)
    return records, specs, notes


def live_report(
    tenant: str, *, title: str = "Serendip dashboard", refresh_seconds: int | None = None
) -> str:
    """The report page of the tenant's decision log, as the running stack has it now."""
    from local.report import build_report

    records, specs, notes = live_records(tenant)
    return build_report(
        records,
        specs,
        title=f"{title}: tenant {tenant}",
        refresh_seconds=refresh_seconds,
        notes=notes,
    )


def dashboard_reply(tenant: str) -> Reply:
    """``GET /dashboard``: the live report as ``text/html``, refreshing itself every 30 s."""
    page = live_report(tenant, refresh_seconds=REFRESH_SECONDS)
    headers = [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")]
    return Reply(200, headers, page.encode("utf-8"))


def write_live_report(path: Path, tenant: str) -> Path:
    """Write the tenant's live report to ``path``; return its absolute path."""
    page = live_report(tenant, title="Serendip report")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path.resolve()
