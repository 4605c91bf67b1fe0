"""Bodies by media type on moto: policy specs as YAML, and every body route's content-type rule.

``PUT /v1/policies/{policy}`` takes a spec as JSON or as YAML (``application/yaml``,
``application/x-yaml``, ``text/yaml``); YAML gets JSON's limits (anchors and aliases refused, so
a billion-laughs document is a quick 400). Every route that takes a body refuses a media type it
does not take with 400 naming ``content-type`` (``curl -d`` sends a form type) and changes
nothing; a body without a content type is read as JSON.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.admin.app import lambda_handler as admin_handler
from functions.common import decision_store, policy_store
from functions.rank.app import lambda_handler as rank_handler
from functions.rewards.app import lambda_handler as rewards_handler
from local.lambda_events import FakeLambdaContext, proxy_event, response_json
from tests.functional.conftest import Api, Handler
from tests.reliability.test_hostile_input import snapshot

ROOT = Path(__file__).resolve().parents[2]
POLICY = "/v1/policies/{policy}"
FOR_YOU_YAML = (ROOT / "policies" / "for-you.yaml").read_text()
YAML_TYPES = ["application/yaml", "application/x-yaml", "text/yaml", "text/yaml; charset=utf-8"]


def put_spec(api: Api, policy: str, body: str, content_type: str) -> tuple[int, Any]:
    status, payload, _ = api.call(
        admin_handler,
        "PUT",
        f"/v1/policies/{policy}",
        body,
        resource=POLICY,
        headers={"content-type": content_type},
    )
    return status, payload


def stored_version(policy: str) -> int:
    return policy_store.get("acme", policy).spec_version


@pytest.mark.parametrize("content_type", YAML_TYPES)
def test_a_yaml_spec_is_stored_as_its_json_would_be(
    aws: dict[str, str], api: Api, content_type: str
) -> None:
    # Given the shipped for-you spec, as its YAML file is written, with a bigger budget
    changed = FOR_YOU_YAML.replace("budget: 0.05", "budget: 0.25", 1)
    assert changed != FOR_YOU_YAML
    # When it is put as YAML
    status, stored = put_spec(api, "for-you", changed, content_type)
    # Then it is a new version of the spec
    assert status == 200, stored
    assert (stored["spec_version"], stored["spec"]["exploration"]["budget"]) == (2, 0.25)
    # And exactly what the same spec sent as JSON is
    as_data = {**yaml.safe_load(changed), "name": "from-json"}
    status, as_json = put_spec(api, "from-json", json.dumps(as_data), "application/json")
    assert status == 200, as_json
    assert {**as_json["spec"], "name": "for-you"} == stored["spec"]


def test_a_yaml_spec_without_a_name_takes_the_paths(aws: dict[str, str], api: Api) -> None:
    status, stored = put_spec(
        api, "weekly", "slate_size: 3\nexploration:\n  budget: 0.1\n", "application/yaml"
    )
    assert status == 200, stored
    assert (stored["name"], stored["spec"]["slate_size"], stored["spec_version"]) == (
        "weekly",
        3,
        1,
    )
    # A YAML date stays the string it was written as (JSON has no dates)
    status, dated = put_spec(api, "weekly", "description: 2026-01-31\n", "application/yaml")
    assert status == 200 and dated["spec"]["description"] == "2026-01-31", dated


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ("name: for-you\nexploration: {budget: [0.1\n", "line 3, column 1"),
        ("- for-you\n- explore\n", "must be a YAML mapping"),
        ("", "must be a YAML mapping"),
        ("name: for-you\n---\nname: explore\n", "expected a single document"),
        ("description: !!binary aGVsbG8=\n", "holds a value JSON cannot"),
        ("description: !!python/object/apply:os.system [echo]\n", "could not determine a"),
        ("rewards: &r {default: 0.0}\ncopy: *r\n", "anchors and aliases"),
        ("a:" + " [" * 100 + " ]" * 100 + "\n", "deeper than 64 levels"),
        ("version: " + "9" * 5000 + "\n", "4300 digits"),
    ],
)
def test_bad_yaml_is_400_naming_the_body_and_changes_nothing(
    aws: dict[str, str], api: Api, body: str, detail: str
) -> None:
    status, error = put_spec(api, "for-you", body, "application/yaml")
    assert (status, error["error"], error["field"]) == (400, "bad_request", "body"), error
    assert detail in error["detail"], error
    assert stored_version("for-you") == 1


def test_a_billion_laughs_document_is_refused_at_once(aws: dict[str, str], api: Api) -> None:
    # Given a YAML document of 10 lines that expands to 10^9 strings
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{refs}]")
    bomb = "\n".join(lines) + "\n"
    assert len(bomb) < 1000
    # When it is put as a spec
    started = time.monotonic()
    status, error = put_spec(api, "for-you", bomb, "application/x-yaml")
    # Then it is refused before anything is expanded, naming where the first anchor is
    assert time.monotonic() - started < 5.0
    assert (status, error["field"]) == (400, "body")
    assert "anchors and aliases" in error["detail"] and "line 1, column 5" in error["detail"]
    assert stored_version("for-you") == 1


def test_an_invalid_spec_in_yaml_names_its_field_as_json_would(
    aws: dict[str, str], api: Api
) -> None:
    status, error = put_spec(
        api, "for-you", "vw:\n  args: ['--data', '/etc/passwd']\n", "application/yaml"
    )
    assert (status, error["field"]) == (422, "vw.args[0]"), error
    status, error = put_spec(api, "other", "name: for-you\n", "text/yaml")
    assert (status, error["field"]) == (422, "name"), error
    assert stored_version("for-you") == 1


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    budget=st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
    slate_size=st.integers(min_value=1, max_value=50),
    description=st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40),
)
def test_any_spec_reads_the_same_from_yaml_and_json(
    aws: dict[str, str], api: Api, budget: float, slate_size: int, description: str
) -> None:
    spec = {
        "slate_size": slate_size,
        "description": description,
        "exploration": {"budget": budget},
    }
    status, from_yaml = put_spec(
        api, "prop", yaml.safe_dump(spec, allow_unicode=True), "application/yaml"
    )
    assert status == 200, from_yaml
    status, from_json = put_spec(api, "prop", json.dumps(spec), "application/json")
    assert status == 200, from_json
    assert from_yaml["spec"] == from_json["spec"]
    assert from_yaml["spec"]["exploration"]["budget"] == budget
    assert from_yaml["spec"]["description"] == description


# --------------------------------------------------------------------------------------------
# Content types of every body route
# --------------------------------------------------------------------------------------------

RANK_BODY = {"context": {}, "candidates": [{"id": "a"}, {"id": "b"}]}
# name -> (handler, method, path, resource, body, signed)
BODY_ROUTES: dict[str, tuple[Handler, str, str, str, dict[str, Any], bool]] = {
    "rank": (
        rank_handler,
        "POST",
        "/v1/policies/for-you/rank",
        "/v1/policies/{policy}/rank",
        RANK_BODY,
        False,
    ),
    "recommend": (
        rank_handler,
        "POST",
        "/v1/policies/for-you/recommend",
        "/v1/policies/{policy}/recommend",
        {"context": {}},
        False,
    ),
    "rewards": (
        rewards_handler,
        "POST",
        "/v1/rewards",
        "/v1/rewards",
        {"event_id": "evt-1", "item_id": "a"},
        True,
    ),
    "activate": (
        rewards_handler,
        "POST",
        "/v1/events/evt-1/activate",
        "/v1/events/{event_id}/activate",
        {"seen_through": 1},
        False,
    ),
    "policy": (
        admin_handler,
        "PUT",
        "/v1/policies/for-you",
        POLICY,
        {"exploration": {"budget": 0.3}},
        False,
    ),
    "rollback": (
        admin_handler,
        "POST",
        "/v1/policies/for-you/rollback",
        "/v1/policies/{policy}/rollback",
        {"version": 1},
        False,
    ),
    "items": (admin_handler, "PUT", "/v1/items", "/v1/items", {"items": [{"id": "x"}]}, False),
}


REFUSED_TYPES = [
    "application/x-www-form-urlencoded",  # what curl -d sends
    "text/plain",
    "multipart/form-data; boundary=x",
    "application/jsonx",
    "application/json; charset=latin-1",
]


@pytest.mark.parametrize("route", sorted(BODY_ROUTES))
def test_a_body_route_refuses_a_media_type_it_does_not_take(
    aws: dict[str, str], api: Api, route: str
) -> None:
    handler, method, path, resource, body, signed = BODY_ROUTES[route]
    before = snapshot(aws)
    for content_type in REFUSED_TYPES:
        status, error, _ = api.call(
            handler,
            method,
            path,
            json.dumps(body),
            resource=resource,
            headers={"content-type": content_type},
            sign_body=signed,
        )
        refusal = (status, error["error"], error["field"])
        assert refusal == (400, "bad_request", "content-type"), (content_type, error)
        expected = "UTF-8" if "charset" in content_type else "application/json"
        assert expected in error["detail"], (content_type, error)
    assert snapshot(aws) == before


def test_yaml_is_taken_by_the_policy_put_only(aws: dict[str, str], api: Api) -> None:
    status, error, _ = api.call(
        rank_handler,
        "POST",
        "/v1/policies/for-you/rank",
        yaml.safe_dump(RANK_BODY),
        resource="/v1/policies/{policy}/rank",
        headers={"content-type": "application/yaml"},
    )
    assert (status, error["field"]) == (400, "content-type")
    assert "application/json" in error["detail"]
    status, error, _ = api.call(
        admin_handler,
        "PUT",
        "/v1/policies/for-you",
        "name: for-you",
        resource=POLICY,
        headers={"content-type": "text/plain"},
    )
    assert (status, error["field"]) == (400, "content-type")
    assert "application/yaml" in error["detail"]


def _call_without_content_type(
    handler: Handler, api: Api, path: str, resource: str, body: Any
) -> tuple[int, Any]:
    event = proxy_event(
        "POST",
        path,
        resource=resource,
        body=json.dumps(body),
        headers={"x-api-key": api.key.api_key},
    )
    response = handler(event, FakeLambdaContext())
    return response["statusCode"], response_json(response)


def test_json_with_a_charset_or_no_content_type_at_all_is_read_as_json(
    aws: dict[str, str], api: Api
) -> None:
    status, ranked, _ = api.call(
        rank_handler,
        "POST",
        "/v1/policies/for-you/rank",
        json.dumps(RANK_BODY),
        resource="/v1/policies/{policy}/rank",
        headers={"content-type": "Application/JSON; charset=UTF-8"},
    )
    assert status == 200, ranked
    status, again = _call_without_content_type(
        rank_handler, api, "/v1/policies/for-you/rank", "/v1/policies/{policy}/rank", RANK_BODY
    )
    assert status == 200, again
    logged = {ranked["event_id"], again["event_id"]}
    assert {r.event_id for r in decision_store.export("acme", "for-you")} == logged
