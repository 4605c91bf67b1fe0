"""The HTML report: one self-contained page whose plots and table carry the log's numbers."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from plotly.offline import get_plotlyjs

from bandit.decision_log import (
    DecisionRecord,
    ExplorationLog,
    LoggedCandidate,
    LoggedReward,
    LoggedSlot,
    write_jsonl,
)
from bandit.evaluate.metrics import compute, windows
from bandit.evaluate.metrics_exposure import gini
from bandit.simulate.arena import simulated_logs
from bandit.spec import PolicySpec, load_spec
from functions.common.metrics_service import BENCHMARKS
from local.cli import main
from local.gateway import Gateway, Reply
from local.report import PLOT_IDS, build_report, range_text
from local.report_plots import lorenz_points, policy_series, window_seconds

ROOT = Path(__file__).resolve().parents[2]
SPECS = {name: load_spec(ROOT / "policies" / f"{name}.yaml") for name in ("for-you", "explore")}


@pytest.fixture(scope="module")
def records() -> list[DecisionRecord]:
    return simulated_logs(SPECS["for-you"], 300) + simulated_logs(SPECS["explore"], 300)


@pytest.fixture(scope="module")
def page(records: list[DecisionRecord]) -> str:
    return build_report(records, SPECS)


class _Tags(HTMLParser):
    """Every start tag with its attributes (script bodies are data, not tags)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(page)
    return parser.tags


def plot_traces(page: str) -> dict[str, list[dict[str, Any]]]:
    """The traces each plot div hands to ``Plotly.newPlot``, by ``data-plot`` name."""
    found = {}
    decoder = json.JSONDecoder()
    for match in re.finditer(r'Plotly\.newPlot\(\s*"plot-(\w+)-figure",\s*', page):
        traces, _ = decoder.raw_decode(page, match.end())
        found[match.group(1)] = traces
    return found


