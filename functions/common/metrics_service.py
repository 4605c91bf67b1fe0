"""The metrics use case: a policy's product metrics over a time window, from its decision log.

Records stream from the decision store oldest first through ``bandit.evaluate.metrics`` (one pass,
flat memory). One call reads one page: at most ``MAX_RECORDS`` records and for at most
``READ_SECONDS`` (records held in S3 cost a GET each), so that it answers within the admin
Lambda's timeout however long the log is. A page that stops before the window's end says so
(``complete: false``) and returns ``next_token``; the same query with that token reads the next
page, which starts exactly after the last record read. The metrics of a page are those of the
events it read; counts (``n_events``, ``records.read``) add up over the pages to the window's.
Rank latency is not in the decision log: ``p95_latency_ms`` is null here and the
``RankLatency`` metric in CloudWatch has it.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from bandit.decision_log import DecisionRecord
from bandit.evaluate import metrics
from functions.common import page_tokens, policy_store
from functions.common.auth import Principal
from functions.common.decision_pages import DecisionPage, PageCursor
from functions.common.errors import ValidationFailedError

# About 2.3 ms a record (inline): 2,000 take under half of the admin Lambda's 10 s.
MAX_RECORDS = 2_000
READ_SECONDS = 5.0
_NUMBER = re.compile(r"-?\d{1,20}(\.\d{1,20})?([eE][+-]?\d{1,3})?")
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
# Which side of each range is good: "higher" (above the range beats it: CTR), "lower" (over the
# maximum is a failure: latency) or "band" (a target: leaving it on either side is a trade-off,
# not a failure: coverage, diversity, serendipity).
BENCHMARK_DIRECTIONS: dict[str, str] = {
    "ctr": "higher",
    "conversion": "higher",
    "coverage": "band",
    "diversity": "band",
    "serendipity": "band",
    "cold_start_ratio": "higher",
    "p95_latency_ms": "lower",
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


def encode_token(cursor: PageCursor) -> str:
    """The opaque ``next_token`` of a page's cursor (URL-safe).

    >>> decode_token(encode_token(PageCursor("acme#evt_1", "12.5")), "acme")
    PageCursor(pk='acme#evt_1', ts='12.5')
    """
    return page_tokens.encode_token(cursor.pk, cursor.ts)


def decode_token(token: str, tenant: str) -> PageCursor:
    """The cursor in ``token``; 422 naming ``next_token`` unless it is one of this tenant's."""
    pk, ts = page_tokens.decode_token(token, tenant)
    if pk == tenant or not _NUMBER.fullmatch(ts):
        raise page_tokens.invalid_token()
    return PageCursor(pk, ts)


class BoundedRecords:
    """The records of a page, read until the page ends or ``seconds`` have passed (one at least)."""

    def __init__(
        self,
        page: Iterable[DecisionRecord],
        seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._page = page
        self.seconds = seconds
        self.clock = clock
        self.read = 0
        self.out_of_time = False

    def __iter__(self) -> Iterator[DecisionRecord]:
        deadline = self.clock() + self.seconds
        for record in self._page:
            self.read += 1
            yield record
            if self.clock() >= deadline:
                self.out_of_time = True
                return


def policy_metrics(
    principal: Principal,
    policy: str,
    *,
    since: str | None = None,
    until: str | None = None,
    segment: str | None = None,
    next_token: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """One page of the policy's product metrics over ``[since, until)`` (any scope; 404 if
    unknown): the events from ``next_token`` (a previous page's) on, at most ``MAX_RECORDS``."""
    stored = policy_store.get(principal.tenant, policy)
    spec = stored.spec
    names = [s.name for s in spec.cold_start.segments]
    window = parse_window(since, until, segment, names, time.time() if now is None else now)
    after = decode_token(next_token, principal.tenant) if next_token else None
    page = DecisionPage(
        principal.tenant, policy, window.since, window.until, limit=MAX_RECORDS, after=after
    )
    records = BoundedRecords(page, READ_SECONDS)
    result = metrics.compute(
        records, spec, segment=window.segment, since=window.since, until=window.until
    ).as_dict()
    cursor = page.cursor()
    complete = cursor is None
    notes = ["p95_latency_ms: rank latency is not in the decision log; see RankLatency"]
    if not complete:
        reason = f"{READ_SECONDS:g} s" if records.out_of_time else f"{MAX_RECORDS} records"
        notes.append(
            f"incomplete: this page read {records.read} events ({reason} a page); "
            "ask again with next_token for the rest"
        )
    return {
        "policy": policy,
        "window": {"since": window.since, "until": window.until, "segment": window.segment},
        "n_events": result.pop("n_events"),
        "records": {
            "read": records.read,
            "cap": MAX_RECORDS,
            "complete": complete,
            "truncated": not complete,
            "through": None if cursor is None else float(cursor.ts),
            "next_token": None if cursor is None else encode_token(cursor),
        },
        "metrics": result,
        "benchmarks": BENCHMARKS,
        "notes": notes,
    }
