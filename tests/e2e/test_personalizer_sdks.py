"""Acceptance: Azure Personalizer's own Python SDKs, unmodified, against the local stack.

``azure-ai-personalizer`` (2022-09-01-preview: ``/personalizer?api-version=...``) and
``azure-cognitiveservices-personalizer`` (``/personalizer/v1.0``) only get the stack's URL as
their endpoint and a Serendip key as their subscription key. Each group of tests has a key
bound to a policy of its own (created from ``policies/personalizer.yaml`` on first use) with a
5-second reward wait, so that deferred events close within the test.
"""

from __future__ import annotations

import io
import math
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from azure.ai.personalizer import PersonalizerAdministrationClient, PersonalizerClient
from azure.cognitiveservices.personalizer import PersonalizerClient as LegacyClient
from azure.cognitiveservices.personalizer.models import (
    ErrorResponseException,
    RankableAction,
    RankRequest,
)
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from msrest.authentication import CognitiveServicesCredentials

from functions.common import decision_store
from functions.common.auth import create_key
from local.stack import LocalStack
from tests.e2e.conftest import Client

T = TypeVar("T")
REWARD_WAIT_SECONDS = 5
PATIENCE_SECONDS = 60.0  # without progress: a slow machine that keeps learning keeps waiting
ACTIONS = [
    {"id": topic, "features": [{"topic": topic}]} for topic in ("news", "sport", "jazz", "food")
]
# The simulated users: each one clicks one topic only.
PREFERENCES = {"ana": "jazz", "ben": "news", "cleo": "food"}
# The budget explores at most 40% of a rank (0.2 plus the window's shortfall), so the greedy
# action gets at least 0.6 + 0.4 / 4; at the target 20%, 0.8 + 0.2 / 4 = 0.85.
LEARNING_LEVEL = 0.6
LEARNING_MEAN_LEVEL = 0.75
BATCH_ROUNDS = 10  # ranks per user between two waits for the learner
MAX_BATCHES = 30
CHECK_ROUNDS = 20  # ranks per user measured once learned


@dataclass
class Resource:
    """One Personalizer "resource": a key bound to a policy, and the SDK clients for it."""

    stack: LocalStack
    policy: str
    key: str
    client: PersonalizerClient
    admin: PersonalizerAdministrationClient
    legacy: LegacyClient

    def event(self, event_id: str) -> dict[str, Any]:
        """The event's state from Serendip's own ``GET /v1/events/{event_id}``."""
        status, body, _ = Client(self.stack.url, self.key).call("GET", f"/v1/events/{event_id}")
        assert status == 200, body
        return dict(body)

    def model(self) -> dict[str, Any]:
        """The head model version, as ``GET /model/properties`` reports it."""
        return dict(self.admin.get_model_properties()["serendip"])

    def learned(self) -> int:
        """Events learned into the head model."""
        return int(self.model()["eventsLearned"])


@pytest.fixture(scope="module")
def resource(stack: LocalStack) -> Iterator[Callable[[str], Resource]]:
    """A factory of resources, each with its own policy and a 5-second reward wait."""
    made: list[Resource] = []

    def make(group: str) -> Resource:
        policy = f"sdk-{group}-{uuid.uuid4().hex[:8]}"
        key = create_key(stack.tenant, {"rank", "reward", "admin"}, policy=policy).api_key
        credential = AzureKeyCredential(key)
        res = Resource(
            stack,
            policy,
            key,
            PersonalizerClient(stack.url, credential),
            PersonalizerAdministrationClient(stack.url, credential),
            LegacyClient(stack.url, CognitiveServicesCredentials(key)),
        )
        made.append(res)
        settings = res.admin.get_service_configuration()
        settings["rewardWaitTime"] = f"PT{REWARD_WAIT_SECONDS}S"
        res.admin.update_service_configuration(settings)
        return res

    yield make
    for res in made:
        res.client.close()
        res.admin.close()


def sweep(stack: LocalStack) -> None:
    """Run the scheduled sweep now (on its own it runs every 30 s)."""
    next(s for s in stack.schedulers if s.name.startswith("SweepFunction")).tick()


