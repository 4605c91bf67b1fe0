"""The parts of the report only a running stack has: its queues and its measured latencies.

``StackView`` is what the live dashboard (``local.dashboard``) reads from the stack at each
refresh: each policy's progress (from the learner's counters), the latencies its gateway
measured (``local.gateway_latency``) and its queues (``local.queue_health``).
``latency_html`` and ``queues_html`` are their parts of the page; a report from a decision log
file has neither, and ``latency_html(policy, None)`` says why.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from local.gateway_latency import LatencySummary
from local.queue_health import QueueHealth, age_text, summary
from local.report_progress import PolicyProgress
from local.report_table import format_value, judge

NO_LATENCY = (
    "Latency: a decision log keeps none. The live dashboard of a running stack "
    "(<code>serendip serve</code>, <code>/dashboard</code>) shows what its gateway measured; on "
    "AWS, the RankLatency metric in CloudWatch; <code>make bench</code> measures it too."
)


@dataclass(frozen=True)
class StackView:
    """What only a running stack knows: progress, measured latencies, queues."""

    progress: Mapping[str, PolicyProgress]
    latency: Mapping[str, Sequence[LatencySummary]]
    latency_window: int
    queues: Sequence[QueueHealth]


def latency_html(policy: str, summaries: Sequence[LatencySummary] | None, window: int = 0) -> str:
    """What the gateway measured for ``policy`` (None: the source keeps no latencies)."""
    if summaries is None:
        return f"<p>{NO_LATENCY}</p>"
    if not summaries:
        return (
            f"<p>Latency: no rank or recommend request to {html.escape(policy)} answered yet "
            "since this stack started.</p>"
        )
    figures = []
    for one in summaries:
        p95 = one.p95_ms
        judgement = judge("p95_latency_ms", p95) if one.route == "rank" else "value"
        figures.append(
            f'<span data-route="{one.route}">{one.route}: p50 '
            f"{format_value('p95_latency_ms', one.p50_ms)}, "
            f'<span class="{judgement}" data-judgement="{judgement}">p95 '
            f"{format_value('p95_latency_ms', p95)}</span> over the last {one.count:,} "
            "requests</span>"
        )
    return (
        f"<p>Latency as this stack's gateway measured it (handler time and any wait for a free "
        f"function; the last {window:,} requests per route at most): {'; '.join(figures)}. "
        "Brief: p95 rank latency &lt; 200 ms.</p>"
    )


def queues_html(queues: Sequence[QueueHealth]) -> str:
    """The queues' depth and oldest message, coloured (a DLQ holding anything is red)."""
    if not queues:
        return "<p>No queue of the stack is known.</p>"
    rows = []
    for queue in queues:
        state = queue.state
        depth = queue.depth
        oldest = "-" if depth == 0 else age_text(queue.oldest_seconds)
        error = f" ({html.escape(queue.error)})" if queue.error else ""
        rows.append(
            f'<tr data-queue="{html.escape(queue.label)}" data-state="{state}">'
            f"<td>{html.escape(queue.label)}{error}</td>"
            f'<td class="queue-{state}">{"n/a" if depth is None else f"{depth:,}"}</td>'
            f"<td>{'n/a' if queue.visible is None else f'{queue.visible:,}'}</td>"
            f"<td>{'n/a' if queue.in_flight is None else f'{queue.in_flight:,}'}</td>"
            f"<td>{html.escape(oldest)}</td></tr>"
        )
    worst = "bad" if any(q.state == "bad" for q in queues) else "ok"
    return (
        '<table class="queues"><thead><tr><th>queue</th><th>depth</th><th>visible</th>'
        f"<th>in flight</th><th>oldest message</th></tr></thead><tbody>{''.join(rows)}"
        f'</tbody></table><p class="{worst}">{html.escape(summary(queues))}</p>'
    )
