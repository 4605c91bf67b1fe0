"""The AWS call recorder on in-process moto: every call counted, attributed to its function, with
transactions and batches expanded per table; boto3's and pynamodb's calls alike."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from pynamodb.exceptions import PutError
from pynamodb.transactions import TransactWrite

from functions.common import policy_store
from functions.common.auth import NewKey
from functions.common.tables import CounterItem, PolicyItem, bind, transaction_connection
from local.aws_calls import NO_FUNCTION, Touch, record_aws_calls
from local.lambda_events import LocalFunction, current_function, proxy_event
from local.workers import SqsPoller

RANK_RESOURCE = "/v1/policies/{policy}/rank"
CANDIDATES = [{"id": f"item-{i}", "category": "sports" if i % 2 else "music"} for i in range(10)]


def rank_event(key: NewKey) -> dict[str, Any]:
    body = {"context": {"user": {"cohort": "a"}}, "user_id": "u-1", "candidates": CANDIDATES}
    headers = {"content-type": "application/json", "x-api-key": key.api_key}
    return proxy_event(
        "POST",
        "/v1/policies/for-you/rank",
        resource=RANK_RESOURCE,
        body=json.dumps(body),
        headers=headers,
    )


def fetch_policy(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A handler for the tests' own functions: one pynamodb GetItem per record (or one)."""
    for _record in event.get("Records") or [None]:
        policy_store.get("acme", "for-you")
    return {"batchItemFailures": []}


FETCH_POLICY = "tests/functional/test_aws_calls.fetch_policy"


def test_a_rank_through_a_local_function_is_recorded_under_it(
    tenant: NewKey, aws: dict[str, str]
) -> None:
    # Given the rank handler run as the template's RankFunction
    function = LocalFunction("RankFunction", "functions/rank/app.lambda_handler")
    shards = policy_store.get("acme", "for-you").spec.exploration.shards
    # When it ranks twice (a cold and a warm call)
    with record_aws_calls() as cold:
        assert function.invoke(rank_event(tenant))["statusCode"] == 200
    with record_aws_calls() as warm:
        assert function.invoke(rank_event(tenant))["statusCode"] == 200
    # Then a warm rank reads policy and user (these tests keep no policy), the candidates'
    # popularity in one batch, and writes the decision: four DynamoDB calls, all of them the
    # RankFunction's; the API key read by the cold call is kept (API_KEY_CACHE_SECONDS)
    assert warm.by_operation() == {
        ("RankFunction", "dynamodb", "GetItem"): 2,
        ("RankFunction", "dynamodb", "BatchGetItem"): 1,
        ("RankFunction", "dynamodb", "PutItem"): 1,
    }
    assert warm.by_service() == {("RankFunction", "dynamodb"): 4}
    uses = warm.by_resource()
    assert uses[aws["DECISIONS_TABLE"]] == {"PutItem": {"requests": 1, "items": 1}}
    assert aws["KEYS_TABLE"] not in uses
    # 10 candidates and the policy's totals cell
    assert uses[aws["COUNTERS_TABLE"]] == {"Get": {"requests": 1, "items": 11}}
    # And the cold one also reads the key and loads the exploration budget, one query per shard
    assert cold.by_operation() - warm.by_operation() == {
        ("RankFunction", "dynamodb", "Query"): shards,
        ("RankFunction", "dynamodb", "GetItem"): 1,
    }
    assert cold.by_resource()[aws["KEYS_TABLE"]] == {"GetItem": {"requests": 1, "items": 1}}
    assert cold.summary()["by_function"] == {"RankFunction": {"dynamodb": 5 + shards}}


def test_the_context_variable_alone_attributes_calls(tenant: NewKey) -> None:
    from functions.rank.app import lambda_handler
    from local.lambda_events import FakeLambdaContext

    lambda_handler(rank_event(tenant), FakeLambdaContext())  # cold caches out of the way
    running = current_function.set("RankFunction")
    try:
        with record_aws_calls() as calls:
            assert lambda_handler(rank_event(tenant), FakeLambdaContext())["statusCode"] == 200
    finally:
        current_function.reset(running)
    assert calls.by_service() == {("RankFunction", "dynamodb"): 4}


def test_a_transaction_is_expanded_per_table_and_action(
    tenant: NewKey, aws: dict[str, str]
) -> None:
    # Given a pynamodb transaction over three tables, and boto3's own TransactGetItems
    bind()
    with record_aws_calls() as calls:
        with TransactWrite(connection=transaction_connection()) as transaction:
            for n in range(3):
                transaction.save(CounterItem(f"acme#c{n}", "s", served=n))
            transaction.update(
                PolicyItem("acme", "for-you"), actions=[PolicyItem.updated_at.set(1.0)]
            )
            transaction.condition_check(
                PolicyItem, "acme", "explore", condition=PolicyItem.pk.exists()
            )
        boto3.client("dynamodb", region_name="us-east-1").transact_get_items(
            TransactItems=[
                {"Get": {"TableName": aws["COUNTERS_TABLE"], "Key": _counter_key(n)}}
                for n in range(2)
            ]
        )
    # Then each call is one request, with a touch per (table, action)
    write, read = calls.calls()
    assert (write.operation, write.function, write.error) == ("TransactWriteItems", None, None)
    assert sorted(write.touches, key=lambda t: (t.resource, t.action)) == [
        Touch(aws["COUNTERS_TABLE"], "Put", 3),
        Touch(aws["POLICIES_TABLE"], "ConditionCheck", 1),
        Touch(aws["POLICIES_TABLE"], "Update", 1),
    ]
    assert read.touches == (Touch(aws["COUNTERS_TABLE"], "Get", 2),)
    assert calls.by_resource() == {
        aws["COUNTERS_TABLE"]: {
            "Put": {"requests": 1, "items": 3},
            "Get": {"requests": 1, "items": 2},
        },
        aws["POLICIES_TABLE"]: {
            "Update": {"requests": 1, "items": 1},
            "ConditionCheck": {"requests": 1, "items": 1},
        },
    }
    assert calls.count("dynamodb") == 2


