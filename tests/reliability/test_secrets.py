"""Webhook secrets at rest on moto: sealed with KMS, bound to their key row, rotated, retired.

No secret is ever stored in plain text, and the keys index holds no secret attribute at all.
Rotation keeps the old secret signing beside the new one; retiring one refuses its very next
request even while the function's cache of opened secrets is warm. A ciphertext moved onto
another tenant's row opens to nothing there; KMS down is a 503 outage, never a 401.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from botocore.exceptions import EndpointConnectionError

from functions.common import secret_box, webhook_secrets
from functions.common.auth import NewKey, create_key, sign
from functions.common.errors import ConflictError
from functions.common.settings import reset_settings
from functions.rewards.app import lambda_handler as rewards_handler
from tests.functional.conftest import Api, KeyClock, queue_depth

HEADER = "x-serendip-signature"
BODY = json.dumps({"event_id": "evt-1", "item_id": "a", "type": "click"}).encode()
SECRET_ATTRIBUTES = {"sealed_secrets", "webhook_secrets"}


def post(api: Api, secret: str, body: bytes = BODY) -> tuple[int, Any, dict[str, str]]:
    """Post ``body`` signed with ``secret`` now, with ``api``'s key."""
    headers = {HEADER: sign(body, secret, int(time.time()))}
    return api.call(rewards_handler, "POST", "/v1/rewards", body, headers=headers)


def raw_items(env: dict[str, str]) -> list[dict[str, Any]]:
    table = boto3.client("dynamodb", region_name="us-east-1")
    return list(table.scan(TableName=env["KEYS_TABLE"], ConsistentRead=True)["Items"])


Calls = list[str]