def wait_for(
    stack: LocalStack, what: str, measure: Callable[[], T], done: Callable[[T], bool]
) -> T:
    """Drain the queues and sweep due events until ``done(measure())``; fails only after
    ``PATIENCE_SECONDS`` in which ``measure()`` did not change."""
    last, deadline = None, time.monotonic() + PATIENCE_SECONDS
    while True:
        stack.drain(timeout=PATIENCE_SECONDS)
        value = measure()
        if done(value):
            return value
        if value != last:
            last, deadline = value, time.monotonic() + PATIENCE_SECONDS
        assert time.monotonic() < deadline, f"no progress toward {what}: still {value!r}"
        sweep(stack)
        time.sleep(0.2)


def wait_learned(res: Resource, events: int) -> None:
    wait_for(res.stack, f"{events} learned events", res.learned, lambda n: n >= events)


def probability(answer: dict[str, Any], action: str) -> float:
    return float(next(a["probability"] for a in answer["ranking"] if a["id"] == action))


def context(user: str) -> list[dict[str, Any]]:
    return [{"user": {"name": user}}, {"device": "phone"}]


def rank(res: Resource, user: str, **extra: Any) -> dict[str, Any]:
    return dict(res.client.rank({"actions": ACTIONS, "contextFeatures": context(user), **extra}))


# --------------------------------------------------------------------------------- serving


def assert_ranking(answer: dict[str, Any], excluded: set[str]) -> None:
    """Personalizer's ranking: every action once, the chosen first, probabilities summing to
    1 in an epsilon-greedy shape, the excluded last with probability 0."""
    ranking = answer["ranking"]
    assert sorted(a["id"] for a in ranking) == sorted(a["id"] for a in ACTIONS)
    assert answer["rewardActionId"] == ranking[0]["id"]
    assert answer["rewardActionId"] not in excluded
    assert ranking[0]["probability"] > 0.0
    assert math.fsum(a["probability"] for a in ranking) == pytest.approx(1.0, abs=1e-9)
    last = ranking[len(ranking) - len(excluded) :]
    assert {a["id"] for a in last} == excluded
    assert all(a["probability"] == 0.0 for a in last)
    allowed = sorted((a["probability"] for a in ranking if a["id"] not in excluded), reverse=True)
    others = allowed[1:]  # epsilon-greedy: the greedy action, and the rest share epsilon equally
    assert max(others) == pytest.approx(min(others), abs=1e-12)
    assert allowed[0] == pytest.approx(1.0 - math.fsum(others), abs=1e-9)
    tail = [a["probability"] for a in ranking[1:]]
    assert tail == sorted(tail, reverse=True)


def test_rank_answers_every_action_with_its_probability(
    resource: Callable[[str], Resource],
) -> None:
    # Given a fresh resource
    res = resource("rank")
    seen_ids: set[str] = set()
    for n in range(20):
        # When it ranks four actions with one excluded, every other time naming the event
        named = {"eventId": f"rank-{uuid.uuid4().hex}"} if n % 2 else {}
        answer = rank(res, "ana", excludedActions=["sport"], **named)
        # Then every action is ranked, "sport" last at 0, and the event id is the one given
        assert_ranking(answer, {"sport"})
        assert answer["ranking"][-1] == {"id": "sport", "probability": 0.0}
        assert answer["eventId"] == named.get("eventId", answer["eventId"])
        assert answer["eventId"] and answer["eventId"] not in seen_ids
        seen_ids.add(answer["eventId"])
        # ... and the chosen action's probability is the one Serendip logged for it
        stored = decision_store.get(res.stack.tenant, answer["eventId"]).record.slate[0]
        assert (stored.item_id, stored.probability) == (
            answer["rewardActionId"],
            answer["ranking"][0]["probability"],
        )


