"""The local stack's moto queries (``local.moto_indexes``) answer exactly as moto's own, on tables
and on their indexes, page by page, forwards and backwards, while reading only the partition a
table query asks for."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.dynamodb.models.table import Table

from local import moto_indexes

REGION = "us-east-1"
QUERIES: list[dict[str, Any]] = [
    # a table partition, whole and by sort-key range, both ways, in pages
    {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "p3"}}},
    {
        "KeyConditionExpression": "pk = :p AND sk BETWEEN :a AND :b",
        "ExpressionAttributeValues": {":p": {"S": "p1"}, ":a": {"S": "s05"}, ":b": {"S": "s30"}},
        "ScanIndexForward": False,
        "Limit": 4,
    },
    # an index, sparse (only open items), by shard and closing time, in pages
    {
        "IndexName": "open",
        "KeyConditionExpression": "shard = :s AND closes_at <= :t",
        "ExpressionAttributeValues": {":s": {"S": "open#1"}, ":t": {"N": "40"}},
        "Limit": 3,
    },
    {
        "IndexName": "open",
        "KeyConditionExpression": "shard = :s",
        "ExpressionAttributeValues": {":s": {"S": "open#0"}},
        "ScanIndexForward": False,
        "FilterExpression": "n > :n",
        "ExpressionAttributeValues_extra": {":n": {"N": "10"}},
    },
    {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "none"}}},
]


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        client.create_table(
            TableName="t",
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
                {"AttributeName": "shard", "AttributeType": "S"},
                {"AttributeName": "closes_at", "AttributeType": "N"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "open",
                    "KeySchema": [
                        {"AttributeName": "shard", "KeyType": "HASH"},
                        {"AttributeName": "closes_at", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        # Written out of key order, several items closing at the same time
        for n in reversed(range(200)):
            item = {"pk": {"S": f"p{n % 5}"}, "sk": {"S": f"s{n // 5:02d}"}, "n": {"N": str(n)}}
            if n % 3:
                item |= {"shard": {"S": f"open#{n % 2}"}, "closes_at": {"N": str(n % 50)}}
            client.put_item(TableName="t", Item=item)
        yield client


def every_page(client: Any, query: dict[str, Any]) -> list[list[dict[str, Any]]]:
    arguments = {key: value for key, value in query.items() if not key.endswith("_extra")}
    extra = query.get("ExpressionAttributeValues_extra", {})
    arguments["ExpressionAttributeValues"] = {**arguments["ExpressionAttributeValues"], **extra}
    pages = []
    while True:
        answer = client.query(TableName="t", **arguments)
        pages.append(answer["Items"])
        if "LastEvaluatedKey" not in answer:
            return pages
        arguments["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


def use_local_queries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Table, "query", moto_indexes.query)
    monkeypatch.setattr(Table, "all_items", moto_indexes._items_for_query)


@pytest.mark.parametrize("query", QUERIES, ids=range(len(QUERIES)))
def test_a_query_answers_as_moto_s_own(
    dynamodb: Any, query: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given moto's answer to a query, page by page
    expected = every_page(dynamodb, query)

    # When the local stack's queries answer it on the same table, then the same pages
    use_local_queries(monkeypatch)
    assert every_page(dynamodb, query) == expected


def test_a_table_query_reads_only_its_partition(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a table of 5 partitions of 40 items, when a query reads one of them
    use_local_queries(monkeypatch)
    read: list[int] = []

    def counted(table: Table) -> list[Any]:
        items = moto_indexes._items_for_query(table)
        read.append(len(items))
        return items

    monkeypatch.setattr(Table, "all_items", counted)
    dynamodb.query(TableName="t", **QUERIES[0])

    # Then it looked at the 40 items of that partition, not the table's 200
    assert read == [40]
