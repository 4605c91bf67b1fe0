"""The local stack's lean DynamoDB transactions behave as moto's own (and DynamoDB's): every
condition holds and every write lands, or nothing changes, with the same cancellation reasons."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.dynamodb.models import DynamoDBBackend

from local import moto_transactions

ORIGINAL = DynamoDBBackend.transact_write_items
Scenario = Callable[[Any], Any]


@pytest.fixture(params=["moto", "lean"])
def dynamodb(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    implementation = ORIGINAL if request.param == "moto" else moto_transactions.transact_write_items
    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", implementation)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        for table in ("a", "b"):
            client.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
            client.put_item(TableName=table, Item={"pk": {"S": "x"}, "n": {"N": "1"}})
        yield client


def items(client: Any) -> dict[str, list[dict[str, Any]]]:
    return {
        table: sorted(client.scan(TableName=table)["Items"], key=lambda i: i["pk"]["S"])
        for table in ("a", "b")
    }


def bump(table: str, pk: str, expected: int | None) -> dict[str, Any]:
    update: dict[str, Any] = {
        "TableName": table,
        "Key": {"pk": {"S": pk}},
        "UpdateExpression": "SET n = :new",
        "ExpressionAttributeValues": {":new": {"N": "2"}},
    }
    if expected is not None:
        update["ConditionExpression"] = "n = :old"
        update["ExpressionAttributeValues"][":old"] = {"N": str(expected)}
    return {"Update": update}


def test_all_conditions_hold_and_every_write_lands(dynamodb: Any) -> None:
    dynamodb.transact_write_items(
        TransactItems=[
            bump("a", "x", 1),
            {"Put": {"TableName": "b", "Item": {"pk": {"S": "y"}, "n": {"N": "7"}}}},
            {"Delete": {"TableName": "b", "Key": {"pk": {"S": "x"}}}},
        ]
    )
    assert items(dynamodb) == {
        "a": [{"pk": {"S": "x"}, "n": {"N": "2"}}],
        "b": [{"pk": {"S": "y"}, "n": {"N": "7"}}],
    }


def test_one_failed_condition_cancels_everything_with_per_item_reasons(dynamodb: Any) -> None:
    before = items(dynamodb)
    with pytest.raises(ClientError) as caught:
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": "b", "Item": {"pk": {"S": "y"}, "n": {"N": "7"}}}},
                bump("a", "x", 5),  # n is 1
            ]
        )
    error = caught.value.response
    assert error["Error"]["Code"] == "TransactionCanceledException"
    assert [r["Code"] for r in error["CancellationReasons"]] == ["None", "ConditionalCheckFailed"]
    assert items(dynamodb) == before


def test_a_write_that_fails_after_others_landed_puts_them_back(dynamodb: Any) -> None:
    before = items(dynamodb)
    too_big = {"S": "x" * 420_000}  # over DynamoDB's 400 KB item limit
    with pytest.raises(ClientError):
        dynamodb.transact_write_items(
            TransactItems=[
                bump("a", "x", None),
                {"Put": {"TableName": "b", "Item": {"pk": {"S": "z"}, "blob": too_big}}},
            ]
        )
    assert items(dynamodb) == before


def test_two_operations_on_one_item_are_refused(dynamodb: Any) -> None:
    with pytest.raises(ClientError) as caught:
        dynamodb.transact_write_items(TransactItems=[bump("a", "x", None), bump("a", "x", None)])
    assert "multiple operations" in str(caught.value).lower()