def test_the_v1_sdk_ranks_rewards_and_activates(resource: Callable[[str], Resource]) -> None:
    # Given a resource spoken to by the v1.0 SDK
    res = resource("legacy")
    event_id = f"legacy-{uuid.uuid4().hex}"
    request = RankRequest(
        actions=[RankableAction(id=a["id"], features=a["features"]) for a in ACTIONS],
        context_features=context("ben"),
        excluded_actions=["food", "jazz"],
        event_id=event_id,
    )
    # When it ranks
    answer = res.legacy.rank(request)
    # Then the answer is v1.0's RankResponse, with the excluded actions last at 0
    assert answer.event_id == event_id
    assert {a.id for a in answer.ranking[-2:]} == {"food", "jazz"}
    assert [a.probability for a in answer.ranking[-2:]] == [0.0, 0.0]
    assert answer.reward_action_id == answer.ranking[0].id
    assert answer.reward_action_id in {"news", "sport"}
    assert math.fsum(a.probability for a in answer.ranking) == pytest.approx(1.0, abs=1e-9)
    # When it rewards the event and activates it (nothing to do: it was not deferred)
    res.legacy.events.reward(event_id, value=1.0)
    res.legacy.events.activate(event_id)
    # Then the event is learned, once, with its reward
    wait_learned(res, 1)
    assert res.learned() == 1
    state = res.event(event_id)
    assert (state["status"], state["rewards"], state["activated"]) == ("learned", 1, True)
    stored = decision_store.get(res.stack.tenant, event_id).record
    assert [(r.item_id, r.value) for r in stored.rewards] == [(answer.reward_action_id, 1.0)]


def test_a_reward_closes_the_event_and_is_learned(resource: Callable[[str], Resource]) -> None:
    # Given three ranked events
    res = resource("reward")
    answers = [rank(res, "ana") for _ in range(3)]
    # When two of them are rewarded
    res.client.reward(answers[0]["eventId"], {"value": 1.0})
    res.client.reward(answers[1]["eventId"], {"value": 0.25})
    # Then those two are learned (one slot with a reward closes at once); the third waits
    wait_learned(res, 2)
    states = [res.event(a["eventId"]) for a in answers]
    assert [s["status"] for s in states] == ["learned", "learned", "open"]
    assert [s["rewards"] for s in states] == [1, 1, 0]
    assert states[0]["learned_version"] == states[1]["learned_version"] is not None
    assert (res.learned(), res.model()["examplesLearned"]) == (2, 2)
    properties = res.admin.get_model_properties()
    assert properties["creationTime"] <= properties["lastModifiedTime"]


def test_multislot_rank_fills_each_slot_with_a_distinct_allowed_action(
    resource: Callable[[str], Resource],
) -> None:
    # Given three slots; the sidebar may only show news or sport
    res = resource("multislot")
    slots = [
        {"id": "hero", "baselineAction": "news"},
        {"id": "sidebar", "baselineAction": "sport", "excludedActions": ["jazz", "food"]},
        {"id": "footer", "baselineAction": "jazz", "features": [{"size": "small"}]},
    ]
    for _ in range(15):
        # When the multi-slot rank is asked
        answer = res.client.rank_multi_slot(
            {"actions": ACTIONS, "slots": slots, "contextFeatures": context("ben")}
        )
        chosen = {s["id"]: s["rewardActionId"] for s in answer["slots"]}
        # Then every slot, in order, has a distinct action, the sidebar news or sport
        assert [s["id"] for s in answer["slots"]] == ["hero", "sidebar", "footer"]
        assert len(set(chosen.values())) == 3
        assert chosen["sidebar"] in {"news", "sport"}
        # ... each with the probability it was drawn with, given the slots before it, as logged
        assert all(0.0 < s["probability"] <= 1.0 for s in answer["slots"])
        if chosen["hero"] in {"news", "sport"}:
            assert answer["slots"][1]["probability"] == 1.0  # one allowed action was left
        stored = decision_store.get(res.stack.tenant, answer["eventId"]).record.slate
        assert [(s.item_id, s.probability) for s in sorted(stored, key=lambda s: s.position)] == [
            (s["rewardActionId"], s["probability"]) for s in answer["slots"]
        ]
    # When a deferred multi-slot event is activated, then each slot rewarded
    deferred = res.client.rank_multi_slot(
        {"actions": ACTIONS, "slots": slots, "deferActivation": True}
    )
    event_id = deferred["eventId"]
    assert res.event(event_id)["activated"] is False
    res.client.activate_multi_slot(event_id)
    assert res.event(event_id)["activated"] is True
    values = {"hero": 1.0, "sidebar": 0.0, "footer": 0.5}
    res.client.reward_multi_slot(
        event_id, {"reward": [{"slotId": slot, "value": v} for slot, v in values.items()]}
    )
    # Then the event closes with each slot's reward on that slot's action, and is learned
    wait_learned(res, 1)
    state = res.event(event_id)
    assert (state["status"], state["rewards"], state["slots"]) == ("learned", 3, 3)
    actions = {s["id"]: s["rewardActionId"] for s in deferred["slots"]}
    stored = decision_store.get(res.stack.tenant, event_id).record
    assert {(r.item_id, r.value) for r in stored.rewards} == {
        (actions[slot], value) for slot, value in values.items()
    }
    assert res.model()["examplesLearned"] == 3


