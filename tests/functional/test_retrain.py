"""Settings changes without a reset: a VW-argument change retrains the new model from the log.

``PUT /v1/policies/{policy}`` with new VW arguments keeps the policy serving its current spec
and model while a job on the learn queue (the policy's own message group) replays every event
the current model learned, in the order it learned them, into a model built from the new spec;
then the spec and that model become current in one change. The reference everywhere is the
"fresh replay": a model built from the new spec, fed the same events' slot examples in the same
order in process. Retrained predictions must equal it bit for bit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import numpy as np
import pytest

from bandit.decision_log import DecisionRecord
from bandit.learn.learning import learn_examples, slot_examples
from bandit.serve.ranker import build_model
from bandit.serve.vw import VWModel
from bandit.spec import PolicySpec, load_spec, parse_spec
from functions.admin.app import lambda_handler as admin_handler
from functions.common import decision_store, model_store, retrain_service, retrain_store
from functions.common.errors import StorageError
from functions.common.settings import settings
from functions.common.tables import DecisionItem
from functions.learn.app import lambda_handler as learn_handler
from functions.learn.app import learner
from functions.rank.app import lambda_handler as rank_handler
from functions.rewards.app import lambda_handler as rewards_handler
from local.lambda_events import FakeLambdaContext, sqs_event
from tests.functional.conftest import ROOT, Api, queue_depth
from tests.queues import deliver_all, learn_all, queue_arn

POLICY = "for-you"
POLICY_PATH = "/v1/policies/{policy}"
RANK = "/v1/policies/{policy}/rank"
CANDIDATES = [
    {"id": f"item-{i}", "category": "sports" if i % 3 else "music", "features": {"n": i % 4}}
    for i in range(8)
]
# Another interaction set, and VW's own SquareCB pmf (--cb_explore_adf) instead of cb_adf.
SQUARECB = {
    "args": ["-q", "CI", "-q", "HI", "--learning_rate", "0.3"],
    "explore_args": ["--squarecb"],
}


# ---------------------------------------------------------------- helpers


def rank(api: Api, cohort: str = "a") -> dict[str, Any]:
    body = {
        "context": {"user": {"cohort": cohort}},
        "user_id": f"u-{cohort}",
        "candidates": CANDIDATES,
    }
    status, payload, _ = api.call(
        rank_handler, "POST", f"/v1/policies/{POLICY}/rank", body, resource=RANK
    )
    assert status == 200, payload
    return dict(payload)


def click(api: Api, ranked: dict[str, Any], position: int) -> None:
    item = ranked["slate"][position]["id"]
    reward = {"rewards": [{"event_id": ranked["event_id"], "item_id": item, "type": "click"}]}
    status, _, _ = api.call(
        rewards_handler, "POST", "/v1/rewards", json.dumps(reward), sign_body=True
    )
    assert status == 202


def decide(api: Api, events: int, start: int = 0, *, clicks: bool = True) -> list[dict[str, Any]]:
    """``events`` ranked events, with a click on every other one (routed and joined: the
    queues are drained, so only before a retrain starts); they stay open."""
    ranked = [rank(api, "abc"[(start + n) % 3]) for n in range(events)]
    if clicks:
        for n, event in enumerate(ranked):
            if (start + n) % 2:
                click(api, event, (start + n) % 3)
        env = {"REWARD_QUEUE_URL": settings().reward_queue_url}
        assert deliver_all({**env, "LEARN_QUEUE_URL": settings().learn_queue_url}) == []
    return ranked


def close(events: list[dict[str, Any]]) -> int:
    """Learn ``events`` (the sweep after their wait), in process; the number learned."""
    last = decision_store.get("acme", events[-1]["event_id"]).record.timestamp
    return learner().sweep(now=last + 86_400).events_learned


def learn_events(api: Api, events: int, start: int = 0) -> list[dict[str, Any]]:
    ranked = decide(api, events, start)
    assert close(ranked) == events
    return ranked


def put(api: Api, spec: dict[str, Any], query: str = "") -> tuple[int, dict[str, Any]]:
    status, payload, _ = api.call(
        admin_handler, "PUT", f"/v1/policies/{POLICY}", spec, resource=POLICY_PATH, query=query
    )
    return status, dict(payload)


def view(api: Api) -> dict[str, Any]:
    status, payload, _ = api.call(
        admin_handler, "GET", f"/v1/policies/{POLICY}", resource=POLICY_PATH
    )
    assert status == 200
    return dict(payload)


def with_vw(spec: dict[str, Any], vw: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with other VW arguments, and the next of its own ``version`` numbers (which
    decision records log)."""
    algorithm = "vw_pmf" if vw.get("explore_args") else spec["exploration"]["algorithm"]
    exploration = {**spec["exploration"], "algorithm": algorithm}
    return {**spec, "version": spec["version"] + 1, "vw": vw, "exploration": exploration}


