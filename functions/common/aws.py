"""boto3 clients, created on first use and cached (never at import)."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

from functions.common.settings import settings

_CONFIG = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=2, read_timeout=5)


@cache
def s3() -> Any:
    """The S3 client (model blobs over the inline limit)."""
    return boto3.client("s3", region_name=settings().region, config=_CONFIG)


@cache
def sqs() -> Any:
    """The SQS client (the reward queue and its DLQ)."""
    return boto3.client("sqs", region_name=settings().region, config=_CONFIG)


@cache
def kms() -> Any:
    """The KMS client (webhook secrets, sealed at rest)."""
    return boto3.client("kms", region_name=settings().region, config=_CONFIG)


def reset_clients() -> None:
    """Forget the clients (tests that switch endpoints)."""
    s3.cache_clear()
    sqs.cache_clear()
    kms.cache_clear()
