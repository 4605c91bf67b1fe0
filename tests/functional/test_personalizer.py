"""The Personalizer API on moto: Personalizer's answers, its errors, and Serendip underneath."""

from __future__ import annotations

import json
import time
import types
from typing import Any

import pytest

from bandit.evaluate.slot_draws import slot_probabilities
from bandit.learn.rewards import record_outcome
from bandit.serve.ranker import Ranker, RankRequest
from functions.common import decision_store, model_store, policy_store
from functions.common.auth import NewKey, create_key
from functions.common.personalizer import evaluations
from functions.common.personalizer.store import get_evaluation
from functions.personalizer.app import lambda_handler
from tests.functional.personalizer_api import PREVIEW, V1, PersonalizerApi
from tests.queues import deliver_all

ACTIONS = [
    {"id": f"article-{i}", "features": [{"topic": {"name": f"t{i % 3}"}}, {"length": i}]}
    for i in range(6)
]
CONTEXT = [{"user": {"tier": "gold"}}, {"device": {"mobile": True}}]
CONFIG = {
    "rewardWaitTime": "PT10M",
    "defaultReward": 0.0,
    "rewardAggregation": "earliest",
    "explorationPercentage": 0.2,
    "modelExportFrequency": "PT5M",
    "logRetentionDays": 7,
}


@pytest.fixture
def api(tenant: NewKey) -> PersonalizerApi:
    return PersonalizerApi(lambda_handler, tenant.api_key)


def rank(api: PersonalizerApi, **extra: Any) -> dict[str, Any]:
    status, body, _ = api.call(
        "POST", f"{V1}/rank", {"contextFeatures": CONTEXT, "actions": ACTIONS, **extra}
    )
    assert status == 201, body
    return dict(body)


def error_of(answer: tuple[int, Any, dict[str, str]]) -> tuple[int, str, str | None]:
    status, body, headers = answer
    assert headers["x-ms-error-code"] == body["error"]["code"]
    return status, body["error"]["code"], body["error"].get("target")


# ------------------------------------------------------------------------------------ rank


def test_rank_lists_every_action_with_the_exact_probability_of_the_one_slot(
    api: PersonalizerApi, tenant: NewKey
) -> None:
    answer = rank(api, excludedActions=["article-2"], eventId="my-event-1")
    ranking = answer["ranking"]
    assert answer["eventId"] == "my-event-1"
    assert ranking[0]["id"] == answer["rewardActionId"]
    assert sorted(a["id"] for a in ranking) == sorted(a["id"] for a in ACTIONS)
    assert ranking[-1] == {"id": "article-2", "probability": 0.0}
    assert sum(a["probability"] for a in ranking) == pytest.approx(1.0, abs=1e-12)
    # A fresh policy explores 20% over the five allowed actions: 0.8 + 0.2 / 5 for the greedy
    assert ranking[0]["probability"] == pytest.approx(0.84) or answer["serendip"]["explored"]
    # And Serendip logged the one slot with that probability, under the app's event id
    record = decision_store.get(tenant.tenant, "my-event-1").record
    assert record.policy == "personalizer" and len(record.slate) == 1
    assert record.slate[0].item_id == answer["rewardActionId"]
    assert record.slate[0].probability == ranking[0]["probability"]
    assert record.constraints.exclude == ["article-2"]
    assert record.baseline == ["article-0"]
    assert record.context == {"user": {"tier": "gold"}, "device": {"mobile": True}}


def test_an_event_id_used_before_is_refused_and_the_first_decision_stays(
    api: PersonalizerApi, tenant: NewKey
) -> None:
    first = rank(api, eventId="again")
    status, body, _ = api.call("POST", f"{V1}/rank", {"actions": ACTIONS[:2], "eventId": "again"})
    assert (status, body["error"]["code"], body["error"]["target"]) == (
        400,
        "InvalidRankRequest",
        "eventId",
    )
    record = decision_store.get(tenant.tenant, "again").record
    assert record.slate[0].item_id == first["rewardActionId"] and len(record.candidates) == 6


@pytest.mark.parametrize(
    ("body", "target"),
    [
        ({"actions": []}, "actions"),
        ({}, "actions"),
        ({"actions": [{"id": "a"}, {"id": "a"}]}, "actions[1].id"),
        ({"actions": [{"id": "a"}], "excludedActions": ["a"]}, "excludedActions"),
        ({"actions": [{"id": "x" * 257}]}, "actions[0].id"),
        ({"actions": [{"id": "a"}], "eventId": "e" * 257}, "eventId"),
        ({"actions": [{"id": "a"}], "eventId": "a/b"}, "eventId"),  # no URL could name it
        ({"actions": [{"id": "a", "features": [3]}]}, "actions[0].features[0]"),
        ({"actions": [{"id": "a"}], "contextFeatures": [{"n": float("nan")}]}, "contextFeatures.n"),
        ({"actions": [{"id": f"a{i}"} for i in range(1001)]}, "actions"),
    ],
)
def test_bad_rank_requests_are_400_naming_the_field_and_log_nothing(
    api: PersonalizerApi, tenant: NewKey, body: dict[str, Any], target: str | None
) -> None:
    answer = api.call("POST", f"{V1}/rank", body)
    status, code, named = error_of(answer)
    assert (status, code) == (400, "InvalidRankRequest") or (status, code) == (400, "BadRequest")
    if target is not None:
        assert named == target
    assert list(decision_store.export(tenant.tenant, "personalizer")) == []


