"""The HTML report: one self-contained page whose plots and table carry the log's numbers."""

from __future__ import annotations

import html
import json
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
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
from bandit.evaluate.metrics_exposure import gini, p95
from bandit.simulate.arena import simulated_logs
from bandit.spec import PolicySpec, load_spec
from functions.common.metrics_service import BENCHMARK_DIRECTIONS, BENCHMARKS
from local.cli import main
from local.dashboard import LOG_MAX_AGE_SECONDS, LiveDashboard, dashboard_data, plotly_path
from local.gateway import Gateway, Reply, Route
from local.gateway_latency import LatencyWindows
from local.lambda_events import LocalFunction
from local.queue_health import QueueHealth
from local.report import PLOT_IDS, build_report, ctr_caption, log_view, page_parts
from local.report_page import render
from local.report_plots import exploration_label, lorenz_points, policy_series, window_seconds
from local.report_progress import from_answer, verdict_html
from local.report_stack import StackView
from local.report_table import judge, range_text

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


def embedded(page: str) -> dict[str, Any]:
    """The data the page's script draws from (``<script id="serendip-data">``)."""
    match = re.search(r'<script type="application/json" id="serendip-data">(.*?)</script>', page)
    assert match is not None, "the page embeds no data"
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def plot_traces(page: str) -> dict[str, list[dict[str, Any]]]:
    """The traces of each figure the page draws, by plot name (``progress-POLICY`` for the
    progress plots)."""
    figures = embedded(page)["figures"]
    return {key[len("plot-") : -len("-figure")]: figure["data"] for key, figure in figures.items()}


