"""The rank handler end to end, in process on moto: auth, policy, model, budget, decision write."""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from typing import Any

from benchmarks.core_speed import percentiles

RANK_PATH = "/v1/policies/{policy}/rank"


def rank_handler_latency(
    calls: int = 500, candidates: int = 100, slots: int = 10
) -> dict[str, Any]:
    """p50/p95/p99 of ``functions.rank.app.lambda_handler`` on in-process moto."""
    from moto import mock_aws

    saved = dict(os.environ)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "ERROR",
        }
    )
    os.environ.pop("AWS_ENDPOINT_URL", None)
    try:
        # Powertools prints EMF metric lines even when publishing is disabled: keep them out.
        with mock_aws(), contextlib.redirect_stdout(io.StringIO()):
            return _measure(calls, candidates, slots)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _measure(calls: int, candidates: int, slots: int) -> dict[str, Any]:
    from bandit.simulate.simulation import Population
    from functions.common import policy_store
    from functions.common.auth import create_key
    from functions.common.aws import reset_clients
    from functions.common.settings import reset_settings
    from functions.common.tables import unbind
    from functions.rank import app as rank
    from local.demo import rank_body
    from local.lambda_events import FakeLambdaContext, proxy_event
    from local.resources import ROOT, create_resources

    os.environ.update(create_resources("serendip-bench"))
    reset_settings()
    unbind()
    reset_clients()
    rank._service = None
    key = create_key("bench", {"rank"})
    policy_store.seed("bench", ROOT / "policies")
    population = Population(seed=3, candidates=candidates)
    headers = {"content-type": "application/json", "x-api-key": key.api_key}
    events = []
    for _ in range(calls + 20):
        body = rank_body(population.next_request(), slots)
        events.append(
            proxy_event(
                "POST",
                "/v1/policies/for-you/rank",
                resource=RANK_PATH,
                body=json.dumps(body),
                headers=headers,
            )
        )
    for event in events[:20]:  # warm: imports, caches, first model
        rank.lambda_handler(event, FakeLambdaContext())  # type: ignore[arg-type]
    times = []
    for event in events[20:]:
        started = time.perf_counter()
        response = rank.lambda_handler(event, FakeLambdaContext())  # type: ignore[arg-type]
        times.append(time.perf_counter() - started)
        if response["statusCode"] != 200:
            raise RuntimeError(
                f"rank handler answered {response['statusCode']}: {response['body']}"
            )
    rank._service = None
    unbind()
    reset_clients()
    reset_settings()
    return {"calls": calls, "candidates": candidates, "slots": slots, "rank": percentiles(times)}
