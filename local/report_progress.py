""" "Is it learning?" on the report: each policy's verdict and its progress per window.

``PolicyProgress`` is what the top of a policy's section shows: the verdict (state and
sentence) and per window the first slot's reward against a uniformly random pick's value and the
app's own first choice (each with its 95% interval), events learned and model versions. It
comes from the progress API's answer (``from_answer``: the live dashboard, from the learner's
progress counters) or from a decision log (``from_log``: ``serendip report``, summing
``bandit.evaluate.progress.event_progress`` over the events the log marks learned).
``progress_figure`` draws it; ``verdict_html`` is the coloured badge, the sentence and advice.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from bandit.decision_log import DecisionRecord
from bandit.evaluate.progress import (
    MIN_VERDICT,
    ProgressSums,
    apprentice_verdict,
    event_progress,
    total,
    verdict,
)
from bandit.spec import PolicySpec

Interval = tuple[float, float | None, float | None]  # value, low, high (None: unbounded)
# The badge's colour per verdict state: good (green), bad (red), warn (amber), wait (grey).
STATE_TONES = {
    "learning": "good",
    "model_ahead": "good",
    "worse": "bad",
    "not_learning": "warn",
    "no_rewards": "warn",
    "app_ahead": "warn",
    "too_early": "wait",
    "tied": "wait",
}
ADVICE = {
    "not_learning": "Enough events and still no gain over a random pick: look at the policy's "
    "features and reward mapping, or give it more varied traffic.",
    "worse": "Its first slot earns less than a random pick would: look at recent spec changes, "
    "and roll back to a better model version if one was (POST /v1/policies/{policy}/rollback).",
    "no_rewards": "No rewards reach the learner: check that the app posts them to /v1/rewards for "
    "the events it ranks (GET /v1/events/{event_id} says what became of an event's rewards).",
    "too_early": f"Fewer than {MIN_VERDICT} first slots learned: keep the traffic and the rewards "
    "coming; the verdict firms up as events are learned.",
    "app_ahead": "Keep the policy in apprentice mode until the model catches up.",
    "tied": "Keep learning: neither the model nor the app is ahead yet.",
}
IDLE_ADVICE = (
    "No decision is logged for {policy} yet: rank with it (POST /v1/policies/{policy}/rank) and "
    "post the rewards; the verdict follows the first learned events."
)
LINES = (
    ("first", "first slot (served)", "#1f77b4"),
    ("uniform", "uniform random pick", "#7f7f7f"),
    ("baseline", "app's baseline", "#ff7f0e"),
)


@dataclass(frozen=True, slots=True)
class ProgressPoint:
    """One window: the first-slot estimates, events learned and model versions."""

    start: float
    end: float
    rewards: Mapping[str, Interval | None]
    events: int
    versions: int


@dataclass(frozen=True, slots=True)
class PolicyProgress:
    """The verdict and the windows behind it, and where they come from."""

    policy: str
    state: str
    sentence: str
    points: list[ProgressPoint]
    source: str  # a short phrase for the caption
    idle: bool = False  # the policy has no decision logged at all: nothing to judge yet

    @property
    def learned(self) -> int:
        """Events learned over every window."""
        return sum(point.events for point in self.points)

    @property
    def tone(self) -> str:
        """``good``, ``bad``, ``warn`` or ``wait`` (an unknown state, or an idle policy, is
        ``wait``)."""
        return "wait" if self.idle else STATE_TONES.get(self.state, "wait")

    @property
    def advice(self) -> str:
        """What to do about the state ('' when nothing)."""
        if self.idle:
            return IDLE_ADVICE.format(policy=self.policy)
        return ADVICE.get(self.state, "")

    def as_dict(self) -> dict[str, Any]:
        """The verdict, as the dashboard's data carries it."""
        return {"state": self.state, "tone": self.tone, "sentence": self.sentence}


def _interval(raw: Any) -> Interval | None:
    if not isinstance(raw, Mapping) or raw.get("value") is None:
        return None
    return (float(raw["value"]), raw.get("low"), raw.get("high"))


def from_answer(answer: Mapping[str, Any]) -> PolicyProgress:
    """The progress API's answer (``progress_service.policy_progress``) as a ``PolicyProgress``."""
    points = [
        ProgressPoint(
            float(window["start"]),
            float(window["end"]),
            {name: _interval(window["reward"].get(name)) for name, _, _ in LINES},
            int(window["events_learned"]),
            int(window["model_versions"]),
        )
        for window in answer["windows"]
    ]
    found, policy = answer["verdict"], str(answer["policy"])
    return PolicyProgress(
        policy,
        str(found["state"]),
        str(found["sentence"]),
        points,
        f"the learner's progress counters (GET /v1/policies/{policy}/progress)",
    )


def _estimate(sums: ProgressSums, name: str) -> Interval | None:
    found = sums.estimate(name)
    if found is None:
        return None
    value, low, high = found
    return (value, low if math.isfinite(low) else None, high if math.isfinite(high) else None)


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


