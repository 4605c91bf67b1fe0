"""Reward webhook signatures on moto: every refused post is 401 and queues nothing.

Header ``x-serendip-signature: t=<unix>,v1=<hex>[,v1=...]``, HMAC-SHA256 over ``"<t>.<body>"``,
5-minute tolerance, any of the tenant's secrets. The signature clock is frozen where the
boundary matters, so 299/300/301 seconds are exact.
"""

from __future__ import annotations

import hmac
import json
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.common import auth, webhook_secrets
from functions.common.auth import NewKey, sign, verify_signature
from functions.common.errors import UnauthorizedError
from functions.rank.app import lambda_handler as rank_handler
from functions.rewards.app import lambda_handler as rewards_handler
from tests.functional.conftest import Api, queue_depth

T0 = 1_700_000_000
HEADER = "x-serendip-signature"
RANK = "/v1/policies/{policy}/rank"


def reward_queue_depth(env: dict[str, str]) -> int:
    """Messages on the reward queue (visible or in flight)."""
    return queue_depth(env["REWARD_QUEUE_URL"])


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> int:
    """The signature check sees ``T0`` as now (only in ``auth``; AWS calls keep real time)."""
    monkeypatch.setattr(auth, "time", SimpleNamespace(time=lambda: float(T0)))
    return T0


@pytest.fixture
def body(api: Api) -> bytes:
    """A real reward body: a click on the first slot of a ranked event."""
    request = {"context": {"user": {"cohort": "a"}}, "candidates": [{"id": "a"}, {"id": "b"}]}
    status, ranked, _ = api.call(
        rank_handler, "POST", "/v1/policies/for-you/rank", request, resource=RANK
    )
    assert status == 200
    reward = {"event_id": ranked["event_id"], "item_id": ranked["slate"][0]["id"], "type": "click"}
    return json.dumps(reward).encode()


def post(api: Api, body: bytes, signature: str | None) -> tuple[int, Any]:
    headers = {} if signature is None else {HEADER: signature}
    status, payload, _ = api.call(rewards_handler, "POST", "/v1/rewards", body, headers=headers)
    return status, payload


def test_missing_header_is_401(aws: dict[str, str], api: Api, body: bytes) -> None:
    status, error = post(api, body, None)
    assert (status, error["detail"]) == (401, "missing x-serendip-signature header")
    assert reward_queue_depth(aws) == 0


def _malformed(secret: str, body: bytes) -> list[str]:
    valid = sign(body, secret, T0)
    digest = valid.split("v1=")[1]
    return [
        "garbage",
        f"v1={digest}",  # no timestamp
        f"t={T0}",  # no signature
        f"t={T0},v1=",  # empty signature
        f"t=abc,v1={digest}",
        f"t=-{T0},v1={digest}",
        f"t={T0}.5,v1={digest}",
        f"t=²,v1={digest}",  # str.isdigit() is true for "²", int() is not
        f"t={T0},v1=é{digest}",  # compare_digest refuses non-ASCII str
        f"t={'9' * 5000},v1={digest}",  # over Python's int-from-str digit limit
        f"t={T0};v1={digest}",
    ]


def test_malformed_headers_are_401_not_500(
    aws: dict[str, str], api: Api, tenant: NewKey, body: bytes, frozen_clock: int
) -> None:
    cases = _malformed(tenant.webhook_secret, body)
    for header in cases:
        status, error = post(api, body, header)
        assert (status, error["error"]) == (401, "unauthorized"), header
    assert len(cases) == 11
    assert reward_queue_depth(aws) == 0


def test_wrong_secret_is_401(aws: dict[str, str], api: Api, body: bytes, frozen_clock: int) -> None:
    status, error = post(api, body, sign(body, "whsec_not_the_tenants", T0))
    assert (status, error["detail"]) == (401, "signature does not match")
    # A bad signature is refused before the body is parsed (no 400 that reveals its shape)
    status, _ = post(api, b"{not json", sign(b"{not json", "whsec_not_the_tenants", T0))
    assert status == 401
    assert reward_queue_depth(aws) == 0


@pytest.mark.parametrize(
    ("offset", "expected"),
    [(-301, 401), (301, 401), (-300, 202), (300, 202), (-299, 202), (299, 202)],
)
def test_timestamp_tolerance_is_five_minutes_either_way(
    aws: dict[str, str],
    api: Api,
    *,
    tenant: NewKey,
    body: bytes,
    frozen_clock: int,
    offset: int,
    expected: int,
) -> None:
    status, payload = post(api, body, sign(body, tenant.webhook_secret, frozen_clock + offset))
    assert status == expected, payload
    assert reward_queue_depth(aws) == (1 if expected == 202 else 0)


