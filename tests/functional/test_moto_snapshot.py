"""Snapshots of moto's backends: what a local stack keeps across restarts."""

from __future__ import annotations

import pickle
import threading
import time
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.backends import get_backend

from functions.common.auth import authenticate, create_key, sign, verify_webhook
from local.moto_snapshot import SERVICES, SNAPSHOT_FILE, SnapshotError, Snapshots, may_write


def _forget_everything() -> None:
    for service in SERVICES:
        get_backend(service).clear()  # type: ignore[call-overload]


@pytest.mark.parametrize("in_background", [False, True], ids=["in process", "forked"])
def test_a_snapshot_restores_tables_queues_objects_and_kms_keys(
    aws: dict[str, str], tmp_path: Path, in_background: bool
) -> None:
    # Given a stack's resources with a key (its secret sealed by KMS), a queued message, an object
    key = create_key("acme", {"rank", "reward"})
    sqs = boto3.client("sqs", region_name="us-east-1")
    sqs.send_message(QueueUrl=aws["REWARD_QUEUE_URL"], MessageBody="a reward")
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.put_object(Bucket=aws["MODEL_BUCKET"], Key="models/m1", Body=b"weights" * 1000)
    snapshots = Snapshots(tmp_path, threading.Lock())
    # When it is saved, moto forgets everything, and the snapshot is restored
    assert snapshots.save(in_background=in_background) is True
    assert (tmp_path / SNAPSHOT_FILE).stat().st_mode & 0o777 == 0o600
    _forget_everything()
    with pytest.raises(ClientError):
        sqs.receive_message(QueueUrl=aws["REWARD_QUEUE_URL"])
    assert snapshots.restore() is True
    # Then the key authenticates with its sealed secrets, the message and the object are back
    principal = authenticate(key.api_key)
    assert principal.tenant == "acme"
    verify_webhook(principal, sign(b"{}", key.webhook_secret, int(time.time())), b"{}")
    (message,) = sqs.receive_message(QueueUrl=aws["REWARD_QUEUE_URL"])["Messages"]
    assert message["Body"] == "a reward"
    assert s3.get_object(Bucket=aws["MODEL_BUCKET"], Key="models/m1")["Body"].read() == (
        b"weights" * 1000
    )
    # And the restored queue still takes and hands out messages (its locks are new ones)
    sqs.send_message(QueueUrl=aws["REWARD_QUEUE_URL"], MessageBody="another")
    bodies = sqs.receive_message(QueueUrl=aws["REWARD_QUEUE_URL"], WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in bodies] == ["another"]


def test_a_snapshot_is_skipped_when_no_request_came_in(aws: dict[str, str], tmp_path: Path) -> None:
    snapshots = Snapshots(tmp_path, threading.Lock())
    assert snapshots.save(only_if_changed=True) is True  # never saved yet
    assert snapshots.save(only_if_changed=True) is False
    snapshots.request_seen()
    assert snapshots.save(only_if_changed=True) is True


def test_no_snapshot_restores_nothing(tmp_path: Path) -> None:
    assert Snapshots(tmp_path, threading.Lock()).restore() is False


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a pickle", "is damaged"),
        (pickle.dumps({"format": 1, "moto": "0.0.1", "services": []}), "moto 0.0.1"),
    ],
)
def test_a_damaged_or_foreign_snapshot_is_refused_not_overwritten(
    tmp_path: Path, content: bytes, message: str
) -> None:
    (tmp_path / SNAPSHOT_FILE).write_bytes(content)
    with pytest.raises(SnapshotError, match=message):
        Snapshots(tmp_path, threading.Lock()).restore()
    assert (tmp_path / SNAPSHOT_FILE).read_bytes() == content


def test_reads_do_not_call_for_a_snapshot_and_writes_do() -> None:
    assert not may_write({"HTTP_X_AMZ_TARGET": "AmazonSQS.ReceiveMessage"})
    assert not may_write({"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.Query"})
    assert not may_write({"REQUEST_METHOD": "GET", "PATH_INFO": "/bucket/key"})
    assert may_write({"HTTP_X_AMZ_TARGET": "AmazonSQS.SendMessage"})
    assert may_write({"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.TransactWriteItems"})
    assert may_write({"REQUEST_METHOD": "PUT", "PATH_INFO": "/bucket/key"})
    assert may_write({"REQUEST_METHOD": "POST"})  # a query-protocol call: its action is unread
