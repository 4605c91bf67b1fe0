"""Rank and recommend latencies as the local gateway measured them: the last N per policy.

The gateway times every ``POST /v1/policies/{policy}/rank`` and ``.../recommend`` it answers
with a 2xx, from the proxy event handed to the function to its response (the handler's time
plus any wait for a free function instance: what a client on loopback sees, less the network).
Each (route, policy) keeps its last ``WINDOW`` latencies in a ring (``deque(maxlen=...)``), and at
most ``MAX_SERIES`` (route, policy) pairs are kept, the least recently used dropped first, so the
memory stays bounded however long the stack runs and whatever policy names are asked for. The
dashboard (``local.dashboard``) shows their p50, p95 and count.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass

from local.lambda_events import match_resource

WINDOW = 2_000
MAX_SERIES = 64
# The routes timed, by the name the dashboard shows.
TIMED_ROUTES = {
    "/v1/policies/{policy}/rank": "rank",
    "/v1/policies/{policy}/recommend": "recommend",
}


def percentile(values: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile ``share`` (0-1) of ``values``; None when there are none.

    >>> percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5), percentile(range(1, 101), 0.95)
    (3.0, 95)
    >>> percentile([], 0.95) is None
    True
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """One route of one policy: how many latencies are kept, their p50 and p95 (ms)."""

    route: str
    count: int
    p50_ms: float | None
    p95_ms: float | None

    def as_dict(self) -> dict[str, object]:
        """A JSON-able form."""
        return {
            "route": self.route,
            "count": self.count,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
        }


class LatencyWindows:
    """The last ``size`` latencies (ms) per (route, policy); thread-safe.

    >>> windows = LatencyWindows(size=3)
    >>> for ms in (10.0, 20.0, 30.0, 40.0):
    ...     windows.add("rank", "for-you", ms)
    >>> windows.summaries("for-you")
    [LatencySummary(route='rank', count=3, p50_ms=30.0, p95_ms=40.0)]
    """

    def __init__(self, size: int = WINDOW, max_series: int = MAX_SERIES) -> None:
        self.size = size
        self.max_series = max_series
        self._series: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, route: str, policy: str, milliseconds: float) -> None:
        """Keep one latency of ``route`` (``rank``, ``recommend``) on ``policy``."""
        key = (route, policy)
        with self._lock:
            kept = self._series.get(key)
            if kept is None:
                kept = self._series[key] = deque(maxlen=self.size)
                while len(self._series) > self.max_series:
                    self._series.popitem(last=False)
            else:
                self._series.move_to_end(key)
            kept.append(milliseconds)

    def observe(self, resource: str, path: str, status: int, seconds: float) -> None:
        """Keep the latency of a request the gateway answered, if it is one of ``TIMED_ROUTES``
        answered with a 2xx (``resource`` is the route's path as the template writes it)."""
        route = TIMED_ROUTES.get(resource)
        if route is None or not 200 <= status < 300:
            return
        params = match_resource(resource, path) or {}
        policy = params.get("policy")
        if policy:
            self.add(route, policy, seconds * 1000.0)

    def latencies(self, route: str, policy: str) -> list[float]:
        """A copy of the kept latencies of ``route`` on ``policy``, oldest first."""
        with self._lock:
            return list(self._series.get((route, policy), ()))

    def summaries(self, policy: str) -> list[LatencySummary]:
        """Per timed route with latencies kept for ``policy``: count, p50 and p95."""
        found = []
        for route in TIMED_ROUTES.values():
            kept = self.latencies(route, policy)
            if kept:
                found.append(
                    LatencySummary(route, len(kept), percentile(kept, 0.5), percentile(kept, 0.95))
                )
        return found

    def __len__(self) -> int:
        """How many latencies are kept in all."""
        with self._lock:
            return sum(len(kept) for kept in self._series.values())
