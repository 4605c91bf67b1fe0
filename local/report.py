"""The report: one self-contained HTML page of plots and a metrics table, from a decision log.

``build_report(records, specs)`` groups the records by policy and draws, per policy, CTR over time
against the CTR of its exploratory slots, the exploration budget (target vs realised share per
segment), catalog coverage and diversity over time, the creator-exposure Lorenz curve with its
Gini, and cold vs warm users' CTR (``local.report_plots``), next to a table of
``bandit.evaluate.metrics.compute`` beside the product brief's ranges. The ranges are the ones the
metrics endpoint serves (``functions.common.metrics_service.BENCHMARKS``): one definition.

plotly.js is inlined once, so the page needs no network to be read; every plot is a
``<div class="serendip-plot" data-plot="NAME">``. No records give a short "no decisions yet"
page. ``serendip report`` writes it from a JSONL file, ``serendip demo`` at the end of a run, and
the local gateway serves it live at ``/dashboard`` (``local.report_cli``).
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from bandit.decision_log import DecisionRecord
from bandit.evaluate.metrics import Metrics
from bandit.spec import PolicySpec
from functions.common.metrics_service import BENCHMARKS
from local.report_plots import (
    PolicySeries,
    budget_figure,
    cold_warm_figure,
    coverage_figure,
    ctr_figure,
    lorenz_figure,
    policy_series,
    window_seconds,
)

DEFAULT_TITLE = "Serendip report"
PLOT_IDS = ("ctr", "budget", "coverage", "lorenz", "cold_warm")
CAPTIONS = {
    "ctr": "Solid: the policy's CTR per window. Dotted: the CTR of its exploratory slots in the "
    "same window, a near-uniform draw on the same traffic (the baseline). Band: the brief's range.",
    "budget": "Dashed: the target exploratory share the decisions were made under (logged budget)."
    " Solid: the share of slots that were exploratory.",
    "coverage": "Coverage: distinct items shown / items offered in the window (brief: 50-80%). "
    "Diversity: mean share of slot pairs of different categories (brief: 40-60%).",
    "lorenz": "Creators ordered from least to most shown; the further below the diagonal, the "
    "more exposure goes to a few creators.",
    "cold_warm": "CTR of the policy's first (coldest) maturity segment vs every other segment "
    "(cold-start ratio = cold / warm, brief: 50-70%).",
}
# (Metrics field, label); the fields with a brief's range come first.
ROWS: tuple[tuple[str, str], ...] = (
    ("ctr", "CTR"),
    ("conversion", "conversion"),
    ("coverage", "catalog coverage"),
    ("diversity", "diversity"),
    ("serendipity", "serendipity"),
    ("cold_start_ratio", "cold-start ratio (cold / warm CTR)"),
    ("p95_latency_ms", "p95 rank latency"),
    ("n_events", "events"),
    ("n_slots", "shown slots"),
    ("cold_ctr", "cold CTR"),
    ("warm_ctr", "warm CTR"),
    ("filter_bubble", "filter bubble (lower is wider)"),
    ("creator_gini", "creator Gini (lower is fairer)"),
    ("long_tail_share", "long-tail share"),
)
_COUNTS = frozenset({"n_events", "n_slots"})
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.7rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.in-range { background: #e6f4e6; } td.out-of-range { background: #fbe9e7; }
td.no-data { color: #888; }
.serendip-plot { border: 1px solid #eee; padding: 0.5rem; margin: 1rem 0; max-width: 1200px; }
.caption, .notes { color: #555; font-size: 0.9rem; }
"""


def _value(metrics: Metrics, name: str) -> float | None:
    if name in ("creator_gini", "long_tail_share"):
        value: float | None = getattr(metrics.exposure, name)
        return value
    return getattr(metrics, name)  # type: ignore[no-any-return]


