"""The report: per policy "is it learning?" first, then the metrics table and the plots.

``log_view(records, specs)`` is what a decision log gives (the costly part: one pass per policy):
per policy its series (``local.report_plots``), the five shared figures (CTR against the CTR of
its exploratory slots, the exploration budget per segment, coverage and diversity over time,
the creator-exposure Lorenz curve, cold vs warm users' CTR) and, for a report from a file, the
progress of each policy from the log (``local.report_progress.from_log``). ``page_parts`` lays
out the page: per policy a section opening with the verdict (badge and sentence), its progress
plot and its latency; the queue health of a running stack; the metrics table beside the brief's
ranges (``local.report_table``); the shared plots. ``local.report_page`` renders it.

``build_report(records, specs)`` is ``serendip report``'s one self-contained page (plotly.js
inlined, no network). The live ``/dashboard`` (``local.dashboard``) builds the same parts with
what only a running stack knows (``local.report_stack.StackView``: progress from the learner's
counters, latencies its gateway measured, its queues) and refreshes them in place. Every plot is a
``<div class="serendip-plot" data-plot="NAME">``; no records give a short "no decisions yet"
page.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import plotly.graph_objects as go

from bandit.decision_log import DecisionRecord
from bandit.spec import PolicySpec
from functions.common.metrics_service import BENCHMARKS
from local.report_page import PageParts, figure_json, plain_page, render
from local.report_plots import (
    PolicySeries,
    budget_figure,
    cold_warm_figure,
    coverage_figure,
    ctr_figure,
    exploration_label,
    lorenz_figure,
    policy_series,
    window_seconds,
)
from local.report_progress import (
    PolicyProgress,
    from_log,
    progress_caption,
    progress_figure,
    verdict_html,
)
from local.report_stack import StackView, latency_html, queues_html
from local.report_table import TABLE_STYLE, metrics_table

DEFAULT_TITLE = "Serendip report"
PLOT_IDS = ("ctr", "budget", "coverage", "lorenz", "cold_warm")
CAPTIONS = {
    "budget": "Dashed: the target exploratory share the decisions were made under (logged budget)."
    " Solid: the share of slots that were exploratory.",
    "coverage": "Coverage: distinct items shown / items offered in the window (brief: 50-80%). "
    "Diversity: mean share of slot pairs of different categories (brief: 40-60%).",
    "lorenz": "Creators ordered from least to most shown; the further below the diagonal, the "
    "more exposure goes to a few creators.",
    "cold_warm": "CTR of the policy's first (coldest) maturity segment vs every other segment "
    "(cold-start ratio = cold / warm, brief: 50-70%).",
}


@dataclass
class LogView:
    """What the decision log gives the page."""

    decisions: int
    first: float | None
    last: float | None
    seconds: float
    series: list[PolicySeries]
    figures: dict[str, go.Figure]
    progress: dict[str, PolicyProgress]  # from the log itself (a report from a file)
    notes: list[str] = field(default_factory=list)
    read_at: float | None = None  # when a running stack's log was read (None: a file)


def ctr_caption(algorithms: Mapping[str, str]) -> str:
    """The CTR plot's caption, naming how each policy explores (``algorithms``: policy ->
    ``spec.exploration.algorithm``).

    >>> "here for-you with SquareCB: score-weighted." in ctr_caption({"for-you": "squarecb"})
    True
    """
    named = ", ".join(
        f"{name} with {exploration_label(algorithm)}"
        for name, algorithm in sorted(algorithms.items())
    )
    return (
        "Solid: each policy's CTR per window. Dotted: the CTR of its exploratory slots (its own "
        "exploration: uniform for epsilon-greedy, score-weighted for SquareCB/softmax)"
        f"{f'; here {named}' if named else ''}. The comparison with a uniformly random pick is "
        "each policy's progress plot above. Band: the brief's range."
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


def log_view(
    records: Iterable[DecisionRecord],
    specs: Mapping[str, PolicySpec] | None = None,
    notes: Sequence[str] = (),
) -> LogView:
    """The series, figures and log-based progress of ``records`` (any order, any policies).

    A policy without a spec in ``specs`` is valued with ``PolicySpec(name=policy)`` defaults,
    and a note says so.
    """
    ordered = sorted(records, key=lambda record: record.timestamp)
    known = dict(specs or {})
    if not ordered:
        return LogView(0, None, None, 0.0, [], {}, {}, list(notes))
    by_policy: defaultdict[str, list[DecisionRecord]] = defaultdict(list)
    for record in ordered:
        by_policy[record.policy].append(record)
    seconds = window_seconds(ordered[0].timestamp, ordered[-1].timestamp)
    used = {policy: known.get(policy) or PolicySpec(name=policy) for policy in by_policy}
    series = [policy_series(logged, used[p], seconds) for p, logged in sorted(by_policy.items())]
    progress = {p: from_log(logged, used[p], seconds) for p, logged in sorted(by_policy.items())}
    defaults = sorted(set(by_policy) - set(known))
    all_notes = list(notes)
    if defaults:
        all_notes.append(f"valued with default reward specs (no spec given): {', '.join(defaults)}")
    return LogView(
        len(ordered),
        ordered[0].timestamp,
        ordered[-1].timestamp,
        seconds,
        series,
        _figures(series),
        progress,
        all_notes,
    )


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _summary(view: LogView, generated: float) -> str:
    notes = "".join(f'<p class="notes">{html.escape(note)}</p>' for note in view.notes)
    if not view.decisions or view.first is None or view.last is None:
        return (
            '<p class="empty">No decisions yet: the decision log is empty. Rank some requests '
            f"(and post their rewards), then look again.</p>{notes}"
        )
    count = len(view.series)
    read = "" if view.read_at is None else f" Metrics and plots read {_when(view.read_at)};"
    return (
        f'<p class="summary">{view.decisions:,} decisions of {count} '
        f"{'policy' if count == 1 else 'policies'} from {_when(view.first)} to "
        f"{_when(view.last)}; windows of {view.seconds:g} s.{read} Generated "
        f"{_when(generated)}.</p>{notes}"
    )


def _section(
    parts: PageParts,
    policy: str,
    algorithm: str | None,
    progress: PolicyProgress | None,
    latency: str,
) -> str:
    name = html.escape(policy)
    explores = (
        f' <span class="algorithm">explores with {html.escape(exploration_label(algorithm))}</span>'
        if algorithm is not None
        else ""
    )
    verdict = (
        verdict_html(progress)
        if progress is not None
        else '<div class="verdict tone-wait" data-state="unknown">No progress known.</div>'
    )
    plot = ""
    if progress is not None and not progress.learned:
        plot = (
            '<p class="notes">No event learned in this range yet: the progress plot appears '
            "with the first learned events.</p>"
        )
    elif progress is not None:
        plot_id = f"plot-progress-{policy}"
        parts.figures[f"{plot_id}-figure"] = figure_json(progress_figure(progress))
        caption = parts.part(
            f"caption-progress-{policy}", html.escape(progress_caption(progress)), "p", "caption"
        )
        plot = (
            f'<div class="serendip-plot" data-plot="progress" data-policy="{name}" '
            f'id="{html.escape(plot_id)}"><div id="{html.escape(plot_id)}-figure"></div>'
            f"{caption}</div>"
        )
    return (
        f'<section class="policy" data-policy="{name}" id="policy-{name}"><h2>{name}{explores}'
        f"</h2>{parts.part(f'verdict-{policy}', verdict)}{plot}"
        f"{parts.part(f'latency-{policy}', latency, css='latency')}</section>"
    )


def _plot(parts: PageParts, name: str, figure: go.Figure, caption: str) -> str:
    parts.figures[f"plot-{name}-figure"] = figure_json(figure)
    caption_html = parts.part(f"caption-{name}", html.escape(caption), "p", "caption")
    return (
        f'<div class="serendip-plot" data-plot="{name}" id="plot-{name}">'
        f'<div id="plot-{name}-figure"></div>{caption_html}</div>'
    )


def page_parts(
    view: LogView,
    specs: Mapping[str, PolicySpec],
    stack: StackView | None = None,
    *,
    generated: float | None = None,
) -> PageParts:
    """The page's body, parts and figures: ``stack`` None for a report from a log file."""
    parts = PageParts("", style=TABLE_STYLE)
    moment = datetime.now(UTC).timestamp() if generated is None else generated
    body = [parts.part("summary", _summary(view, moment))]
    progress = view.progress if stack is None else stack.progress
    policies = sorted({*(s.policy for s in view.series), *progress})
    algorithms = {s.policy: s.algorithm for s in view.series} | {
        name: str(spec.exploration.algorithm) for name, spec in specs.items()
    }
    if stack is not None:
        body.append(f"<h2>Queues</h2>{parts.part('queues', queues_html(stack.queues))}")
    for policy in policies:
        latency = (
            latency_html(policy, None)
            if stack is None
            else latency_html(policy, stack.latency.get(policy, ()), stack.latency_window)
        )
        body.append(_section(parts, policy, algorithms.get(policy), progress.get(policy), latency))
    if view.series:
        p95: dict[str, float | None] | None = None
        if stack is not None:
            p95 = {
                s.policy: next(
                    (one.p95_ms for one in stack.latency.get(s.policy, ()) if one.route == "rank"),
                    None,
                )
                for s in view.series
            }
        table = metrics_table({s.policy: s.total for s in view.series}, p95)
        body.append(f"<h2>Metrics</h2>{parts.part('metrics', table)}")
        captions = {"ctr": ctr_caption({s.policy: s.algorithm for s in view.series})}
        plots = "".join(
            _plot(parts, name, figure, captions.get(name) or CAPTIONS[name])
            for name, figure in view.figures.items()
        )
        body.append(f'<h2>Plots</h2><div class="plots">{plots}</div>')
    parts.body = "".join(body)
    return parts


def build_report(
    records: Iterable[DecisionRecord],
    specs: Mapping[str, PolicySpec] | None = None,
    *,
    title: str = DEFAULT_TITLE,
    notes: Sequence[str] = (),
) -> str:
    """One self-contained HTML page about ``records`` (any order, any number of policies).

    A policy without a spec in ``specs`` is valued with ``PolicySpec(name=policy)`` defaults;
    ``notes`` are shown under the summary.

    >>> "No decisions yet" in build_report([])
    True
    """
    view = log_view(records, specs, notes)
    if not view.decisions:
        return plain_page(title, _summary(view, datetime.now(UTC).timestamp()))
    known = dict(specs or {})
    return render(title, page_parts(view, known))
