"""The report's metrics table: each metric per policy beside the brief's range, coloured by
what the value means.

The ranges are ``functions.common.metrics_service.BENCHMARKS`` (what the metrics endpoint
serves) and which side of each is good is ``BENCHMARK_DIRECTIONS``: for a "higher" metric (CTR)
a value above the range is better than the range, not a failure; for a "lower" one (p95
latency) a value over the maximum is a failure; for a "band" (coverage, diversity) leaving the
band on either side is a trade-off, marked "outside the band" in a neutral colour.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

from bandit.evaluate.metrics import Metrics
from functions.common.metrics_service import BENCHMARK_DIRECTIONS, BENCHMARKS

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
DIRECTION_TEXT = {"higher": "higher is better", "lower": "lower is better", "band": "target band"}
# Judgement -> what the legend says it means.
JUDGEMENTS = {
    "in-range": "in the brief's range",
    "better": "better than the range (above a higher-is-better range)",
    "below": "below a higher-is-better range",
    "over": "over a maximum (lower is better)",
    "outside": "outside a target band (a trade-off, not a failure)",
    "no-data": "no data",
}
TABLE_STYLE = """
td.in-range { background: #e3f4e3; } td.better { background: #c7ecd0; }
td.below, td.over { background: #fbe1dd; } td.outside { background: #e8eef6; }
td.no-data { color: #888; }
span.in-range, span.better { color: #2e7d32; font-weight: 600; }
span.below, span.over { color: #c62828; font-weight: 600; }
.legend span.swatch { display: inline-block; width: 0.9em; height: 0.9em; margin: 0 0.3em 0 1em;
  vertical-align: middle; border: 1px solid #bbb; }
.legend .in-range { background: #e3f4e3; } .legend .better { background: #c7ecd0; }
.legend .below, .legend .over { background: #fbe1dd; } .legend .outside { background: #e8eef6; }
"""


def metric_value(metrics: Metrics, name: str) -> float | None:
    """The value of the table's row ``name`` in ``metrics``."""
    if name in ("creator_gini", "long_tail_share"):
        value: float | None = getattr(metrics.exposure, name)
        return value
    return getattr(metrics, name)  # type: ignore[no-any-return]


def format_value(name: str, value: float | None) -> str:
    """A metric's value as the table shows it.

    >>> format_value("ctr", 0.1234), format_value("p95_latency_ms", 41.6)
    ('12.3%', '42 ms')
    >>> format_value("n_slots", 1200), format_value("ctr", None)
    ('1,200', 'n/a')
    """
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


def judge(name: str, value: float | None) -> str:
    """Where ``value`` stands against the brief's range of ``name``, given its direction: one of
    ``JUDGEMENTS``, or ``value`` for a metric without a range.

    >>> [judge("ctr", v) for v in (0.01, 0.10, 0.35)]
    ['below', 'in-range', 'better']
    >>> [judge("p95_latency_ms", v) for v in (40.0, 250.0)], judge("coverage", 0.95)
    (['in-range', 'over'], 'outside')
    """
    if value is None:
        return "no-data"
    bounds = BENCHMARKS.get(name)
    if bounds is None:
        return "value"
    direction = BENCHMARK_DIRECTIONS.get(name, "band")
    if value < bounds.get("min", -float("inf")):
        return {"higher": "below", "lower": "better"}.get(direction, "outside")
    if value > bounds.get("max", float("inf")):
        return {"higher": "better", "lower": "over"}.get(direction, "outside")
    return "in-range"


def _cell(name: str, value: float | None, missing: str = "n/a") -> str:
    judgement = judge(name, value)
    text = missing if value is None else format_value(name, value)
    if value is not None and judgement in ("better", "below", "over", "outside"):
        # which side it left the range by, so that colour is not the only sign
        text += " \u25b2" if value > BENCHMARKS[name].get("max", float("inf")) else " \u25bc"
    title = JUDGEMENTS.get(judgement, "")
    title_attr = f' title="{html.escape(title)}"' if title else ""
    return f'<td class="{judgement}" data-judgement="{judgement}"{title_attr}>{text}</td>'


def metrics_table(
    totals: Mapping[str, Metrics], p95_latency: Mapping[str, float | None] | None = None
) -> str:
    """An HTML table: one row per metric, the brief's range and direction, one column per
    policy, then the legend.

    ``p95_latency`` (per policy, ms) fills the p95 row; None says the source has no latencies
    (a decision log does not keep them).
    """
    header = "".join(f"<th>{html.escape(policy)}</th>" for policy in totals)
    rows = []
    for name, label in ROWS:
        if name == "p95_latency_ms":
            if p95_latency is None:
                cells = "".join(_cell(name, None, "not in the log") for _ in totals)
            else:
                cells = "".join(
                    _cell(name, p95_latency.get(policy), "no request timed yet")
                    for policy in totals
                )
        else:
            cells = "".join(_cell(name, metric_value(m, name)) for m in totals.values())
        direction = DIRECTION_TEXT.get(BENCHMARK_DIRECTIONS.get(name, ""), "")
        rows.append(
            f'<tr data-metric="{name}"><td>{html.escape(label)}</td>'
            f'<td class="range">{range_text(name)}</td><td class="direction">{direction}</td>'
            f"{cells}</tr>"
        )
    return (
        '<table class="metrics"><thead><tr><th>metric</th><th>brief\'s range</th><th>which way'
        f"</th>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>{legend()}"
    )


def legend() -> str:
    """What the table's colours mean."""
    swatches = "".join(
        f'<span class="swatch {judgement}"></span>{html.escape(meaning)}'
        for judgement, meaning in JUDGEMENTS.items()
        if judgement != "no-data"
    )
    return f'<p class="legend">Colours: {swatches}.</p>'
