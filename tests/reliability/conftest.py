"""Reliability suite: the functional fixtures (moto with the template's resources, tenants)."""

import pytest
from moto.dynamodb.responses import DynamoHandler

from local.moto_main import serialised_call_action
from tests.functional.conftest import Api, api, aws, key_clock, other_tenant, tenant

__all__ = ["Api", "api", "aws", "key_clock", "other_tenant", "serialised_dynamodb", "tenant"]


@pytest.fixture
def serialised_dynamodb(monkeypatch: pytest.MonkeyPatch) -> None:
    """One moto DynamoDB call at a time, as the local stack runs it (``local.moto_main``):
    moto's backend deep-copies tables in a transaction and is not safe against concurrent
    writers."""
    monkeypatch.setattr(DynamoHandler, "call_action", serialised_call_action)