def learned_records(tenant: str = "acme") -> list[DecisionRecord]:
    """Every learned event of the policy, in the order the live model learned them."""
    records = [r for r in decision_store.export(tenant, POLICY) if r.learned_version is not None]
    return sorted(records, key=lambda r: (r.learned_version or 0, r.timestamp, r.event_id))


def fresh_replay(spec: PolicySpec, records: list[DecisionRecord]) -> VWModel:
    model = build_model(spec)
    for record in records:
        learn_examples(model, slot_examples(record, spec))
    return model


def probes(spec: PolicySpec, api: Api) -> list[tuple[str, list[str]]]:
    """Fresh examples (of events no model learned) to compare predictions on."""
    out: list[tuple[str, list[str]]] = []
    for cohort in "abcd":
        record = decision_store.get("acme", rank(api, cohort)["event_id"]).record
        out += [(e.shared, e.actions) for e in slot_examples(record, spec)]
    return out


def assert_same_predictions(
    left: VWModel, right: VWModel, examples: list[tuple[str, list[str]]]
) -> None:
    for shared, actions in examples:
        assert np.array_equal(left.score(shared, actions), right.score(shared, actions))


def chunk_messages() -> Iterator[dict[str, Any]]:
    """Receive learn-queue messages one at a time (not deleted)."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    while True:
        got = sqs.receive_message(
            QueueUrl=settings().learn_queue_url,
            MaxNumberOfMessages=1,
            VisibilityTimeout=30,
            AttributeNames=["All"],
        ).get("Messages", [])
        if not got:
            return
        yield got[0]


def run_chunk(message: dict[str, Any], context: Any = None, *, delete: bool = True) -> list[str]:
    """Hand one learn-queue message to the learner; delete it unless it failed."""
    url = settings().learn_queue_url
    event = sqs_event([message], queue_arn(url))
    result = learn_handler(event, context or FakeLambdaContext())
    failed = [f["itemIdentifier"] for f in result["batchItemFailures"]]
    if delete and not failed:
        boto3.client("sqs", region_name="us-east-1").delete_message(
            QueueUrl=url, ReceiptHandle=message["ReceiptHandle"]
        )
    return failed


def staged_objects() -> list[str]:
    listed = boto3.client("s3", region_name="us-east-1").list_objects_v2(
        Bucket=settings().model_bucket, Prefix=retrain_store.STAGING_PREFIX
    )
    return [o["Key"] for o in listed.get("Contents", [])]


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of about two events' learning, so a job takes many of them."""
    monkeypatch.setattr(retrain_service, "CHUNK_WORK", 1)


# ---------------------------------------------------------------- the retrain