def trace(traces: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(t for t in traces if t["name"] == name)


def test_the_page_is_one_html_document_with_plotly_inlined_once(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<html") == 1 and page.count("</html>") == 1
    assert page.count(get_plotlyjs()) == 1
    assert len(re.findall(r'Plotly\.newPlot\(\s*"plot-', page)) == len(PLOT_IDS)


def test_the_page_loads_nothing_from_the_network(page: str) -> None:
    for tag, attributes in tags(page):
        for name in ("src", "href"):
            value = attributes.get(name) or ""
            assert not value.startswith(("http:", "https:", "//")), (tag, name, value)
    scripts = [attributes for tag, attributes in tags(page) if tag == "script"]
    assert scripts and all("src" not in attributes for attributes in scripts)


def test_every_plot_div_is_there_with_trace_data(page: str) -> None:
    divs = [a for tag, a in tags(page) if tag == "div" and a.get("class") == "serendip-plot"]
    assert [div["data-plot"] for div in divs] == list(PLOT_IDS)
    traces = plot_traces(page)
    assert set(traces) == set(PLOT_IDS)
    for name, plotted in traces.items():
        with_data = [t for t in plotted if any(v is not None for v in t.get("y", []))]
        assert with_data, name


def test_ctr_plot_draws_each_policys_windows_and_its_exploratory_baseline(
    records: list[DecisionRecord], page: str
) -> None:
    traces = plot_traces(page)["ctr"]
    seconds = window_seconds(records[0].timestamp, records[-1].timestamp)
    for policy, spec in SPECS.items():
        logged = [r for r in records if r.policy == policy]
        expected = [w.metrics.ctr for w in windows(logged, spec, seconds)]
        assert trace(traces, f"{policy} CTR")["y"] == pytest.approx(expected)
        baseline = trace(traces, f"{policy} exploratory slots (baseline)")["y"]
        assert len(baseline) == len(expected)
        assert any(value is not None for value in baseline)


def test_budget_plot_has_the_logged_targets_per_segment(page: str) -> None:
    traces = plot_traces(page)["budget"]
    for policy, spec in SPECS.items():
        for segment, target in spec.budgets().items():
            targets = trace(traces, f"{policy} / {segment} target")["y"]
            assert targets == pytest.approx([target] * len(targets))
            realised = trace(traces, f"{policy} / {segment} realised")["y"]
            assert all(0.0 <= share <= 1.0 for share in realised)


def test_lorenz_curve_and_gini_match_the_metrics(records: list[DecisionRecord], page: str) -> None:
    traces = plot_traces(page)["lorenz"]
    assert trace(traces, "equality")["y"] == [0, 1]
    for policy, spec in SPECS.items():
        expected = compute([r for r in records if r.policy == policy], spec).exposure.creator_gini
        assert expected is not None
        curve = trace(traces, f"{policy} (Gini {expected:.2f})")
        assert curve["x"][0] == 0.0 and curve["x"][-1] == pytest.approx(1.0)
        assert curve["y"][-1] == pytest.approx(1.0)
        assert curve["y"] == sorted(curve["y"])  # least exposed creators first


def test_cold_warm_plot_has_each_policys_segment_ctrs(
    records: list[DecisionRecord], page: str
) -> None:
    traces = plot_traces(page)["cold_warm"]
    totals = {p: compute([r for r in records if r.policy == p], s) for p, s in SPECS.items()}
    cold, warm = trace(traces, "first segment (new users)"), trace(traces, "other segments")
    assert cold["x"] == warm["x"] == sorted(SPECS)
    assert cold["y"] == pytest.approx([totals[p].cold_ctr for p in cold["x"]])
    assert warm["y"] == pytest.approx([totals[p].warm_ctr for p in warm["x"]])


def test_metrics_table_lists_each_metric_next_to_its_range(
    records: list[DecisionRecord], page: str
) -> None:
    table = page[page.index('<table class="metrics">') : page.index("</table>")]
    for metric in BENCHMARKS:
        row = re.search(rf'<tr data-metric="{metric}">(.*?)</tr>', table)
        assert row is not None, metric
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
        assert cells[1] == range_text(metric) != ""
        assert len(cells) == 2 + len(SPECS)
    assert range_text("ctr") == "5-20%" and range_text("p95_latency_ms") == "< 200 ms"
    ctr_row = re.search(r'<tr data-metric="ctr">(.*?)</tr>', table)
    assert ctr_row is not None
    for policy in sorted(SPECS):  # columns by policy name
        ctr = compute([r for r in records if r.policy == policy], SPECS[policy]).ctr
        assert ctr is not None and f"{ctr:.1%}</td>" in ctr_row.group(1)


def test_an_empty_log_gives_a_no_decisions_page() -> None:
    page = build_report([], title="Nothing here")
    assert "no decisions yet" in page.lower()
    assert page.count("<html") == 1
    assert "<script" not in page and 'class="serendip-plot"' not in page


def test_policies_without_a_spec_use_defaults_and_order_does_not_matter(
    records: list[DecisionRecord],
) -> None:
    page = build_report(list(reversed(records)), refresh_seconds=30)
    assert '<meta http-equiv="refresh" content="30">' in page
    assert "default reward specs (no spec given): explore, for-you" in page
    assert set(plot_traces(page)) == set(PLOT_IDS)


def _record(
    event: str, at: float, segment: str, explored: list[bool], clicked: set[str]
) -> DecisionRecord:
    items = [f"i{n}" for n in range(len(explored))]
    return DecisionRecord(
        event_id=event,
        policy="p",
        timestamp=at,
        segment=segment,
        candidates=[LoggedCandidate(id=i, creator=f"c{n % 2}") for n, i in enumerate(items)]
        + [LoggedCandidate(id="spare", creator="c9")],
        slate=[
            LoggedSlot(item_id=i, position=n + 1, probability=0.5, explored=e)
            for n, (i, e) in enumerate(zip(items, explored, strict=True))
        ],
        rewards=[LoggedReward(item_id=i, type="click", timestamp=at + 1) for i in clicked],
        seed=0,
        exploration=ExplorationLog(budget=0.1 if segment == "cold" else 0.2, rate=0.1),
    )


def test_policy_series_counts_exploratory_slots_budgets_and_creators() -> None:
    records = [
        _record("e1", 0.0, "cold", [True, False], {"i0"}),
        _record("e2", 1.0, "warm", [True, True, False, False], {"i1", "i2"}),
        _record("e3", 12.0, "warm", [False, False], {"i0"}),
    ]
    series = policy_series(records, PolicySpec(name="p"), seconds=10)
    # window [0, 10): 3 exploratory slots, 2 clicked (e1 i0, e2 i1); window [10, 20): none
    assert series.explored_ctr == [pytest.approx(2 / 3), None]
    assert [w.metrics.ctr for w in series.windows] == [pytest.approx(3 / 6), 0.5]
    cold, warm = series.budget["cold"], series.budget["warm"]
    assert [(p.start, p.target, p.realised) for p in cold] == [(0, 0.1, 0.5)]
    assert [(p.start, p.target, p.realised) for p in warm] == [(0, 0.2, 0.5), (10, 0.2, 0.0)]
    # creators offered c0, c1, c9; shown slots: c0 = 1 + 2 + 1, c1 = 1 + 2 + 1, c9 never
    assert series.creator_slots == [4, 4, 0]
    assert series.segment_slots == {"cold": 2, "warm": 6}
    assert series.total.exposure.creator_gini == pytest.approx(gini([4, 4, 0]))


def test_lorenz_points_and_window_lengths() -> None:
    assert lorenz_points([]) == ([], [])
    assert lorenz_points([0, 0]) == ([], [])
    assert lorenz_points([2, 2]) == ([0.0, 0.5, 1.0], [0.0, 0.5, 1.0])
    assert window_seconds(0, 19) == 1 and window_seconds(0, 3600 * 20) == 3600


def test_report_command_writes_the_page_and_prints_its_path(
    records: list[DecisionRecord], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = tmp_path / "decisions.jsonl"
    with logs.open("w", encoding="utf-8") as sink:
        write_jsonl(records, sink)
    out = tmp_path / "out" / "report.html"
    policy = str(ROOT / "policies" / "for-you.yaml")
    assert main(["report", "--logs", str(logs), "--out", str(out), "--policy", policy]) == 0
    assert capsys.readouterr().out.strip() == str(out.resolve())
    page = out.read_text(encoding="utf-8")
    assert set(plot_traces(page)) == set(PLOT_IDS)
    assert "default reward specs (no spec given): explore" in page


def test_report_command_rejects_a_malformed_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = tmp_path / "bad.jsonl"
    logs.write_text("{not json\n", encoding="utf-8")
    out = tmp_path / "report.html"
    assert main(["report", "--logs", str(logs), "--out", str(out)]) == 2
    assert "decision log line 1" in capsys.readouterr().err
    assert not out.exists()


def test_gateway_answers_its_pages_on_get_and_head_only() -> None:
    served: list[str] = []

    def page() -> Reply:
        served.append("dashboard")
        return Reply(200, [("Content-Type", "text/html; charset=utf-8")], b"<html></html>")

    gateway = Gateway([], {"/dashboard": page})
    reply = gateway.dispatch("GET", "/dashboard?refresh=1", [], b"")
    assert (reply.status, reply.body) == (200, b"<html></html>")
    assert gateway.dispatch("HEAD", "/dashboard", [], b"").status == 200
    assert gateway.dispatch("POST", "/dashboard", [], b"").status == 404
    assert gateway.dispatch("GET", "/dashboard/x", [], b"").status == 404
    assert served == ["dashboard", "dashboard"]
    assert gateway.wait_idle(timeout=1.0)