def test_more_actions_than_personalizers_50_are_ranked(api: PersonalizerApi) -> None:
    many = [{"id": f"a{i}", "features": [{"n": i}]} for i in range(200)]
    answer = rank(api, actions=many)
    assert len(answer["ranking"]) == 200


def test_keys_and_scopes_answer_personalizers_401_and_403(
    api: PersonalizerApi, tenant: NewKey
) -> None:
    status, code, _ = error_of(api.call("POST", f"{V1}/rank", {"actions": ACTIONS}, api_key="no"))
    assert (status, code) == (401, "Unauthorized")
    ranker = create_key(tenant.tenant, {"rank"})
    status, code, _ = error_of(
        api.call("GET", f"{V1}/configurations/service", api_key=ranker.api_key)
    )
    assert (status, code) == (403, "Forbidden")


def test_the_2022_base_needs_its_api_version_and_unknown_routes_are_404(
    api: PersonalizerApi,
) -> None:
    event = {"actions": ACTIONS}
    assert api.call("POST", f"{PREVIEW}/rank", event)[0] == 201
    status, code, target = error_of(
        api.call("POST", f"{PREVIEW}/rank", event, query="api-version=2019-01-01")
    )
    assert (status, code, target) == (400, "BadRequest", "api-version")
    assert error_of(api.call("GET", f"{V1}/nothing-here"))[:2] == (404, "ResourceNotFound")
    assert error_of(api.call("GET", f"{PREVIEW}/featureImportances"))[:2] == (
        501,
        "OperationNotAllowed",
    )


# ------------------------------------------------------------------------------ multi-slot


def test_multislot_draws_distinct_actions_honours_each_slots_exclusions_and_replays_exactly(
    api: PersonalizerApi, tenant: NewKey
) -> None:
    slots = [
        {"id": "hero", "baselineAction": "article-0", "excludedActions": ["article-1"]},
        {"id": "side", "baselineAction": "article-1", "features": [{"size": "small"}]},
        {"id": "foot", "baselineAction": "article-2", "excludedActions": ["article-3"]},
    ]
    for _ in range(20):
        status, answer, _ = api.call(
            "POST",
            f"{PREVIEW}/multislot/rank",
            {"contextFeatures": CONTEXT, "actions": ACTIONS, "slots": slots},
        )
        assert status == 201, answer
        chosen = [slot["rewardActionId"] for slot in answer["slots"]]
        assert [slot["id"] for slot in answer["slots"]] == ["hero", "side", "foot"]
        assert len(set(chosen)) == 3
        assert chosen[0] != "article-1" and chosen[2] != "article-3"
    record = decision_store.get(tenant.tenant, answer["eventId"]).record
    assert record.slot_ids == ["hero", "side", "foot"]
    assert record.baseline == ["article-0", "article-1", "article-2"]
    assert record.constraints.exclude_by_slot == [["article-1"], [], ["article-3"]]
    logged = [slot.probability for slot in sorted(record.slate, key=lambda s: s.position)]
    assert [slot["probability"] for slot in answer["slots"]] == logged
    # The replay of the same policy gives each logged slot the probability it was drawn with
    spec = policy_store.get(tenant.tenant, "personalizer").spec
    assert slot_probabilities(Ranker(spec), record) == pytest.approx(logged, rel=1e-12)


@pytest.mark.parametrize(
    ("slots", "target"),
    [
        ([{"id": "s", "baselineAction": "missing"}], "slots[0].baselineAction"),
        (
            [
                {"id": "s", "baselineAction": "article-0"},
                {"id": "t", "baselineAction": "article-0"},
            ],
            "slots[1].baselineAction",
        ),
        (
            [{"id": "s", "baselineAction": "article-0", "excludedActions": ["article-0"]}],
            "slots[0].baselineAction",
        ),
        (
            [
                {"id": "s", "baselineAction": "article-0"},
                {"id": "s", "baselineAction": "article-1"},
            ],
            "slots[1].id",
        ),
        ([{"id": "s"}], "slots[0].baselineAction"),
    ],
)
def test_multislot_keeps_personalizers_rules_for_slots(
    api: PersonalizerApi, slots: list[dict[str, Any]], target: str
) -> None:
    answer = api.call("POST", f"{PREVIEW}/multislot/rank", {"actions": ACTIONS, "slots": slots})
    assert error_of(answer) == (400, "InvalidRankRequest", target)


