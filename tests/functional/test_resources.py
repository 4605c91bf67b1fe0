"""create_resources() builds the template's tables, queues and bucket on moto (in-process)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pynamodb.indexes import GlobalSecondaryIndex

from local.resources import create_resources, translated_template

STACK = "test-stack"


@dataclass
class Stack:
    env: dict[str, str]
    template: dict[str, Any]
    dynamodb: Any
    sqs: Any
    s3: Any


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):  # never mix a moto server with mock_aws
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        yield Stack(
            env=create_resources(STACK),
            template=translated_template(),
            dynamodb=boto3.client("dynamodb"),
            sqs=boto3.client("sqs"),
            s3=boto3.client("s3"),
        )


def _of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == kind
    }


def test_returns_the_functions_environment(stack: Stack) -> None:
    assert stack.env == {
        "DECISIONS_TABLE": f"{STACK}-DecisionsTable",
        "POLICIES_TABLE": f"{STACK}-PoliciesTable",
        "MODELS_TABLE": f"{STACK}-ModelsTable",
        "ITEMS_TABLE": f"{STACK}-ItemsTable",
        "USERS_TABLE": f"{STACK}-UsersTable",
        "COUNTERS_TABLE": f"{STACK}-CountersTable",
        "KEYS_TABLE": f"{STACK}-KeysTable",
        "MODEL_BUCKET": f"{STACK}-modelbucket",
        "REWARD_QUEUE_URL": stack.sqs.get_queue_url(QueueName=f"{STACK}-RewardQueue")["QueueUrl"],
        "REWARD_DLQ_URL": stack.sqs.get_queue_url(QueueName=f"{STACK}-RewardDLQ")["QueueUrl"],
        "LEARN_QUEUE_URL": stack.sqs.get_queue_url(QueueName=f"{STACK}-LearnQueue.fifo")[
            "QueueUrl"
        ],
        "LEARN_DLQ_URL": stack.sqs.get_queue_url(QueueName=f"{STACK}-LearnDLQ.fifo")["QueueUrl"],
        "WEBHOOK_SECRETS_KEY_ID": boto3.client("kms").describe_key(
            KeyId=f"alias/{STACK}-WebhookSecretsKey"
        )["KeyMetadata"]["KeyId"],
    }


def test_the_webhook_secrets_key_is_made_once_with_rotation(stack: Stack) -> None:
    kms = boto3.client("kms")
    key_id = stack.env["WEBHOOK_SECRETS_KEY_ID"]
    metadata = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert (metadata["KeyUsage"], metadata["KeySpec"]) == ("ENCRYPT_DECRYPT", "SYMMETRIC_DEFAULT")
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
    # Creating the resources again keeps the key (secrets sealed with it stay readable)
    assert create_resources(STACK)["WEBHOOK_SECRETS_KEY_ID"] == key_id
    assert len(kms.list_keys()["Keys"]) == 1


def test_every_table_has_the_template_keys_indexes_and_ttl(stack: Stack) -> None:
    tables = _of_type(stack.template, "AWS::DynamoDB::Table")
    assert sorted(stack.dynamodb.list_tables()["TableNames"]) == sorted(
        f"{STACK}-{logical_id}" for logical_id in tables
    )
    for logical_id, properties in tables.items():
        name = f"{STACK}-{logical_id}"
        table = stack.dynamodb.describe_table(TableName=name)["Table"]
        assert table["TableStatus"] == "ACTIVE"
        assert table["KeySchema"] == properties["KeySchema"]
        assert sorted(table["AttributeDefinitions"], key=str) == sorted(
            properties["AttributeDefinitions"], key=str
        )
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        created = {
            gsi["IndexName"]: (gsi["KeySchema"], gsi["Projection"]["ProjectionType"])
            for gsi in table.get("GlobalSecondaryIndexes", [])
        }
        expected = {
            gsi["IndexName"]: (gsi["KeySchema"], gsi["Projection"]["ProjectionType"])
            for gsi in properties.get("GlobalSecondaryIndexes", [])
        }
        assert created == expected
        ttl = stack.dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        spec = properties.get("TimeToLiveSpecification")
        if spec:
            assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": spec["AttributeName"]}
        else:
            assert ttl["TimeToLiveStatus"] == "DISABLED"


def test_decisions_indexes_and_ttl_are_the_designed_ones(stack: Stack) -> None:
    table = stack.dynamodb.describe_table(TableName=stack.env["DECISIONS_TABLE"])["Table"]
    indexes = {gsi["IndexName"]: gsi for gsi in table["GlobalSecondaryIndexes"]}
    assert indexes["by_policy"]["KeySchema"] == [
        {"AttributeName": "policy_key", "KeyType": "HASH"},
        {"AttributeName": "ts", "KeyType": "RANGE"},
    ]
    assert indexes["open_events"]["Projection"] == {
        "ProjectionType": "INCLUDE",
        "NonKeyAttributes": ["policy_key"],
    }
    ttl = stack.dynamodb.describe_time_to_live(TableName=stack.env["DECISIONS_TABLE"])
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires_at"
    backups = stack.dynamodb.describe_continuous_backups(TableName=stack.env["MODELS_TABLE"])
    recovery = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
    assert recovery["PointInTimeRecoveryStatus"] == "ENABLED"


def test_the_reward_queue_redrives_to_the_dlq(stack: Stack) -> None:
    dlq = stack.sqs.get_queue_attributes(
        QueueUrl=stack.env["REWARD_DLQ_URL"], AttributeNames=["All"]
    )["Attributes"]
    queue = stack.sqs.get_queue_attributes(
        QueueUrl=stack.env["REWARD_QUEUE_URL"], AttributeNames=["All"]
    )["Attributes"]
    assert json.loads(queue["RedrivePolicy"]) == {
        "deadLetterTargetArn": dlq["QueueArn"],
        "maxReceiveCount": 5,
    }
    assert queue["VisibilityTimeout"] == "360"
    assert queue["MessageRetentionPeriod"] == str(4 * 24 * 3600)
    assert dlq["MessageRetentionPeriod"] == str(14 * 24 * 3600)
    assert queue["SqsManagedSseEnabled"] == dlq["SqsManagedSseEnabled"] == "true"


def test_a_poison_message_lands_in_the_dlq_after_five_receives(stack: Stack) -> None:
    stack.sqs.set_queue_attributes(  # speed up redelivery for the test only
        QueueUrl=stack.env["REWARD_QUEUE_URL"], Attributes={"VisibilityTimeout": "0"}
    )
    stack.sqs.send_message(QueueUrl=stack.env["REWARD_QUEUE_URL"], MessageBody="poison")
    for _ in range(6):
        stack.sqs.receive_message(QueueUrl=stack.env["REWARD_QUEUE_URL"])
    moved = stack.sqs.receive_message(QueueUrl=stack.env["REWARD_DLQ_URL"])["Messages"]
    assert [message["Body"] for message in moved] == ["poison"]


def test_the_model_bucket_exists_private_and_encrypted(stack: Stack) -> None:
    bucket = stack.env["MODEL_BUCKET"]
    assert bucket in {b["Name"] for b in stack.s3.list_buckets()["Buckets"]}
    block = stack.s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    rules = stack.s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert rules["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    stack.s3.put_object(Bucket=bucket, Key="m/1", Body=b"model")
    assert stack.s3.get_object(Bucket=bucket, Key="m/1")["Body"].read() == b"model"
    # Decision records kept by reference expire with their decisions (30 days, plus one)
    (rule,) = stack.s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert (rule["Filter"], rule["Expiration"], rule["Status"]) == (
        {"Prefix": "decisions/"},
        {"Days": 31},
        "Enabled",
    )


def test_a_second_call_is_a_no_op(stack: Stack) -> None:
    tables = stack.dynamodb.list_tables()["TableNames"]
    queues = stack.sqs.list_queues()["QueueUrls"]
    buckets = stack.s3.list_buckets()["Buckets"]
    assert create_resources(STACK) == stack.env
    assert stack.dynamodb.list_tables()["TableNames"] == tables
    assert stack.sqs.list_queues()["QueueUrls"] == queues
    assert stack.s3.list_buckets()["Buckets"] == buckets


def test_another_stack_name_gets_its_own_resources(stack: Stack) -> None:
    other = create_resources("other")
    assert other["DECISIONS_TABLE"] == "other-DecisionsTable"
    assert set(other.values()).isdisjoint(stack.env.values())


def test_the_pynamodb_models_fit_the_created_tables(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.common import tables
    from functions.common.settings import reset_settings

    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    reset_settings()
    tables.unbind()
    try:
        tables.bind()
        for model in tables._TABLES:
            described = stack.dynamodb.describe_table(TableName=model.Meta.table_name)["Table"]
            keys = {k["KeyType"]: k["AttributeName"] for k in described["KeySchema"]}
            attributes = model.get_attributes().values()
            assert keys.get("HASH") == next(a.attr_name for a in attributes if a.is_hash_key)
            assert keys.get("RANGE") == next(
                (a.attr_name for a in attributes if a.is_range_key), None
            )
            indexes = {
                value.Meta.index_name: value.Meta.projection.projection_type
                for value in vars(model).values()
                if isinstance(value, GlobalSecondaryIndex)
            }
            created = {
                gsi["IndexName"]: gsi["Projection"]["ProjectionType"]
                for gsi in described.get("GlobalSecondaryIndexes", [])
            }
            assert indexes == created, model.__name__
    finally:
        tables.unbind()
        reset_settings()


def test_alarms_dashboard_topic_and_usage_plan_are_left_to_aws(stack: Stack) -> None:
    # Given a template with alarms, a dashboard, an SNS topic and a usage plan
    kinds = {r["Type"] for r in stack.template["Resources"].values()}
    assert {
        "AWS::CloudWatch::Alarm",
        "AWS::CloudWatch::Dashboard",
        "AWS::SNS::Topic",
        "AWS::ApiGateway::UsagePlan",
    } <= kinds
    # Then the local stack creates none of them, and its environment names no deploy setting
    assert boto3.client("sns").list_topics()["Topics"] == []
    assert boto3.client("cloudwatch").describe_alarms()["MetricAlarms"] == []
    assert not {"TENANT_RATE_LIMIT", "TENANT_RATE_OVERRIDES"} & set(stack.env)
