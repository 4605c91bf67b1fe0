"""The figures of the report (``local.report``): one plotly figure per question, from the log.

``policy_series`` makes one pass over a policy's records (oldest first) for what
``bandit.evaluate.metrics`` does not keep per window: the CTR of the exploratory slots (the
policy's own exploration on the same traffic: uniform for epsilon-greedy, score-weighted for
SquareCB and softmax, so not a uniform baseline; the uniform comparison is the progress plot of
``local.report_progress``), the target and realised exploratory share per segment, and the shown
slots per creator (the Lorenz curve). The rest comes from
``bandit.evaluate.metrics``: ``windows`` for CTR, coverage and diversity over time, ``compute`` for
the totals. The figures take every policy's series and draw one trace (or two) per policy.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import plotly.graph_objects as go

from bandit.decision_log import DecisionRecord
from bandit.evaluate.metrics import Metrics, Window, compute, windows
from bandit.evaluate.metrics_exposure import gini, ratio, slot_outcomes
from bandit.spec import PolicySpec

# Window lengths the report picks from (seconds): round numbers a reader can take in.
_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)
_DAY = 86_400
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")
LAYOUT = {"template": "plotly_white", "height": 420, "margin": {"l": 60, "r": 20, "t": 60}}
# What a policy's exploratory slots are drawn from, per ``spec.exploration.algorithm``.
EXPLORATION = {
    "epsilon_greedy": "epsilon-greedy: uniform",
    "squarecb": "SquareCB: score-weighted",
    "softmax": "softmax: score-weighted",
    "vw_pmf": "VW's own pmf",
}


def exploration_label(algorithm: str) -> str:
    """How a policy with ``algorithm`` explores, in a few words.

    >>> exploration_label("squarecb"), exploration_label("epsilon_greedy")
    ('SquareCB: score-weighted', 'epsilon-greedy: uniform')
    """
    return EXPLORATION.get(algorithm, algorithm)


def window_seconds(first: float, last: float, target: int = 20) -> float:
    """A round window length giving about ``target`` windows over ``[first, last]``.

    >>> window_seconds(0.0, 1500.0), window_seconds(0.0, 0.0), window_seconds(0.0, 40 * 86400.0)
    (120, 1, 172800)
    """
    wanted = (last - first) / target
    for step in _STEPS:
        if step >= wanted:
            return step
    return _DAY * math.ceil(wanted / _DAY)


@dataclass
class _WindowTally:
    slots: int = 0
    explored: int = 0
    explored_clicks: int = 0
    segment_slots: Counter[str] = field(default_factory=Counter)
    segment_explored: Counter[str] = field(default_factory=Counter)
    segment_events: Counter[str] = field(default_factory=Counter)
    segment_budget: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))


@dataclass(frozen=True, slots=True)
class BudgetPoint:
    """One segment in one window: the mean logged target and the realised exploratory share."""

    start: float
    target: float
    realised: float


@dataclass(frozen=True, slots=True)
class PolicySeries:
    """Everything the figures draw for one policy."""

    policy: str
    seconds: float
    windows: list[Window]
    explored_ctr: list[float | None]
    budget: dict[str, list[BudgetPoint]]
    creator_slots: list[int]
    segment_slots: dict[str, int]
    cold_segment: str
    total: Metrics
    algorithm: str = "epsilon_greedy"  # spec.exploration.algorithm


def policy_series(
    records: Sequence[DecisionRecord], spec: PolicySpec, seconds: float
) -> PolicySeries:
    """The series of one policy's ``records`` (oldest first) over windows of ``seconds``."""
    tallies: dict[int, _WindowTally] = {}
    creator_slots: Counter[str] = Counter()
    offered: set[str] = set()
    segment_slots: Counter[str] = Counter()
    for record in records:
        if not record.activated:  # never shown: bandit.evaluate.metrics skips it too
            continue
        tally = tallies.setdefault(math.floor(record.timestamp / seconds), _WindowTally())
        outcomes = slot_outcomes(record, spec.rewards, frozenset())
        creators = {c.id: c.creator for c in record.candidates}
        offered.update(c for c in creators.values() if c is not None)
        segment = record.segment
        tally.segment_events[segment] += 1
        tally.segment_budget[segment] += record.exploration.budget
        for slot in record.slate:
            tally.slots += 1
            tally.segment_slots[segment] += 1
            segment_slots[segment] += 1
            creator = creators.get(slot.item_id)
            if creator is not None:
                creator_slots[creator] += 1
            if slot.explored:
                tally.explored += 1
                tally.segment_explored[segment] += 1
                tally.explored_clicks += outcomes[slot.item_id].clicked
    shown = list(windows(records, spec, seconds))
    explored_ctr = []
    for window in shown:
        tally = tallies.get(round(window.start / seconds), _WindowTally())
        explored_ctr.append(ratio(tally.explored_clicks, tally.explored))
    budget: dict[str, list[BudgetPoint]] = defaultdict(list)
    for index in sorted(tallies):
        tally = tallies[index]
        for segment in sorted(tally.segment_events):
            events = tally.segment_events[segment]
            budget[segment].append(
                BudgetPoint(
                    index * seconds,
                    tally.segment_budget[segment] / events,
                    tally.segment_explored[segment] / max(1, tally.segment_slots[segment]),
                )
            )
    return PolicySeries(
        policy=spec.name,
        seconds=seconds,
        windows=shown,
        explored_ctr=explored_ctr,
        budget=dict(budget),
        creator_slots=[creator_slots[c] for c in sorted(offered | set(creator_slots))],
        segment_slots=dict(segment_slots),
        cold_segment=spec.cold_start.segments[0].name,
        total=compute(records, spec),
        algorithm=str(spec.exploration.algorithm),
    )


