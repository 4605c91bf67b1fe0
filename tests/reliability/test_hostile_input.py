"""Hostile input through the real handlers on moto: a clear 4xx JSON error, and nothing changed.

Groups: body size (413), count caps and malformed bodies, nesting depth (including bodies nested
past the JSON parser's recursion limit), non-finite and huge numbers. Every refusal is
``{error, detail, field}`` naming the field, and the whole stored state - every table's items,
the model bucket, both queues - is unchanged. Every response body is strict JSON (no ``NaN`` or
``Infinity``). Unicode and VW syntax in string fields: ``test_hostile_strings.py``; policy
specs: ``test_hostile_specs.py``. The helpers here serve all three.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import boto3

from functions.admin.app import lambda_handler as admin_handler
from functions.common import decision_store, policy_store
from functions.common.api_models import MAX_TIMESTAMP
from functions.rank.app import lambda_handler as rank_handler
from functions.rewards.app import lambda_handler as rewards_handler
from tests.functional.conftest import Api, Handler, queue_depth
from tests.queues import deliver_all

MB = 1024 * 1024
RANK = "/v1/policies/{policy}/rank"
POLICY = "/v1/policies/{policy}"
ROLLBACK = "/v1/policies/{policy}/rollback"
ACTIVATE = "/v1/events/{event_id}/activate"

# endpoint -> (handler, method, path, resource, signed)
ENDPOINTS: dict[str, tuple[Handler, str, str, str | None, bool]] = {
    "rank": (rank_handler, "POST", "/v1/policies/for-you/rank", RANK, False),
    "rewards": (rewards_handler, "POST", "/v1/rewards", None, True),
    "items": (admin_handler, "PUT", "/v1/items", None, False),
    "policy": (admin_handler, "PUT", "/v1/policies/for-you", POLICY, False),
    "rollback": (admin_handler, "POST", "/v1/policies/for-you/rollback", ROLLBACK, False),
}

# --------------------------------------------------------------------------------------------
# Helpers: calling, strict JSON, refusals, the whole stored state
# --------------------------------------------------------------------------------------------


def _no_constants(name: str) -> Any:
    raise AssertionError(f"response body holds {name}, which is not JSON")


def _strict(handler: Handler) -> Handler:
    """The handler, checking that every response body is strict JSON."""

    def wrapped(event: dict[str, Any], context: Any) -> dict[str, Any]:
        response = handler(event, context)
        json.loads(response.get("body") or "null", parse_constant=_no_constants)
        return response

    return wrapped


def send(api: Api, endpoint: str, body: Any, **path: str) -> tuple[int, Any]:
    """Call one endpoint of ``ENDPOINTS`` (signed where the API wants a signature)."""
    handler, method, url, resource, signed = ENDPOINTS[endpoint]
    if path:
        url = resource.format(**path) if resource else url
    status, payload, _ = api.call(
        _strict(handler), method, url, body, resource=resource, sign_body=signed
    )
    return status, payload


def call(api: Api, handler: Handler, method: str, path: str, resource: str) -> tuple[int, Any]:
    """A body-less call (paths with hostile parameters)."""
    status, payload, _ = api.call(_strict(handler), method, path, resource=resource)
    return status, payload


def assert_refused(status: int, error: Any, field: str | None = None) -> None:
    """A 4xx JSON ``{error, detail, field?}``; ``field`` is checked when given."""
    assert 400 <= status < 500, (status, error)
    assert isinstance(error, dict) and set(error) <= {"error", "detail", "field"}, error
    assert error["error"] and error["detail"], error
    if field is not None:
        assert error.get("field") == field, (field, error)


def snapshot(env: dict[str, str]) -> dict[str, Any]:
    """Everything the API can change: every table's items, the model bucket, both queues."""
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    state: dict[str, Any] = {}
    for name, table in sorted(env.items()):
        if name.endswith("_TABLE"):
            items = dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]
            state[name] = sorted(json.dumps(item, sort_keys=True, default=str) for item in items)
    bucket = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket=env["MODEL_BUCKET"])
    state["bucket"] = sorted(o["Key"] for o in bucket.get("Contents", []))
    state["queues"] = (queue_depth(env["REWARD_QUEUE_URL"]), queue_depth(env["REWARD_DLQ_URL"]))
    return state


