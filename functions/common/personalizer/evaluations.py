"""Offline evaluations of the Personalizer API, backed by ``serendip evaluate``'s estimators.

An evaluation replays the policy's decision log between ``startTime`` and ``endTime``
(``bandit.evaluate.replay``) through each learning setting it names, and estimates what each
would have earned on the first slot (SNIPS by default, or doubly robust with ``estimator: "dr"``,
``functions.common.personalizer.evaluation_dr``; 95% interval), next to:

- ``Online``: what the policy that served earned (its logged rewards; the observed mean under
  either estimator, its weights being 1);
- ``Baseline``: always the app's own choice (the first non-excluded action, or the slot's
  ``baselineAction``), as Personalizer defined it;
- ``Random``: a uniformly random allowed action.

It runs when it is created, within the request (so at most ``MAX_REPLAYS`` events times
settings; more is ``LogsSizeExceedAllowedLimit``: narrow the dates, or run ``serendip
evaluate`` on an export, which has no limit), only over events whose reward wait is over.
What is kept is the sums behind the estimates per time bucket, so any interval and window
(``Expanding`` or ``Rolling``) can be answered later without replaying again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np

from bandit.decision_log import DecisionRecord
from bandit.evaluate.replay import FirstSlotTerms, evaluate, logged_first_slots
from bandit.evaluate.sums import Sums
from bandit.spec import PolicySpec
from functions.common import decision_store
from functions.common.auth import Principal
from functions.common.errors import NotFoundError
from functions.common.personalizer import comparisons
from functions.common.personalizer import errors as codes
from functions.common.personalizer.configuration import (
    arguments_of,
    iso_time,
    spec_with_arguments,
)
from functions.common.personalizer.contract import EvaluationContract
from functions.common.personalizer.errors import PersonalizerError, invalid
from functions.common.personalizer.evaluation_dr import dr_values, reference_terms
from functions.common.personalizer.resource import stored
from functions.common.personalizer.store import (
    EvaluationExistsError,
    delete_evaluation,
    get_evaluation,
    list_evaluations,
    put_evaluation,
)

MAX_REPLAYS = 20_000  # events x learning settings replayed within one request
INTERVALS = (5, 60, 360, 720, 1440)  # minutes, as Personalizer allowed
MAX_BUCKETS = 200  # kept per setting (so an evaluation fits one item): the finest interval within


def _parse_time(text: str, field: str) -> float:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise invalid(codes.INVALID_EVALUATION, field, f"'{text}' is not a date-time") from exc
    if moment.tzinfo is None:
        raise invalid(codes.INVALID_EVALUATION, field, "give a time zone (such as Z)")
    return moment.timestamp()


def _settings(spec: PolicySpec, body: EvaluationContract) -> list[tuple[str, str, PolicySpec]]:
    names: set[str] = set()
    out = []
    for index, policy in enumerate(body.policies):
        if policy.name in names or policy.name in {"Online", "Baseline", "Random"}:
            raise PersonalizerError(
                400,
                codes.DUPLICATE_POLICY_NAMES,
                f"policies[{index}].name: '{policy.name}' is used twice (Online, Baseline and "
                "Random name the built-in comparisons)",
                target=f"policies[{index}].name",
            )
        names.add(policy.name)
        candidate = spec_with_arguments(spec, policy.arguments, codes.INVALID_EVALUATION)
        out.append((policy.name, policy.arguments, candidate))
    return out


def create(principal: Principal, evaluation_id: str, body: EvaluationContract) -> dict[str, Any]:
    """Run and keep an evaluation; returns it as kept (rendered per API version by callers)."""
    principal.require("admin")
    current = stored(principal)
    spec = current.spec
    start = _parse_time(body.startTime, "startTime")
    end = _parse_time(body.endTime, "endTime")
    if end <= start:
        raise invalid(codes.INVALID_EVALUATION, "endTime", "must be after startTime")
    candidates = _settings(spec, body)
    try:
        get_evaluation(principal.tenant, spec.name, evaluation_id)
    except NotFoundError:
        pass
    else:
        raise _exists(evaluation_id)
    records = _closed_records(principal.tenant, spec, start, end, len(candidates))
    kept, logged = logged_first_slots(records, spec)
    if not kept:
        raise PersonalizerError(
            400,
            codes.NO_LOGS,
            "no event with a seen first slot and a closed reward wait lies in the date range",
        )
    if body.estimator == "dr":
        references = reference_terms(
            kept,
            logged,
            spec,
            {
                "Baseline": [comparisons.baseline_distribution(r) for r in kept],
                "Random": [comparisons.random_distribution(r) for r in kept],
            },
        )
        baseline, random = references["Baseline"], references["Random"]
    else:
        baseline, random = comparisons.baseline(kept, logged), comparisons.random(kept, logged)
    results = [
        _result("Online", arguments_of(spec), "Online", logged),
        _result("Baseline", "", "Baseline", baseline),
        _result("Random", "", "Random", random),
    ]
    if candidates:
        try:
            replayed = evaluate(
                kept, {name: candidate for name, _, candidate in candidates}, method=body.estimator
            )
        except ValueError as exc:  # a log this replay can never use: retrying cannot help
            field = "estimator" if body.estimator == "dr" else "startTime"  # or the date range
            raise invalid(codes.INVALID_EVALUATION, field, str(exc)) from exc
        for (name, arguments, _), value in zip(candidates, replayed.candidates, strict=True):
            assert value.terms is not None  # the replay always keeps them
            results.append(_result(name, arguments, "Custom", value.terms))
    interval = _interval(logged.timestamps)
    for result in results:
        result["buckets"] = _buckets(result.pop("terms"), interval)
    best = max(results, key=_total_value)
    evaluation = {
        "id": evaluation_id,
        "name": body.name,
        "startTime": iso_time(start),
        "endTime": iso_time(end),
        "creationTime": iso_time(time.time()),
        "events": len(kept),
        "intervalInMinutes": interval,
        "optimalPolicy": best["name"],
        "estimator": body.estimator,
        "policies": results,
    }
    try:
        put_evaluation(principal.tenant, spec.name, evaluation_id, evaluation)
    except EvaluationExistsError as exc:
        raise _exists(evaluation_id) from exc
    return evaluation


def _exists(evaluation_id: str) -> PersonalizerError:
    return PersonalizerError(
        409, codes.EVALUATION_EXISTS, f"Evaluation with id {evaluation_id} already exists."
    )


def _closed_records(
    tenant: str, spec: PolicySpec, start: float, end: float, settings: int
) -> list[DecisionRecord]:
    """The range's events whose reward wait is over, refused past ``MAX_REPLAYS``."""
    now = time.time()
    records: list[DecisionRecord] = []
    limit = MAX_REPLAYS // max(settings, 1)
    for record in decision_store.export(tenant, spec.name, since=start):
        if record.timestamp > end:
            break
        wait = record.wait_seconds or spec.rewards.wait_seconds
        if record.window_start + wait > now:
            continue
        records.append(record)
        if len(records) > limit:
            raise PersonalizerError(
                400,
                codes.LOGS_TOO_LARGE,
                f"the range holds more than {limit} events for {settings} learning settings; "
                f"an evaluation replays at most {MAX_REPLAYS} events x settings: narrow "
                "startTime and endTime, or run `serendip evaluate` on `serendip export`",
            )
    return records