def trace(traces: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(t for t in traces if t["name"] == name)


def test_the_page_is_one_html_document_with_plotly_inlined_once(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<html") == 1 and page.count("</html>") == 1
    assert page.count(get_plotlyjs()) == 1
    # one figure per shared plot and one progress plot per policy, none refreshing itself
    assert len(embedded(page)["figures"]) == len(PLOT_IDS) + len(SPECS)
    assert "data-refresh=" not in page and 'http-equiv="refresh"' not in page


def test_the_page_loads_nothing_from_the_network(page: str) -> None:
    for tag, attributes in tags(page):
        for name in ("src", "href"):
            value = attributes.get(name) or ""
            assert not value.startswith(("http:", "https:", "//")), (tag, name, value)
    scripts = [attributes for tag, attributes in tags(page) if tag == "script"]
    assert scripts and all("src" not in attributes for attributes in scripts)


def test_every_plot_div_is_there_with_trace_data(page: str) -> None:
    divs = [a for tag, a in tags(page) if tag == "div" and a.get("class") == "serendip-plot"]
    assert [div["data-plot"] for div in divs] == ["progress"] * len(SPECS) + list(PLOT_IDS)
    assert [div.get("data-policy") for div in divs[: len(SPECS)]] == sorted(SPECS)
    traces = plot_traces(page)
    assert set(traces) == {*PLOT_IDS, *(f"progress-{policy}" for policy in SPECS)}
    drawn_in = {a["id"] for tag, a in tags(page) if tag == "div" and a.get("id")}
    assert {f"plot-{name}-figure" for name in traces} <= drawn_in
    for name, plotted in traces.items():
        with_data = [t for t in plotted if any(v is not None for v in t.get("y", []))]
        assert with_data, name


def test_ctr_plot_draws_each_policys_windows_and_its_exploratory_slots(
    records: list[DecisionRecord], page: str
) -> None:
    traces = plot_traces(page)["ctr"]
    seconds = window_seconds(records[0].timestamp, records[-1].timestamp)
    for policy, spec in SPECS.items():
        logged = [r for r in records if r.policy == policy]
        expected = [w.metrics.ctr for w in windows(logged, spec, seconds)]
        assert trace(traces, f"{policy} CTR")["y"] == pytest.approx(expected)
        how = exploration_label(str(spec.exploration.algorithm))
        explored = trace(traces, f"{policy} exploratory slots ({how})")["y"]
        assert len(explored) == len(expected)
        assert any(value is not None for value in explored)


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
    start = page.index('<table class="metrics">')
    table = page[start : page.index("</table>", start)]
    for metric in BENCHMARKS:
        row = re.search(rf'<tr data-metric="{metric}">(.*?)</tr>', table)
        assert row is not None, metric
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
        assert cells[1] == range_text(metric) != ""
        assert cells[2] in ("higher is better", "lower is better", "target band")
        assert len(cells) == 3 + len(SPECS)
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
    page = build_report(list(reversed(records)))
    assert "default reward specs (no spec given): explore, for-you" in page
    assert set(plot_traces(page)) == {*PLOT_IDS, "progress-explore", "progress-for-you"}


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
    assert set(PLOT_IDS) <= set(plot_traces(page))
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


# ---------------------------------------------------------------- colours mean what they say

_OUT_OF_RANGE = {
    "higher": {"above": "better", "below": "below"},
    "lower": {"above": "over", "below": "better"},
    "band": {"above": "outside", "below": "outside"},
}


def test_every_benchmark_has_a_direction() -> None:
    assert set(BENCHMARK_DIRECTIONS) == set(BENCHMARKS)
    assert BENCHMARK_DIRECTIONS["ctr"] == "higher"
    assert BENCHMARK_DIRECTIONS["p95_latency_ms"] == "lower"
    assert BENCHMARK_DIRECTIONS["coverage"] == BENCHMARK_DIRECTIONS["diversity"] == "band"


@given(st.sampled_from(sorted(BENCHMARKS)), st.floats(-1.0, 1_000.0, allow_nan=False))
def test_a_value_is_judged_by_its_benchmarks_direction(metric: str, value: float) -> None:
    bounds = BENCHMARKS[metric]
    low, high = bounds.get("min", -float("inf")), bounds.get("max", float("inf"))
    found = judge(metric, value)
    if low <= value <= high:
        assert found == "in-range"
    else:
        side = "above" if value > high else "below"
        assert found == _OUT_OF_RANGE[BENCHMARK_DIRECTIONS[metric]][side]


def test_ctr_above_its_range_is_better_and_latency_over_its_max_is_a_failure() -> None:
    assert [judge("ctr", v) for v in (0.02, 0.12, 0.35)] == ["below", "in-range", "better"]
    assert [judge("p95_latency_ms", v) for v in (45.0, 200.0, 250.0)] == [
        "in-range",
        "in-range",
        "over",
    ]
    assert [judge("coverage", v) for v in (0.3, 0.6, 0.95)] == ["outside", "in-range", "outside"]
    assert judge("ctr", None) == "no-data" and judge("n_events", 3.0) == "value"


def _row_cells(page: str, metric: str) -> list[tuple[str, str]]:
    """(class, text) of each policy's cell in the metrics table's row ``metric``."""
    row = re.search(rf'<tr data-metric="{metric}">(.*?)</tr>', page)
    assert row is not None, metric
    return re.findall(r'<td class="([\w-]+)" data-judgement="[\w-]+"[^>]*>(.*?)</td>', row.group(1))


def test_the_tables_cells_are_coloured_by_judgement_with_a_legend(
    records: list[DecisionRecord], page: str
) -> None:
    for metric in ("ctr", "coverage", "diversity", "cold_start_ratio"):
        cells = _row_cells(page, metric)
        assert len(cells) == len(SPECS)
        for (css, text), policy in zip(cells, sorted(SPECS), strict=True):
            logged = [r for r in records if r.policy == policy]
            value = getattr(compute(logged, SPECS[policy]), metric)
            assert css == judge(metric, value), (metric, policy, value)
            if css in ("better", "below", "over", "outside"):  # the side, not only a colour
                assert text.endswith(("\u25b2", "\u25bc"))
    legend = page[page.index('<p class="legend">') :]
    legend = html.unescape(legend[: legend.index("</p>")])
    for meaning in ("in the brief's range", "better than the range", "outside a target band"):
        assert meaning in legend


def test_a_report_from_a_file_says_it_has_no_latency(page: str) -> None:
    assert _row_cells(page, "p95_latency_ms") == [("no-data", "not in the log")] * len(SPECS)
    assert "a decision log keeps none" in page and "n/a" not in _row_cells(page, "ctr")[0][1]


# ---------------------------------------------------------------- "is it learning?" first

NOW = 1_700_000_600.0


def _window(start: float, events: int, first: float, uniform: float) -> dict[str, Any]:
    def interval(value: float) -> dict[str, float]:
        return {"value": value, "low": value - 0.05, "high": value + 0.05, "n": events}

    return {
        "start": start,
        "end": start + 60,
        "events_learned": events,
        "model_versions": events // 10,
        "reward": {"first": interval(first), "uniform": interval(uniform), "baseline": None},
    }


def _answer(policy: str, state: str, sentence: str) -> dict[str, Any]:
    """A progress API answer with three windows of 40, 0 and 60 learned events."""
    return {
        "policy": policy,
        "verdict": {"state": state, "sentence": sentence, "lift_over_uniform": None},
        "windows": [
            _window(NOW - 180, 40, 0.20, 0.08),
            {**_window(NOW - 120, 0, 0, 0), "reward": {"first": None, "uniform": None}},
            _window(NOW - 60, 60, 0.25, 0.07),
        ],
    }


def _stack(states: dict[str, str], latency: LatencyWindows | None = None) -> StackView:
    windows = latency or LatencyWindows()
    return StackView(
        progress={
            policy: from_answer(_answer(policy, state, f"{policy}: the sentence for {state}."))
            for policy, state in states.items()
        },
        latency={policy: windows.summaries(policy) for policy in states},
        latency_window=windows.size,
        queues=[
            QueueHealth("reward queue", False, 3, 1, 2),
            QueueHealth("learn queue", False, 0, 0, 0),
            QueueHealth("reward DLQ", True, 2, 0, 4_000),
            QueueHealth("learn DLQ", True, 0, 0, 0),
        ],
    )


def _sections(page: str) -> dict[str, str]:
    found = re.findall(r'<section class="policy" data-policy="([\w-]+)"[^>]*>(.*?)</section>', page)
    return dict(found)


@pytest.mark.parametrize(
    ("state", "tone", "advice"),
    [
        ("learning", "good", None),
        ("worse", "bad", "rollback"),
        ("not_learning", "warn", "reward mapping"),
        ("no_rewards", "warn", "/v1/rewards"),
        ("too_early", "wait", "keep the traffic"),
    ],
)
def test_each_policy_section_opens_with_its_verdict_coloured_by_state(
    records: list[DecisionRecord], state: str, tone: str, advice: str | None
) -> None:
    view = log_view(records, SPECS)
    parts = page_parts(
        view, SPECS, _stack({"for-you": state, "explore": "learning"}), generated=NOW
    )
    sections = _sections(parts.body)
    assert sorted(sections) == sorted(SPECS)
    for policy, section in sections.items():
        after_title = section[section.index("</h2>") + len("</h2>") :]
        # the first thing under the title is the verdict: badge, then sentence
        match = re.match(
            rf'<div id="verdict-{policy}"><div class="verdict tone-(\w+)" data-state="(\w+)">'
            r'<span class="badge tone-\w+">([\w ]+)</span> <span class="sentence">(.*?)</span>',
            after_title,
        )
        assert match is not None, after_title[:300]
        expected = state if policy == "for-you" else "learning"
        assert match.group(2) == expected and match.group(3) == expected.replace("_", " ")
        assert match.group(4) == f"{policy}: the sentence for {expected}."
    for_you = sections["for-you"]
    assert f'class="verdict tone-{tone}"' in for_you
    if advice is None:
        assert 'class="advice"' not in for_you
    else:
        assert advice in for_you[for_you.index('class="advice"') :]


def test_a_report_from_a_file_judges_each_policy_from_the_logs_events(page: str) -> None:
    sections = _sections(page)
    assert sorted(sections) == sorted(SPECS)
    for policy, section in sections.items():
        after_title = section[section.index("</h2>") + len("</h2>") :]
        assert after_title.startswith(f'<div id="verdict-{policy}"><div class="verdict tone-')
        sentence = re.search(r'<span class="sentence">(.*?)</span>', after_title)
        assert sentence is not None and policy in sentence.group(1)
        assert "in this log (" in sentence.group(1) and "300 events" in sentence.group(1)


def test_the_progress_plot_draws_first_slot_uniform_and_learned_events(
    records: list[DecisionRecord],
) -> None:
    parts = page_parts(log_view(records, SPECS), SPECS, _stack({"for-you": "learning"}))
    traces = parts.figures["plot-progress-for-you-figure"]["data"]
    by_name = {t["name"]: t for t in traces}
    assert by_name["first slot (served)"]["y"] == [0.20, None, 0.25]
    assert by_name["uniform random pick"]["y"] == [0.08, None, 0.07]
    band = by_name["first slot (served) 95% interval"]
    assert band["base"] == pytest.approx([0.15, None, 0.20])
    assert band["y"] == pytest.approx([0.10, None, 0.10])
    assert by_name["events learned"]["y"] == [40, 0, 60]
    assert by_name["model versions"]["y"] == [4, 0, 6]
    assert "app's baseline" not in by_name  # no request sent a baseline


# ---------------------------------------------------------------- captions that are true


def test_captions_name_each_policys_own_exploration() -> None:
    specs = {
        "eps": PolicySpec(name="eps"),
        "square": PolicySpec(name="square", exploration={"algorithm": "squarecb"}),
        "soft": PolicySpec(name="soft", exploration={"algorithm": "softmax"}),
    }
    logged = [record for spec in specs.values() for record in simulated_logs(spec, 40)]
    page = build_report(logged, specs)
    caption = ctr_caption({name: str(s.exploration.algorithm) for name, s in specs.items()})
    assert html.escape(caption) in page
    assert "eps with epsilon-greedy: uniform" in caption
    assert "square with SquareCB: score-weighted" in caption
    assert "soft with softmax: score-weighted" in caption
    assert "near-uniform" not in page and "(baseline)" not in page
    sections = _sections(page)
    assert "explores with SquareCB: score-weighted</span></h2>" in sections["square"]
    assert "explores with epsilon-greedy: uniform</span></h2>" in sections["eps"]
    names = {t["name"] for t in plot_traces(page)["ctr"]}
    assert "soft exploratory slots (softmax: score-weighted)" in names


# ---------------------------------------------------------------- the live page and its data


def test_the_data_json_carries_parts_figures_verdicts_latency_and_queues(
    records: list[DecisionRecord],
) -> None:
    latency = LatencyWindows()
    for ms in range(1, 101):
        latency.add("rank", "for-you", float(ms))
    stack = _stack({"for-you": "learning", "explore": "too_early"}, latency)
    view = log_view(records, SPECS)
    data = dashboard_data(view, SPECS, stack, tenant="demo", generated=NOW)
    assert {"parts", "figures", "policies", "queues", "tenant", "refresh_seconds"} <= set(data)
    encoded = json.dumps(data)
    assert len(encoded) < 120_000  # 600 decisions of two policies; no plotly.js, no template
    assert all("template" not in figure["layout"] for figure in data["figures"].values())
    assert data["policies"]["for-you"]["verdict"] == {
        "state": "learning",
        "tone": "good",
        "sentence": "for-you: the sentence for learning.",
    }
    assert data["policies"]["for-you"]["latency"] == [
        {"route": "rank", "count": 100, "p50_ms": 50.0, "p95_ms": 95.0}
    ]
    assert data["policies"]["explore"]["latency"] == []
    dlq = next(q for q in data["queues"] if q["queue"] == "reward DLQ")
    assert (dlq["visible"], dlq["state"], dlq["oldest_seconds"]) == (2, "bad", 4_000)
    assert "p95 95 ms" in data["parts"]["latency-for-you"]
    assert "no rank or recommend request" in data["parts"]["latency-explore"]
    assert _row_cells(data["parts"]["metrics"], "p95_latency_ms") == [
        ("no-data", "no request timed yet"),
        ("in-range", "95 ms"),
    ]
    queues = data["parts"]["queues"]
    assert '<tr data-queue="reward DLQ" data-state="bad">' in queues
    assert '<td class="queue-bad">2</td>' in queues and "66.7 min" in queues
    assert "serendip dlq list" in queues

    # the page the data refreshes: every part and figure has its element, plotly.js comes apart
    parts = page_parts(view, SPECS, stack, generated=NOW)
    page = render("live", parts, plotly_src=plotly_path(), refresh_seconds=30, data_url="/d.json")
    ids = {a["id"] for _, a in tags(page) if a.get("id")}
    assert set(data["parts"]) <= ids and set(data["figures"]) <= ids
    assert embedded(page)["parts"] == sorted(data["parts"])
    assert set(embedded(page)["figures"]) == set(data["figures"])
    assert get_plotlyjs()[:500] not in page and len(page) < 200_000
    scripts = [a for tag, a in tags(page) if tag == "script" and a.get("src")]
    assert [a["src"] for a in scripts] == [plotly_path()]
    body = next(a for tag, a in tags(page) if tag == "body")
    assert (body["data-refresh"], body["data-source"]) == ("30", "/d.json")
    assert "Plotly.react" in page and "fetch(" in page and 'http-equiv="refresh"' not in page


# ---------------------------------------------------------------- the latency window


def test_the_latency_window_keeps_the_last_n_of_a_bounded_number_of_series() -> None:
    windows = LatencyWindows(size=100, max_series=3)
    for ms in range(1_000):
        windows.add("rank", "p", float(ms))
    assert windows.latencies("rank", "p") == [float(ms) for ms in range(900, 1_000)]
    [summary] = windows.summaries("p")
    assert (summary.count, summary.p50_ms, summary.p95_ms) == (100, 949.0, 994.0)
    for n in range(10):  # new policy names push out the least recently used series
        windows.add("rank", f"q{n}", 1.0)
    assert len(windows) == 3 and windows.latencies("rank", "p") == []
    assert windows.latencies("rank", "q9") == [1.0]


@given(
    st.lists(st.floats(0.0, 10_000.0, allow_nan=False), min_size=1, max_size=300),
    st.integers(1, 60),
)
def test_latency_percentiles_are_those_of_the_last_n_requests(
    values: list[float], size: int
) -> None:
    windows = LatencyWindows(size=size)
    for value in values:
        windows.add("recommend", "p", value)
    kept = values[-size:]
    [summary] = windows.summaries("p")
    assert summary.route == "recommend" and summary.count == len(kept)
    assert summary.p95_ms == p95(kept)
    assert summary.p50_ms == sorted(kept)[max(1, -(-len(kept) // 2)) - 1]


def test_the_gateway_times_answered_rank_requests_only() -> None:
    statuses = iter([200, 422, 200])

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"statusCode": next(statuses), "body": "{}"}

    function = LocalFunction("RankFunction", "unused.handler", _handler=handler)
    routes = [
        Route("POST", "/v1/policies/{policy}/rank", function),
        Route("GET", "/v1/policies/{policy}/metrics", function),
    ]
    latency = LatencyWindows()
    gateway = Gateway(routes, latency=latency)
    assert gateway.dispatch("POST", "/v1/policies/for-you/rank", [], b"{}").status == 200
    assert gateway.dispatch("POST", "/v1/policies/for-you/rank", [], b"{}").status == 422
    assert gateway.dispatch("GET", "/v1/policies/for-you/metrics", [], b"").status == 200
    kept = latency.latencies("rank", "for-you")
    assert len(kept) == 1 and 0.0 <= kept[0] < 5_000.0
    assert len(latency) == 1


def test_the_dashboard_reads_the_log_again_only_when_it_may_have_changed(
    records: list[DecisionRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []

    def live_records(tenant: str, specs: Any) -> tuple[list[DecisionRecord], Any, list[str]]:
        reads.append(tenant)
        return records, dict(specs), []

    monkeypatch.setattr("local.report_cli.live_records", live_records)
    board = LiveDashboard("demo", {}, LatencyWindows())
    first = board._log_view("log A", SPECS, NOW)
    assert first.read_at == NOW and first.decisions == len(records)
    # the same log a minute later: no read
    assert board._log_view("log A", SPECS, NOW + 60) is first and len(reads) == 1
    # the log changed: read again, unless the last read was moments ago (busy factor)
    second = board._log_view("log B", SPECS, NOW + 120)
    assert second is not first and len(reads) == 2
    assert board._log_view("log C", SPECS, NOW + 120.001) is second and len(reads) == 2
    # unchanged for longer than LOG_MAX_AGE_SECONDS: read again
    board._log_view("log C", SPECS, NOW + 120 + LOG_MAX_AGE_SECONDS + 1)
    assert len(reads) == 3
    summary = page_parts(second, SPECS, _stack({"for-you": "learning"})).parts["summary"]
    assert "Metrics and plots read 2023-11-14 22:25:20 UTC;" in summary  # NOW + 120 s


def test_a_policy_without_any_decision_is_grey_and_told_to_rank() -> None:
    answer = _answer("explore", "no_rewards", "No events learned in the last 60 min.")
    progress = replace(from_answer(answer), idle=True)
    shown = verdict_html(progress)
    assert 'class="verdict tone-wait" data-state="no_rewards"' in shown
    assert "POST /v1/policies/explore/rank" in shown and "/v1/rewards" not in shown
    busy = verdict_html(from_answer(answer))  # decisions logged, none learned: amber
    assert 'class="verdict tone-warn"' in busy and "/v1/rewards" in busy