def refuse_all(api: Api, env: dict[str, str], cases: Iterable[tuple[str, Any, str | None]]) -> int:
    """Send each ``(endpoint, body, field)``: refused naming ``field``, state unchanged.

    A refused request can only ever add or change stored state, never undo another's change,
    so one snapshot before and one after the whole batch show that none of them changed
    anything. Returns how many cases were sent.
    """
    before = snapshot(env)
    count = 0
    for endpoint, body, field in cases:
        status, error = send(api, endpoint, body)
        assert_refused(status, error, field)
        count += 1
    assert snapshot(env) == before
    return count


def assert_served(status: int, ranked: Any, sent_ids: Iterable[str], slate_size: int) -> None:
    """A 200 slate: distinct ids among those sent, each probability finite in (0, 1]."""
    assert status == 200, ranked
    ids = [slot["id"] for slot in ranked["slate"]]
    sent = list(sent_ids)
    assert len(ids) == len(set(ids)) == min(slate_size, len(set(sent)))
    assert set(ids) <= set(sent)
    for slot in ranked["slate"]:
        assert math.isfinite(slot["probability"]) and 0.0 < slot["probability"] <= 1.0, slot


def deliver_rewards(env: dict[str, str]) -> dict[str, Any]:
    """Route the queued rewards and hand them to the learner, as the SQS triggers would."""
    return {"batchItemFailures": deliver_all(env)}


def rank_body(candidates: list[Any], **extra: Any) -> dict[str, Any]:
    return {"context": {"user": {"cohort": "a"}}, "candidates": candidates, **extra}


def nested(levels: int, leaf: str = "1", open_: str = '{"k":', close: str = "}") -> str:
    """JSON text of ``levels`` containers around ``leaf`` (built as text: no recursion)."""
    return open_ * levels + leaf + close * levels


# --------------------------------------------------------------------------------------------
# 1. Body size
# --------------------------------------------------------------------------------------------


def test_bodies_over_1_mb_are_413_on_every_endpoint_and_change_nothing(
    aws: dict[str, str], api: Api
) -> None:
    valid = json.dumps(rank_body([{"id": "a"}, {"id": "b"}], slate_size=2))
    over = [
        valid + " " * (MB + 1 - len(valid)),  # valid JSON, one byte over
        json.dumps({"context": {"pad": "x" * MB}, "candidates": ["a"]}),
        ("[" * (MB + 1)).encode(),
        b"\xff" * (MB + 1),  # not UTF-8: API Gateway base64-encodes it
    ]
    before = snapshot(aws)
    for endpoint in ENDPOINTS:
        for body in over:
            status, error = send(api, endpoint, body)
            assert_refused(status, error, "body")
            assert (status, error["error"]) == (413, "payload_too_large")
    assert snapshot(aws) == before
    # Exactly at the limit the body is read (whitespace is JSON): the slate is served
    status, ranked = send(api, "rank", valid + " " * (MB - len(valid)))
    assert_served(status, ranked, ["a", "b"], 2)


# --------------------------------------------------------------------------------------------
# 2. Count caps
# --------------------------------------------------------------------------------------------


def _many(prefix: str, count: int) -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{i}"} for i in range(count)]


def _flat(count: int) -> dict[str, int]:
    return {f"f{i}": i for i in range(count)}


def _malformed_cases() -> list[tuple[str, Any, str | None]]:
    """Bodies that are not JSON, not an object, of the wrong shape or with unknown fields."""
    cases: list[tuple[str, Any, str | None]] = [
        ("rank", "", "body"),
        ("rank", "null", "body"),
        ("rank", "[]", "body"),
        ("rank", '"x"', "body"),
        ("rank", "{not json", "body"),
        ("rank", b'{"context": {"x": "\xff"}, "candidates": ["a"]}', "body"),
        ("rank", '{"context": [], "candidates": ["a"]}', "context"),
        ("rank", '{"context": {}, "candidates": [7]}', "candidates[0]"),
        ("rank", '{"context": {}, "candidates": ["a"], "evil": 1}', "evil"),
        ("rank", '{"context": {}, "candidates": [{"id": "a", "evil": 1}]}', "candidates[0].evil"),
        ("rewards", "[]", "body"),
        ("rewards", b'{"event_id": "e\xff", "item_id": "i"}', "body"),
        ("items", '{"items": [{"id": "a", "features": []}]}', "items[0].features"),
        ("rollback", '{"version": "one"}', "version"),
    ]
    return cases


