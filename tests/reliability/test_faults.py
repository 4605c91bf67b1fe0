"""Faults injected at the botocore client layer: the service degrades, says so, and stores nothing
half-done.

Every AWS call (boto3's and pynamodb's clients alike) goes through
``BaseClient._make_api_call``; the ``faults`` fixture patches it so that chosen operations on
chosen tables, buckets or queues raise what AWS would raise when throttled or down.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError, EndpointConnectionError

import functions.rank.app as rank_app
from functions.common import decision_store, model_store
from functions.common.errors import NotFoundError
from functions.common.learn_service import Learner
from functions.common.settings import reset_settings, settings
from functions.common.tables import ModelVersionItem
from functions.rewards.app import lambda_handler as rewards_handler
from tests.reliability.conftest import Api

RANK = "/v1/policies/{policy}/rank"
POLICY = "for-you"
CANDIDATES = [
    {"id": f"item-{i}", "category": "sports" if i % 2 else "music", "features": {"len": "short"}}
    for i in range(10)
]

ErrorFactory = Callable[[str], Exception]
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
Answer = tuple[int, Any, dict[str, str]]


def throttled(operation: str) -> Exception:
    """What DynamoDB raises when a table is over its capacity."""
    code = "ProvisionedThroughputExceededException"
    error: Exception = ClientError({"Error": {"Code": code, "Message": "throttled"}}, operation)
    return error


def unavailable(operation: str) -> Exception:
    """What a service answers when it is down."""
    error: Exception = ClientError(
        {"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, operation
    )
    return error


def unreachable(operation: str) -> Exception:
    """What botocore raises when the endpoint cannot be reached at all."""
    error: Exception = EndpointConnectionError(endpoint_url=f"https://unreachable/{operation}")
    return error


def _resources(params: dict[str, Any]) -> set[str]:
    """Tables, bucket or queue an API call touches."""
    names = {str(params[k]) for k in ("TableName", "Bucket", "QueueUrl") if k in params}
    names.update(params.get("RequestItems", {}))
    for item in params.get("TransactItems", []):
        names.update(str(op["TableName"]) for op in item.values())
    return names


@dataclass
class Rule:
    service: str
    operations: frozenset[str]  # empty: every operation
    resources: frozenset[str]  # empty: every resource
    error: ErrorFactory

    def matches(self, service: str, operation: str, params: dict[str, Any]) -> bool:
        return (
            service == self.service
            and (not self.operations or operation in self.operations)
            and (not self.resources or bool(self.resources & _resources(params)))
        )


@dataclass
class Faults:
    """Failure rules for AWS calls, and a log of the calls they failed."""

    rules: list[Rule] = field(default_factory=list)
    failed: list[tuple[str, str, frozenset[str]]] = field(default_factory=list)

    def fail(
        self,
        service: str,
        *operations: str,
        on: tuple[str, ...] = (),
        error: ErrorFactory = unavailable,
    ) -> None:
        """Make ``operations`` (all if none) of ``service`` on resources ``on`` (all if none)
        raise."""
        self.rules.append(Rule(service, frozenset(operations), frozenset(on), error))

    def clear(self) -> None:
        """The outage ends."""
        self.rules.clear()

    def hit(self, service: str, operation: str, resource: str | None = None) -> bool:
        """Whether a call of ``operation`` (on ``resource``) was failed."""
        return any(
            (s, o) == (service, operation) and (resource is None or resource in names)
            for s, o, names in self.failed
        )

    def check(self, client: BaseClient, operation: str, params: dict[str, Any]) -> None:
        service = client.meta.service_model.service_name
        for rule in self.rules:
            if rule.matches(service, operation, params):
                self.failed.append((service, operation, frozenset(_resources(params))))
                raise rule.error(operation)


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch, aws: dict[str, str]) -> Iterator[Faults]:
    """Fault injection on every botocore client (boto3's and pynamodb's)."""
    injected = Faults()
    original = BaseClient._make_api_call

    def make_api_call(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        injected.check(client, operation, params)
        return original(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)
    yield injected
    injected.clear()


def call(api: Api, handler: Handler, path: str, body: Any, **options: Any) -> Answer:
    """``Api.call`` that also returns the headers as sent (REST responses carry them in
    ``multiValueHeaders``)."""
    responses: list[dict[str, Any]] = []

    def recording(event: dict[str, Any], context: Any) -> dict[str, Any]:
        responses.append(handler(event, context))
        return responses[-1]

    status, payload, _ = api.call(recording, "POST", path, body, **options)
    headers = {k: v[-1] for k, v in (responses[-1].get("multiValueHeaders") or {}).items()}
    headers.update(responses[-1].get("headers") or {})
    return status, payload, headers


def rank_call(api: Api) -> Answer:
    body = {"context": {"user": {"cohort": "a"}}, "user_id": "user-1", "candidates": CANDIDATES}
    path = f"/v1/policies/{POLICY}/rank"
    return call(api, rank_app.lambda_handler, path, body, resource=RANK)


def rank(api: Api) -> dict[str, Any]:
    status, payload, _ = rank_call(api)
    assert status == 200, payload
    assert len(payload["slate"]) == 5
    return dict(payload)


def learn_new_version(api: Api) -> int:
    """Rank twice and let the sweep learn every open event (default reward): a new head."""
    for _ in range(2):
        rank(api)
    report = Learner().sweep(now=10**10)
    assert len(report.versions) == 1
    return report.versions[0]


def decision_count() -> int:
    client = boto3.client("dynamodb", region_name="us-east-1")
    return int(client.scan(TableName=settings().decisions_table, Select="COUNT")["Count"])


def emitted(output: str, metric: str) -> float:
    """Sum of ``metric`` over the EMF lines Powertools printed."""
    total = 0.0
    for line in output.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and "_aws" in document and metric in document:
            value = document[metric]
            total += sum(value) if isinstance(value, list) else float(value)
    return total


def corrupt_head(head: int) -> None:
    """Flip every byte of the head version's stored blob (inline or S3), keeping its sha256."""
    item = ModelVersionItem.get(model_store.model_key("acme", POLICY), head)
    if item.blob is not None:
        item.update(actions=[ModelVersionItem.blob.set(bytes(b ^ 0xFF for b in item.blob))])
        return
    s3 = boto3.client("s3", region_name="us-east-1")
    bucket, key = settings().model_bucket, str(item.s3_key)
    blob = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(b ^ 0xFF for b in blob))


