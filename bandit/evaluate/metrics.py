"""Product metrics of a policy, computed from its decision log.

One causal pass over the records, oldest first: every metric that depends on "what was known
before" (a user's tastes, item popularity) reads the history of the records before the event and
only then adds the event to it. Only shown events count (a deferred event never activated was not
shown). A reward counts for a slot when it is for a shown item, of one of the policy's reward types
and not late (flagged late, or after the policy's reward wait): the same rewards learning uses.
Only seen slots count (``DecisionRecord.seen_slots``: every shown slot unless the app reported
impressions): a slot the user never saw is in no denominator, no exposure count and no history;
``unseen_slots`` says how many were left out.
``docs/metrics.md`` has every formula and the reasons behind the definitions.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from itertools import chain
from typing import Any

from bandit.decision_log import DecisionRecord
from bandit.evaluate.metrics_exposure import (
    ExposureMetrics,
    ExposureTally,
    PopularitySoFar,
    SlotOutcome,
    cosine,
    p95,
    ratio,
    slot_outcomes,
    top_categories,
)
from bandit.simulate.arena import intra_list_diversity
from bandit.spec import PolicySpec


@dataclass(frozen=True, slots=True)
class MetricOptions:
    """Knobs of the definitions: how many top categories and popular items, how many items."""

    top_categories: int = 3
    popular_items: int = 10
    top_items: int = 10
    conversion_types: frozenset[str] | None = None

    def __post_init__(self) -> None:
        for name in ("top_categories", "popular_items", "top_items"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")


@dataclass(frozen=True, slots=True)
class Metrics:
    """The product metrics of one scope (a window, a segment, or everything)."""

    n_events: int
    n_slots: int
    ctr: float | None
    conversion: float | None
    coverage: float | None
    diversity: float | None
    serendipity: float | None
    successes: int
    cold_ctr: float | None
    warm_ctr: float | None
    cold_start_ratio: float | None
    filter_bubble: float | None
    exposure: ExposureMetrics
    p95_latency_ms: float | None = None
    unseen_slots: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Window:
    """The metrics of the events in ``[start, end)``."""

    start: float
    end: float
    metrics: Metrics


@dataclass
class _Tally:
    """Counts of one scope; exposure counts live in ``ExposureTally``."""

    events: int = 0
    slots: int = 0
    unseen: int = 0
    clicks: int = 0
    conversions: int = 0
    diversity: float = 0.0
    diverse_slates: int = 0
    successes: int = 0
    serendipitous: int = 0
    bubble: float = 0.0
    bubble_events: int = 0
    segment_slots: Counter[str] = field(default_factory=Counter)
    segment_clicks: Counter[str] = field(default_factory=Counter)
    exposure: ExposureTally = field(default_factory=ExposureTally)


Key = Callable[[DecisionRecord], Hashable | None]


class MetricsPass:
    """One causal pass over records (oldest first), counting each into the scope ``key`` gives.

    ``key(record)`` names the scope an event counts in (None: it only feeds the history).

    >>> by_user = MetricsPass(PolicySpec(name="p"), key=lambda record: record.user_id)
    >>> by_user.result("u-1").n_events
    0
    """

    def __init__(self, spec: PolicySpec, key: Key, options: MetricOptions | None = None) -> None:
        self.spec = spec
        self.key = key
        self.options = options or MetricOptions()
        self.tastes: defaultdict[str, Counter[str | None]] = defaultdict(Counter)
        self.popularity = PopularitySoFar(self.options.popular_items)
        self.tallies: dict[Hashable, _Tally] = {}
        self._last = -math.inf
        conversion = self.options.conversion_types
        if conversion is None:  # every rewarded type but clicks, e.g. purchase
            types = spec.rewards.types.items()
            conversion = frozenset(t for t, weight in types if t != "click" and weight > 0)
        self.conversion_types = conversion

    def add(self, record: DecisionRecord) -> None:
        """Count one record, then add it to the history; records must come oldest first."""
        if record.timestamp < self._last:
            raise ValueError(f"records must be oldest first: {record.event_id} is out of order")
        self._last = record.timestamp
        if not record.activated:
            return
        outcomes = slot_outcomes(record, self.spec.rewards, self.conversion_types)
        scope = self.key(record)
        if scope is not None:
            self._count(self.tallies.setdefault(scope, _Tally()), record, outcomes)
        categories = {c.id: c.category for c in record.candidates}
        for item in record.seen_ids():
            self.popularity.show(item)
            if record.user_id is not None and outcomes[item].success:
                self.tastes[record.user_id][categories.get(item)] += 1

    def _count(
        self, tally: _Tally, record: DecisionRecord, outcomes: dict[str, SlotOutcome]
    ) -> None:
        info = {c.id: (c.category, c.creator) for c in record.candidates}
        slots = record.seen_slots()
        categories = [info.get(s.item_id, (None, None))[0] for s in slots]
        tastes = self.tastes.get(record.user_id or "", Counter())
        top = top_categories(tastes, self.options.top_categories)
        popular = self.popularity.threshold()
        tally.events += 1
        tally.slots += len(slots)
        tally.unseen += len(record.slate) - len(slots)
        tally.segment_slots[record.segment] += len(slots)
        tally.conversions += any(outcomes[s.item_id].converted for s in slots)
        if len(slots) >= 2:
            tally.diversity += intra_list_diversity(categories)
            tally.diverse_slates += 1
        if tastes and slots:
            tally.bubble += cosine(Counter(categories), tastes)
            tally.bubble_events += 1
        for slot, category in zip(slots, categories, strict=True):
            outcome = outcomes[slot.item_id]
            tally.clicks += outcome.clicked
            tally.segment_clicks[record.segment] += outcome.clicked
            if outcome.success:
                tally.successes += 1
                familiar = category in top or self.popularity.is_popular(slot.item_id, popular)
                tally.serendipitous += not familiar
        tally.exposure.add(
            ((c.id, c.creator) for c in record.candidates),
            ((s, info.get(s.item_id, (None, None))[1], outcomes[s.item_id]) for s in slots),
        )

    def result(self, scope: Hashable, latencies_ms: Sequence[float] | None = None) -> Metrics:
        """The metrics of one scope (empty if nothing counted in it)."""
        tally = self.tallies.get(scope, _Tally())
        exposure = tally.exposure.result(self.options.top_items)
        cold = self.spec.cold_start.segments[0].name
        cold_ctr = ratio(tally.segment_clicks[cold], tally.segment_slots[cold])
        warm_ctr = ratio(
            tally.clicks - tally.segment_clicks[cold], tally.slots - tally.segment_slots[cold]
        )
        cold_ratio = None if cold_ctr is None or warm_ctr is None else ratio(cold_ctr, warm_ctr)
        return Metrics(
            n_events=tally.events,
            n_slots=tally.slots,
            ctr=ratio(tally.clicks, tally.slots),
            conversion=ratio(tally.conversions, tally.events) if self.conversion_types else None,
            coverage=ratio(exposure.items_shown, exposure.items_offered),
            diversity=ratio(tally.diversity, tally.diverse_slates),
            serendipity=ratio(tally.serendipitous, tally.successes),
            successes=tally.successes,
            cold_ctr=cold_ctr,
            warm_ctr=warm_ctr,
            cold_start_ratio=cold_ratio,
            filter_bubble=ratio(tally.bubble, tally.bubble_events),
            exposure=exposure,
            p95_latency_ms=None if latencies_ms is None else p95(latencies_ms),
            unseen_slots=tally.unseen,
        )


def _in_window(since: float | None, until: float | None) -> Callable[[float], bool]:
    low = -math.inf if since is None else since
    high = math.inf if until is None else until
    return lambda timestamp: low <= timestamp < high


def _run(
    records: Iterable[DecisionRecord], spec: PolicySpec, key: Key, options: MetricOptions | None
) -> MetricsPass:
    metrics = MetricsPass(spec, key, options)
    for record in records:
        metrics.add(record)
    return metrics


def compute(
    records: Iterable[DecisionRecord],
    spec: PolicySpec,
    *,
    segment: str | None = None,
    since: float | None = None,
    until: float | None = None,
    latencies_ms: Sequence[float] | None = None,
    options: MetricOptions | None = None,
) -> Metrics:
    """Metrics of the events in ``[since, until)`` of ``segment`` (None: all), oldest first.

    Records outside the window or segment are not counted but feed the history that serendipity
    and the filter-bubble score read. ``latencies_ms`` (rank latencies: not in the decision log)
    give ``p95_latency_ms``.

    >>> empty = compute([], PolicySpec(name="p"), latencies_ms=[120.0, 80.0])
    >>> empty.n_events, empty.ctr, empty.p95_latency_ms
    (0, None, 120.0)
    """
    inside = _in_window(since, until)
    metrics = _run(
        records,
        spec,
        lambda r: "all" if inside(r.timestamp) and segment in (None, r.segment) else None,
        options,
    )
    return metrics.result("all", latencies_ms)


def by_segment(
    records: Iterable[DecisionRecord],
    spec: PolicySpec,
    *,
    since: float | None = None,
    until: float | None = None,
    options: MetricOptions | None = None,
) -> dict[str, Metrics]:
    """Metrics per user-maturity segment seen in ``[since, until)``, from one pass.

    >>> by_segment([], PolicySpec(name="p"))
    {}
    """
    inside = _in_window(since, until)
    metrics = _run(records, spec, lambda r: r.segment if inside(r.timestamp) else None, options)
    return {str(name): metrics.result(name) for name in sorted(metrics.tallies, key=str)}


def windows(
    records: Iterable[DecisionRecord],
    spec: PolicySpec,
    seconds: float,
    *,
    segment: str | None = None,
    options: MetricOptions | None = None,
) -> Iterator[Window]:
    """Metrics per window of ``seconds`` (aligned to multiples of it), oldest first, streaming.

    Windows without events are skipped; the history runs on across windows.

    >>> list(windows([], PolicySpec(name="p"), 3600))
    []
    """
    if seconds <= 0:
        raise ValueError("seconds must be positive")
    metrics = MetricsPass(
        spec,
        lambda r: math.floor(r.timestamp / seconds) if segment in (None, r.segment) else None,
        options,
    )
    for record in chain(records, [None]):
        if record is not None:
            metrics.add(record)
        current = math.inf if record is None else math.floor(record.timestamp / seconds)
        for index in sorted(k for k in metrics.tallies if isinstance(k, int) and k < current):
            yield Window(index * seconds, (index + 1) * seconds, metrics.result(index))
            del metrics.tallies[index]