def test_count_caps_and_malformed_bodies_name_the_field_and_change_nothing(
    aws: dict[str, str], api: Api
) -> None:
    reward = {"event_id": "evt_x", "item_id": "a"}
    cases: list[tuple[str, Any, str | None]] = [
        ("rank", rank_body(_many("c", 1001)), "candidates"),
        ("rank", rank_body([]), "candidates"),
        ("rank", rank_body(["c"] * 1001), "candidates"),
        ("rank", rank_body([{"id": "a"}], exclude=["x"] * 1001), "exclude"),
        ("rank", rank_body([{"id": "a"}], baseline=["x"] * 51), "baseline"),
        ("rank", rank_body([{"id": "a"}], slate_size=51), "slate_size"),
        ("rank", rank_body([{"id": "a"}], slate_size=0), "slate_size"),
        ("rank", rank_body([{"id": "a"}], slate_size=-1), "slate_size"),
        ("rank", {"context": _flat(1001), "candidates": ["a"]}, "context.f1000"),
        ("rank", {"context": {"t": ["x"] * 1001}, "candidates": ["a"]}, "context.t[1000]"),
        (
            "rank",
            rank_body([{"id": "a"}, {"id": "b", "features": _flat(1001)}]),
            "candidates[1].features.f1000",
        ),
        ("rewards", {"rewards": [reward] * 101}, "rewards"),
        ("rewards", {"rewards": []}, "rewards"),
        ("items", {"items": _many("i", 501)}, "items"),
        ("items", {"items": []}, "items"),
        ("items", {"items": [{"id": "i", "features": _flat(1001)}]}, "items[0].features.f1000"),
    ]
    assert refuse_all(api, aws, cases + _malformed_cases()) == 16 + 14
    # A body that is not declared JSON is refused naming the header
    before = snapshot(aws)
    status, error, _ = api.call(
        _strict(rank_handler),
        "POST",
        "/v1/policies/for-you/rank",
        json.dumps(rank_body(["a"])),
        resource=RANK,
        headers={"content-type": "text/plain"},
    )
    assert_refused(status, error, "content-type")
    assert snapshot(aws) == before
    # At every cap the request is served by a policy whose interactions fit it (-q CI)
    largest = {
        "context": _flat(1000),
        "candidates": _many("c", 1000),
        "slate_size": 50,
        "exclude": [f"x{i}" for i in range(1000)],
        "baseline": [f"c{i}" for i in range(50)],
    }
    shipped = policy_store.get("acme", "for-you").spec
    plain = shipped.vw.model_copy(update={"args": ("--cb_type", "dm", "-q", "CI")})
    policy_store.put("acme", shipped.model_copy(update={"name": "plain", "vw": plain}))
    status, ranked = send(api, "rank", largest, policy="plain")
    assert_served(status, ranked, [f"c{i}" for i in range(1000)], 50)
    # And the shipped for-you, whose --cubic CCI costs 1000^2 per item feature, refuses it
    # naming candidates, with nothing stored
    before = snapshot(aws)
    status, error = send(api, "rank", largest)
    assert_refused(status, error, "candidates")
    assert "interactions" in error["detail"]
    assert snapshot(aws) == before
    status, result = send(api, "items", {"items": _many("i", 500)})
    assert (status, result) == (200, {"upserted": 500})
    status, result = send(api, "rewards", {"rewards": [reward] * 100})
    assert (status, result) == (202, {"accepted": 100})


# --------------------------------------------------------------------------------------------
# 3. Nesting depth
# --------------------------------------------------------------------------------------------

