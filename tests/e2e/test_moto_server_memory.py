"""The local stack's moto server process runs the patches that keep its memory bounded and its
latency flat: lean DynamoDB transactions (no copy of whole tables), DynamoDB calls one at a time,
queries that do not sort whole tables, and SQS queues that forget old deleted receipt handles.
Read from the server's own census (``local.moto_census``): what is checked is the child process.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.moto_census import CENSUS_ENV, SECONDS_ENV
from local.moto_process import MotoProcess
from local.stack import moto_environment


@pytest.fixture
def census_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "census.json"
    monkeypatch.setenv(CENSUS_ENV, str(path))
    monkeypatch.setenv(SECONDS_ENV, "0.2")
    server = MotoProcess()
    server.start()
    host, port = server.get_host_and_port()
    for name, value in moto_environment(f"http://{host}:{port}").items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    try:
        yield path
    finally:
        server.stop()


def read_census(path: Path, since: float, timeout: float = 10.0) -> dict[str, Any]:
    """The first census the server wrote after ``since``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            census: dict[str, Any] = json.loads(path.read_text())
            if census["time"] > since:
                return census
        time.sleep(0.1)
    raise TimeoutError(f"no census in {path} after {timeout:.0f} s")


def test_the_server_runs_the_local_stack_s_moto_patches(census_path: Path) -> None:
    # Given the local stack's moto server, when it reports its census
    census = read_census(census_path, since=0.0)

    # Then transactions, DynamoDB dispatch and SQS deletes are the local stack's versions
    # (local.moto_main runs as the server's __main__)
    patches = {k: v.replace("__main__.", "local.moto_main.") for k, v in census["patches"].items()}
    assert patches == {
        "model_new": "local.moto_instances.tracked_weakly",
        "dynamodb_call": "local.moto_main.serialised_call_action",
        "transact_write_items": "local.moto_transactions.transact_write_items",
        "table_query": "local.moto_indexes.query",
        "sqs_delete_message": "local.moto_sqs.delete_message",
    }


def test_a_transaction_on_the_server_keeps_one_copy_of_each_item(census_path: Path) -> None:
    # Given a table of 50 items and a queue that carried 30 messages
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for n in range(50):
        dynamodb.put_item(TableName="t", Item={"pk": {"S": f"k{n}"}})
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    for n in range(30):
        sqs.send_message(QueueUrl=url, MessageBody=str(n))
        message = sqs.receive_message(QueueUrl=url)["Messages"][0]
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    # When 20 transactions write to the table
    for n in range(20):
        dynamodb.transact_write_items(
            TransactItems=[{"Put": {"TableName": "t", "Item": {"pk": {"S": f"new{n}"}}}}]
        )

    # Then the server holds the table's 70 items and no backup of it, and no message
    census = read_census(census_path, since=time.time())
    assert census["dynamodb"]["t"] == {"items": 70, "stream_records": 0}
    assert census["dynamodb"]["(backups)"] == {"items": 0}
    assert census["sqs"]["q"]["messages"] == 0
    assert census["sqs"]["q"]["deleted_receipt_handles"] == 30
    assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