def test_retrain_serves_the_old_model_until_a_swap_to_the_fresh_replay(
    aws: dict[str, str], api: Api
) -> None:
    # Given a policy that learned 12 events under spec A, in three model versions
    for start in (0, 4, 8):
        learn_events(api, 4, start)
    before = view(api)
    assert (before["model_version"], before["spec_version"]) == (3, 1)
    spec_a = before["spec"]
    spec_b = with_vw(spec_a, SQUARECB)
    # When its VW arguments change (retrain is the default)
    status, answer = put(api, spec_b)
    # Then the answer is 202: the policy keeps its spec and model, a retrain runs
    assert status == 202, answer
    assert (answer["changed"], answer["model_reset"]) == (True, False)
    assert (answer["spec_version"], answer["model_version"], answer["spec"]) == (1, 3, spec_a)
    retrain = answer["retrain"]
    assert (retrain["state"], retrain["pending_spec_version"], retrain["events_done"]) == (
        "running",
        2,
        0,
    )
    # And a rank before the swap is served by the old model under the old spec, and logged so
    served = rank(api)
    assert served["model_version"] == 3
    record = decision_store.get("acme", served["event_id"]).record
    assert (record.model_version, record.spec_version) == (3, 1)
    # When the learn queue is delivered (the job's chunks)
    assert learn_all(aws) == []
    # Then the pending spec is current and the retrained model is version 4
    after = view(api)
    assert (after["spec_version"], after["model_version"]) == (2, 4)
    assert after["spec"]["vw"] == {**SQUARECB, "explore_args": ["--squarecb"]}
    done = after["retrain"]
    assert (done["state"], done["model_version"], done["events_done"], done["events_total"]) == (
        "done",
        4,
        12,
        12,
    )
    assert done["skipped"] == {"undecodable": 0, "expired": 0, "unfeaturizable": 0}
    # And the version says it was retrained, from which events of the log
    head = model_store.versions("acme", POLICY)[0]
    records = learned_records()
    decided = [r.timestamp for r in records]
    assert head.version == 4 and head.events_learned == 12
    assert head.retrained is not None
    assert (head.retrained["events"], head.retrained["log_range"]) == (
        12,
        [min(decided), max(decided)],
    )
    # And its predictions equal those of a fresh replay, bit for bit
    spec = parse_spec(after["spec"])
    retrained = model_store.load("acme", POLICY, 4)
    reference = fresh_replay(spec, records)
    assert retrained.examples_learned == reference.examples_learned
    assert_same_predictions(retrained, reference, probes(spec, api))
    # And from now on ranks are served by version 4 under spec version 2
    served = rank(api)
    record = decision_store.get("acme", served["event_id"]).record
    assert (served["model_version"], record.model_version, record.spec_version) == (4, 4, 2)
    # And the job left nothing staged
    assert staged_objects() == []


def test_events_learned_while_the_retrain_runs_are_caught_up_before_the_swap(
    aws: dict[str, str], api: Api, small_chunks: None
) -> None:
    # Given 6 learned events, and 3 more decided and still open
    learn_events(api, 6)
    waiting = decide(api, 3, start=6)
    spec_b = with_vw(view(api)["spec"], SQUARECB)
    assert put(api, spec_b)[0] == 202
    # When the job runs chunk by chunk, while the live model learns the open events, and then 4
    # events decided after the change, between its chunks
    chunks, fresh = 0, []
    for message in chunk_messages():
        assert run_chunk(message) == []
        chunks += 1
        if chunks == 2:
            assert close(waiting) == 3
            fresh = decide(api, 4, start=9, clicks=False)
        if chunks == 5:
            assert close(fresh) == 4
        now = view(api)
        # Spec A stays current (the live model learns under it) until the job is done
        assert now["spec_version"] == (2 if now["retrain"]["state"] == "done" else 1)
    # Then the job swapped only once it had every one of the 13 learned events
    after = view(api)
    assert after["retrain"]["state"] == "done", after["retrain"]
    assert chunks > 5
    records = learned_records()
    assert len(records) == 13
    head = model_store.versions("acme", POLICY)[0]
    assert head.retrained is not None and head.retrained["events"] == 13
    spec = parse_spec(after["spec"])
    reference = fresh_replay(spec, records)
    assert_same_predictions(
        model_store.load("acme", POLICY, head.version), reference, probes(spec, api)
    )