DEEP_K = "".join([".k"] * 8)  # the path of the first value nested past level 8


def _too_deep_cases() -> list[tuple[str, Any, str | None]]:
    """One level past the cap, and far past it, in context, features and catalog items."""
    cases: list[tuple[str, Any, str | None]] = []
    for levels in (8, 10, 100, 500):
        cases += [
            ("rank", f'{{"context": {nested(levels)}, "candidates": ["a"]}}', f"context{DEEP_K}"),
            (
                "rank",
                f'{{"context": {{}}, "candidates": [{{"id": "a"}}, '
                f'{{"id": "b", "features": {nested(levels)}}}]}}',
                f"candidates[1].features{DEEP_K}",
            ),
            (
                "rank",
                f'{{"context": {{"l": {nested(levels, open_="[", close="]")}}}, '
                f'"candidates": ["a"]}}',
                "context.l" + "[0]" * 7,
            ),
            (
                "items",
                f'{{"items": [{{"id": "i", "features": {nested(levels)}}}]}}',
                f"items[0].features{DEEP_K}",
            ),
        ]
    return cases


def _past_the_parser_cases() -> list[tuple[str, Any, str | None]]:
    """Bodies nested deeper than Python's JSON parser can recurse, whole or inside a field."""
    cases: list[tuple[str, Any, str | None]] = []
    for endpoint in ENDPOINTS:
        for levels in (10_000, 100_000):
            cases += [
                (endpoint, nested(levels, "1", "[", "]"), "body"),
                (endpoint, nested(levels, "{}", '{"a":', "}"), "body"),
            ]
    cases += [
        ("rank", f'{{"context": {nested(10_000)}, "candidates": ["a"]}}', "body"),
        ("items", f'{{"items": [{{"id": "i", "features": {nested(10_000)}}}]}}', "body"),
        ("rewards", f'{{"event_id": "e", "item_id": {nested(10_000, "1", "[", "]")}}}', "body"),
        ("policy", f'{{"description": {nested(10_000, "1", "[", "]")}}}', "body"),
    ]
    return cases


def test_nesting_past_8_levels_is_422_and_past_the_parser_400_not_500(
    aws: dict[str, str], api: Api
) -> None:
    # Given context and features 8 levels deep (the object itself is level 1): served
    body = (
        f'{{"context": {nested(7)}, "candidates": '
        f'[{{"id": "a", "features": {nested(7)}}}, {{"id": "b", "features": {{"l": '
        f"{nested(6, open_='[', close=']')}}}}}]}}"
    )
    status, ranked = send(api, "rank", body)
    assert_served(status, ranked, ["a", "b"], 2)
    # When one more level is added, anywhere: 422 naming the path to the first deep value;
    # and a body the parser cannot even read is 400 naming the body
    cases = _too_deep_cases() + _past_the_parser_cases()
    assert refuse_all(api, aws, cases) == 16 + 24
    # 1,000 levels: past the parser's limit on CPython 3.11 (400), else refused at level 9 (422)
    before = snapshot(aws)
    status, error = send(api, "rank", f'{{"context": {nested(1000)}, "candidates": ["a"]}}')
    assert_refused(status, error)
    assert (status, error["field"]) in {(400, "body"), (422, f"context{DEEP_K}")}
    assert snapshot(aws) == before


# --------------------------------------------------------------------------------------------
# 4. NaN, infinities and huge numbers
# --------------------------------------------------------------------------------------------