def from_log(records: Sequence[DecisionRecord], spec: PolicySpec, seconds: float) -> PolicyProgress:
    """The progress of one policy's ``records`` (oldest first) over windows of ``seconds``.

    Counts the events the log marks learned (``learned_version``), in the window of their
    decision, as the learner does; a log that marks none (a simulation's) counts every shown
    event. Model versions per window: the distinct versions its events were learned into.
    """
    learned = [r for r in records if r.activated and r.learned_version is not None]
    counted = learned or [r for r in records if r.activated]
    by_window: dict[int, ProgressSums] = {}
    versions: defaultdict[int, set[int]] = defaultdict(set)
    for record in counted:
        key = math.floor(record.timestamp / seconds)
        added = event_progress(record, spec.rewards)
        by_window[key] = by_window[key] + added if key in by_window else added
        if record.learned_version is not None:
            versions[key].add(record.learned_version)
    points = []
    for key in range(min(by_window, default=0), max(by_window, default=-1) + 1):
        sums = by_window.get(key, ProgressSums())
        points.append(
            ProgressPoint(
                key * seconds,
                (key + 1) * seconds,
                {name: _estimate(sums, name) for name, _, _ in LINES},
                int(sums.counts.get("events", 0)),
                len(versions.get(key, ())),
            )
        )
    overall = total(by_window.values())
    overall.count("versions", len(set().union(*versions.values())) if versions else 0)
    span = (
        f"this log ({_when(records[0].timestamp)} to {_when(records[-1].timestamp)})"
        if records
        else "this log"
    )
    judge = apprentice_verdict if spec.mode == "apprentice" else verdict
    answer = judge(spec.name, overall, span)
    source = (
        "the log's learned events (learned_version)"
        if learned
        else "every shown event of the log (it marks none learned)"
    )
    return PolicyProgress(spec.name, answer.state, answer.sentence, points, source)


def verdict_html(progress: PolicyProgress) -> str:
    """The badge (coloured by the state), the sentence and, where there is some, advice."""
    advice = progress.advice
    advice_html = f'<p class="advice">{html.escape(advice)}</p>' if advice else ""
    label = progress.state.replace("_", " ")
    return (
        f'<div class="verdict tone-{progress.tone}" data-state="{html.escape(progress.state)}">'
        f'<span class="badge tone-{progress.tone}">{html.escape(label)}</span> '
        f'<span class="sentence">{html.escape(progress.sentence)}</span>{advice_html}</div>'
    )


def _time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _bounds(interval: Interval | None) -> tuple[float, float] | None:
    if interval is None or interval[1] is None or interval[2] is None:
        return None
    return float(interval[1]), float(interval[2])


def _band_colour(colour: str) -> str:
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},0.15)"


def progress_figure(progress: PolicyProgress) -> go.Figure:
    """First-slot reward vs a uniform pick vs the app's baseline (95% bands) per window, over
    events learned (bars) and model versions (line, right axis)."""
    figure = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.66, 0.34],
        vertical_spacing=0.08,
        specs=[[{}], [{"secondary_y": True}]],
    )
    x = [_time((p.start + p.end) / 2) for p in progress.points]
    # A window's estimate holds for the whole window: its interval is a band as wide as it.
    widths = [(p.end - p.start) * 1000.0 for p in progress.points]  # ms on a date axis
    for name, label, colour in LINES:
        values = [p.rewards.get(name) for p in progress.points]
        if all(value is None for value in values):
            continue  # no baseline sent, or no data at all
        bounded = [_bounds(value) for value in values]
        figure.add_bar(
            x=x,
            base=[None if b is None else b[0] for b in bounded],
            y=[None if b is None else b[1] - b[0] for b in bounded],
            width=widths,
            name=f"{label} 95% interval",
            marker={"color": _band_colour(colour), "line": {"width": 0}},
            showlegend=False,
            hoverinfo="skip",
            legendgroup=name,
            row=1,
            col=1,
        )
        figure.add_scatter(
            x=x,
            y=[None if v is None else v[0] for v in values],
            name=label,
            mode="lines+markers",
            line={"color": colour},
            legendgroup=name,
            row=1,
            col=1,
        )
    figure.add_bar(
        x=x,
        y=[p.events for p in progress.points],
        name="events learned",
        width=[width * 0.9 for width in widths],
        marker={"color": "#9ecae1"},
        row=2,
        col=1,
    )
    figure.add_scatter(
        x=x,
        y=[p.versions for p in progress.points],
        name="model versions",
        mode="lines+markers",
        line={"color": "#2ca02c"},
        row=2,
        col=1,
        secondary_y=True,
    )
    figure.update_layout(
        title=f"{progress.policy}: is it learning? First-slot reward per window (UTC)",
        height=460,
        margin={"l": 60, "r": 60, "t": 60},
        legend={"orientation": "h", "y": -0.12},
        barmode="overlay",
    )
    figure.update_yaxes(title_text="reward", rangemode="tozero", row=1, col=1)
    figure.update_yaxes(title_text="events", rangemode="tozero", row=2, col=1)
    figure.update_yaxes(
        title_text="versions", rangemode="tozero", row=2, col=1, secondary_y=True, showgrid=False
    )
    return figure


def progress_caption(progress: PolicyProgress) -> str:
    """What the progress plot shows, and where its numbers come from."""
    return (
        "Top: what the first slot earned per window, against what a uniformly random pick "
        "among the same candidates would have earned there (estimated from the logged "
        "probabilities) and, for events whose request sent one, the app's own first choice; "
        "bands are 95% intervals. Bottom: events learned (bars) and model versions (line, "
        f"right axis) per window. From {progress.source}."
    )