# --------------------------------------------------------------------------- configuration


def test_service_configuration_and_policy_round_trip(resource: Callable[[str], Resource]) -> None:
    # Given a resource with Personalizer's defaults, and one event learned
    res = resource("settings")
    defaults = res.admin.get_policy()
    assert defaults["name"] == res.policy
    assert defaults["arguments"].startswith("--cb_explore_adf --epsilon 0.2 ")
    res.client.reward(rank(res, "ana")["eventId"], {"value": 1.0})
    wait_learned(res, 1)
    # When the service configuration is changed
    wanted = {
        "rewardWaitTime": "PT45S",
        "defaultReward": -0.5,
        "rewardAggregation": "sum",
        "explorationPercentage": 0.35,
        "modelExportFrequency": "PT5M",
        "logRetentionDays": 14,
        "modelRetrainDays": 7,
    }
    answered = res.admin.update_service_configuration(wanted)
    # Then what is answered, and read back, is what was set
    fetched = res.admin.get_service_configuration()
    for name, value in wanted.items():
        assert answered[name] == fetched[name] == value, name
    assert fetched["learningMode"] == "Online"
    # ... exploration is the learning settings' epsilon, and the model was kept
    assert "--epsilon 0.35 " in res.admin.get_policy()["arguments"]
    assert res.learned() == 1
    # ... and a .NET time span, as Personalizer's v1.0 examples wrote them, is taken
    res.admin.update_service_configuration({**wanted, "rewardWaitTime": "00:01:30"})
    assert res.admin.get_service_configuration()["rewardWaitTime"] == "PT1M30S"

    # When the learning settings are changed
    arguments = "--cb_explore_adf --epsilon 0.1 --cb_type mtr -l 0.05"
    before = res.model()["modelVersion"]
    updated = res.admin.update_policy({"name": "mtr-fast", "arguments": arguments})
    # Then they round-trip, set the exploration, and start a fresh model version
    assert updated == res.admin.get_policy() == {"name": "mtr-fast", "arguments": arguments}
    assert res.admin.get_service_configuration()["explorationPercentage"] == 0.1
    fresh = res.model()
    assert (fresh["modelVersion"], fresh["eventsLearned"]) == (before + 1, 0)
    assert_ranking(rank(res, "ana"), set())
    # When they are reset
    reset = res.admin.reset_policy()
    # Then Personalizer's defaults are back
    assert reset == res.admin.get_policy() == defaults
    assert res.admin.get_service_configuration()["explorationPercentage"] == 0.2


# ------------------------------------------------------------------------------------ errors


