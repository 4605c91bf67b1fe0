"""What the Python client retries, how long it waits, and what it raises (fake transport, fake
clock: no sockets, no waiting)."""

from __future__ import annotations

import http.client

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.common import auth
from serendip_client import (
    BadRequestError,
    ConflictError,
    HttpResponse,
    NotFoundError,
    RateLimitedError,
    Retrier,
    SerendipConnectionError,
    ServerError,
    UnauthorizedError,
    UnavailableError,
    ValidationError,
)
from serendip_client._http import retry_after_seconds
from serendip_client.signing import SIGNATURE_HEADER
from tests.unit.client_fakes import SECRET, T0, FakeClock, FakeTransport, answer, client_with

RANKED = {
    "event_id": "evt_1",
    "policy": "for-you",
    "model_version": 3,
    "slate": [{"id": "shoe-1", "position": 1, "probability": 0.95, "explored": False}],
    "exploration": {"segment": "warm", "budget": 0.05, "spent": 0.04, "rate": 0.05},
    "logged": True,
    "degraded": False,
}
CANDIDATES = [{"id": "shoe-1"}, {"id": "hat-7"}]


def unavailable(retry_after: str | None = None) -> HttpResponse:
    body = {"error": "unavailable", "detail": "the queue is down"}
    if retry_after is None:
        return answer(503, body, x_request_id="req-503")
    return answer(503, body, retry_after=retry_after, x_request_id="req-503")


def test_429_then_200_waits_one_jittered_backoff_and_returns_the_answer() -> None:
    # Given a service that refuses once with 429 (no Retry-After), then serves
    clock = FakeClock()
    transport = FakeTransport([answer(429, {"error": "too_many_requests"}), answer(200, RANKED)])
    # When the client ranks, with backoff 0.5 s and the jitter drawing 0.5
    result = client_with(transport, clock, backoff=0.5, jitter=0.5).rank("for-you", CANDIDATES)
    # Then it waited 0.5 * 2**0 * (0.5 + 0.5 * 0.5) = 0.375 s once and returns the slate
    assert result["event_id"] == "evt_1"
    assert clock.sleeps == [0.375]
    assert transport.paths() == ["POST /v1/policies/for-you/rank"] * 2


def test_503_with_retry_after_waits_what_the_service_asked() -> None:
    clock = FakeClock()
    transport = FakeTransport([unavailable("7"), unavailable("2"), answer(200, RANKED)])
    assert client_with(transport, clock).rank("for-you", CANDIDATES)["policy"] == "for-you"
    assert clock.sleeps == [7.0, 2.0]


def test_retry_after_is_capped_and_may_be_an_http_date() -> None:
    clock = FakeClock(now=0.0)
    date = "Thu, 01 Jan 1970 00:00:45 GMT"  # 45 s after the fake clock's epoch
    transport = FakeTransport([unavailable("3600"), unavailable(date), answer(200, RANKED)])
    client_with(transport, clock).rank("for-you", CANDIDATES)
    # 3600 s is capped at max_delay (30 s); the date is 45 s after the clock read at the
    # second answer (30 s in), so 15 s
    assert clock.sleeps == [30.0, 15.0]


def test_503_past_the_retries_raises_with_code_request_id_and_retry_after() -> None:
    # Given a service that keeps answering 503 without Retry-After
    clock = FakeClock()
    transport = FakeTransport(default=unavailable())
    # When the client (3 retries, backoff 0.5 s, jitter factor 0.75) gets a policy
    with pytest.raises(UnavailableError) as raised:
        client_with(transport, clock, retries=3, jitter=0.5).get_policy("for-you")
    # Then it tried 4 times, waiting 0.375, 0.75 and 1.5 s, and the error says why
    assert len(transport.sent) == 4
    assert clock.sleeps == [0.375, 0.75, 1.5]
    error = raised.value
    assert (error.status, error.error, error.detail) == (503, "unavailable", "the queue is down")
    assert error.request_id == "req-503"
    assert error.retry_after is None


def test_a_400_is_raised_at_once_with_its_field_and_request_id() -> None:
    clock = FakeClock()
    refused = {"error": "bad_request", "detail": "body is not valid JSON", "field": "body"}
    transport = FakeTransport(default=answer(400, refused, x_request_id="req-1"))
    with pytest.raises(BadRequestError) as raised:
        client_with(transport, clock).rank("for-you", CANDIDATES)
    assert len(transport.sent) == 1 and clock.sleeps == []
    assert (raised.value.status, raised.value.field, raised.value.request_id) == (
        400,
        "body",
        "req-1",
    )
    assert str(raised.value) == (
        "400 bad_request: body is not valid JSON (field body) [request req-1]"
    )


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (401, "unauthorized", UnauthorizedError),
        (404, "not_found", NotFoundError),
        (409, "conflict", ConflictError),
        (422, "validation_error", ValidationError),
        (500, "internal_error", ServerError),
        (504, "timeout", ServerError),
    ],
)
def test_other_errors_are_never_retried(status: int, code: str, kind: type[Exception]) -> None:
    clock = FakeClock()
    body = {"error": code, "detail": "no", "field": "version"}
    transport = FakeTransport(default=answer(status, body))
    with pytest.raises(kind) as raised:
        client_with(transport, clock).rollback("for-you", 2)
    assert len(transport.sent) == 1 and clock.sleeps == []
    assert getattr(raised.value, "status", None) == status
    assert getattr(raised.value, "error", None) == code


