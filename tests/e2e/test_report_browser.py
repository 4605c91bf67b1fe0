"""The report rendered by a real browser: Debian's headless chromium draws every plot.

A report file written from simulated decisions, and the live ``/dashboard`` of the local stack
after traffic went through it, are opened in ``chromium --headless --dump-dom``; every
``serendip-plot`` div must then hold plotly's rendered SVG with at least one drawn trace. The
live page must also have applied a data refresh (``body[data-refreshes]``, in chromium's virtual
time), and show each policy's verdict badge first, the latencies the gateway measured and the
queues, a DLQ holding a message in red.
``make test`` installs chromium (``make browser``); without it on PATH these tests skip.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import boto3
import pytest

from bandit.simulate.arena import simulated_logs
from local.client import SerendipClient
from local.dashboard import plotly_path
from local.demo import run_demo
from local.report import PLOT_IDS, build_report
from local.stack import LocalStack
from tests.unit.test_report import SPECS

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not on PATH (`make browser` installs it)"
)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
    "--window-size=1280,2400",
)
STATES = frozenset({"learning", "not_learning", "worse", "too_early", "no_rewards"})
VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)
TRACE_LAYERS = frozenset({"scatterlayer", "barlayer"})


def dump_dom(url: str, profile: Path, virtual_ms: int = 10_000) -> str:
    """The DOM of ``url`` after chromium ran its scripts for ``virtual_ms`` of virtual time."""
    assert CHROMIUM is not None
    done = subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--virtual-time-budget={virtual_ms}",
            f"--user-data-dir={profile}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class RenderedPlots(HTMLParser):
    """Per ``serendip-plot`` div: plotly SVGs and trace paths (non-empty ``d``) drawn in it."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[tuple[str, set[str], str | None]] = []  # tag, classes, plot name
        self.svgs: dict[str, int] = {}
        self.trace_paths: dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._element(tag, dict(attrs), closes=tag in VOID)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._element(tag, dict(attrs), closes=True)

    def _element(self, tag: str, attrs: dict[str, str | None], *, closes: bool) -> None:
        classes = set((attrs.get("class") or "").split())
        name = attrs.get("data-plot") if "serendip-plot" in classes else None
        if name is not None:
            self.svgs.setdefault(name, 0)
            self.trace_paths.setdefault(name, 0)
        plot = name or next((p for _, _, p in reversed(self.open) if p is not None), None)
        if plot is not None:
            self.svgs[plot] += tag == "svg" and "main-svg" in classes
            in_traces = any(TRACE_LAYERS & layer for _, layer, _ in self.open)
            drawn = (attrs.get("d") or "").strip() not in ("", "M0,0Z")
            self.trace_paths[plot] += tag == "path" and in_traces and drawn
        if not closes:
            self.open.append((tag, classes, plot))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.open) - 1, -1, -1):
            if self.open[depth][0] == tag:
                del self.open[depth:]
                return


def assert_every_plot_rendered(dom: str, policies: int) -> None:
    """Every shared plot, and one progress plot per policy, drew an SVG with a trace."""
    scan = RenderedPlots()
    scan.feed(dom)
    assert sorted(scan.svgs) == sorted([*PLOT_IDS, "progress"]), "plot divs missing"
    for plot in PLOT_IDS:
        assert scan.svgs[plot] >= 1, f"{plot}: plotly drew no SVG"
        assert scan.trace_paths[plot] >= 1, f"{plot}: no trace with data was drawn"
    assert scan.svgs["progress"] >= policies, "a progress plot drew no SVG"
    assert scan.trace_paths["progress"] >= policies, "a progress plot drew no trace"


def test_a_report_file_renders_every_plot_offline(tmp_path: Path) -> None:
    records = simulated_logs(SPECS["for-you"], 200) + simulated_logs(SPECS["explore"], 200)
    report = tmp_path / "report.html"
    report.write_text(build_report(records, SPECS), encoding="utf-8")
    dom = dump_dom(report.as_uri(), tmp_path / "profile")
    assert_every_plot_rendered(dom, policies=2)
    assert dom.count('class="badge tone-') == 2  # each policy's verdict, first in its section