def _counter_key(n: int) -> dict[str, Any]:
    return {"pk": {"S": f"acme#c{n}"}, "sk": {"S": "s"}}


def test_pynamodb_calls_are_recorded_single_batched_and_failed(
    tenant: NewKey, aws: dict[str, str]
) -> None:
    # pynamodb 6 makes its own botocore client (no boto3) and calls _make_api_call on it
    bind()
    counters = aws["COUNTERS_TABLE"]
    with record_aws_calls() as calls:
        policy_store.get("acme", "for-you")
        with CounterItem.batch_write() as batch:
            for n in range(30):
                batch.save(CounterItem(f"acme#b{n}", "s"))
        found = list(CounterItem.batch_get([(f"acme#b{n}", "s") for n in range(30)]))
        queried = list(CounterItem.query("acme#b7"))
        with pytest.raises(PutError):
            CounterItem("acme#b0", "s").save(condition=CounterItem.pk.does_not_exist())
    assert len(found) == 30 and len(queried) == 1
    assert [(c.operation, c.error) for c in calls.calls()] == [
        ("GetItem", None),
        ("BatchWriteItem", None),  # pynamodb writes 25 items a request
        ("BatchWriteItem", None),
        ("BatchGetItem", None),
        ("Query", None),
        ("PutItem", "ConditionalCheckFailedException"),
    ]
    uses = calls.by_resource()[counters]
    assert uses["Put"] == {"requests": 2, "items": 30}
    assert uses["Get"] == {"requests": 1, "items": 30}
    assert uses["Query"] == {"requests": 1, "items": 1}
    assert calls.summary()["errors"] == 1
    connection = PolicyItem._get_connection().connection
    assert isinstance(connection.client, BaseClient)


def test_calls_outside_any_function_have_none_and_the_poller_is_one_of_them(
    tenant: NewKey, aws: dict[str, str]
) -> None:
    # Given a learn-like function behind the local stack's SQS poller, and two queued messages
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue = aws["REWARD_QUEUE_URL"]
    function = LocalFunction("LearnFunction", FETCH_POLICY)
    poller = SqsPoller(queue, function.invoke, wait_seconds=0, client=sqs, name="learn-poller")
    with record_aws_calls() as calls:
        sqs.send_message_batch(
            QueueUrl=queue,
            Entries=[{"Id": str(n), "MessageBody": "{}"} for n in range(2)],
        )
        # When the poller delivers them
        assert poller.poll_once() == 2
    # Then receiving and deleting are the event source's (None), the reads the function's
    assert calls.by_operation() == {
        (None, "sqs", "SendMessageBatch"): 1,
        (None, "sqs", "ReceiveMessage"): 1,
        ("LearnFunction", "dynamodb", "GetItem"): 2,
        (None, "sqs", "DeleteMessageBatch"): 1,
    }
    queue_name = queue.rsplit("/", 1)[-1]
    assert calls.by_resource()[queue_name] == {
        "SendMessageBatch": {"requests": 1, "items": 2},
        "ReceiveMessage": {"requests": 1, "items": 2},
        "DeleteMessageBatch": {"requests": 1, "items": 2},
    }
    assert calls.of([None]).count() == 3
    assert calls.summary()["by_function"] == {
        "LearnFunction": {"dynamodb": 2},
        NO_FUNCTION: {"sqs": 3},
    }


def test_concurrent_functions_are_told_apart_and_the_hook_goes_away(tenant: NewKey) -> None:
    original = BaseClient._make_api_call
    functions = [LocalFunction(f"Function{n}", FETCH_POLICY) for n in range(4)]
    rounds = 5

    def run(function: LocalFunction) -> None:
        for _ in range(rounds):
            function.invoke({})

    with record_aws_calls() as outer:
        with record_aws_calls() as inner:
            threads = [threading.Thread(target=run, args=(f,)) for f in functions]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        policy_store.get("acme", "for-you")  # seen by the outer recorder only
    policy_store.get("acme", "for-you")  # seen by none
    expected = Counter({(f.name, "dynamodb"): rounds for f in functions})
    assert inner.by_service() == expected
    assert outer.by_service() == expected + Counter({(None, "dynamodb"): 1})
    assert BaseClient._make_api_call is original