def use_s3_for_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INLINE_MODEL_BYTES", "100")
    reset_settings()


# 1. DynamoDB throttled or down during rank


def test_throttled_decision_write_still_serves_the_slate_unlogged(
    api: Api, faults: Faults, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the decisions table throttles every write
    faults.fail("dynamodb", "PutItem", on=(settings().decisions_table,), error=throttled)
    capsys.readouterr()
    # When a slate is ranked
    served = rank(api)
    # Then it is served from the model, flagged as not logged, and the metric says so
    assert (served["logged"], served["degraded"], served["model_version"]) == (False, False, 0)
    assert faults.hit("dynamodb", "PutItem", settings().decisions_table)
    assert emitted(capsys.readouterr().out, "DecisionsNotLogged") == 1
    # And no decision was stored
    faults.clear()
    with pytest.raises(NotFoundError):
        decision_store.get("acme", served["event_id"])
    assert decision_count() == 0


def test_dynamodb_down_after_warm_up_serves_from_caches(
    api: Api, faults: Faults, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the budget counters are down from the start, and one rank warmed the caches
    current = settings()
    faults.fail("dynamodb", on=(current.counters_table,), error=throttled)
    warm = rank(api)
    assert warm["logged"] is True
    assert faults.hit("dynamodb", "Query", current.counters_table)
    # When every table the rank path reads or writes goes down
    tables = (current.policies_table, current.users_table, current.decisions_table)
    faults.fail("dynamodb", on=(*tables, current.models_table))
    capsys.readouterr()
    served = rank(api)
    # Then the slate is served from the cached policy and model, unlogged
    assert (served["logged"], served["degraded"]) == (False, False)
    assert served["model_version"] == warm["model_version"]
    assert served["exploration"]["segment"] == warm["exploration"]["segment"]
    assert faults.hit("dynamodb", "GetItem", current.policies_table)
    assert faults.hit("dynamodb", "GetItem", current.users_table)
    assert emitted(capsys.readouterr().out, "DecisionsNotLogged") == 1
    # And only the warm-up decision exists once the tables are back
    faults.clear()
    assert decision_count() == 1


def test_policy_unreadable_with_nothing_cached_is_a_clear_503(api: Api, faults: Faults) -> None:
    # Given a fresh process and a policies table that is down
    faults.fail("dynamodb", "GetItem", on=(settings().policies_table,))
    # When a slate is asked for
    status, payload, headers = rank_call(api)
    # Then the answer is a JSON 503 the caller can retry, and nothing was stored
    assert status == 503, payload
    assert payload["error"] == "storage_unavailable"
    assert int(headers["Retry-After"]) > 0
    assert faults.hit("dynamodb", "GetItem", settings().policies_table)
    faults.clear()
    assert decision_count() == 0


# 2. S3 down while loading a large model


def test_s3_down_keeps_serving_the_last_good_model_degraded(
    api: Api, faults: Faults, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given models stored in S3, version 1 served (cached), and then version 2 learned
    use_s3_for_models(monkeypatch)
    assert learn_new_version(api) == 1
    assert rank(api)["model_version"] == 1
    assert learn_new_version(api) == 2
    assert {v.stored_in for v in model_store.versions("acme", POLICY)} == {"s3"}
    # When S3 cannot be reached
    faults.fail("s3", "GetObject", error=unreachable)
    served = rank(api)
    # Then version 1 keeps serving, flagged degraded, and the decision records version 1
    assert (served["model_version"], served["degraded"], served["logged"]) == (1, True, True)
    assert faults.hit("s3", "GetObject")
    assert decision_store.get("acme", served["event_id"]).record.model_version == 1
    # And once S3 is back the head serves again
    faults.clear()
    recovered = rank(api)
    assert (recovered["model_version"], recovered["degraded"]) == (2, False)


# 3. SQS down in the webhook


def test_reward_queue_down_answers_503_and_acknowledges_nothing(
    api: Api, faults: Faults, aws: dict[str, str]
) -> None:
    # Given a ranked event and a reward queue that refuses messages
    event = rank(api)
    faults.fail("sqs", "SendMessage", on=(aws["REWARD_QUEUE_URL"],))
    body = json.dumps({"event_id": event["event_id"], "item_id": event["slate"][0]["id"]})
    # When the reward is posted
    status, payload, headers = call(api, rewards_handler, "/v1/rewards", body, sign_body=True)
    # Then the caller is told to retry later
    assert status == 503, payload
    assert payload["error"] == "unavailable"
    assert int(headers["Retry-After"]) > 0
    assert faults.hit("sqs", "SendMessage")
    # And nothing was queued
    faults.clear()
    sqs = boto3.client("sqs", region_name="us-east-1")
    assert "Messages" not in sqs.receive_message(QueueUrl=aws["REWARD_QUEUE_URL"])


# 4. A model blob failing its checksum is never served


@pytest.mark.parametrize("stored_in", ["inline", "s3"])
def test_corrupt_head_is_never_served(
    api: Api, faults: Faults, monkeypatch: pytest.MonkeyPatch, stored_in: str
) -> None:
    # Given version 1 served (cached), then version 2 learned and its blob corrupted
    if stored_in == "s3":
        use_s3_for_models(monkeypatch)
    learn_new_version(api)
    assert rank(api)["model_version"] == 1
    assert learn_new_version(api) == 2
    assert model_store.versions("acme", POLICY)[0].stored_in == stored_in
    corrupt_head(2)
    # When this process ranks, the last good model serves, flagged degraded
    served = rank(api)
    assert (served["model_version"], served["degraded"]) == (1, True)
    assert decision_store.get("acme", served["event_id"]).record.model_version == 1
    # And a fresh process with no good model cached refuses to serve the corrupt one
    rank_app._service = None
    before = decision_count()
    status, payload, headers = rank_call(api)
    assert status == 503, payload
    assert payload["error"] == "model_unavailable"
    assert "checksum" in payload["detail"]
    assert int(headers["Retry-After"]) > 0
    assert decision_count() == before
