"""The report rendered by a real browser: Debian's headless chromium draws every plot.

A report file written from simulated decisions, and the live ``/dashboard`` of the local stack
after traffic went through it, are opened in ``chromium --headless --dump-dom``; every
``serendip-plot`` div must then hold plotly's rendered SVG with at least one drawn trace.
``make test`` installs chromium (``make browser``); without it on PATH these tests skip.
"""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bandit.simulate.arena import simulated_logs
from local.client import SerendipClient
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
    "--virtual-time-budget=10000",
)
VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)
TRACE_LAYERS = frozenset({"scatterlayer", "barlayer"})


def dump_dom(url: str, profile: Path) -> str:
    """The DOM of ``url`` after chromium ran its scripts, serialised."""
    assert CHROMIUM is not None
    done = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=60,
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


def assert_every_plot_rendered(dom: str) -> None:
    scan = RenderedPlots()
    scan.feed(dom)
    assert sorted(scan.svgs) == sorted(PLOT_IDS), "plot divs missing from the rendered page"
    for plot in PLOT_IDS:
        assert scan.svgs[plot] >= 1, f"{plot}: plotly drew no SVG"
        assert scan.trace_paths[plot] >= 1, f"{plot}: no trace with data was drawn"


def test_a_report_file_renders_every_plot_offline(tmp_path: Path) -> None:
    records = simulated_logs(SPECS["for-you"], 200) + simulated_logs(SPECS["explore"], 200)
    report = tmp_path / "report.html"
    report.write_text(build_report(records, SPECS), encoding="utf-8")
    dom = dump_dom(report.as_uri(), tmp_path / "profile")
    assert_every_plot_rendered(dom)


def test_the_live_dashboard_renders_the_stacks_traffic(stack: LocalStack, tmp_path: Path) -> None:
    client = SerendipClient(stack.url, stack.api_key, stack.webhook_secret)
    run = run_demo(client, policy="explore", decisions=40, seconds=60.0, seed=5)
    assert run.errors == 0, run.failures
    stack.drain()
    # no API key: the dashboard is the local stack's own page, on loopback
    with urllib.request.urlopen(f"{stack.url}/dashboard", timeout=60) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")
        page = response.read().decode("utf-8")
    assert '<meta http-equiv="refresh" content="30">' in page
    assert "explore exploratory slots (baseline)" in page
    dom = dump_dom(f"{stack.url}/dashboard", tmp_path / "profile")
    assert_every_plot_rendered(dom)