def _time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _mid(window: Window) -> str:
    return _time((window.start + window.end) / 2)


def _figure(title: str, y_title: str, *, percent: bool = True, x_title: str = "") -> go.Figure:
    figure = go.Figure()
    figure.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, **LAYOUT)
    if percent:
        figure.update_yaxes(tickformat=".0%", rangemode="tozero")
    return figure


def ctr_figure(series: Sequence[PolicySeries], ctr_range: tuple[float, float] | None) -> go.Figure:
    """CTR per window of each policy, beside the CTR of its exploratory slots (its own
    exploration, named per algorithm)."""
    figure = _figure("CTR per window (UTC), all slots and exploratory slots", "CTR")
    for index, one in enumerate(series):
        color = COLORS[index % len(COLORS)]
        x = [_mid(w) for w in one.windows]
        figure.add_scatter(
            x=x,
            y=[w.metrics.ctr for w in one.windows],
            name=f"{one.policy} CTR",
            mode="lines+markers",
            line={"color": color},
        )
        figure.add_scatter(
            x=x,
            y=one.explored_ctr,
            name=f"{one.policy} exploratory slots ({exploration_label(one.algorithm)})",
            mode="lines+markers",
            connectgaps=True,
            line={"color": color, "dash": "dot"},
        )
    if ctr_range is not None:
        low, high = ctr_range
        figure.add_hrect(
            y0=low,
            y1=high,
            fillcolor="green",
            opacity=0.08,
            line_width=0,
            annotation_text=f"brief's range {low:.0%}-{high:.0%}",
            annotation_position="top left",
        )
    return figure


def budget_figure(series: Sequence[PolicySeries]) -> go.Figure:
    """Target (dashed) vs realised (solid) exploratory share of slots per segment over time."""
    figure = _figure("Exploration budget per segment (UTC): target vs realised", "share of slots")
    color = 0
    for one in series:
        for segment, points in one.budget.items():
            name, shade = f"{one.policy} / {segment}", COLORS[color % len(COLORS)]
            x = [_time(p.start + one.seconds / 2) for p in points]
            figure.add_scatter(
                x=x,
                y=[p.realised for p in points],
                name=f"{name} realised",
                mode="lines+markers",
                line={"color": shade},
                legendgroup=name,
            )
            figure.add_scatter(
                x=x,
                y=[p.target for p in points],
                name=f"{name} target",
                mode="lines",
                line={"color": shade, "dash": "dash"},
                legendgroup=name,
            )
            color += 1
    return figure


def coverage_figure(series: Sequence[PolicySeries]) -> go.Figure:
    """Catalog coverage (solid) and intra-list diversity (dashed) per window."""
    figure = _figure("Catalog coverage and diversity per window (UTC)", "share")
    for index, one in enumerate(series):
        color = COLORS[index % len(COLORS)]
        x = [_mid(w) for w in one.windows]
        for label, values, dash in (
            ("coverage", [w.metrics.coverage for w in one.windows], "solid"),
            ("diversity", [w.metrics.diversity for w in one.windows], "dash"),
        ):
            figure.add_scatter(
                x=x,
                y=values,
                name=f"{one.policy} {label}",
                mode="lines+markers",
                line={"color": color, "dash": dash},
            )
    return figure


def lorenz_points(creator_slots: Sequence[int]) -> tuple[list[float], list[float]]:
    """Cumulative share of creators (least exposed first) vs cumulative share of slots.

    >>> lorenz_points([0, 1, 3])
    ([0.0, 0.3333333333333333, 0.6666666666666666, 1.0], [0.0, 0.0, 0.25, 1.0])
    """
    ordered = sorted(creator_slots)
    total = sum(ordered)
    if not ordered or total == 0:
        return [], []
    x, y, running = [0.0], [0.0], 0
    for rank, slots in enumerate(ordered, start=1):
        running += slots
        x.append(rank / len(ordered))
        y.append(running / total)
    return x, y


def lorenz_figure(series: Sequence[PolicySeries]) -> go.Figure:
    """The Lorenz curve of shown slots over the creators offered, Gini in the legend."""
    figure = _figure(
        "Creator exposure: Lorenz curve",
        "cumulative share of slots",
        x_title="cumulative share of creators (least exposed first)",
    )
    figure.add_scatter(
        x=[0, 1], y=[0, 1], name="equality", mode="lines", line={"color": "gray", "dash": "dash"}
    )
    for index, one in enumerate(series):
        x, y = lorenz_points(one.creator_slots)
        figure.add_scatter(
            x=x,
            y=y,
            name=f"{one.policy} (Gini {gini(one.creator_slots):.2f})",
            mode="lines+markers",
            line={"color": COLORS[index % len(COLORS)]},
        )
    figure.update_xaxes(tickformat=".0%", range=[0, 1])
    return figure


def cold_warm_figure(series: Sequence[PolicySeries]) -> go.Figure:
    """CTR of the first (coldest) segment next to the CTR of the other segments, per policy."""
    figure = _figure("Cold vs warm users: CTR", "CTR", x_title="policy")
    names = [one.policy for one in series]
    for label, cold in (("first segment (new users)", True), ("other segments", False)):
        values, texts = [], []
        for one in series:
            slots = one.segment_slots.get(one.cold_segment, 0)
            if not cold:
                slots = sum(one.segment_slots.values()) - slots
            values.append(one.total.cold_ctr if cold else one.total.warm_ctr)
            which = one.cold_segment if cold else f"not {one.cold_segment}"
            texts.append(f"{which}: {slots} slots")
        figure.add_bar(x=names, y=values, name=label, hovertext=texts)
    figure.update_layout(barmode="group")
    return figure