# ---------------------------------------------------------------------------- rewards


def test_rewards_reach_the_chosen_action_and_the_named_slots(
    aws: dict[str, str], api: PersonalizerApi, tenant: NewKey
) -> None:
    single = rank(api)
    assert api.call("POST", f"{V1}/events/{single['eventId']}/reward", {"value": 0.5})[0] == 204
    slots = [
        {"id": "hero", "baselineAction": "article-0"},
        {"id": "side", "baselineAction": "article-1"},
    ]
    _, multi, _ = api.call(
        "POST", f"{PREVIEW}/multislot/rank", {"actions": ACTIONS, "slots": slots}
    )
    rewards = {"reward": [{"slotId": "side", "value": 1.0}, {"slotId": "nowhere", "value": 1.0}]}
    path = f"{PREVIEW}/multislot/events/{multi['eventId']}/reward"
    assert api.call("POST", path, rewards)[0] == 204
    assert deliver_all(aws) == []
    first = decision_store.get(tenant.tenant, single["eventId"]).record
    assert [(r.item_id, r.type, r.value) for r in first.rewards] == [
        (single["rewardActionId"], "reward", 0.5)
    ]
    second = decision_store.get(tenant.tenant, multi["eventId"]).record
    assert [r.item_id for r in second.rewards] == [multi["slots"][1]["rewardActionId"]]


@pytest.mark.parametrize("value", [1.5, -1.01, "1", None])
def test_a_reward_outside_minus_one_to_one_is_400(api: PersonalizerApi, value: Any) -> None:
    event = rank(api)["eventId"]
    answer = api.call("POST", f"{V1}/events/{event}/reward", {"value": value})
    assert error_of(answer) == (400, "InvalidRewardRequest", "value")


def test_a_deferred_event_is_activated_and_an_unknown_one_is_404(
    api: PersonalizerApi, tenant: NewKey
) -> None:
    event = rank(api, deferActivation=True)["eventId"]
    assert decision_store.status(tenant.tenant, event)["activated"] is False
    assert api.call("POST", f"{V1}/events/{event}/activate")[0] == 204
    assert decision_store.status(tenant.tenant, event)["activated"] is True
    assert error_of(api.call("POST", f"{V1}/events/nope/activate"))[:2] == (404, "ResourceNotFound")


# ----------------------------------------------------------------------- configuration


def test_service_configuration_round_trips_onto_the_policy_spec(
    api: PersonalizerApi, tenant: NewKey
) -> None:
    sent = {
        **CONFIG,
        "rewardWaitTime": "PT4H",
        "explorationPercentage": 0.05,
        "defaultReward": -0.5,
    }
    status, answer, _ = api.call("PUT", f"{PREVIEW}/configurations/service", sent)
    assert status == 200, answer
    _, read, _ = api.call("GET", f"{V1}/configurations/service")
    assert {key: read[key] for key in sent} == sent
    assert read["learningMode"] == "Online" and read["lastConfigurationEditDate"].endswith("Z")
    spec = policy_store.get(tenant.tenant, "personalizer").spec
    assert spec.rewards.wait_seconds == 4 * 3600 and spec.rewards.default == -0.5
    assert spec.budget_for("all") == 0.05 and spec.rewards.aggregation == "earliest"


def test_apprentice_learning_mode_serves_the_baseline_action_and_reads_back(
    api: PersonalizerApi, tenant: NewKey
) -> None:
    sent = {**CONFIG, "learningMode": "Apprentice", "explorationPercentage": 0.2}
    assert api.call("PUT", f"{V1}/configurations/service", sent)[0] == 200
    assert api.call("GET", f"{V1}/configurations/service")[1]["learningMode"] == "Apprentice"
    assert policy_store.get(tenant.tenant, "personalizer").spec.mode == "apprentice"
    # The baseline action is the first one not excluded: served unless the slot explored
    answers = [rank(api, excludedActions=["article-0"]) for _ in range(40)]
    exploited = 0
    for answer in answers:
        record = decision_store.get(tenant.tenant, answer["eventId"]).record
        slot, rate = record.slate[0], record.exploration.rate
        assert record.baseline == ["article-1"]
        if not slot.explored:
            exploited += 1
            assert answer["rewardActionId"] == slot.item_id == "article-1"
            assert answer["ranking"][0]["probability"] == pytest.approx(1 - rate + rate / 5)
    assert exploited >= 20  # a 20% budget
    back = {**CONFIG, "learningMode": "Online"}
    assert api.call("PUT", f"{V1}/configurations/service", back)[0] == 200
    assert policy_store.get(tenant.tenant, "personalizer").spec.mode == "live"


