"""The Python client signs reward posts exactly as the service verifies them."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given
from hypothesis import strategies as st

import serendip_client
from functions.common import auth
from functions.common.errors import UnauthorizedError
from serendip_client import _bodies, _http, client, errors, signing
from tests.unit.client_fakes import SECRET, T0, FakeClock, FakeTransport, answer, client_with

secrets_ = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=80)
timestamps = st.integers(min_value=0, max_value=10**12 - 1)
within_tolerance = st.integers(min_value=-300, max_value=300)


@given(body=st.binary(max_size=2048), secret=secrets_, timestamp=timestamps, skew=within_tolerance)
def test_the_service_verifies_what_the_client_signs(
    body: bytes, secret: str, timestamp: int, skew: int
) -> None:
    header = signing.sign(body, secret, timestamp)
    auth.verify_signature(header, body, (secret,), now=timestamp + skew)
    assert header == auth.sign(body, secret, timestamp)


@given(
    body=st.binary(max_size=512),
    old=secrets_,
    new=secrets_,
    timestamp=timestamps,
    skew=within_tolerance,
)
def test_during_a_rotation_either_secret_alone_verifies_a_post_signed_with_both(
    body: bytes, old: str, new: str, timestamp: int, skew: int
) -> None:
    header = signing.sign(body, [old, new], timestamp)
    for active in ((old,), (new,), (old, new)):
        auth.verify_signature(header, body, active, now=timestamp + skew)
    if "whsec_stranger" not in (old, new):
        with pytest.raises(UnauthorizedError, match="does not match"):
            auth.verify_signature(header, body, ("whsec_stranger",), now=timestamp)


@given(body=st.binary(min_size=1, max_size=512), flip=st.integers(0, 511), timestamp=timestamps)
def test_a_changed_byte_breaks_the_signature(body: bytes, flip: int, timestamp: int) -> None:
    header = signing.sign(body, SECRET, timestamp)
    index = flip % len(body)
    changed = body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]
    with pytest.raises(UnauthorizedError, match="does not match"):
        auth.verify_signature(header, changed, (SECRET,), now=timestamp)


@pytest.mark.parametrize("skew", [-301, 301, 3600])
def test_a_signature_older_or_newer_than_five_minutes_is_refused(skew: int) -> None:
    header = signing.sign(b"{}", SECRET, int(T0))
    with pytest.raises(UnauthorizedError, match="5-minute"):
        auth.verify_signature(header, b"{}", (SECRET,), now=T0 + skew)


def test_signing_without_a_secret_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="webhook secret"):
        signing.sign(b"{}", [], 1)
    with pytest.raises(ValueError, match="webhook secret"):
        signing.sign(b"{}", "", 1)
    transport = FakeTransport()
    with pytest.raises(ValueError, match="webhook_secret"):
        client_with(transport, secret=None).post_reward("evt_1", "shoe-1")
    assert transport.sent == []


@given(
    rewards=st.lists(
        st.fixed_dictionaries(
            {
                "event_id": st.text(st.characters(exclude_categories=["Cs"]), min_size=1),
                "item_id": st.text(st.characters(exclude_categories=["Cs"]), min_size=1),
                "value": st.floats(-1e9, 1e9, allow_nan=False),
            }
        ),
        min_size=1,
        max_size=5,
    ),
    clock_at=st.floats(0, 1e11),
)
def test_a_reward_post_carries_a_signature_of_its_exact_bytes(
    rewards: list[dict[str, object]], clock_at: float
) -> None:
    # Given a client whose clock reads clock_at, with two secrets (a rotation)
    transport = FakeTransport(default=answer(202, {"accepted": len(rewards)}))
    sent = client_with(transport, FakeClock(now=clock_at), secret=["whsec_a", "whsec_b"])
    # When it posts the rewards
    assert sent.post_rewards(rewards) == {"accepted": len(rewards)}  # type: ignore[arg-type]
    # Then the service, with either secret, verifies the post as it was sent
    (request,) = transport.sent
    assert request.body is not None
    header = request.headers[signing.SIGNATURE_HEADER]
    assert header.startswith(f"t={int(clock_at)},")
    for secret in ("whsec_a", "whsec_b"):
        auth.verify_signature(header, request.body, (secret,), now=clock_at)


@pytest.mark.parametrize("module", [serendip_client, signing, errors, _http, _bodies, client])
def test_the_package_docstring_examples_hold(module: object) -> None:
    failed, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert (failed, tried > 0) == (0, True)