def test_errors_have_personalizer_codes(
    stack: LocalStack, resource: Callable[[str], Resource]
) -> None:
    res = resource("errors")
    # A rank without actions
    with pytest.raises(HttpResponseError) as no_actions:
        res.client.rank({"actions": [], "contextFeatures": context("ana")})
    assert no_actions.value.status_code == 400
    assert no_actions.value.error is not None
    assert no_actions.value.error.code == "InvalidRankRequest"
    assert no_actions.value.response.headers["x-ms-error-code"] == "InvalidRankRequest"
    # ... also through the v1.0 SDK
    with pytest.raises(ErrorResponseException) as legacy:
        res.legacy.rank(RankRequest(actions=[]))
    assert legacy.value.response.status_code == 400
    assert legacy.value.error.error.code == "InvalidRankRequest"
    # An event id used before
    event_id = rank(res, "ana")["eventId"]
    with pytest.raises(HttpResponseError) as again:
        rank(res, "ben", eventId=event_id)
    assert (again.value.status_code, again.value.error.code) == (400, "InvalidRankRequest")
    # A reward out of [-1, 1]
    with pytest.raises(HttpResponseError) as too_big:
        res.client.reward(event_id, {"value": 1.5})
    assert (too_big.value.status_code, too_big.value.error.code) == (400, "InvalidRewardRequest")
    # A reward wait Personalizer never allowed
    settings = res.admin.get_service_configuration()
    with pytest.raises(HttpResponseError) as wait:
        res.admin.update_service_configuration({**settings, "rewardWaitTime": "PT1S"})
    assert (wait.value.status_code, wait.value.error.code) == (400, "InvalidRewardWaitTime")
    # Learning settings with an unknown flag
    with pytest.raises(HttpResponseError) as flag:
        res.admin.update_policy({"name": "x", "arguments": "--cb_explore_adf --no_such_flag"})
    assert (flag.value.status_code, flag.value.error.code) == (400, "InvalidPolicyConfiguration")
    # A wrong key, and a key without the admin scope
    stranger = PersonalizerClient(stack.url, AzureKeyCredential("sk_not_a_key"))
    with pytest.raises(HttpResponseError) as wrong_key:
        stranger.rank({"actions": ACTIONS})
    assert wrong_key.value.status_code == 401
    ranker = create_key(stack.tenant, {"rank"}, policy=res.policy).api_key
    admin = PersonalizerAdministrationClient(stack.url, AzureKeyCredential(ranker))
    with pytest.raises(HttpResponseError) as forbidden:
        admin.get_policy()
    assert forbidden.value.status_code == 403
    # An unknown evaluation
    with pytest.raises(ResourceNotFoundError) as missing:
        res.admin.delete_evaluation("no-such-evaluation")
    assert missing.value.error is not None
    assert missing.value.error.code == "EvaluationNotFound"


# ---------------------------------------------------------------- learning, model, evaluations


@dataclass
class Trained:
    """A resource taught by the simulated users, and what was logged while teaching it."""

    res: Resource
    started: float
    ended: float = 0.0
    rounds: int = 0
    seconds: float = 0.0
    # Per rank: the probability logged for the chosen action, its reward, whether it was the
    # first action (the one Personalizer's evaluations call Baseline).
    logged: list[tuple[float, float, bool]] = field(default_factory=list)
    measured: dict[str, list[float]] = field(default_factory=dict)


def teach(trained: Trained, rounds: int) -> dict[str, list[float]]:
    """``rounds`` ranks per user, each rewarded 1 if it chose the user's topic, else 0, then
    the learner waited for; returns the probability each rank gave the user's topic."""
    res = trained.res
    seen: dict[str, list[float]] = {user: [] for user in PREFERENCES}
    for _ in range(rounds):
        for user, topic in PREFERENCES.items():
            answer = rank(res, user)
            chosen = answer["rewardActionId"]
            value = 1.0 if chosen == topic else 0.0
            res.client.reward(answer["eventId"], {"value": value})
            seen[user].append(probability(answer, topic))
            trained.logged.append((probability(answer, chosen), value, chosen == ACTIONS[0]["id"]))
    trained.rounds += rounds
    wait_learned(res, len(trained.logged))
    return seen


@pytest.fixture(scope="module")
def trained(resource: Callable[[str], Resource]) -> Trained:
    """Batches of rounds until each user's topic is the greedy action in a whole batch, then
    ``CHECK_ROUNDS`` more, measured."""
    res = resource("learning")
    started = time.monotonic()
    result = Trained(res, time.time())
    for _ in range(MAX_BATCHES):
        seen = teach(result, BATCH_ROUNDS)
        if all(min(shares) > LEARNING_LEVEL for shares in seen.values()):
            break
    result.measured = teach(result, CHECK_ROUNDS)
    result.ended = time.time()
    result.seconds = time.monotonic() - started
    return result