def test_every_single_byte_change_after_signing_is_401(
    aws: dict[str, str], api: Api, tenant: NewKey, body: bytes, frozen_clock: int
) -> None:
    # Given a signature over the real body
    signature = sign(body, tenant.webhook_secret, frozen_clock)
    # When any one byte is changed (every position; some results are not even UTF-8)
    for position in range(len(body)):
        tampered = bytearray(body)
        tampered[position] ^= 0x01
        status, _ = post(api, bytes(tampered), signature)
        assert status == 401, (position, bytes(tampered))
    # Then nothing was queued, and the untouched body still goes through
    assert reward_queue_depth(aws) == 0
    assert post(api, body, signature) == (202, {"accepted": 1})
    assert reward_queue_depth(aws) == 1
    assert len(body) > 80


@given(
    body=st.binary(min_size=1, max_size=300),
    data=st.data(),
)
def test_any_byte_change_fails_verification(body: bytes, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(body) - 1), label="position")
    replacement = data.draw(st.integers(0, 255).filter(lambda b: b != body[position]), label="byte")
    tampered = body[:position] + bytes([replacement]) + body[position + 1 :]
    header = sign(body, "whsec_s", T0)
    verify_signature(header, body, ("whsec_s",), now=T0)
    with pytest.raises(UnauthorizedError, match="does not match"):
        verify_signature(header, tampered, ("whsec_s",), now=T0)


def test_secret_rotation_several_v1_values_one_valid(
    aws: dict[str, str], api: Api, tenant: NewKey, body: bytes, frozen_clock: int
) -> None:
    # Given the tenant's key carries a second webhook secret (rotation in progress)
    new_secret = webhook_secrets.rotate_secret(tenant.key_id).webhook_secret
    assert new_secret.startswith("whsec_") and new_secret != tenant.webhook_secret
    old_sig = sign(body, tenant.webhook_secret, T0).split("v1=")[1]
    new_sig = sign(body, new_secret, T0).split("v1=")[1]
    wrong = sign(body, "whsec_other", T0).split("v1=")[1]
    # Then either secret alone verifies, and so does a header with one valid v1 among others
    for header in (
        f"t={T0},v1={old_sig}",
        f"t={T0},v1={new_sig}",
        f"t={T0},v1={wrong},v1={new_sig}",
        f"t={T0},v1={wrong},v1=zz,v1={old_sig},v1={wrong}",
    ):
        assert post(api, body, header) == (202, {"accepted": 1}), header
    assert reward_queue_depth(aws) == 4
    # But several v1 values none of which is valid are refused
    assert post(api, body, f"t={T0},v1={wrong},v1={wrong[::-1]}")[0] == 401
    assert reward_queue_depth(aws) == 4


def test_a_signature_with_another_tenants_secret_is_401(
    aws: dict[str, str],
    api: Api,
    *,
    tenant: NewKey,
    other_tenant: NewKey,
    body: bytes,
    frozen_clock: int,
) -> None:
    # A body validly signed with acme's secret, posted with globex's key, and the reverse
    acme_signed = sign(body, tenant.webhook_secret, T0)
    assert post(Api(other_tenant), body, acme_signed)[0] == 401
    globex_signed = sign(body, other_tenant.webhook_secret, T0)
    assert post(api, body, globex_signed)[0] == 401
    assert reward_queue_depth(aws) == 0
    # Each tenant's own signature works with its own key
    assert post(Api(other_tenant), body, globex_signed)[0] == 202
    assert reward_queue_depth(aws) == 1


@pytest.mark.parametrize("match_at", [0, 5, None], ids=["first-matches", "last-matches", "none"])
def test_verify_compares_every_pair_in_constant_time(
    monkeypatch: pytest.MonkeyPatch, match_at: int | None
) -> None:
    body = b'{"event_id": "e", "item_id": "i"}'
    secrets = ("whsec_a", "whsec_b", "whsec_c")
    candidates = [sign(body, f"whsec_x{i}", T0).split("v1=")[1] for i in range(2)]
    if match_at is not None:
        # pairs run secret-major: index 0 = (whsec_a, first v1), 5 = (whsec_c, second v1)
        secret, slot = secrets[match_at // 2], match_at % 2
        candidates[slot] = sign(body, secret, T0).split("v1=")[1]
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    header = f"t={T0}," + ",".join(f"v1={c}" for c in candidates)
    if match_at is None:
        with pytest.raises(UnauthorizedError):
            verify_signature(header, body, secrets, now=T0)
    else:
        verify_signature(header, body, secrets, now=T0)
    # Every (secret, candidate) pair was compared, with compare_digest, even after a match
    assert len(calls) == len(secrets) * len(candidates) == 6
    assert [b for _, b in calls] == candidates * len(secrets)
    assert sum(real(a, b) for a, b in calls) == (0 if match_at is None else 1)
