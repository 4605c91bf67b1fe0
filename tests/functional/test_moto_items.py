"""``local.moto_items``: DynamoDB responses are the same with the direct path as with moto's own."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from local import moto_items

TABLE = "items"

texts = st.text(min_size=1, max_size=12)
numbers = st.decimals(
    min_value=Decimal("-1e20"), max_value=Decimal("1e20"), allow_nan=False, places=4
).map(lambda d: str(d.normalize()))
blobs = st.binary(min_size=1, max_size=12)
leaves = st.one_of(
    texts.map(lambda v: {"S": v}),
    numbers.map(lambda v: {"N": v}),
    blobs.map(lambda v: {"B": v}),
    st.booleans().map(lambda v: {"BOOL": v}),
    st.just({"NULL": True}),
    st.sets(texts, min_size=1, max_size=4).map(lambda v: {"SS": sorted(v)}),
    st.sets(numbers, min_size=1, max_size=4).map(lambda v: {"NS": sorted(v)}),
    st.sets(blobs, min_size=1, max_size=4).map(lambda v: {"BS": sorted(v)}),
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda v: {"L": v}),
        st.dictionaries(texts, inner, max_size=4).map(lambda v: {"M": v}),
    ),
    max_leaves=12,
)
items = st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k != "pk"), values)


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client(
            "dynamodb",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client
    moto_items.uninstall()


def answers(client: Any, key: dict[str, Any]) -> list[Any]:
    """What GetItem, BatchGetItem, Query and an UpdateItem's ALL_NEW give back for ``key``."""
    got = client.get_item(TableName=TABLE, Key=key)["Item"]
    batch = client.batch_get_item(RequestItems={TABLE: {"Keys": [key]}})["Responses"][TABLE]
    query = client.query(
        TableName=TABLE,
        KeyConditionExpression="pk = :k",
        ExpressionAttributeValues={":k": key["pk"]},
    )["Items"]
    updated = client.update_item(
        TableName=TABLE,
        Key=key,
        UpdateExpression="SET touched = :t",
        ExpressionAttributeValues={":t": {"N": "1"}},
        ReturnValues="ALL_NEW",
    )["Attributes"]
    return [got, batch, query, updated]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(item=items, index=st.integers(0, 10**9))
def test_every_item_reads_back_the_same_both_ways(
    dynamodb: Any, item: dict[str, Any], index: int
) -> None:
    # Given an item of any shape, stored
    key = {"pk": {"S": f"item-{index}"}}
    # When it is read back through moto's general serialization and through the direct path
    read = []
    for path in (moto_items.uninstall, moto_items.install):
        dynamodb.put_item(TableName=TABLE, Item={**key, **item})
        path()
        read.append(answers(dynamodb, key))
    general, direct = read
    # Then every read gives the same answer, and that answer is the item as it was put
    assert direct == general
    assert general[0] == {**key, **item}


def test_attribute_values_take_the_direct_path(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given moto's general structure serialization, watched for attribute values
    general = moto_items._general
    attribute_values: list[str] = []

    def watched(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if shape.name == moto_items.ATTRIBUTE_VALUE:
            attribute_values.append(key)
        general(self, serialized, value, shape, key)

    monkeypatch.setattr(moto_items, "_general", watched)
    key = {"pk": {"S": "watched"}}
    dynamodb.put_item(TableName=TABLE, Item={**key, "m": {"M": {"n": {"N": "1"}}}})
    # When an item is read with the direct path installed, and without it
    moto_items.install()
    dynamodb.get_item(TableName=TABLE, Key=key)
    direct = len(attribute_values)
    moto_items.uninstall()
    monkeypatch.setattr(
        moto_items.BaseJSONSerializer, "_serialize_type_structure", watched, raising=True
    )
    dynamodb.get_item(TableName=TABLE, Key=key)
    # Then no attribute value went through the general path with it; without it all three did
    # (pk, m and the number inside m)
    assert (direct, len(attribute_values) - direct) == (0, 3)