def test_the_sdk_learns_each_users_preferred_action(trained: Trained) -> None:
    """Three users, each clicking one of four topics, taught through the SDK only (rank, then
    reward 1 for the user's topic, else 0) at Personalizer's default 20% exploration: within
    300 rounds per user (30 batches of 10), a whole batch gives each user's topic a
    probability above 0.6 (it is the greedy action); in the 20 rounds per user after that,
    every rank gives it more than 0.6, and on average more than 0.75 (0.85 expected)."""
    teaching = trained.rounds - CHECK_ROUNDS
    assert teaching <= MAX_BATCHES * BATCH_ROUNDS, f"not learned within {teaching} rounds"
    for user, shares in trained.measured.items():
        assert min(shares) > LEARNING_LEVEL, (user, shares)
        assert statistics.mean(shares) > LEARNING_MEAN_LEVEL, (user, shares)
    assert trained.res.learned() == len(trained.logged) == trained.rounds * len(PREFERENCES)
    shares = ", ".join(
        f"{user} min {min(s):.3f} mean {statistics.mean(s):.3f}"
        for user, s in trained.measured.items()
    )
    print(f"learned in {teaching} rounds per user, {trained.seconds:.1f} s in all: {shares}")


def test_an_exported_model_imports_back_after_a_reset(trained: Trained) -> None:
    res = trained.res
    # Given the trained model, exported
    blob = b"".join(res.admin.export_model())
    assert blob.startswith(b"SERENDIP-VW1\n") and len(blob) > 100
    head = res.model()
    # When the model is reset
    res.admin.reset_model()
    # Then a fresh model is the head, having learned nothing
    fresh = res.model()
    assert fresh["modelVersion"] == head["modelVersion"] + 1
    assert (fresh["eventsLearned"], fresh["examplesLearned"]) == (0, 0)
    # When the exported bytes are imported
    res.admin.import_model(io.BytesIO(blob))
    # Then they are the head again, and each user's topic the greedy action again
    back = res.model()
    assert back["modelVersion"] == head["modelVersion"] + 2
    assert back["eventsLearned"] == head["eventsLearned"]
    for user, topic in PREFERENCES.items():
        answer = rank(res, user)
        assert probability(answer, topic) > LEARNING_LEVEL, (user, answer)
    # ... and bytes that are no exported model are refused
    with pytest.raises(HttpResponseError) as refused:
        res.admin.import_model(io.BytesIO(b"not a model"))
    assert refused.value.status_code == 400
    assert refused.value.error.code == "InvalidModelImportFormat"


def test_deferred_events_learn_their_reward_only_once_activated(
    resource: Callable[[str], Resource],
) -> None:
    # Given three deferred ranks, each rewarded before it was shown
    res = resource("deferred")
    events = [rank(res, user, deferActivation=True)["eventId"] for user in PREFERENCES]
    for event_id in events:
        res.client.reward(event_id, {"value": 1.0})
    res.stack.drain(timeout=PATIENCE_SECONDS)
    # Then the rewards are kept, and nothing is learned
    for event_id in events:
        state = res.event(event_id)
        assert (state["status"], state["activated"], state["rewards"]) == ("open", False, 1)
    assert res.learned() == 0
    # When two are activated (one through each SDK) and the reward wait passes
    shown, legacy_shown, never = events
    res.client.activate(shown)
    res.legacy.events.activate(legacy_shown)
    assert res.event(shown)["activated"] is True
    wait_for(
        res.stack,
        "the deferred events to close",
        lambda: [res.event(event_id)["status"] for event_id in events],
        lambda states: "open" not in states,
    )
    # Then the activated ones are learned with their reward; the other expired, unlearned
    for event_id in (shown, legacy_shown):
        state = res.event(event_id)
        assert state["status"] == "learned" and state["learned_version"] is not None
    assert res.event(never)["status"] == "expired"
    assert res.event(never)["learned_version"] is None
    assert res.learned() == 2