@pytest.mark.parametrize(
    ("change", "code", "target", "status"),
    [
        ({"rewardWaitTime": "P1M"}, "InvalidRewardWaitTime", "rewardWaitTime", 400),
        ({"rewardWaitTime": "PT1S"}, "InvalidRewardWaitTime", "rewardWaitTime", 400),
        ({"logRetentionDays": 0}, "InvalidLogRetentionDays", "logRetentionDays", 400),
        ({"modelRetrainDays": 8}, "InvalidModelRetrainDays", "modelRetrainDays", 400),
        ({"rewardAggregation": "average"}, "InvalidServiceConfiguration", "rewardAggregation", 400),
        (
            {"explorationPercentage": 1.5},
            "InvalidServiceConfiguration",
            "explorationPercentage",
            400,
        ),
        ({"learningMode": "LoggingOnly"}, "OperationNotAllowed", None, 501),
        ({"learningMode": "Shadow"}, "InvalidServiceConfiguration", "learningMode", 400),
        ({"isAutoOptimizationEnabled": True}, "OperationNotAllowed", None, 501),
    ],
)
def test_a_refused_service_configuration_changes_nothing(
    api: PersonalizerApi,
    tenant: NewKey,
    *,
    change: dict[str, Any],
    code: str,
    target: str | None,
    status: int,
) -> None:
    before = policy_store.get(tenant.tenant, "personalizer")
    answer = api.call("PUT", f"{V1}/configurations/service", {**CONFIG, **change})
    assert error_of(answer) == (status, code, target)
    assert policy_store.get(tenant.tenant, "personalizer").spec_version == before.spec_version


def test_policy_arguments_become_the_specs_vw_arguments_and_reset_restores_the_defaults(
    api: PersonalizerApi, tenant: NewKey
) -> None:
    sent = {
        "name": "tuned",
        "arguments": "--cb_explore_adf --epsilon 0.1 --cb_type mtr -q :: -l 0.05",
    }
    status, answer, _ = api.call("PUT", f"{V1}/configurations/policy", sent)
    assert status == 200, answer
    assert answer == {
        "name": "tuned",
        "arguments": "--cb_explore_adf --epsilon 0.1 --cb_type mtr -q CI -l 0.05",
    }
    assert api.call("GET", f"{V1}/configurations/policy")[1] == answer
    stored = policy_store.get(tenant.tenant, "personalizer")
    assert stored.spec.vw_args() == ["--cb_type", "mtr", "-q", "CI", "-l", "0.05"]
    assert stored.spec.exploration.budget == 0.1 and stored.head_version == 1  # a fresh model
    squarecb = {"name": "sq", "arguments": "--cb_explore_adf --squarecb --gamma_scale 20"}
    assert api.call("PUT", f"{V1}/configurations/policy", squarecb)[0] == 200
    assert policy_store.get(tenant.tenant, "personalizer").spec.exploration.squarecb_gamma == 20
    _, reset, _ = api.call("DELETE", f"{V1}/configurations/policy")
    assert reset["arguments"] == (
        "--cb_explore_adf --epsilon 0.2 --cb_type dm -q CI --learning_rate 0.1"
    )


@pytest.mark.parametrize(
    "arguments",
    ["--cb_explore_adf -d /etc/passwd", "--cb_type nope", "--epsilon x", "--bag 99", "'unclosed"],
)
def test_policy_arguments_outside_the_allowlist_are_refused_naming_them(
    api: PersonalizerApi, tenant: NewKey, arguments: str
) -> None:
    before = policy_store.get(tenant.tenant, "personalizer")
    answer = api.call("PUT", f"{V1}/configurations/policy", {"name": "x", "arguments": arguments})
    assert error_of(answer) == (400, "InvalidPolicyConfiguration", "arguments")
    assert policy_store.get(tenant.tenant, "personalizer") == before


def test_a_key_bound_to_a_new_policy_creates_it_from_personalizers_defaults(
    api: PersonalizerApi, tenant: NewKey
) -> None:
    bound = create_key(tenant.tenant, {"rank", "reward", "admin"}, policy="shop-home")
    status, answer, _ = api.call("GET", f"{V1}/configurations/service", api_key=bound.api_key)
    assert status == 200, answer
    assert (answer["rewardWaitTime"], answer["explorationPercentage"]) == ("PT10M", 0.2)
    assert policy_store.get(tenant.tenant, "shop-home").spec.rewards.types == {"reward": 1.0}


# ------------------------------------------------------------------------- model and logs


def test_model_export_import_and_reset_are_model_versions(
    aws: dict[str, str], api: PersonalizerApi, tenant: NewKey
) -> None:
    event = rank(api)
    api.call("POST", f"{V1}/events/{event['eventId']}/reward", {"value": 1.0})
    status, blob, headers = api.call("GET", f"{V1}/model")
    assert status == 200 and headers["Content-Type"] == "application/octet-stream"
    assert blob.startswith(b"SERENDIP")
    answer = api.call("PUT", f"{PREVIEW}/model", blob, content_type="application/octet-stream")
    assert answer[0] == 204, answer
    assert api.call("DELETE", f"{V1}/model")[0] == 204
    versions = model_store.versions(tenant.tenant, "personalizer")
    assert [v.version for v in versions] == [2, 1]
    _, properties, _ = api.call("GET", f"{V1}/model/properties")
    assert properties["serendip"]["modelVersion"] == 2
    garbage = api.call(
        "PUT", f"{PREVIEW}/model", b"\x00not a model", content_type="application/octet-stream"
    )
    assert error_of(garbage) == (400, "InvalidModelImportFormat", "body")
    _, logs, _ = api.call("GET", f"{V1}/logs/properties")
    assert logs["dateRange"]["from"] <= logs["dateRange"]["to"]
    assert error_of(api.call("DELETE", f"{V1}/logs"))[:2] == (501, "OperationNotAllowed")