def _result(name: str, arguments: str, source: str, terms: FirstSlotTerms) -> dict[str, Any]:
    return {"name": name, "arguments": arguments, "source": source, "terms": terms}


def _interval(timestamps: np.ndarray) -> int:
    """The finest of Personalizer's intervals that keeps at most ``MAX_BUCKETS`` buckets."""
    for minutes in INTERVALS:
        if len(np.unique(np.floor(timestamps / (minutes * 60)))) <= MAX_BUCKETS:
            return minutes
    return INTERVALS[-1]


def _buckets(terms: FirstSlotTerms, minutes: int) -> list[list[float]]:
    """``[bucket start, n, w, wr, w2, w2r, w2r2]`` per non-empty bucket, oldest first: of the
    importance weights and rewards (SNIPS), or of unit weights and DR's terms when ``terms``
    carries a reward model's predictions (``evaluation_dr.dr_values``)."""
    width = minutes * 60
    weights, values = dr_values(terms) or (terms.target / terms.logged, terms.rewards)
    starts = np.floor(terms.timestamps / width) * width
    out: list[list[float]] = []
    for start in np.unique(starts):
        mask = starts == start
        sums = Sums.of(weights[mask], values[mask])
        out.append([float(start), sums.n, sums.w, sums.wr, sums.w2, sums.w2r, sums.w2r2])
    return out