def snips(logged: list[tuple[float, float, bool]], target: Callable[[bool], float]) -> float:
    """The self-normalised estimate of a policy choosing the logged action with ``target``."""
    weights = [target(first) / p for p, _, first in logged]
    return math.fsum(w * r for w, (_, r, _) in zip(weights, logged, strict=True)) / math.fsum(
        weights
    )


def test_an_evaluation_estimates_the_logged_rewards(trained: Trained) -> None:
    res = trained.res
    # Given the teaching log, once its reward waits are over (evaluations replay closed waits)
    time.sleep(max(0.0, trained.ended + REWARD_WAIT_SECONDS + 0.5 - time.time()))
    start = datetime.fromtimestamp(trained.started - 60, UTC)
    end = datetime.fromtimestamp(trained.ended, UTC)
    span = res.admin.get_log_properties()["dateRange"]
    assert start.strftime("%Y-%m-%dT%H:%M:%S") <= span["from"] <= span["to"]
    custom = "--cb_explore_adf --epsilon 0.2 --cb_type mtr -q CI -l 0.1"
    evaluation_id = f"eval-{uuid.uuid4().hex[:8]}"
    # When an evaluation of one custom setting is created
    res.admin.create_evaluation(
        evaluation_id,
        {
            "name": "mtr against the online policy",
            "startTime": start.isoformat(),
            "endTime": end.isoformat(),
            "policies": [{"name": "mtr", "arguments": custom}],
        },
    )
    # Then it holds the estimates of Online, Baseline, Random and the custom setting, the
    # first three exactly what the log says
    got = res.admin.get_evaluation(
        evaluation_id, start_time=start - timedelta(hours=1), end_time=end + timedelta(hours=1)
    )
    assert (got["id"], got["status"]) == (evaluation_id, "Succeeded")
    values = {v["name"]: v for v in got["content"]["value"]}
    assert set(values) == {"Online", "Baseline", "Random", "mtr"}
    assert (values["mtr"]["policySource"], values["mtr"]["arguments"]) == ("Custom", custom)
    expected = {
        "Online": statistics.mean(r for _, r, _ in trained.logged),
        "Random": snips(trained.logged, lambda _: 1.0 / len(ACTIONS)),
        "Baseline": snips(trained.logged, lambda first: 1.0 if first else 0.0),
    }
    for name, value in expected.items():
        summary = values[name]["summary"]
        assert summary["expectedReward"] == pytest.approx(value, rel=1e-6), name
        low, high = summary["confidenceInterval"]
        assert low <= summary["expectedReward"] <= high
    assert expected["Online"] > expected["Random"] + 0.2  # what the learning earned
    assert 0.0 <= values["mtr"]["summary"]["expectedReward"] <= 1.0
    assert got["optimalPolicy"] in values
    # ... a second evaluation with its id is refused
    window = {"startTime": start.isoformat(), "endTime": end.isoformat()}
    with pytest.raises(HttpResponseError) as twice:
        res.admin.create_evaluation(evaluation_id, {"name": "again", **window})
    assert (twice.value.status_code, twice.value.error.code) == (409, "EvaluationAlreadyExists")
    # ... and both evaluations are listed, newest first, also one per page (the SDK follows
    # each page's nextLink)
    res.admin.create_evaluation(f"{evaluation_id}-b", {"name": "the online policy", **window})
    listed = [e["id"] for e in res.admin.list_evaluations()]
    assert listed == [f"{evaluation_id}-b", evaluation_id]
    assert [e["id"] for e in res.admin.list_evaluations(params={"maxpagesize": 1})] == listed
    # When its custom setting is applied
    res.admin.apply_from_evaluation({"evaluationId": evaluation_id, "policyName": "mtr"})
    # Then it is the policy's learning settings
    assert res.admin.get_policy() == {"name": "mtr", "arguments": custom}
    # When the evaluation is deleted, then it is gone
    res.admin.delete_evaluation(evaluation_id)
    assert evaluation_id not in {e["id"] for e in res.admin.list_evaluations()}
    with pytest.raises(ResourceNotFoundError):
        res.admin.get_evaluation(evaluation_id, start_time=start, end_time=end)