def test_a_chunk_delivered_twice_learns_nothing_twice(
    aws: dict[str, str], api: Api, small_chunks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    learn_events(api, 6)
    spec_b = with_vw(view(api)["spec"], SQUARECB)
    assert put(api, spec_b)[0] == 202
    messages = chunk_messages()
    # When a chunk is delivered twice (its first delivery not deleted)
    first = next(messages)
    assert run_chunk(first, delete=False) == []
    progress = view(api)["retrain"]
    assert run_chunk(first) == []
    assert view(api)["retrain"]["events_done"] == progress["events_done"]
    # And a later one fails just before it commits (an outage), and is delivered again
    commit = retrain_store.commit
    outage = {"left": 1}

    def failing_commit(*args: Any) -> bool:
        if outage["left"]:
            outage["left"] -= 1
            raise StorageError("policy store unavailable: throttled")
        return commit(*args)

    monkeypatch.setattr(retrain_store, "commit", failing_commit)
    for message in messages:
        failed = run_chunk(message)
        if failed:
            assert outage["left"] == 0
            assert run_chunk(message) == []
    # Then the retrained model learned each of the 6 events once
    after = view(api)
    assert (after["retrain"]["state"], after["retrain"]["events_done"]) == ("done", 6)
    head = model_store.versions("acme", POLICY)[0]
    assert head.events_learned == 6
    spec = parse_spec(after["spec"])
    reference = fresh_replay(spec, learned_records())
    retrained = model_store.load("acme", POLICY, head.version)
    assert retrained.examples_learned == reference.examples_learned
    assert_same_predictions(retrained, reference, probes(spec, api))


class CountdownContext(FakeLambdaContext):
    """A Lambda context whose time runs short once ``short()`` says so."""

    def __init__(self, short: Callable[[], bool]) -> None:
        super().__init__()
        self.short = short

    def get_remaining_time_in_millis(self) -> int:
        return 5_000 if self.short() else 60_000


def test_a_chunk_cut_short_by_time_commits_its_progress_and_the_next_resumes(
    aws: dict[str, str], api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    learn_events(api, 8)
    spec_b = with_vw(view(api)["spec"], SQUARECB)
    assert put(api, spec_b)[0] == 202
    # Given an invocation whose time runs short after 3 events were replayed
    replayed = {"events": 0}
    learn = retrain_service.learn_examples

    def counting(model: VWModel, examples: Any) -> int:
        replayed["events"] += 1
        return learn(model, examples)

    monkeypatch.setattr(retrain_service, "learn_examples", counting)
    first = next(chunk_messages())
    assert run_chunk(first, CountdownContext(lambda: replayed["events"] >= 3)) == []
    # Then that chunk committed what it did, and queued the next
    cut_short = view(api)["retrain"]
    assert (cut_short["state"], cut_short["events_done"], cut_short["events_total"]) == (
        "running",
        3,
        8,
    )
    assert queue_depth(aws["LEARN_QUEUE_URL"]) == 1
    # When the next chunks run with time enough
    assert learn_all(aws) == []
    # Then the job resumed where it stopped: 8 events, each once, as a fresh replay
    after = view(api)
    assert (after["retrain"]["state"], after["retrain"]["events_done"]) == ("done", 8)
    assert replayed["events"] == 8
    spec = parse_spec(after["spec"])
    reference = fresh_replay(spec, learned_records())
    head = model_store.versions("acme", POLICY)[0]
    assert_same_predictions(
        model_store.load("acme", POLICY, head.version), reference, probes(spec, api)
    )


# ---------------------------------------------------------------- changes during a retrain


def test_a_second_change_supersedes_the_running_retrain(
    aws: dict[str, str], api: Api, small_chunks: None
) -> None:
    learn_events(api, 5)
    spec_a = view(api)["spec"]
    spec_b = with_vw(spec_a, SQUARECB)
    assert put(api, spec_b)[0] == 202
    first_job = retrain_store.read("acme", POLICY)
    assert first_job is not None
    # Given the first job ran a chunk (it staged its model)
    assert run_chunk(next(chunk_messages())) == []
    assert staged_objects()
    # When the same pending spec is put again: nothing changes, the job goes on
    status, same = put(api, spec_b)
    assert (status, same["changed"], same["retrain"]["started_at"]) == (
        200,
        False,
        first_job.shown().started_at,
    )
    assert retrain_store.read("acme", POLICY).job == first_job.job  # type: ignore[union-attr]
    # When other VW arguments are put before it finished
    spec_c = with_vw(spec_a, {"args": ["-q", "CI", "--cb_type", "mtr", "--learning_rate", "0.2"]})
    status, answer = put(api, spec_c)
    # Then a new job runs for the new pending spec (still the next spec version)
    assert status == 202, answer
    assert answer["retrain"]["pending_spec_version"] == 2
    second_job = retrain_store.read("acme", POLICY)
    assert second_job is not None and second_job.job != first_job.job
    # And when the queue drains, the old job's chunk finds itself ended and leaves nothing
    assert learn_all(aws) == []
    after = view(api)
    assert (after["retrain"]["state"], after["spec_version"], after["model_version"]) == (
        "done",
        2,
        2,
    )
    assert after["spec"]["vw"]["args"] == spec_c["vw"]["args"]
    assert staged_objects() == []
    spec = parse_spec(after["spec"])
    reference = fresh_replay(spec, learned_records())
    assert_same_predictions(model_store.load("acme", POLICY, 2), reference, probes(spec, api))


def test_a_change_that_keeps_the_model_supersedes_a_retrain_and_applies_at_once(
    aws: dict[str, str], api: Api
) -> None:
    learn_events(api, 3)
    spec_a = view(api)["spec"]
    assert put(api, with_vw(spec_a, SQUARECB))[0] == 202
    # When a budget change of spec A comes before the job ran
    spec_a2 = {**spec_a, "exploration": {**spec_a["exploration"], "budget": 0.2}}
    status, answer = put(api, spec_a2)
    # Then it applies at once, keeping the model, and the retrain is superseded
    assert status == 200, answer
    assert (answer["spec_version"], answer["model_version"], answer["retrain"]["state"]) == (
        2,
        1,
        "superseded",
    )
    # And its queued chunk then does nothing
    assert learn_all(aws) == []
    after = view(api)
    assert (after["spec_version"], after["model_version"]) == (2, 1)
    assert after["spec"]["exploration"]["budget"] == 0.2
    assert [v.version for v in model_store.versions("acme", POLICY)] == [1]
    assert staged_objects() == []


def test_the_current_spec_again_or_a_fresh_model_ends_the_retrain(
    aws: dict[str, str], api: Api
) -> None:
    learn_events(api, 3)
    spec_a = view(api)["spec"]
    spec_b = with_vw(spec_a, SQUARECB)
    assert put(api, spec_b)[0] == 202
    # When the current spec is put back before the job ran: the pending one is dropped
    status, back = put(api, spec_a)
    assert (status, back["changed"], back["spec_version"], back["retrain"]["state"]) == (
        200,
        True,
        1,
        "superseded",
    )
    assert learn_all(aws) == []
    assert (view(api)["spec_version"], view(api)["model_version"]) == (1, 1)
    # When the change is retrained again, then asked for with a fresh model
    assert put(api, spec_b)[0] == 202
    status, fresh = put(api, spec_b, query="model=fresh")
    # Then the fresh model applies at once and the job is superseded
    assert (status, fresh["model_reset"], fresh["spec_version"], fresh["model_version"]) == (
        200,
        True,
        2,
        2,
    )
    assert fresh["retrain"]["state"] == "superseded"
    assert learn_all(aws) == []
    after = view(api)
    assert (after["spec_version"], after["model_version"], after["spec"]) == (2, 2, spec_b)
    assert model_store.versions("acme", POLICY)[0].events_learned == 0
    assert staged_objects() == []


def test_a_rollback_while_the_retrain_runs_fails_it_and_keeps_the_current_spec(
    aws: dict[str, str], api: Api, small_chunks: None
) -> None:
    learn_events(api, 2)
    learn_events(api, 2, start=2)
    spec_a = view(api)["spec"]
    assert put(api, with_vw(spec_a, SQUARECB))[0] == 202
    assert run_chunk(next(chunk_messages())) == []
    # When the model is rolled back to version 1 while the job runs
    status, rolled, _ = api.call(
        admin_handler,
        "POST",
        f"/v1/policies/{POLICY}/rollback",
        {"version": 1},
        resource="/v1/policies/{policy}/rollback",
    )
    assert (status, rolled["head"]) == (200, 3), rolled
    assert learn_all(aws) == []
    # Then the job fails (what it learned is no longer the head's), and nothing else changed
    after = view(api)
    assert after["retrain"]["state"] == "failed"
    assert "rolled back" in after["retrain"]["reason"]
    assert (after["spec"], after["spec_version"], after["model_version"]) == (spec_a, 1, 3)
    assert staged_objects() == []


# ---------------------------------------------------------------- what is replayed


def test_only_the_current_models_events_are_replayed_and_unreplayable_ones_are_counted(
    aws: dict[str, str], api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 3 events learned before a fresh reset, then 7 learned by the fresh model
    learn_events(api, 3)
    spec_a = view(api)["spec"]
    spec_a2 = with_vw(spec_a, {"args": ["--cb_type", "dm", "-q", "CI", "--learning_rate", "0.2"]})
    status, reset = put(api, spec_a2, query="model=fresh")
    assert (status, reset["model_reset"], reset["model_version"]) == (200, True, 2)
    current = learn_events(api, 7, start=3)
    fresh_models = [r for r in learned_records() if (r.learned_version or 0) > 2]
    # And of those 7: one whose record no longer decodes, one gone from the log (its TTL),
    # and one the new spec cannot featurize
    broken, gone, unfit = (decision_store.event_key("acme", e["event_id"]) for e in current[:3])
    item = DecisionItem.get(broken)
    item.record = b"not zlib"
    item.save()
    DecisionItem(gone).delete()
    build = retrain_service.slot_examples

    def featurize(record: DecisionRecord, spec: PolicySpec) -> Any:
        if decision_store.event_key("acme", record.event_id) == unfit:
            raise ValueError("slot 1: the new spec cannot featurize it")
        return build(record, spec)

    monkeypatch.setattr(retrain_service, "slot_examples", featurize)
    # When spec B is put and retrained
    assert put(api, with_vw(spec_a2, SQUARECB))[0] == 202
    assert learn_all(aws) == []
    # Then only the fresh model's replayable events were learned, and the others counted
    after = view(api)
    retrain = after["retrain"]
    assert retrain["state"] == "done"
    assert retrain["skipped"] == {"undecodable": 1, "expired": 1, "unfeaturizable": 1}
    assert (retrain["events_done"], retrain["events_total"]) == (7, 7)
    head = model_store.versions("acme", POLICY)[0]
    assert head.retrained is not None and head.retrained["events"] == 4
    left_out = {broken, gone, unfit}
    replayable = [
        r for r in fresh_models if decision_store.event_key("acme", r.event_id) not in left_out
    ]
    assert len(replayable) == 4
    spec = parse_spec(after["spec"])
    reference = fresh_replay(spec, replayable)
    assert_same_predictions(
        model_store.load("acme", POLICY, head.version), reference, probes(spec, api)
    )


# ---------------------------------------------------------------- the other answers


def test_fresh_still_starts_a_fresh_model_at_once(aws: dict[str, str], api: Api) -> None:
    learn_events(api, 2)
    spec_b = with_vw(view(api)["spec"], SQUARECB)
    status, answer = put(api, spec_b, query="model=fresh")
    assert status == 200, answer
    assert (answer["model_reset"], answer["changed"], answer["retrain"]) == (True, True, None)
    assert (answer["spec_version"], answer["model_version"]) == (2, 2)
    assert queue_depth(aws["LEARN_QUEUE_URL"]) == 0
    assert model_store.versions("acme", POLICY)[0].events_learned == 0


def test_a_vw_change_of_a_policy_that_learned_nothing_applies_at_once(
    aws: dict[str, str], api: Api
) -> None:
    # Given a policy whose model learned nothing yet: there is nothing to retrain from
    spec_b = with_vw(view(api)["spec"], SQUARECB)
    status, answer = put(api, spec_b)
    assert status == 200, answer
    assert (answer["model_reset"], answer["spec_version"], answer["model_version"]) == (True, 2, 1)
    assert answer["retrain"] is None
    assert queue_depth(aws["LEARN_QUEUE_URL"]) == 0


def test_an_identical_put_changes_nothing(aws: dict[str, str], api: Api) -> None:
    learn_events(api, 1)
    before = view(api)
    # When the stored spec is put again, as stored and as the shipped YAML (defaults omitted)
    shipped = load_spec(ROOT / "policies" / "for-you.yaml").model_dump(
        mode="json", exclude_defaults=True
    )
    for body in (before["spec"], shipped):
        status, answer = put(api, body)
        # Then nothing changed: same spec version, same model, no retrain
        assert status == 200, answer
        assert answer["changed"] is False
        assert {k: answer[k] for k in before} == before
    assert queue_depth(aws["LEARN_QUEUE_URL"]) == 0


@pytest.mark.parametrize("value", ["x", "FRESH", "retrain,fresh", "fresh "])
def test_an_unknown_model_value_is_422_and_changes_nothing(
    aws: dict[str, str], api: Api, value: str
) -> None:
    before = view(api)
    status, error = put(api, with_vw(before["spec"], SQUARECB), query=f"model={value}")
    assert status == 422, error
    assert error["field"] == "model"
    assert view(api) == before
    assert queue_depth(aws["LEARN_QUEUE_URL"]) == 0


@pytest.mark.parametrize(
    "retrain",
    [
        {"job": "0" * 31, "chunk": 0},
        {"job": "0" * 32, "chunk": -1},
        {"job": "0" * 32, "chunk": "1"},
        {"job": "0" * 32, "chunk": 1.0},
        {"job": "0" * 32, "chunk": 0, "extra": 1},
        {"job": "0" * 32},
    ],
)
def test_a_malformed_retrain_message_fails_as_any_malformed_message(
    aws: dict[str, str], tenant: Any, retrain: dict[str, Any]
) -> None:
    body = json.dumps({"tenant": "acme", "policy": POLICY, "retrain": retrain})
    sqs = boto3.client("sqs", region_name="us-east-1")
    sent = sqs.send_message(
        QueueUrl=aws["LEARN_QUEUE_URL"],
        MessageBody=body,
        MessageGroupId="g",
        MessageDeduplicationId=hashlib.sha256(body.encode()).hexdigest(),
    )
    assert learn_all(aws) == [sent["MessageId"]]


def test_a_retrain_message_with_rewards_is_malformed(aws: dict[str, str], tenant: Any) -> None:
    reward = {"event_id": "e", "item_id": "i", "type": "click", "timestamp": 1.0}
    body = json.dumps(
        {
            "tenant": "acme",
            "policy": POLICY,
            "rewards": [reward],
            "retrain": {"job": "0" * 32, "chunk": 0},
        }
    )
    event = sqs_event(
        [
            {
                "MessageId": "m-1",
                "ReceiptHandle": "r",
                "Body": body,
                "Attributes": {"MessageGroupId": "g"},
            }
        ],
        queue_arn(aws["LEARN_QUEUE_URL"]),
    )
    result = learn_handler(event, FakeLambdaContext())
    assert result["batchItemFailures"] == [{"itemIdentifier": "m-1"}]


def test_a_staged_plan_that_is_gone_fails_the_job_and_keeps_the_current_spec(
    aws: dict[str, str], api: Api, small_chunks: None
) -> None:
    learn_events(api, 4)
    spec_a = view(api)["spec"]
    assert put(api, with_vw(spec_a, SQUARECB))[0] == 202
    assert run_chunk(next(chunk_messages())) == []
    s3 = boto3.client("s3", region_name="us-east-1")
    for key in staged_objects():
        s3.delete_object(Bucket=settings().model_bucket, Key=key)
    assert learn_all(aws) == []
    after = view(api)
    assert after["retrain"]["state"] == "failed"
    assert "gone" in after["retrain"]["reason"]
    assert (after["spec"], after["spec_version"], after["model_version"]) == (spec_a, 1, 1)
