"""The rank handler end to end, in process on moto: auth, policy, model, budget, decision write."""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections.abc import Iterator
from typing import Any

from benchmarks.core_speed import percentiles

RANK_PATH = "/v1/policies/{policy}/rank"


def rank_handler_latency(
    calls: int = 500, candidates: int = 100, slots: int = 10
) -> dict[str, Any]:
    """p50/p95/p99 of ``functions.rank.app.lambda_handler`` on in-process moto."""
    with _in_moto():
        return _measure(calls, candidates, slots)


@contextlib.contextmanager
def _in_moto() -> Iterator[None]:
    """In-process moto with bench credentials, quiet Powertools, the environment restored."""
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
            yield
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


PERSONALIZER_RESOURCE = "/personalizer/{proxy+}"


def personalizer_rank_latency(calls: int = 300, actions: int = 50) -> dict[str, Any]:
    """The Personalizer API's rank against ``/v1`` rank of the same one-slot decision.

    Both go to the ``personalizer`` policy with the same actions and contexts, interleaved in
    one moto, so the ratio is what the front (Personalizer's shapes, feature lists, the full
    distribution) costs over the rank it maps onto.
    """
    with _in_moto():
        return _measure_personalizer(calls, actions)


def _measure_personalizer(calls: int, actions: int) -> dict[str, Any]:
    from functions.common import policy_store
    from functions.common.auth import create_key
    from functions.common.aws import reset_clients
    from functions.common.settings import reset_settings
    from functions.common.tables import unbind
    from functions.personalizer import app as personalizer
    from functions.rank import app as rank
    from local.lambda_events import FakeLambdaContext, proxy_event
    from local.resources import ROOT, create_resources

    os.environ.update(create_resources("serendip-bench"))
    reset_settings()
    unbind()
    reset_clients()
    rank._service = personalizer._service = None
    key = create_key("bench", {"rank"})
    policy_store.seed("bench", ROOT / "policies")
    headers = {"content-type": "application/json", "x-api-key": key.api_key}
    pairs = []
    for i in range(calls + 20):
        context = {"user": {"segment": f"s{i % 7}", "visits": i % 13}}
        features = [{"kind": {"topic": f"t{a % 5}", "length": a % 3}} for a in range(actions)]
        v1 = {
            "context": context,
            "candidates": [{"id": f"a{a}", "features": f} for a, f in enumerate(features)],
            "slate_size": 1,
        }
        front = {
            "contextFeatures": [{k: v} for k, v in context.items()],
            "actions": [{"id": f"a{a}", "features": [f]} for a, f in enumerate(features)],
        }
        pairs.append(
            (
                proxy_event(
                    "POST",
                    "/v1/policies/personalizer/rank",
                    resource=RANK_PATH,
                    body=json.dumps(v1),
                    headers=headers,
                ),
                proxy_event(
                    "POST",
                    "/personalizer/v1.0/rank",
                    resource=PERSONALIZER_RESOURCE,
                    body=json.dumps(front),
                    headers=headers,
                ),
            )
        )
    times: dict[str, list[float]] = {"v1": [], "personalizer": []}
    for index, (v1_event, front_event) in enumerate(pairs):
        for name, handler, event, status in (
            ("v1", rank.lambda_handler, v1_event, 200),
            ("personalizer", personalizer.lambda_handler, front_event, 201),
        ):
            started = time.perf_counter()
            response = handler(event, FakeLambdaContext())  # type: ignore[arg-type]
            elapsed = time.perf_counter() - started
            if response["statusCode"] != status:
                raise RuntimeError(f"{name} rank answered {response['statusCode']}")
            if index >= 20:  # the first 20 warm imports, caches and the first model
                times[name].append(elapsed)
    rank._service = personalizer._service = None
    unbind()
    reset_clients()
    reset_settings()
    v1_p = percentiles(times["v1"])
    front_p = percentiles(times["personalizer"])
    return {
        "calls": calls,
        "actions": actions,
        "v1": v1_p,
        "personalizer": front_p,
        "p50_ratio": front_p["p50_ms"] / v1_p["p50_ms"],
    }
