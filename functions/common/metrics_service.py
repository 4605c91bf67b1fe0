"""The metrics use case: a policy's product metrics over a time window, from its decision log.

Records stream from the decision store oldest first through ``bandit.metrics`` (one pass, flat
memory), up to ``MAX_RECORDS``; the answer says when the cap cut the window short. Rank latency is
not in the decision log: ``p95_latency_ms`` is null here and the ``RankLatency`` metric in
CloudWatch has it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from bandit import metrics
from bandit.decision_log import DecisionRecord
from functions.common import decision_store, policy_store
from functions.common.auth import Principal
from functions.common.errors import ValidationFailedError

MAX_RECORDS = 50_000
DEFAULT_WINDOW_SECONDS = 86_400

# The product brief's ranges, for comparison next to the measured values.
BENCHMARKS: dict[str, dict[str, float]] = {
    "ctr": {"min": 0.05, "max": 0.20},
    "conversion": {"min": 0.02, "max": 0.08},
    "coverage": {"min": 0.50, "max": 0.80},
    "diversity": {"min": 0.40, "max": 0.60},
    "serendipity": {"min": 0.30, "max": 0.50},
    "cold_start_ratio": {"min": 0.50, "max": 0.70},
    "p95_latency_ms": {"max": 200.0},
}


@dataclass(frozen=True, slots=True)
class MetricsWindow:
    """The events a metrics call covers: ``[since, until)``, optionally one segment."""

    since: float
    until: float
    segment: str | None = None


def _seconds(name: str, raw: str | None) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValidationFailedError(f"{name}: must be unix seconds, got {raw!r}", field=name)
    return value


def parse_window(
    since: str | None,
    until: str | None,
    segment: str | None,
    segments: Iterable[str],
    now: float,
) -> MetricsWindow:
    """Validate the query: 422 naming ``since``, ``until`` or ``segment`` when one is wrong.

    ``until`` defaults to ``now`` and ``since`` to 24 hours before ``until``.

    >>> parse_window("100", None, "cold", ["cold", "warm"], now=400.0)
    MetricsWindow(since=100.0, until=400.0, segment='cold')
    """
    end = _seconds("until", until)
    end = now if end is None else end
    start = _seconds("since", since)
    start = end - DEFAULT_WINDOW_SECONDS if start is None else start
    if start >= end:
        raise ValidationFailedError(f"since: {start} is not before until ({end})", field="since")
    known = list(segments)
    segment = segment or None
    if segment is not None and segment not in known:
        detail = f"segment: unknown segment {segment!r} (known: {', '.join(known)})"
        raise ValidationFailedError(detail, field="segment")
    return MetricsWindow(max(start, 0.0), end, segment)


class CappedRecords:
    """Records of a time-ordered stream before ``until``, at most ``cap`` of them."""

    def __init__(self, records: Iterable[DecisionRecord], until: float, cap: int) -> None:
        self._records = records
        self.until = until
        self.cap = cap
        self.read = 0
        self.truncated = False

    def __iter__(self) -> Iterator[DecisionRecord]:
        for record in self._records:
            if record.timestamp >= self.until:
                return
            if self.read >= self.cap:
                self.truncated = True
                return
            self.read += 1
            yield record


def policy_metrics(
    principal: Principal,
    policy: str,
    *,
    since: str | None = None,
    until: str | None = None,
    segment: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The policy's product metrics over ``[since, until)`` (any scope; 404 if unknown)."""
    stored = policy_store.get(principal.tenant, policy)
    spec = stored.spec
    names = [s.name for s in spec.cold_start.segments]
    window = parse_window(since, until, segment, names, time.time() if now is None else now)
    records = CappedRecords(
        decision_store.export(principal.tenant, policy, window.since), window.until, MAX_RECORDS
    )
    result = metrics.compute(
        records, spec, segment=window.segment, since=window.since, until=window.until
    ).as_dict()
    notes = ["p95_latency_ms: rank latency is not in the decision log; see RankLatency"]
    if records.truncated:
        notes.append(f"truncated: only the oldest {MAX_RECORDS} events of the window were read")
    return {
        "policy": policy,
        "window": {"since": window.since, "until": window.until, "segment": window.segment},
        "n_events": result.pop("n_events"),
        "records": {"read": records.read, "cap": MAX_RECORDS, "truncated": records.truncated},
        "metrics": result,
        "benchmarks": BENCHMARKS,
        "notes": notes,
    }
