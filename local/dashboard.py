"""The local stack's live dashboard: ``/dashboard``, its data and its cached plotly.js.

The gateway answers three pages itself (no Lambda, no route in ``template.yaml``, no API key:
the local stack listens on loopback):

- ``GET /dashboard``: the report page (``local.report``) of the tenant's policies, which loads
  plotly.js from ``PLOTLY_PATH`` and refreshes itself every ``REFRESH_SECONDS`` by fetching
  ``DATA_PATH`` (no reload of the page);
- ``GET /dashboard/data.json``: the page's parts and figures, small (no plotly.js, the plotly
  template left out);
- ``GET PLOTLY_PATH``: the installed plotly's ``plotly.min.js``, versioned in its path and
  cached by the browser for a year.

What each answer costs: per policy, the verdict and its windows from the learner's progress
counters (``progress_service.policy_progress``, called in this process with a principal of the
tenant: a few small items), the latencies this gateway measured (``local.gateway_latency``),
the four queues' attributes (``local.queue_health``). The decision-log part (metrics table and
the five shared plots) is read at most ``MAX_RECORDS`` per policy, and only when the log may
have changed since the last build (its range, or the learned events and rewards the progress
counters count, differ) or ``LOG_MAX_AGE_SECONDS`` passed, and no sooner than
``LOG_BUSY_FACTOR`` times what the last read took: an idle stack's refresh reads no decision, and
a long log is read less often (the page says when it was read).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import cache
from typing import Any

from bandit.spec import PolicySpec
from local.gateway import Page, Reply
from local.gateway_latency import LatencyWindows
from local.queue_health import QueueHealth
from local.report import LogView, log_view, page_parts
from local.report_page import data_document, render
from local.report_progress import from_answer
from local.report_stack import StackView

DASHBOARD_PATH = "/dashboard"
DATA_PATH = "/dashboard/data.json"
REFRESH_SECONDS = 30
LOG_MAX_AGE_SECONDS = 300
# A log that took t seconds to read and build is read again no sooner than this many t later:
# the dashboard takes at most about a tenth of the stack's time, however long the log.
LOG_BUSY_FACTOR = 10
PROGRESS_LOOKBACK_SECONDS = 86_400  # the verdict covers at most the last 24 h
DASHBOARD_KEY_ID = "local-dashboard"


def plotly_path() -> str:
    """Where the page loads plotly.js from: versioned, so a new plotly is a new URL."""
    import plotly

    return f"/dashboard/plotly-{plotly.__version__}.min.js"


@cache
def _plotly_js() -> bytes:
    from plotly.offline import get_plotlyjs

    script: str = get_plotlyjs()
    return script.encode("utf-8")


def plotly_reply() -> Reply:
    """plotly.js (about 4.6 MB), encoded once per process, cached by the browser for a year."""
    headers = [
        ("Content-Type", "text/javascript; charset=utf-8"),
        ("Cache-Control", "public, max-age=31536000, immutable"),
    ]
    return Reply(200, headers, _plotly_js())


def dashboard_data(
    view: LogView,
    specs: Mapping[str, PolicySpec],
    stack: StackView,
    *,
    tenant: str,
    generated: float,
    refresh_seconds: int = REFRESH_SECONDS,
) -> dict[str, Any]:
    """What ``GET /dashboard/data.json`` answers: the page's ``parts`` (element id -> HTML) and
    ``figures`` (div id -> plotly data and layout), and, for a reader, each policy's verdict and
    latencies and the queues."""
    parts = page_parts(view, specs, stack, generated=generated)
    return data_document(
        parts,
        {
            "tenant": tenant,
            "generated_at": generated,
            "refresh_seconds": refresh_seconds,
            "policies": {
                policy: {
                    "verdict": found.as_dict(),
                    "latency": [one.as_dict() for one in stack.latency.get(policy, ())],
                }
                for policy, found in stack.progress.items()
            },
            "queues": [queue.as_dict() for queue in stack.queues],
        },
    )


class LiveDashboard:
    """The dashboard of ``tenant`` on a running stack (its settings point at the stack's moto).

    ``queue_urls``: the stack's resource environment (``REWARD_QUEUE_URL``...); ``latency``:
    the gateway's measured latencies; ``region``: the stack's.
    """

    def __init__(
        self,
        tenant: str,
        queue_urls: Mapping[str, str],
        latency: LatencyWindows,
        *,
        region: str | None = None,
        refresh_seconds: int = REFRESH_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tenant = tenant
        self.region = region
        self.queue_urls = dict(queue_urls)
        self.latency = latency
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self._sqs: Any = None
        self._log_lock = threading.Lock()
        # signature, read at, seconds the read and build took, the view
        self._log: tuple[Any, float, float, LogView] | None = None

    def pages(self) -> dict[str, Page]:
        """The gateway's pages: the dashboard, its data, its plotly.js."""
        return {
            DASHBOARD_PATH: self.page_reply,
            DATA_PATH: self.data_reply,
            plotly_path(): plotly_reply,
        }

    # ------------------------------------------------------------ answers

    def page_reply(self) -> Reply:
        """``GET /dashboard``: the page, drawn with the current data."""
        page = self.page(live=True)
        headers = [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")]
        return Reply(200, headers, page.encode("utf-8"))

    def data_reply(self) -> Reply:
        """``GET /dashboard/data.json``: the parts and figures the page applies."""
        body = json.dumps(self.data(), separators=(",", ":")).encode("utf-8")
        headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
        return Reply(200, headers, body)

    def page(self, *, live: bool) -> str:
        """The page; ``live``: loading plotly.js from the stack and refreshing, else one
        self-contained file (plotly.js inlined)."""
        specs, view, stack = self._views()
        parts = page_parts(view, specs, stack, generated=self.clock())
        title = f"Serendip dashboard: tenant {self.tenant}" if live else "Serendip report"
        if not live:
            return render(title, parts)
        return render(
            title,
            parts,
            plotly_src=plotly_path(),
            refresh_seconds=self.refresh_seconds,
            data_url=DATA_PATH,
        )

    def data(self) -> dict[str, Any]:
        """The data document (``dashboard_data``) of the stack as it is now."""
        specs, view, stack = self._views()
        return dashboard_data(
            view,
            specs,
            stack,
            tenant=self.tenant,
            generated=self.clock(),
            refresh_seconds=self.refresh_seconds,
        )

    # ------------------------------------------------------------ reading the stack

    def _views(self) -> tuple[dict[str, PolicySpec], LogView, StackView]:
        from functions.common import decision_store, policy_store

        now = self.clock()
        specs = {
            stored.spec.name: stored.spec for stored in policy_store.list_policies(self.tenant)
        }
        ranges = {name: decision_store.log_range(self.tenant, name) for name in specs}
        answers = {name: self._progress(name, ranges[name], now) for name in specs}
        progress = {
            name: replace(from_answer(answer), idle=ranges[name] is None)
            for name, answer in answers.items()
        }
        signature = (
            tuple(sorted((name, spec.version, ranges[name]) for name, spec in specs.items())),
            tuple(
                sorted(
                    (
                        name,
                        answer["total"]["events_learned"],
                        json.dumps(answer["total"]["rewards"]),
                    )
                    for name, answer in answers.items()
                )
            ),
        )
        stack = StackView(
            progress=progress,
            latency={name: self.latency.summaries(name) for name in specs},
            latency_window=self.latency.size,
            queues=self._queues(),
        )
        return specs, self._log_view(signature, specs, now), stack

    def _progress(
        self, policy: str, log_range: tuple[float, float] | None, now: float
    ) -> dict[str, Any]:
        from functions.common.auth import Principal
        from functions.common.progress_service import policy_progress

        principal = Principal(self.tenant, frozenset(), DASHBOARD_KEY_ID, ())
        oldest = log_range[0] if log_range else now - 3600
        since = max(oldest, now - PROGRESS_LOOKBACK_SECONDS)
        since = min(since, now - 60)  # at least one minute
        return policy_progress(principal, policy, since=f"{since:.0f}", now=now)

    def _log_view(self, signature: Any, specs: Mapping[str, PolicySpec], now: float) -> LogView:
        with self._log_lock:  # concurrent refreshes share one read of the log
            kept = self._log
            if kept is not None:
                kept_signature, read_at, took, view = kept
                age = now - read_at
                unchanged = kept_signature == signature and age < LOG_MAX_AGE_SECONDS
                if unchanged or age < LOG_BUSY_FACTOR * took:
                    return view
            from local.report_cli import live_records

            started = time.monotonic()
            records, _, notes = live_records(self.tenant, specs)
            view = log_view(records, specs, notes)
            view.read_at = now
            self._log = (signature, now, time.monotonic() - started, view)
            return view

    def _queues(self) -> list[QueueHealth]:
        from local.queue_health import read_queues

        if self._sqs is None:
            import boto3

            self._sqs = boto3.client("sqs", region_name=self.region)
        return read_queues(self._sqs, self.queue_urls)