def fetch(url: str) -> tuple[bytes, dict[str, str]]:
    with urllib.request.urlopen(url, timeout=120) as response:
        assert response.status == 200
        return response.read(), dict(response.headers)


def refreshed_dom(url: str, profile: Path, deadline_seconds: float = 300.0) -> str:
    """The dashboard's DOM once its script applied at least one data refresh.

    Each try gives chromium more virtual time (the page refreshes every 30 virtual seconds),
    until the page says a refresh was applied or the deadline passes.
    """
    deadline = time.monotonic() + deadline_seconds
    budget = 45_000
    while True:
        dom = dump_dom(url, profile, virtual_ms=budget)
        found = re.search(r'<body[^>]*data-refreshes="(\d+)"', dom)
        if found is not None and int(found.group(1)) >= 1:
            return dom
        assert time.monotonic() < deadline, "the dashboard never applied a data refresh"
        budget *= 2


def test_the_live_dashboard_shows_learning_latency_and_queues(
    stack: LocalStack, tmp_path: Path
) -> None:
    client = SerendipClient(stack.url, stack.api_key, stack.webhook_secret)
    run = run_demo(client, policy="explore", decisions=40, seconds=60.0, seed=5)
    assert run.errors == 0, run.failures
    stack.drain()
    sqs = boto3.client("sqs", region_name=stack.region)
    dlq = stack.resources["REWARD_DLQ_URL"]
    sqs.send_message(QueueUrl=dlq, MessageBody='{"dashboard": "dead letter"}')
    try:
        # no API key: the dashboard is the local stack's own page, on loopback
        page, headers = fetch(f"{stack.url}/dashboard")
        assert headers["Content-Type"].startswith("text/html")
        assert b'http-equiv="refresh"' not in page and len(page) < 1_000_000
        script = plotly_path().encode()
        assert b'<script src="' + script + b'">' in page
        data, headers = fetch(f"{stack.url}/dashboard/data.json")
        assert headers["Content-Type"] == "application/json" and len(data) < 200_000
        policies = json.loads(data)["policies"]
        assert policies["explore"]["verdict"]["state"] in STATES
        assert policies["explore"]["latency"][0]["count"] >= len(run.slots)
        _, headers = fetch(stack.url + plotly_path())
        assert "max-age=31536000" in headers["Cache-Control"]

        dom = refreshed_dom(f"{stack.url}/dashboard", tmp_path / "profile")
        assert_every_plot_rendered(dom, policies=1)
        section = re.search(r'<section class="policy" data-policy="explore".*?</section>', dom)
        assert section is not None
        explore = section.group(0)
        verdict = re.search(r'<span class="badge tone-(good|bad|warn|wait)">', explore)
        assert verdict is not None and explore.index(verdict.group(0)) < explore.index("<svg")
        latency = re.search(
            r"rank: p50 (\d+) ms, .*?p95 (\d+) ms</span> over the last ([\d,]+)", explore
        )
        assert latency is not None, explore[-1500:]
        assert int(latency.group(2)) >= int(latency.group(1)) >= 0
        assert int(latency.group(3).replace(",", "")) >= len(run.slots)
        rows = dict(re.findall(r'<tr data-queue="([\w ]+)" data-state="(\w+)">', dom))
        assert rows == {
            "reward queue": "ok",
            "learn queue": "ok",
            "reward DLQ": "bad",
            "learn DLQ": "ok",
        }
        dead = re.search(r'<tr data-queue="reward DLQ".*?</tr>', dom)
        assert dead is not None and re.search(r"<td>(&lt; 1 s|\d+ s)</td></tr>", dead.group(0))
    finally:
        for message in sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            sqs.delete_message(QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"])