def _format(name: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if name in _COUNTS:
        return f"{int(value):,}"
    if name == "p95_latency_ms":
        return f"{value:.0f} ms"
    if name in ("creator_gini", "filter_bubble"):
        return f"{value:.2f}"
    return f"{value:.1%}"


def range_text(name: str) -> str:
    """The brief's range of a metric as a reader writes it, '' if it has none.

    >>> range_text("ctr"), range_text("p95_latency_ms"), range_text("n_events")
    ('5-20%', '< 200 ms', '')
    """
    bounds = BENCHMARKS.get(name)
    if bounds is None:
        return ""
    if "min" not in bounds:
        return f"< {bounds['max']:.0f} ms"
    return f"{bounds['min'] * 100:.0f}-{bounds['max'] * 100:.0f}%"


def _judge(name: str, value: float | None) -> str:
    bounds = BENCHMARKS.get(name)
    if value is None:
        return "no-data"
    if bounds is None:
        return "value"
    inside = bounds.get("min", -float("inf")) <= value <= bounds.get("max", float("inf"))
    return "in-range" if inside else "out-of-range"


def metrics_table(totals: Mapping[str, Metrics]) -> str:
    """An HTML table: one row per metric, the brief's range, then one column per policy."""
    header = "".join(f"<th>{html.escape(policy)}</th>" for policy in totals)
    rows = []
    for name, label in ROWS:
        cells = "".join(
            f'<td class="{_judge(name, value)}">{_format(name, value)}</td>'
            for value in (_value(metrics, name) for metrics in totals.values())
        )
        rows.append(
            f'<tr data-metric="{name}"><td>{html.escape(label)}</td>'
            f'<td class="range">{range_text(name)}</td>{cells}</tr>'
        )
    return (
        '<table class="metrics"><thead><tr><th>metric</th><th>brief\'s range</th>'
        f"{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _page(title: str, body: str, *, head: str = "", refresh_seconds: int | None = None) -> str:
    refresh = f'<meta http-equiv="refresh" content="{refresh_seconds}">' if refresh_seconds else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>{refresh}<style>{STYLE}</style>{head}</head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )


def _plot_div(name: str, figure: go.Figure) -> str:
    inner = figure.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=f"plot-{name}-figure",
        default_height="420px",
        config={"displaylogo": False, "responsive": True},
    )
    caption = html.escape(CAPTIONS[name])
    return (
        f'<div class="serendip-plot" data-plot="{name}" id="plot-{name}">{inner}'
        f'<p class="caption">{caption}</p></div>'
    )


def _figures(series: Sequence[PolicySeries]) -> dict[str, go.Figure]:
    ctr = BENCHMARKS.get("ctr", {})
    ctr_range = (ctr["min"], ctr["max"]) if "min" in ctr and "max" in ctr else None
    makers: dict[str, Callable[[], go.Figure]] = {
        "ctr": lambda: ctr_figure(series, ctr_range),
        "budget": lambda: budget_figure(series),
        "coverage": lambda: coverage_figure(series),
        "lorenz": lambda: lorenz_figure(series),
        "cold_warm": lambda: cold_warm_figure(series),
    }
    return {name: makers[name]() for name in PLOT_IDS}


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def build_report(
    records: Iterable[DecisionRecord],
    specs: Mapping[str, PolicySpec] | None = None,
    *,
    title: str = DEFAULT_TITLE,
    refresh_seconds: int | None = None,
    notes: Sequence[str] = (),
) -> str:
    """One self-contained HTML page about ``records`` (any order, any number of policies).

    A policy without a spec in ``specs`` is valued with ``PolicySpec(name=policy)`` defaults.
    ``refresh_seconds`` adds a meta refresh (the live dashboard); ``notes`` are shown under the
    summary.

    >>> "No decisions yet" in build_report([])
    True
    """
    ordered = sorted(records, key=lambda record: record.timestamp)
    note_html = "".join(f'<p class="notes">{html.escape(note)}</p>' for note in notes)
    if not ordered:
        body = (
            '<p class="empty">No decisions yet: the decision log is empty. Rank some requests '
            f"(and post their rewards), then look again.</p>{note_html}"
        )
        return _page(title, body, refresh_seconds=refresh_seconds)
    by_policy: defaultdict[str, list[DecisionRecord]] = defaultdict(list)
    for record in ordered:
        by_policy[record.policy].append(record)
    known = dict(specs or {})
    seconds = window_seconds(ordered[0].timestamp, ordered[-1].timestamp)
    series = [
        policy_series(logged, known.get(policy) or PolicySpec(name=policy), seconds)
        for policy, logged in sorted(by_policy.items())
    ]
    defaults = sorted(set(by_policy) - set(known))
    if defaults:
        notes = [*notes, f"valued with default reward specs (no spec given): {', '.join(defaults)}"]
        note_html = "".join(f'<p class="notes">{html.escape(note)}</p>' for note in notes)
    summary = (
        f'<p class="summary">{len(ordered):,} decisions of {len(series)} '
        f"{'policy' if len(series) == 1 else 'policies'} from {_when(ordered[0].timestamp)} to "
        f"{_when(ordered[-1].timestamp)}; windows of {seconds:g} s. Generated "
        f"{_when(datetime.now(UTC).timestamp())}.</p>"
    )
    table = metrics_table({one.policy: one.total for one in series})
    latency = (
        '<p class="notes">p95 rank latency is not in the decision log: see the RankLatency '
        "metric (CloudWatch) or <code>make bench</code>.</p>"
    )
    plots = "".join(_plot_div(name, figure) for name, figure in _figures(series).items())
    head = (
        "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>"
        f'<script type="text/javascript">{get_plotlyjs()}</script>'
    )
    body = (
        f"{summary}{note_html}<h2>Metrics</h2>{table}{latency}"
        f'<h2>Plots</h2><div class="plots">{plots}</div>'
    )
    return _page(title, body, head=head, refresh_seconds=refresh_seconds)
