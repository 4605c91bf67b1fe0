"""Apprentice mode on moto: serve the app's order, learn from it, report agreement and value."""

from __future__ import annotations

from typing import Any

import pytest

from functions.admin.app import lambda_handler as admin_handler
from functions.common import decision_store
from functions.common.auth import NewKey
from local.lambda_events import FakeLambdaContext, proxy_event, response_json
from tests.functional.conftest import Api
from tests.functional.traffic import run_traffic

CANDIDATES = [{"id": f"item-{i}", "features": {"kind": f"k{i}"}} for i in range(6)]
SPEC = {
    "name": "apprentice",
    "mode": "apprentice",
    "slate_size": 2,
    "vw": {"args": ["--cb_type", "dm", "-q", "CI", "--learning_rate", "0.3"]},
    "exploration": {"algorithm": "epsilon_greedy", "budget": 0.3},
    "cold_start": {"segments": [{"name": "everyone"}], "prior_examples": 0},
    "rewards": {"types": {"click": 1.0}, "aggregation": "max", "default": 0.0},
}
# The truth: only item-3 is ever clicked.
REWARDED = "item-3"


def _put(api: Api, spec: dict[str, Any]) -> None:
    status, body, _ = api.call(
        admin_handler, "PUT", "/v1/policies/apprentice", spec, resource="/v1/policies/{policy}"
    )
    assert status == 200, body


def _traffic(api: Api, aws: dict[str, str], events: int, baseline: list[str] | None) -> list[Any]:
    body: dict[str, Any] = {"context": {"user": {"cohort": "a"}}, "candidates": CANDIDATES}
    if baseline is not None:
        body["baseline"] = baseline
    return run_traffic(
        api,
        aws,
        "apprentice",
        events,
        request=lambda _: body,
        reward=lambda _, slot: 1.0 if slot["id"] == REWARDED else 0.0,
    )


def _progress(tenant: NewKey) -> dict[str, Any]:
    event = proxy_event(
        "GET",
        "/v1/policies/apprentice/progress",
        resource="/v1/policies/{policy}/progress",
        headers={"x-api-key": tenant.api_key},
    )
    context: Any = FakeLambdaContext()
    response = admin_handler(event, context)
    assert response["statusCode"] == 200, response
    return dict(response_json(response))


def test_an_apprentice_serves_the_apps_order_and_explores_only_within_its_budget(
    aws: dict[str, str], api: Api, tenant: NewKey
) -> None:
    _put(api, SPEC)
    order = [f"item-{i}" for i in (5, 4, 0, 1, 2, 3)]
    answers = _traffic(api, aws, 60, order)
    for answer in answers:
        rate = answer["exploration"]["rate"]
        shown: list[str] = []
        for slot in answer["slate"]:
            lead = next(i for i in order if i not in shown)
            allowed = len(CANDIDATES) - len(shown)
            if not slot["explored"]:
                # The app's next item, with the probability it had of being drawn either way
                assert slot["id"] == lead
                assert slot["probability"] == pytest.approx(1 - rate + rate / allowed)
            elif slot["id"] != lead:
                assert slot["probability"] == pytest.approx(rate / allowed)
            shown.append(slot["id"])
    explored = sum(s["explored"] for a in answers for s in a["slate"])
    assert 0.1 < explored / 120 < 0.5  # a 30% budget
    # The decision log keeps the order served and the model's own choice
    record = decision_store.get("acme", answers[-1]["event_id"]).record
    assert record.baseline == order and record.model_choice in order


def test_an_apprentice_whose_app_misses_the_best_item_reports_the_model_ahead(
    aws: dict[str, str], api: Api, tenant: NewKey
) -> None:
    # Given an app that ranks its items in catalog order (item-3 is fourth), sent as candidates
    _put(api, SPEC)
    answers = _traffic(api, aws, 150, None)
    assert sum(a["slate"][0]["id"] == "item-0" for a in answers) > 90  # the app's first choice
    progress = _progress(tenant)
    total = progress["total"]
    assert progress["mode"] == "apprentice"
    # Then the model learned item-3 and mostly disagrees with the app
    last = decision_store.get("acme", answers[-1]["event_id"]).record
    assert last.model_choice == REWARDED
    assert total["agreement"]["compared"] == 150 and total["agreement"]["share"] < 0.5
    # And what it would have earned, estimated from the explored first slots, beats the app's 0
    model, app = total["reward"]["model"], total["reward"]["baseline"]
    assert app["value"] == pytest.approx(0.0) and model["value"] > 0.5
    assert model["low"] > app["high"]
    verdict = progress["verdict"]
    assert verdict["state"] == "model_ahead", verdict
    assert "set mode to live" in verdict["sentence"]


def test_an_apprentice_whose_app_is_right_agrees_with_it(
    aws: dict[str, str], api: Api, tenant: NewKey
) -> None:
    _put(api, SPEC)
    _traffic(api, aws, 120, ["item-3", "item-1", "item-0"])
    total = _progress(tenant)["total"]
    assert total["agreement"]["share"] > 0.7
    model, app = total["reward"]["model"], total["reward"]["baseline"]
    assert app["value"] == pytest.approx(1.0)
    # The model's early choices (before it learned item-3) count against it: never ahead
    assert model["value"] <= app["value"]
    assert _progress(tenant)["verdict"]["state"] in {"app_ahead", "tied"}