NOT_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]
HUGE = [str(10**400), "-" + str(10**400), "1e308", "-1e308", "1e31"]
REWARD = '"event_id": "evt_x", "item_id": "a"'
# (endpoint, body with @ for the number, field): every numeric field of every body
NUMBER_FIELDS: list[tuple[str, str, str]] = [
    ("rank", '{"context": {"x": @}, "candidates": ["a"]}', "context.x"),
    ("rank", '{"context": {"u": {"l": [1, @]}}, "candidates": ["a"]}', "context.u.l[1]"),
    ("rank", '{"context": {}, "candidates": [{"id": "a", "features": {"x": @}}]}',
     "candidates[0].features.x"),
    ("items", '{"items": [{"id": "a"}, {"id": "b", "features": {"x": @}}]}',
     "items[1].features.x"),
    ("rewards", "{" + REWARD + ', "value": @}', "value"),
    ("rewards", '{"rewards": [{' + REWARD + "}, {" + REWARD + ', "value": @}]}',
     "rewards[1].value"),
    ("rollback", '{"version": @}', "version"),
]  # fmt: skip
# Fields where 1e31 is not out of range for the type alone (it is past their caps anyway)
TIME_FIELDS: list[tuple[str, str, str]] = [
    ("rewards", "{" + REWARD + ', "timestamp": @}', "timestamp"),
    ("rank", '{"context": {}, "candidates": [{"id": "a", "created_at": @}]}',
     "candidates[0].created_at"),
    ("items", '{"items": [{"id": "a", "created_at": @}]}', "items[0].created_at"),
    ("rank", '{"context": {}, "candidates": ["a"], "slate_size": @}', "slate_size"),
]  # fmt: skip


def _numbers_cases() -> list[tuple[str, Any, str | None]]:
    cases: list[tuple[str, Any, str | None]] = [
        (endpoint, body.replace("@", number), field)
        for number in NOT_FINITE + HUGE
        for endpoint, body, field in NUMBER_FIELDS + TIME_FIELDS
    ]
    digits = "9" * 5000  # past Python's int-from-text digit limit: a parse error
    cases += [(endpoint, f'{{"version": {digits}}}', "body") for endpoint in ENDPOINTS]
    cases += [
        ("rank", '{"context": {}, "candidates": ["a"], "slate_size": 2.5}', "slate_size"),
        ("rewards", "{" + REWARD + ', "timestamp": -1}', "timestamp"),
        ("rewards", "{" + REWARD + f', "timestamp": {MAX_TIMESTAMP + 1}}}', "timestamp"),
        ("rollback", f'{{"version": {2**53}}}', "version"),
        ("rollback", '{"version": 0}', "version"),
        ("rollback", '{"version": 1.5}', "version"),
    ]
    return cases


def test_non_finite_and_huge_numbers_are_refused_naming_the_field(
    aws: dict[str, str], api: Api
) -> None:
    cases = _numbers_cases()
    assert refuse_all(api, aws, cases) == len(cases) == 121


def test_huge_finite_feature_values_are_served_and_learned_with_finite_probabilities(
    aws: dict[str, str], api: Api
) -> None:
    # Given feature values at the edges of what is accepted (and a subnormal), and timestamps
    # at the edges of their range
    huge = [1e30, -1e30, 10**30, 5e-324, -1e-300, 1e29]
    candidates = [
        {"id": f"c{i}", "features": {"x": value, "y": [value, -value]}, "created_at": stamp}
        for i, (value, stamp) in enumerate(
            zip(huge, [0, MAX_TIMESTAMP, 1.0, 0, 1e9, 2e9], strict=True)
        )
    ]
    context = {"u": {"x": 1e30, "y": -(10**30)}, "tiny": 5e-324}
    for round_ in range(3):
        # When the policy ranks all of them (the last slot has one candidate left: p = 1)
        status, ranked = send(api, "rank", {"context": context, "candidates": candidates})
        assert_served(status, ranked, [c["id"] for c in candidates], 5)
        assert ranked["model_version"] == round_
        # And learns from a click on every shown slot
        rewards = [
            {"event_id": ranked["event_id"], "item_id": slot["id"], "final": True}
            for slot in ranked["slate"]
        ]
        status, accepted = send(api, "rewards", {"rewards": rewards})
        assert status == 202, accepted
        assert deliver_rewards(aws) == {"batchItemFailures": []}
    # Then the stored decisions keep exact, finite probabilities
    status, full = send(
        api, "rank", {"context": context, "candidates": candidates, "slate_size": len(huge)}
    )
    assert_served(status, full, [c["id"] for c in candidates], len(huge))
    assert full["slate"][-1]["probability"] == 1.0
    record = decision_store.get("acme", full["event_id"]).record
    assert [s.probability for s in record.slate] == [s["probability"] for s in full["slate"]]
