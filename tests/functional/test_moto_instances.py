"""moto registers every model instance it makes (``instances_tracked``, for its dashboard) and
never lets go in a running server: every item version ever written stayed in memory. The local
stack's server holds them weakly (``local.moto_instances``): what is deleted or replaced is freed,
what is stored is still listed."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.common_models import BaseModel
from moto.core.model_instances import reset_model_data
from moto.dynamodb.models.dynamo_type import Item

from local import moto_instances

REGION = "us-east-1"


def table(client: Any) -> None:
    client.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


@pytest.fixture
def weak_register(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BaseModel, "__new__", staticmethod(moto_instances.tracked_weakly))


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    reset_model_data()
    try:
        with mock_aws():
            client = boto3.client("dynamodb", region_name=REGION)
            table(client)
            yield client
    finally:
        reset_model_data()  # moto's own lists again, empty


def write_and_churn(client: Any) -> None:
    """50 items each written 3 times (put, update, transaction), then 40 of them deleted."""
    for n in range(50):
        key = {"pk": {"S": f"k{n}"}}
        client.put_item(TableName="t", Item={**key, "n": {"N": "0"}})
        client.update_item(
            TableName="t",
            Key=key,
            UpdateExpression="SET n = :n",
            ExpressionAttributeValues={":n": {"N": "1"}},
        )
        client.transact_write_items(
            TransactItems=[{"Put": {"TableName": "t", "Item": {**key, "n": {"N": "2"}}}}]
        )
    for n in range(40):
        client.delete_item(TableName="t", Key={"pk": {"S": f"k{n}"}})


def test_moto_s_register_keeps_every_item_ever_written(dynamodb: Any) -> None:
    # (moto's own behaviour: the cause of the local stack's growth)
    # Given items written 3 times each, most then deleted
    write_and_churn(dynamodb)

    # Then moto's register still holds every version (and the copies its transactions made)
    gc.collect()
    assert len(list(Item.instances_tracked)) >= 150  # type: ignore[attr-defined]


def test_the_local_register_holds_only_what_is_stored(weak_register: None, dynamodb: Any) -> None:
    # Given items written 3 times each, most then deleted
    write_and_churn(dynamodb)

    # Then the register lists just the 10 stored items (moto's dashboard still sees them)
    gc.collect()
    tracked = list(Item.instances_tracked)  # type: ignore[attr-defined]
    stored = dynamodb.scan(TableName="t")["Items"]
    assert len(stored) == 10
    assert sorted(item.hash_key.value for item in tracked) == sorted(i["pk"]["S"] for i in stored)