# ---------------------------------------------------------------------------- evaluations


def _closed_traffic(
    api: PersonalizerApi, aws: dict[str, str], rounds: int
) -> list[tuple[float, float]]:
    """Rank ``rounds`` times, rewarding article-0 only; returns (reward, logged probability)s."""
    logged = []
    for _ in range(rounds):
        answer = rank(api)
        value = 1.0 if answer["rewardActionId"] == "article-0" else 0.0
        logged.append((value, answer["ranking"][0]["probability"]))
        api.call("POST", f"{V1}/events/{answer['eventId']}/reward", {"value": value})
    assert deliver_all(aws) == []
    return logged


def test_an_evaluation_estimates_online_baseline_random_and_custom_settings(
    aws: dict[str, str], api: PersonalizerApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    logged = _closed_traffic(api, aws, 60)
    observed = sum(value for value, _ in logged) / len(logged)
    # SNIPS of a uniform draw over the six actions, from the logged probabilities
    weights = [(1 / len(ACTIONS)) / probability for _, probability in logged]
    random_snips = sum(w * value for w, (value, _) in zip(weights, logged, strict=True)) / sum(
        weights
    )
    later = types.SimpleNamespace(time=lambda: time.time() + 3_600)
    monkeypatch.setattr(evaluations, "time", later)
    contract = {
        "name": "first",
        "startTime": "2000-01-01T00:00:00Z",
        "endTime": "2100-01-01T00:00:00Z",
        "policies": [{"name": "greedy", "arguments": "--cb_explore_adf --epsilon 0.0 -q ::"}],
    }
    assert api.call("PUT", f"{PREVIEW}/evaluations/e-1", contract)[0] == 200
    status, got, _ = api.call(
        "GET",
        f"{PREVIEW}/evaluations/e-1",
        query="startTime=2000-01-01T00:00:00Z&endTime=2100-01-01T00:00:00Z",
    )
    assert status == 200, got
    results = {r["name"]: r for r in got["content"]["value"]}
    assert set(results) == {"Online", "Baseline", "Random", "greedy"}
    assert results["Online"]["summary"]["expectedReward"] == pytest.approx(observed)
    # The baseline is article-0 (the first action), the only rewarded one
    assert results["Baseline"]["summary"]["expectedReward"] == pytest.approx(1.0)
    assert results["Random"]["summary"]["expectedReward"] == pytest.approx(random_snips)
    low, high = results["Random"]["summary"]["confidenceInterval"]
    assert low <= random_snips <= high
    assert got["status"] == "Succeeded" and got["optimalPolicy"] in results
    v1 = api.call("GET", f"{V1}/evaluations/e-1")[1]
    online = next(p for p in v1["policyResults"] if p["name"] == "Online")["totalSummary"]
    assert online["ipsEstimatorNumerator"] / online["snipsEstimatorDenominator"] == pytest.approx(
        observed
    )
    assert error_of(api.call("PUT", f"{PREVIEW}/evaluations/e-1", contract))[:2] == (
        409,
        "EvaluationAlreadyExists",
    )
    listed = api.call("GET", f"{PREVIEW}/evaluations", query="maxpagesize=1")[1]
    assert [e["id"] for e in listed["value"]] == ["e-1"] and "nextLink" not in listed
    assert api.call("DELETE", f"{PREVIEW}/evaluations/e-1")[0] == 204
    assert error_of(api.call("GET", f"{V1}/evaluations/e-1"))[:2] == (404, "EvaluationNotFound")


def test_an_evaluation_of_an_empty_range_or_too_many_events_is_refused(
    aws: dict[str, str], api: PersonalizerApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    contract = {"name": "e", "startTime": "2000-01-01T00:00:00Z", "endTime": "2000-01-02T00:00:00Z"}
    assert error_of(api.call("POST", f"{V1}/evaluations", contract))[:2] == (
        400,
        "NoLogsExistInDateRange",
    )
    _closed_traffic(api, aws, 12)
    monkeypatch.setattr(
        evaluations, "time", types.SimpleNamespace(time=lambda: time.time() + 3_600)
    )
    monkeypatch.setattr(evaluations, "MAX_REPLAYS", 10)
    wide = {**contract, "endTime": "2100-01-01T00:00:00Z"}
    assert error_of(api.call("POST", f"{V1}/evaluations", wide))[:2] == (
        400,
        "LogsSizeExceedAllowedLimit",
    )


def _tier_reward(tier: str, action: str) -> float:
    """Gold users value every article (article-5 half as much); silver users none."""
    return (1.0 if tier == "gold" else 0.0) * (0.5 if action == "article-5" else 1.0)


def _contextual_traffic(
    api: PersonalizerApi, aws: dict[str, str], rounds: int
) -> list[tuple[str, float]]:
    """Rank ``rounds`` times for alternating silver and gold users, rewarded by
    ``_tier_reward``; returns each event's (tier, reward). Event ids fix each rank's draw."""
    logged = []
    for i in range(rounds):
        tier = "gold" if i % 2 else "silver"
        answer = rank(api, contextFeatures=[{"user": {"tier": tier}}], eventId=f"tier-{i}")
        value = _tier_reward(tier, answer["rewardActionId"])
        api.call("POST", f"{V1}/events/{answer['eventId']}/reward", {"value": value})
        logged.append((tier, value))
    assert deliver_all(aws) == []
    return logged


def _summaries(api: PersonalizerApi, evaluation_id: str) -> dict[str, dict[str, Any]]:
    status, got, _ = api.call("GET", f"{PREVIEW}/evaluations/{evaluation_id}")
    assert status == 200, got
    return {r["name"]: r["summary"] for r in got["content"]["value"]}


def test_a_dr_evaluation_estimates_every_setting_and_narrows_random_on_a_predictable_log(
    aws: dict[str, str], api: PersonalizerApi, tenant: NewKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    logged = _contextual_traffic(api, aws, 80)
    observed = sum(value for _, value in logged) / len(logged)
    tiers = [tier for tier, _ in logged]
    # What Random and Baseline (article-0, the first action) truly earn on these users
    random_value = sum(
        sum(_tier_reward(tier, a["id"]) for a in ACTIONS) / len(ACTIONS) for tier in tiers
    ) / len(tiers)
    baseline_value = sum(_tier_reward(tier, "article-0") for tier in tiers) / len(tiers)
    monkeypatch.setattr(
        evaluations, "time", types.SimpleNamespace(time=lambda: time.time() + 3_600)
    )
    contract = {
        "name": "contextual",
        "startTime": "2000-01-01T00:00:00Z",
        "endTime": "2100-01-01T00:00:00Z",
        "policies": [{"name": "greedy", "arguments": "--cb_explore_adf --epsilon 0.0 -q ::"}],
    }
    assert api.call("PUT", f"{PREVIEW}/evaluations/snips", contract)[0] == 200
    assert api.call("PUT", f"{PREVIEW}/evaluations/dr", {**contract, "estimator": "dr"})[0] == 200

    snips, dr = _summaries(api, "snips"), _summaries(api, "dr")
    assert set(dr) == {"Online", "Baseline", "Random", "greedy"}
    for name, summary in dr.items():
        low, high = summary["confidenceInterval"]
        assert low < summary["expectedReward"] < high, name
        assert high - low < 1.0, name
    # Online is the logging policy: the observed mean under either estimator
    assert dr["Online"] == snips["Online"]
    assert dr["Online"]["expectedReward"] == pytest.approx(observed)
    low, high = dr["Baseline"]["confidenceInterval"]
    assert low <= baseline_value <= high
    # Random: DR agrees with SNIPS, holds the true value, and is surer of it
    s_low, s_high = snips["Random"]["confidenceInterval"]
    d_low, d_high = dr["Random"]["confidenceInterval"]
    assert s_low <= dr["Random"]["expectedReward"] <= s_high
    assert d_low <= random_value <= d_high
    assert d_high - d_low < s_high - s_low

    described = api.call("GET", f"{PREVIEW}/evaluations/dr")[1]["description"]
    assert described == "Replayed 80 events of the decision log (DR, 95% intervals, first slot)."
    assert get_evaluation(tenant.tenant, "personalizer", "dr")["estimator"] == "dr"
    # v1.0 gives the DR terms' sums with unit weights: their ratio is the DR estimate
    v1 = api.call("GET", f"{V1}/evaluations/dr")[1]
    total = next(p for p in v1["policyResults"] if p["name"] == "Random")["totalSummary"]
    assert total["ipsEstimatorDenominator"] == total["snipsEstimatorDenominator"] == 80
    assert total["ipsEstimatorNumerator"] / 80 == pytest.approx(dr["Random"]["expectedReward"])


def test_the_default_estimator_is_snips_as_before_and_an_unknown_one_is_refused(
    aws: dict[str, str], api: PersonalizerApi, tenant: NewKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    logged = _closed_traffic(api, aws, 30)
    weights = [(1 / len(ACTIONS)) / probability for _, probability in logged]
    random_snips = sum(w * value for w, (value, _) in zip(weights, logged, strict=True)) / sum(
        weights
    )
    monkeypatch.setattr(
        evaluations, "time", types.SimpleNamespace(time=lambda: time.time() + 3_600)
    )
    contract = {
        "name": "same",
        "startTime": "2000-01-01T00:00:00Z",
        "endTime": "2100-01-01T00:00:00Z",
        "policies": [{"name": "greedy", "arguments": "--cb_explore_adf --epsilon 0.0 -q ::"}],
    }
    assert api.call("PUT", f"{PREVIEW}/evaluations/default", contract)[0] == 200
    explicit = {**contract, "estimator": "snips"}
    assert api.call("PUT", f"{PREVIEW}/evaluations/explicit", explicit)[0] == 200

    default = api.call("GET", f"{PREVIEW}/evaluations/default")[1]
    named = api.call("GET", f"{PREVIEW}/evaluations/explicit")[1]
    for key in ("optimalPolicy", "description", "content"):
        assert json.dumps(default[key]) == json.dumps(named[key]), key
    assert default["description"] == (
        "Replayed 30 events of the decision log (SNIPS, 95% intervals, first slot)."
    )
    random = next(v for v in default["content"]["value"] if v["name"] == "Random")
    assert random["summary"]["expectedReward"] == pytest.approx(random_snips)
    v1_default = api.call("GET", f"{V1}/evaluations/default")[1]["policyResults"]
    v1_named = api.call("GET", f"{V1}/evaluations/explicit")[1]["policyResults"]
    assert json.dumps(v1_default) == json.dumps(v1_named)
    # An evaluation kept before estimators existed (no such key) reads as SNIPS, unchanged
    kept = get_evaluation(tenant.tenant, "personalizer", "default")
    assert kept.pop("estimator") == "snips"
    assert json.dumps(evaluations.render_preview(kept)) == json.dumps(default)
    assert json.dumps(evaluations.render_v1(kept)["policyResults"]) == json.dumps(v1_default)

    status, code, target = error_of(
        api.call("PUT", f"{PREVIEW}/evaluations/foo", {**contract, "estimator": "foo"})
    )
    assert (status, code, target) == (400, "InvalidEvaluationContract", "estimator")
    assert error_of(api.call("POST", f"{V1}/evaluations", {**contract, "estimator": "DR"}))[:3] == (
        400,
        "InvalidEvaluationContract",
        "estimator",
    )
    listed = api.call("GET", f"{PREVIEW}/evaluations")[1]
    assert sorted(e["id"] for e in listed["value"]) == ["default", "explicit"]
    assert error_of(api.call("GET", f"{PREVIEW}/evaluations/foo"))[:2] == (
        404,
        "EvaluationNotFound",
    )


def test_a_dr_evaluation_of_too_few_events_for_a_reward_model_is_refused(
    aws: dict[str, str], api: PersonalizerApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    _closed_traffic(api, aws, 1)
    monkeypatch.setattr(
        evaluations, "time", types.SimpleNamespace(time=lambda: time.time() + 3_600)
    )
    contract = {
        "name": "one",
        "startTime": "2000-01-01T00:00:00Z",
        "endTime": "2100-01-01T00:00:00Z",
        "estimator": "dr",
    }
    # One event lies in one cross-fitting fold: no other fold's events to fit its model on
    assert error_of(api.call("PUT", f"{PREVIEW}/evaluations/one", contract)) == (
        400,
        "InvalidEvaluationContract",
        "estimator",
    )
    assert (
        api.call("PUT", f"{PREVIEW}/evaluations/one", {**contract, "estimator": "snips"})[0] == 200
    )


def test_another_tenants_events_are_not_found_and_its_event_ids_do_not_collide(
    aws: dict[str, str], api: PersonalizerApi, tenant: NewKey, other_tenant: NewKey
) -> None:
    mine = rank(api, eventId="shared-id", deferActivation=True)
    theirs = PersonalizerApi(lambda_handler, other_tenant.api_key)
    assert error_of(theirs.call("POST", f"{V1}/events/shared-id/activate"))[:2] == (
        404,
        "ResourceNotFound",
    )
    assert theirs.call("POST", f"{V1}/events/shared-id/reward", {"value": 1.0})[0] == 204
    assert deliver_all(aws) == []
    assert decision_store.get(tenant.tenant, "shared-id").record.rewards == []
    # The same event id is free in the other tenant, and names its own decision there
    assert rank(theirs, eventId="shared-id", actions=ACTIONS[:2])["eventId"] == "shared-id"
    assert len(decision_store.get(other_tenant.tenant, "shared-id").record.candidates) == 2
    assert decision_store.status(tenant.tenant, mine["eventId"])["activated"] is False


def test_personalizers_exported_log_warms_the_policy_through_the_cli(
    api: PersonalizerApi,
    tenant: NewKey,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from local.cli import main
    from tests.unit.test_dsjson import _uniform_log

    monkeypatch.setenv("SERENDIP_STATE_DIR", str(tmp_path))  # no local stack: moto's tables
    logs = tmp_path / "personalizer.dsjson"
    logs.write_text("\n".join(json.dumps(line) for line in _uniform_log(600)) + "\n")
    out = tmp_path / "decisions.jsonl"
    argv = ["personalizer", "import", "--logs", str(logs), "--out", str(out), "--warm"]
    assert main([*argv, "--tenant", tenant.tenant, "--policy", "from-azure"]) == 0
    assert "learned 600 events into acme/from-azure" in capsys.readouterr().err
    assert len(out.read_text().splitlines()) == 600
    assert [v.version for v in model_store.versions(tenant.tenant, "from-azure")] == [1]
    # The warmed policy serves the preference at once through the Personalizer API
    bound = create_key(tenant.tenant, {"rank", "reward", "admin"}, policy="from-azure")
    foods = [
        {"id": tag, "features": [{"food": {"kind": tag}}]} for tag in ("pasta", "salad", "soup")
    ]
    for meal, best in (("dinner", "pasta"), ("lunch", "salad")):
        status, answer, _ = api.call(
            "POST",
            f"{V1}/rank",
            {"contextFeatures": [{"meal": {"name": meal}}], "actions": foods},
            api_key=bound.api_key,
        )
        assert status == 201, answer
        assert answer["ranking"][0]["id"] == best or answer["serendip"]["explored"] == [True]
        top = max(answer["ranking"], key=lambda a: a["probability"])
        assert top["id"] == best and top["probability"] >= 0.6  # the budget paces the rest


@pytest.mark.parametrize(("aggregation", "learned"), [("sum", 1.0), ("earliest", 0.5)])
def test_rewards_aggregate_as_the_service_configuration_says(
    aws: dict[str, str], api: PersonalizerApi, tenant: NewKey, aggregation: str, learned: float
) -> None:
    config = {**CONFIG, "rewardAggregation": aggregation}
    assert api.call("PUT", f"{V1}/configurations/service", config)[0] == 200
    event = rank(api)
    path = f"{V1}/events/{event['eventId']}/reward"
    for _ in range(2):
        assert api.call("POST", path, {"value": 0.5})[0] == 204
        assert deliver_all(aws) == []
    state = decision_store.status(tenant.tenant, event["eventId"])
    record = decision_store.get(tenant.tenant, event["eventId"]).record
    spec = policy_store.get(tenant.tenant, "personalizer").spec
    if aggregation == "sum":
        # Personalizer waited out rewardWaitTime: both posts count, the event is still open
        assert (state["status"], state["rewards"], state["late_rewards"]) == ("open", 2, 0)
    else:
        # The earliest reward decides: it closed the event, the second came late
        assert state["learned_version"] is not None and state["late_rewards"] == 1
    assert record_outcome(record, spec.rewards).per_item[event["rewardActionId"]] == learned


def test_slot_features_let_each_slot_learn_what_suits_it(
    aws: dict[str, str], api: PersonalizerApi, tenant: NewKey
) -> None:
    """The hero slot pays for ``video`` only, the side slot for ``text`` only. With the slots'
    features in each slot's context, the learned model ranks video first for the hero slot and
    text first for the side slot (without them, one score per action could not differ)."""
    actions = [{"id": kind, "features": [{"format": {"kind": kind}}]} for kind in ("video", "text")]
    slots = [
        {"id": "hero", "baselineAction": "text", "features": [{"size": "large"}]},
        {"id": "side", "baselineAction": "video", "features": [{"size": "small"}]},
    ]
    pays = {"hero": "video", "side": "text"}
    body = {"contextFeatures": CONTEXT, "actions": actions, "slots": slots}
    for round_ in range(200):
        status, answer, _ = api.call("POST", f"{PREVIEW}/multislot/rank", body)
        assert status == 201, answer
        chosen = {slot["id"]: slot["rewardActionId"] for slot in answer["slots"]}
        rewards = [
            {"slotId": slot, "value": 1.0 if chosen[slot] == pays[slot] else 0.0} for slot in pays
        ]
        path = f"{PREVIEW}/multislot/events/{answer['eventId']}/reward"
        assert api.call("POST", path, {"reward": rewards})[0] == 204
        if round_ % 20 == 19:
            assert deliver_all(aws) == []
    record = decision_store.get(tenant.tenant, answer["eventId"]).record
    assert record.slot_features == [{"size": "large"}, {"size": "small"}]
    stored = policy_store.get(tenant.tenant, "personalizer")
    model = model_store.load(tenant.tenant, "personalizer", stored.head_version)
    ranker = Ranker(stored.spec, model)
    request = RankRequest(
        "probe",
        record.context,
        [c.to_candidate() for c in record.candidates],
        slot_features=record.slot_features,
    )
    hero, side = (ranker.scores(request, "all", position) for position in (1, 2))
    assert hero[0] > hero[1] and side[1] > side[0], (hero, side)
