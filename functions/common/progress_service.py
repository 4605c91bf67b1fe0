"""The progress use case: is a policy learning? Its progress per time window, and the answer.

Read from the learner's progress counters (``progress_store``), never from the decision log:
an answer reads at most ``progress_store.MAX_CELLS`` small items whatever the traffic. Learned
events count in the window of their decision; reward outcomes and model saves in the window
in which the learner handled them.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

from bandit.evaluate.progress import (
    ESTIMATES,
    ProgressSums,
    Verdict,
    apprentice_verdict,
    total,
    verdict,
)
from functions.common import policy_store, progress_store
from functions.common.auth import Principal
from functions.common.decision_store import RewardOutcome
from functions.common.errors import ValidationFailedError
from functions.common.metrics_service import parse_window

MAX_WINDOWS = 200
DEFAULT_WINDOWS = 24
RECENT_SECONDS = 120  # an ``until`` this close to now reads as "the last ..."


def parse_window_seconds(raw: str | None, span: float, granularity: int) -> int:
    """The window width: ``raw`` seconds (a multiple of ``granularity``, at most
    ``MAX_WINDOWS`` windows over ``span``), or about ``DEFAULT_WINDOWS`` windows by default."""
    if raw is None or raw == "":
        return max(granularity, math.ceil(span / DEFAULT_WINDOWS / granularity) * granularity)
    try:
        seconds = int(raw)
    except ValueError:
        raise ValidationFailedError(
            f"window: must be a whole number of seconds, got {raw!r}", field="window"
        ) from None
    if seconds <= 0 or seconds % granularity:
        raise ValidationFailedError(
            f"window: must be a positive multiple of {granularity} s for this range", field="window"
        )
    if span / seconds > MAX_WINDOWS:
        raise ValidationFailedError(
            f"window: {seconds} s gives more than {MAX_WINDOWS} windows over the range",
            field="window",
        )
    return seconds


def _interval(estimate: tuple[float, float, float] | None, sums: ProgressSums, name: str) -> Any:
    if estimate is None:
        return None
    value, low, high = estimate
    return {
        "value": value,
        "low": low if math.isfinite(low) else None,
        "high": high if math.isfinite(high) else None,
        "n": int(sums.estimates[name].n),
    }


def window_view(sums: ProgressSums) -> dict[str, Any]:
    """One window's figures, as the route answers them."""
    counts = sums.counts
    return {
        "events_learned": int(counts.get("events", 0)),
        "slots_learned": int(counts.get("slots", 0)),
        "model_versions": int(counts.get("versions", 0)),
        "last_model_version": sums.last_version or None,
        "reward": {name: _interval(sums.estimate(name), sums, name) for name in ESTIMATES},
        "budget": {"target": sums.target_share, "realised": sums.realised_share},
        "agreement": {
            "compared": int(counts.get("compared", 0)),
            "agreed": int(counts.get("agreed", 0)),
            "share": sums.agreement,
        },
        "rewards": {
            outcome.value: int(counts.get(f"rewards_{outcome.value}", 0))
            for outcome in RewardOutcome
        },
        "events_failed": int(counts.get("events_failed", 0)),
        "events_expired": int(counts.get("events_expired", 0)),
    }


def _verdict_view(answer: Verdict) -> dict[str, Any]:
    lift = None
    if answer.lift is not None:
        value, low, high = answer.lift
        lift = {"value": value, "low": low, "high": high}
    return {"state": answer.state, "sentence": answer.sentence, "lift_over_uniform": lift}


def describe_range(since: float, until: float, now: float) -> str:
    """ "the last 6 h" for a range ending now, else its dates."""
    span = until - since
    if abs(now - until) <= RECENT_SECONDS:
        if span % 86400 == 0:
            return f"the last {int(span // 86400)} d" if span > 86400 else "the last 24 h"
        if span >= 3600:
            return f"the last {span / 3600:.3g} h"
        return f"the last {span / 60:.3g} min"

    def iso(moment: float) -> str:
        return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M UTC")

    return f"{iso(since)} to {iso(until)}"


def policy_progress(
    principal: Principal,
    policy: str,
    *,
    since: str | None = None,
    until: str | None = None,
    window: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The policy's learning progress over ``[since, until)`` per window, with the verdict (any
    scope; 404 if the policy is unknown)."""
    stored = policy_store.get(principal.tenant, policy)
    moment = time.time() if now is None else now
    span = parse_window(since, until, None, (), moment)
    granularity = progress_store.granularity_for(span.since, span.until)
    width = parse_window_seconds(window, span.until - span.since, granularity)
    cells = progress_store.read(principal.tenant, policy, span.since, span.until, granularity)
    start = progress_store.bucket_of(span.since, granularity)
    windows: dict[int, ProgressSums] = {}
    for bucket, sums in cells:
        key = start + (bucket - start) // width * width
        windows[key] = windows[key] + sums if key in windows else sums
    overall = total(windows.values())
    judge = apprentice_verdict if stored.spec.mode == "apprentice" else verdict
    answer = judge(policy, overall, describe_range(span.since, span.until, moment))
    return {
        "policy": policy,
        "since": span.since,
        "until": span.until,
        "window_seconds": width,
        "model_version": stored.head_version,
        "mode": stored.spec.mode,
        "verdict": _verdict_view(answer),
        "total": window_view(overall),
        "windows": [
            {"start": key, "end": key + width, **window_view(windows.get(key, ProgressSums()))}
            for key in range(start, math.ceil(span.until), width)
        ],
    }