def test_an_error_without_a_request_id_or_json_body_still_says_what_happened() -> None:
    transport = FakeTransport(default=HttpResponse(502, {}, b"<html>Bad Gateway</html>"))
    with pytest.raises(ServerError) as raised:
        client_with(transport).health()
    assert raised.value.request_id is None
    assert raised.value.detail == "<html>Bad Gateway</html>"


def test_a_connection_error_on_rank_is_not_retried() -> None:
    # Given a connection reset on the first rank (the service may have logged the decision)
    clock = FakeClock()
    transport = FakeTransport([ConnectionResetError("reset by peer"), answer(200, RANKED)])
    # When the client ranks, Then it raises at once: a second attempt could log a second event
    with pytest.raises(SerendipConnectionError, match="reset by peer") as raised:
        client_with(transport, clock).rank("for-you", CANDIDATES)
    assert len(transport.sent) == 1 and clock.sleeps == []
    assert raised.value.status is None


@pytest.mark.parametrize(
    "failure", [TimeoutError("timed out"), http.client.RemoteDisconnected("closed")]
)
def test_a_connection_error_on_recommend_or_rollback_is_not_retried(
    failure: BaseException,
) -> None:
    for call in ("recommend", "rollback"):
        transport = FakeTransport([failure, answer(200, {})])
        sent = client_with(transport)
        with pytest.raises(SerendipConnectionError):
            if call == "recommend":
                sent.recommend("for-you")
            else:
                sent.rollback("for-you", 1)
        assert len(transport.sent) == 1


def test_a_connection_error_on_a_get_or_put_is_retried() -> None:
    clock = FakeClock()
    transport = FakeTransport(
        [
            ConnectionRefusedError("refused"),
            TimeoutError("timed out"),
            answer(200, {"upserted": 1}),
        ]
    )
    assert client_with(transport, clock).put_items([{"id": "shoe-1"}]) == {"upserted": 1}
    assert clock.sleeps == [0.375, 0.75]
    assert transport.bodies() == [{"items": [{"id": "shoe-1"}]}] * 3


def test_a_connection_error_on_a_reward_post_is_retried_and_signed_afresh() -> None:
    # Given a connection that fails twice with Retry-After-free backoff, then the service
    clock = FakeClock()
    transport = FakeTransport(
        [OSError("unreachable"), OSError("unreachable"), answer(202, {"accepted": 1})]
    )
    # When the client posts a reward (rewards are deduplicated: a repeat changes nothing)
    posted = client_with(transport, clock, backoff=10.0, jitter=0.0).post_reward("e1", "i1")
    # Then the same bytes went three times, each signed at its own time, all verifiable
    assert posted == {"accepted": 1}
    assert clock.sleeps == [5.0, 10.0]
    assert len({request.body for request in transport.sent}) == 1
    for request, sent_at in zip(transport.sent, transport.sent_at, strict=True):
        header = request.headers[SIGNATURE_HEADER]
        assert header.startswith(f"t={int(sent_at)},")
        assert request.body is not None
        auth.verify_signature(header, request.body, (SECRET,), now=sent_at)
    assert transport.sent_at == [T0, T0 + 5.0, T0 + 15.0]


def test_a_connection_error_on_an_activation_is_retried() -> None:
    transport = FakeTransport(
        [OSError("unreachable"), answer(202, {"event_id": "e1", "activated": True})]
    )
    assert client_with(transport).activate("e1")["activated"] is True
    assert len(transport.sent) == 2


def test_connection_errors_past_the_retries_raise() -> None:
    clock = FakeClock()
    transport = FakeTransport(default=OSError("unreachable"))
    with pytest.raises(SerendipConnectionError, match="after 3 attempts"):
        client_with(transport, clock, retries=2).event("e1")
    assert len(transport.sent) == 3 and len(clock.sleeps) == 2


def test_retries_zero_means_one_attempt() -> None:
    transport = FakeTransport(default=answer(429, {"error": "too_many_requests"}, retry_after="1"))
    with pytest.raises(RateLimitedError) as raised:
        client_with(transport, retries=0).list_policies()
    assert len(transport.sent) == 1
    assert raised.value.retry_after == 1.0


@given(
    attempt=st.integers(0, 20),
    draw=st.floats(0.0, 1.0, exclude_max=True),
    backoff=st.floats(0.0, 5.0),
)
def test_backoff_doubles_per_attempt_with_jitter_within_half_and_the_cap(
    attempt: int, draw: float, backoff: float
) -> None:
    retrier = Retrier(FakeTransport(), backoff=backoff, max_delay=30.0, jitter=lambda: draw)
    delay = retrier.delay(attempt, None)
    full = backoff * 2.0**attempt
    assert 0.0 <= delay <= 30.0
    assert delay == min(full * (0.5 + 0.5 * draw), 30.0)
    assert delay >= min(full / 2, 30.0)


@given(seconds=st.integers(0, 10**6))
def test_retry_after_in_seconds_is_honoured_up_to_the_cap(seconds: int) -> None:
    retrier = Retrier(FakeTransport(), max_delay=30.0)
    waited = retrier.delay(0, retry_after_seconds(str(seconds), T0))
    assert waited == min(seconds, 30)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("", None), ("soon", None), ("nan", None), ("inf", None), ("-5", 0.0), (" 2.5 ", 2.5)],
)
def test_a_retry_after_that_is_not_a_delay_is_ignored(value: str, seconds: float | None) -> None:
    assert retry_after_seconds(value, T0) == seconds