@pytest.fixture
def kms_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Calls]:
    """Every KMS operation made, in order (the calls still reach moto)."""
    calls: Calls = []
    real = BaseClient._make_api_call

    def counting(self: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if self.meta.service_model.service_name == "kms":
            calls.append(operation)
        return real(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", counting)
    yield calls


@pytest.fixture
def kms_down(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Call it to make every KMS call fail as an unreachable endpoint does."""
    real = BaseClient._make_api_call

    def failing(self: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if self.meta.service_model.service_name == "kms":
            raise EndpointConnectionError(endpoint_url="https://kms.unreachable")
        return real(self, operation, params)

    return lambda: monkeypatch.setattr(BaseClient, "_make_api_call", failing)


def test_a_secret_is_never_stored_in_plain_text(aws: dict[str, str], tenant: NewKey) -> None:
    # Given keys of two tenants, one of them mid-rotation
    other = create_key("globex", {"reward"})
    rotated = webhook_secrets.rotate_secret(tenant.key_id)
    secrets = [tenant.webhook_secret, other.webhook_secret, rotated.webhook_secret]
    # When the raw table is read with boto3
    items = raw_items(aws)
    # Then no attribute holds any secret, as text or inside a binary, raw or base64
    text = json.dumps(items, default=lambda b: base64.b64encode(b).decode())
    blobs = [v["B"] for item in items for v in _values(item) if "B" in v]
    assert len(blobs) == 3  # one ciphertext per secret
    for secret in secrets:
        for form in (secret, secret.removeprefix("whsec_")):
            assert form not in text
            assert not any(form.encode() in blob for blob in blobs)
    assert not any("webhook_secrets" in item for item in items)


def _values(value: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every typed DynamoDB value nested in an item."""
    for typed in value.values():
        yield typed
        if "M" in typed:
            yield from _values(typed["M"])
        for element in typed.get("L", []):
            yield element
            if "M" in element:
                yield from _values(element["M"])


def test_the_keys_index_holds_no_secret_attribute(aws: dict[str, str], tenant: NewKey) -> None:
    added = webhook_secrets.rotate_secret(tenant.key_id)
    table = boto3.client("dynamodb", region_name="us-east-1")
    described = table.describe_table(TableName=aws["KEYS_TABLE"])["Table"]
    (index,) = described["GlobalSecondaryIndexes"]
    assert index["Projection"]["ProjectionType"] == "INCLUDE"
    assert not SECRET_ATTRIBUTES & set(index["Projection"]["NonKeyAttributes"])
    (item,) = table.query(
        TableName=aws["KEYS_TABLE"],
        IndexName="by_tenant",
        KeyConditionExpression="tenant = :t",
        ExpressionAttributeValues={":t": {"S": "acme"}},
    )["Items"]
    assert set(item) == {"pk", "tenant", "scopes", "name", "created_at", "revoked", "secret_info"}
    ids = [entry["M"]["id"]["S"] for entry in item["secret_info"]["L"]]
    assert ids == [tenant.secret_id, added.secret_id]


def test_a_rotated_secret_signs_beside_the_old_one_up_to_two(
    aws: dict[str, str], api: Api, tenant: NewKey
) -> None:
    # Given a second secret on the key
    added = webhook_secrets.rotate_secret(tenant.key_id)
    assert added.active == 2 and added.webhook_secret.startswith("whsec_")
    # Then both sign, a stranger's does not
    assert post(api, tenant.webhook_secret)[0] == 202
    assert post(api, added.webhook_secret)[0] == 202
    assert post(api, "whsec_not_this_keys")[0] == 401
    assert queue_depth(aws["REWARD_QUEUE_URL"]) == 2
    # And a third active secret is refused, naming the key
    with pytest.raises(ConflictError, match="retire one first") as refused:
        webhook_secrets.rotate_secret(tenant.key_id)
    assert refused.value.field == "key_id"


def test_a_retired_secret_is_refused_once_the_key_is_read_again_despite_the_secret_cache(
    api: Api,
    tenant: NewKey,
    monkeypatch: pytest.MonkeyPatch,
    kms_calls: Calls,
    key_clock: KeyClock,
) -> None:
    # Given opened secrets are cached for an hour, and both secrets were just used
    monkeypatch.setenv("WEBHOOK_SECRET_CACHE_SECONDS", "3600")
    reset_settings()
    added = webhook_secrets.rotate_secret(tenant.key_id)
    assert post(api, tenant.webhook_secret)[0] == 202
    assert post(api, added.webhook_secret)[0] == 202
    decrypts = kms_calls.count("Decrypt")
    assert decrypts == 2  # each ciphertext opened once, then served from the cache
    # When the old secret is retired
    assert webhook_secrets.retire_secret(tenant.key_id, tenant.secret_id) == 1
    # Then, once the key is read again (API_KEY_CACHE_SECONDS at most), the next request
    # signed with it is refused; the new one still signs
    key_clock.pass_cache_time()
    status, error, _ = post(api, tenant.webhook_secret)
    assert (status, error["detail"]) == (401, "signature does not match")
    assert post(api, added.webhook_secret)[0] == 202
    assert kms_calls.count("Decrypt") == decrypts  # all from the cache
    # And the last secret cannot be retired
    with pytest.raises(ConflictError, match="last secret") as refused:
        webhook_secrets.retire_secret(tenant.key_id, added.secret_id)
    assert refused.value.field == "secret_id"


def test_a_rotated_secret_signs_at_once_though_the_key_is_kept(
    api: Api, tenant: NewKey, key_clock: KeyClock
) -> None:
    # Given the key was just read and kept by this container
    assert post(api, tenant.webhook_secret)[0] == 202
    # When a secret is added, and used before the key cache time has passed
    added = webhook_secrets.rotate_secret(tenant.key_id)
    # Then it signs at once (the refusal is checked against the key read again), as does the old
    assert post(api, added.webhook_secret)[0] == 202
    assert post(api, tenant.webhook_secret)[0] == 202
    # And a stranger's secret is still refused
    assert post(api, "whsec_not_this_keys")[0] == 401


def test_a_ciphertext_moved_to_another_tenants_key_does_not_verify(
    aws: dict[str, str], api: Api, tenant: NewKey, other_tenant: NewKey
) -> None:
    # Given acme's secret was opened (and cached) on acme's own row
    assert post(api, tenant.webhook_secret)[0] == 202
    # When acme's sealed secret is copied onto globex's key row
    table = boto3.client("dynamodb", region_name="us-east-1")
    acme = table.get_item(TableName=aws["KEYS_TABLE"], Key={"pk": {"S": tenant.key_id}})["Item"]
    table.update_item(
        TableName=aws["KEYS_TABLE"],
        Key={"pk": {"S": other_tenant.key_id}},
        UpdateExpression="SET sealed_secrets = :s, secret_info = :i",
        ExpressionAttributeValues={":s": acme["sealed_secrets"], ":i": acme["secret_info"]},
    )
    # Then globex's key cannot sign with acme's secret (KMS binds it to acme's row)
    globex = Api(other_tenant)
    status, error, _ = post(globex, tenant.webhook_secret)
    assert (status, error["detail"]) == (401, "signature does not match")
    assert post(globex, other_tenant.webhook_secret)[0] == 401
    assert queue_depth(aws["REWARD_QUEUE_URL"]) == 1
    # While acme's own row still verifies
    assert post(api, tenant.webhook_secret)[0] == 202


def test_kms_down_is_a_503_outage_not_a_401(
    aws: dict[str, str], api: Api, tenant: NewKey, kms_down: Callable[[], None]
) -> None:
    # Given KMS cannot be reached and nothing is cached
    secret_box.forget()
    kms_down()
    # When a correctly signed reward is posted
    status, error, headers = post(api, tenant.webhook_secret)
    # Then it is an outage the sender retries, and nothing was queued
    assert (status, error["error"]) == (503, "unavailable"), error
    assert headers["Retry-After"] == "5"
    assert queue_depth(aws["REWARD_QUEUE_URL"]) == 0
    # But a header refused on its own (stale, malformed) is still 401: it needs no secret
    stale = {HEADER: sign(BODY, tenant.webhook_secret, int(time.time()) - 3600)}
    status, _, _ = api.call(rewards_handler, "POST", "/v1/rewards", BODY, headers=stale)
    assert status == 401


def test_a_warm_cache_makes_no_kms_call_per_request(
    aws: dict[str, str], api: Api, tenant: NewKey, kms_calls: Calls
) -> None:
    for _ in range(5):
        assert post(api, tenant.webhook_secret)[0] == 202
    assert kms_calls == ["Decrypt"]


def test_a_plain_text_row_from_before_sealing_verifies_and_is_sealed_on_rotation(
    aws: dict[str, str], api: Api, tenant: NewKey
) -> None:
    # Given a key row as it was stored before secrets were sealed
    table = boto3.client("dynamodb", region_name="us-east-1")
    table.update_item(
        TableName=aws["KEYS_TABLE"],
        Key={"pk": {"S": tenant.key_id}},
        UpdateExpression="SET webhook_secrets = :w REMOVE sealed_secrets, secret_info, secrets_rev",
        ExpressionAttributeValues={":w": {"L": [{"S": "whsec_legacy_plain"}]}},
    )
    # Then its plain-text secret still signs, and is listed as legacy-1
    assert post(api, "whsec_legacy_plain")[0] == 202
    (listed,) = webhook_secrets.list_keys("acme")
    assert [secret_id for secret_id, _ in listed.secrets] == ["legacy-1"]
    # When the key is rotated, the old secret is sealed and its plain text dropped
    added = webhook_secrets.rotate_secret(tenant.key_id)
    (item,) = raw_items(aws)
    assert "webhook_secrets" not in item
    assert "whsec_legacy_plain" not in json.dumps(item, default=str)
    assert len(item["sealed_secrets"]["L"]) == 2
    assert post(api, "whsec_legacy_plain")[0] == 202
    assert post(api, added.webhook_secret)[0] == 202