def _sums(bucket: Sequence[float]) -> Sums:
    return Sums(*bucket[1:7])


def _total_value(result: dict[str, Any]) -> float:
    total = _total(result)
    return -math.inf if total is None else total[0]


def _total(result: dict[str, Any]) -> tuple[float, float, float] | None:
    total = Sums()
    for bucket in result["buckets"]:
        total = total + _sums(bucket)
    return total.estimate()


# ---------------------------------------------------------------------------- renderings


def _interval_of(estimate: tuple[float, float, float] | None) -> list[float] | None:
    if estimate is None:
        return None
    return [_finite(estimate[1]), _finite(estimate[2])]


def _finite(value: float) -> float:
    """JSON has no infinity: an unbounded side of an interval is given as +-1e30."""
    return max(min(value, 1e30), -1e30)


def _series(
    result: dict[str, Any], minutes: int, window: str, start: float, end: float
) -> list[dict[str, Any]]:
    width = minutes * 60
    grouped: dict[float, Sums] = {}
    for bucket in result["buckets"]:
        if not start <= bucket[0] <= end:
            continue
        key = math.floor(bucket[0] / width) * width
        grouped[key] = grouped.get(key, Sums()) + _sums(bucket)
    data = []
    running = Sums()
    for key in sorted(grouped):
        running = running + grouped[key] if window == "Expanding" else grouped[key]
        estimate = running.estimate()
        data.append(
            {
                "timeStamp": iso_time(key),
                "expectedReward": None if estimate is None else estimate[0],
                "confidenceInterval": _interval_of(estimate),
            }
        )
    return data


def _details(evaluation: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": evaluation["id"],
        "name": evaluation["name"],
        "startTime": evaluation["startTime"],
        "endTime": evaluation["endTime"],
        "creationTime": evaluation["creationTime"],
        "status": "Succeeded",
        "evaluationType": "Manual",
    }


def render_preview(
    evaluation: dict[str, Any],
    *,
    start: float | None = None,
    end: float | None = None,
    minutes: int | None = None,
    window: str = "Expanding",
) -> dict[str, Any]:
    """The 2022-09-01-preview ``Evaluation``: summaries and a time series per setting."""
    kept = int(evaluation["intervalInMinutes"])
    interval = max(minutes or kept, kept)
    low = -math.inf if start is None else start
    high = math.inf if end is None else end
    values = []
    for result in evaluation["policies"]:
        values.append(
            {
                "name": result["name"],
                "arguments": result["arguments"],
                "policySource": result["source"],
                "summary": {
                    "expectedReward": _total_value(result) if _total(result) else None,
                    "confidenceInterval": _interval_of(_total(result)),
                },
                "timeseries": {"data": _series(result, interval, window, low, high)},
            }
        )
    return {
        **_details(evaluation),
        "optimalPolicy": evaluation["optimalPolicy"],
        "description": f"Replayed {evaluation['events']} events of the decision log "
        f"({_estimator_name(evaluation)}, 95% intervals, first slot).",
        "content": {
            "startTime": evaluation["startTime"],
            "endTime": evaluation["endTime"],
            "intervalInMinutes": interval,
            "value": values,
        },
    }


def _estimator_name(evaluation: dict[str, Any]) -> str:
    """``SNIPS`` or ``DR``; evaluations kept before ``estimator`` existed are SNIPS."""
    return "DR" if evaluation.get("estimator", "snips") == "dr" else "SNIPS"


def _summary(sums: Sums, timestamp: float, minutes: int) -> dict[str, Any]:
    estimate = sums.estimate()
    return {
        "timeStamp": iso_time(timestamp),
        "ipsEstimatorNumerator": sums.wr,
        "ipsEstimatorDenominator": sums.n,
        "snipsEstimatorDenominator": sums.w,
        "aggregateTimeWindow": f"PT{minutes}M",
        "nonZeroProbability": sums.n,
        "confidenceInterval": 0.0 if estimate is None else _finite(estimate[2] - estimate[0]),
        "sumOfSquares": sums.w2r2,
    }


def render_v1(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The v1.0 ``Evaluation``: per setting, IPS/SNIPS sums per time bucket and in total (of a
    DR evaluation: the sums of its DR terms with unit weights, so the ratio is their mean)."""
    minutes = int(evaluation["intervalInMinutes"])
    results = []
    for result in evaluation["policies"]:
        total = Sums()
        summary = []
        for bucket in result["buckets"]:
            sums = _sums(bucket)
            total = total + sums
            summary.append(_summary(sums, bucket[0], minutes))
        first = result["buckets"][0][0] if result["buckets"] else 0.0
        results.append(
            {
                "name": result["name"],
                "arguments": result["arguments"],
                "summary": summary,
                "totalSummary": _summary(total, first, minutes),
            }
        )
    return {
        "id": evaluation["id"],
        "name": evaluation["name"],
        "startTime": evaluation["startTime"],
        "endTime": evaluation["endTime"],
        "jobId": evaluation["id"],
        "status": "completed",
        "policyResults": results,
        "featureImportance": [],
    }


def get(principal: Principal, evaluation_id: str) -> dict[str, Any]:
    """A kept evaluation (``EvaluationNotFound`` if none has that id)."""
    principal.require("admin")
    try:
        return get_evaluation(principal.tenant, stored(principal).spec.name, evaluation_id)
    except NotFoundError as exc:
        raise PersonalizerError(404, codes.EVALUATION_NOT_FOUND, exc.detail) from exc


def listing(principal: Principal) -> list[dict[str, Any]]:
    """Every kept evaluation, newest first."""
    principal.require("admin")
    return list_evaluations(principal.tenant, stored(principal).spec.name)


def details(evaluation: dict[str, Any]) -> dict[str, Any]:
    """An evaluation as the 2022-09-01-preview list shows it."""
    return _details(evaluation)


def delete(principal: Principal, evaluation_id: str) -> None:
    """Forget a kept evaluation."""
    principal.require("admin")
    try:
        delete_evaluation(principal.tenant, stored(principal).spec.name, evaluation_id)
    except NotFoundError as exc:
        raise PersonalizerError(404, codes.EVALUATION_NOT_FOUND, exc.detail) from exc


def parse_window(
    start: str | None, end: str | None, minutes: str | None, window: str | None
) -> tuple[float | None, float | None, int | None, str]:
    """The 2022 GET's query: ``startTime``/``endTime``, ``intervalInMinutes``, ``window``."""
    low = None if start is None else _parse_time(start, "startTime")
    high = None if end is None else _parse_time(end, "endTime")
    interval = None
    if minutes is not None:
        if not minutes.isdigit() or int(minutes) not in INTERVALS:
            raise invalid(
                codes.INVALID_EVALUATION,
                "intervalInMinutes",
                f"must be one of {', '.join(map(str, INTERVALS))}",
            )
        interval = int(minutes)
    shape = window or "Expanding"
    if shape not in {"Expanding", "Rolling"}:
        raise invalid(codes.INVALID_EVALUATION, "window", "must be Expanding or Rolling")
    return low, high, interval, shape
