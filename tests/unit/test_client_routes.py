"""What each method of the Python client sends, and how it reads pages (fake transport)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serendip_client import HttpRequest, HttpResponse
from tests.unit.client_fakes import API_KEY, URL, FakeTransport, answer, client_with

YAML_SPEC = "name: explore\nslate_size: 3\n"


def test_rank_sends_the_given_fields_only_with_the_key() -> None:
    transport = FakeTransport(default=answer(200, {"event_id": "evt_1"}))
    client_with(transport).rank(
        "for-you",
        [{"id": "shoe-1", "category": "shoes"}, "hat-7"],
        context={"user": {"device": "ios"}},
        user_id="u-42",
        slate_size=2,
    )
    (request,) = transport.sent
    assert (request.method, request.url) == ("POST", f"{URL}/v1/policies/for-you/rank")
    assert request.headers["x-api-key"] == API_KEY
    assert request.headers["content-type"] == "application/json"
    assert transport.bodies() == [
        {
            "context": {"user": {"device": "ios"}},
            "candidates": [{"id": "shoe-1", "category": "shoes"}, "hat-7"],
            "user_id": "u-42",
            "slate_size": 2,
        }
    ]


def test_recommend_and_activate_bodies() -> None:
    transport = FakeTransport(default=answer(200, {}))
    sent = client_with(transport)
    sent.recommend("for-you", user_id="u-1", size=50, filters={"exclude_categories": ["hats"]})
    sent.activate("evt_1", seen=[1, 3])
    sent.activate("evt_1", seen_through=2)
    sent.activate("evt_1")
    assert transport.paths() == [
        "POST /v1/policies/for-you/recommend",
        *["POST /v1/events/evt_1/activate"] * 3,
    ]
    assert transport.bodies() == [
        {"context": {}, "user_id": "u-1", "size": 50, "filters": {"exclude_categories": ["hats"]}},
        {"seen": [1, 3]},
        {"seen_through": 2},
        {},
    ]


@given(event_id=st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40))
def test_ids_are_one_percent_encoded_path_segment(event_id: str) -> None:
    transport = FakeTransport(default=answer(200, {"event_id": event_id}))
    client_with(transport).event(event_id)
    (request,) = transport.sent
    segment = request.url.removeprefix(f"{URL}/v1/events/")
    assert "/" not in segment and "?" not in segment and "#" not in segment
    assert unquote(segment) == event_id


def test_post_rewards_goes_in_posts_of_at_most_100_and_adds_up_the_accepted() -> None:
    def accept(request: HttpRequest) -> HttpResponse:
        assert request.body is not None
        return answer(202, {"accepted": len(json.loads(request.body)["rewards"])})

    transport = FakeTransport(default=accept)
    rewards = [{"event_id": f"e{n}", "item_id": "i", "value": n} for n in range(250)]
    assert client_with(transport).post_rewards(rewards) == {"accepted": 250}  # type: ignore[arg-type]
    assert [len(body["rewards"]) for body in transport.bodies()] == [100, 100, 50]
    assert [r["event_id"] for body in transport.bodies() for r in body["rewards"]] == [
        f"e{n}" for n in range(250)
    ]


def test_post_reward_sends_one_reward_with_its_fields() -> None:
    transport = FakeTransport(default=answer(202, {"accepted": 1}))
    client_with(transport).post_reward("e1", "i1", "purchase", value=2.5, final=True, timestamp=9)
    assert transport.bodies() == [
        {
            "rewards": [
                {
                    "event_id": "e1",
                    "item_id": "i1",
                    "type": "purchase",
                    "value": 2.5,
                    "final": True,
                    "timestamp": 9,
                }
            ]
        }
    ]


def test_put_items_goes_in_upserts_of_at_most_500() -> None:
    def upsert(request: HttpRequest) -> HttpResponse:
        assert request.body is not None
        return answer(200, {"upserted": len(json.loads(request.body)["items"])})

    transport = FakeTransport(default=upsert)
    items = [{"id": f"item-{n}"} for n in range(1201)]
    assert client_with(transport).put_items(items) == {"upserted": 1201}  # type: ignore[arg-type]
    assert transport.paths() == ["PUT /v1/items"] * 3
    assert [len(body["items"]) for body in transport.bodies()] == [500, 500, 201]
    assert client_with(FakeTransport()).put_items([]) == {"upserted": 0}


def test_list_models_reads_every_page() -> None:
    version = {"version": 0, "size": 1, "stored_in": "dynamodb"}
    pages = [
        answer(200, {"head": 5, "versions": [{**version, "version": 5}], "next_token": "t1"}),
        answer(200, {"head": 5, "versions": [{**version, "version": 4}], "next_token": "t2"}),
        answer(200, {"head": 5, "versions": [{**version, "version": 3}], "next_token": None}),
    ]
    transport = FakeTransport(pages)
    versions = [v["version"] for v in client_with(transport).list_models("for-you", page_size=1)]
    assert versions == [5, 4, 3]
    assert transport.queries() == [
        {"limit": "1"},
        {"limit": "1", "next_token": "t1"},
        {"limit": "1", "next_token": "t2"},
    ]


def test_list_items_reads_every_page_and_get_item_reads_one() -> None:
    transport = FakeTransport(
        [
            answer(200, {"items": [{"id": "a"}, {"id": "b"}], "next_token": "n1"}),
            answer(200, {"items": [{"id": "c"}]}),
            answer(200, {"id": "a b"}),
        ]
    )
    sent = client_with(transport)
    assert [item["id"] for item in sent.list_items(page_size=2)] == ["a", "b", "c"]
    assert sent.get_item("a b") == {"id": "a b"}
    assert transport.queries()[:2] == [{"limit": "2"}, {"limit": "2", "next_token": "n1"}]
    assert transport.sent[2].url == f"{URL}/v1/items/a%20b"


def test_metrics_pages_follow_next_token_over_the_first_pages_window() -> None:
    def page(read: int, token: str | None) -> HttpResponse:
        window = {"since": 1000.0, "until": 1700000000.25, "segment": None}
        records = {"read": read, "complete": token is None, "next_token": token}
        return answer(200, {"window": window, "n_events": read, "records": records})

    transport = FakeTransport([page(2000, "p2"), page(2000, "p3"), page(17, None)])
    pages = list(client_with(transport).metrics_pages("for-you", since=1000))
    assert sum(p["n_events"] for p in pages) == 4017
    assert transport.queries() == [
        {"since": "1000"},
        {"since": "1000.0", "until": "1700000000.25", "next_token": "p2"},
        {"since": "1000.0", "until": "1700000000.25", "next_token": "p3"},
    ]


def test_progress_and_put_policy_queries() -> None:
    transport = FakeTransport(default=answer(200, {}))
    sent = client_with(transport)
    sent.progress("for-you", since=10, until=20.5, window=60)
    sent.put_policy("for-you", {"slate_size": 3}, model="retrain")
    assert transport.queries() == [
        {"since": "10", "until": "20.5", "window": "60"},
        {"model": "retrain"},
    ]


def test_challenger_methods_send_the_spec_and_only_the_rule_fields_given() -> None:
    transport = FakeTransport(default=answer(200, {}))
    sent = client_with(transport)
    sent.put_challenger("for-you", {"vw": {"args": ["-q", "CI"]}}, margin=0.02)
    sent.challenger("for-you")
    sent.promote_challenger("for-you")
    sent.rollback_challenger("for-you")
    sent.delete_challenger("for-you")
    assert transport.paths() == [
        "PUT /v1/policies/for-you/challenger",
        "GET /v1/policies/for-you/challenger",
        "POST /v1/policies/for-you/challenger/promote",
        "POST /v1/policies/for-you/challenger/rollback",
        "DELETE /v1/policies/for-you/challenger",
    ]
    assert transport.bodies()[0] == {"spec": {"vw": {"args": ["-q", "CI"]}}, "margin": 0.02}


@pytest.mark.parametrize(
    ("given", "media_type"),
    [
        ("yaml_file", "application/yaml"),
        ("json_file", "application/json"),
        ("yaml_text", "application/yaml"),
        ("json_text", "application/json"),
    ],
)
def test_put_policy_sends_yaml_as_yaml_and_json_as_json(
    tmp_path: Path, given: str, media_type: str
) -> None:
    json_text = json.dumps({"name": "explore", "slate_size": 3})
    (tmp_path / "explore.yaml").write_text(YAML_SPEC)
    (tmp_path / "explore.json").write_text(json_text)
    spec: str | Path = {
        "yaml_file": tmp_path / "explore.yaml",
        "json_file": str(tmp_path / "explore.json"),
        "yaml_text": YAML_SPEC,
        "json_text": json_text,
    }[given]
    transport = FakeTransport(default=answer(200, {"name": "explore", "model_reset": False}))
    client_with(transport).put_policy("explore", spec)
    (request,) = transport.sent
    assert (request.method, request.url) == ("PUT", f"{URL}/v1/policies/explore")
    assert request.headers["content-type"] == media_type
    expected = YAML_SPEC if media_type == "application/yaml" else json_text
    assert request.body == expected.encode()


def test_delete_policy_and_the_routes_without_a_body() -> None:
    transport = FakeTransport(
        [
            answer(200, {"policy": "old", "deleted": {"model_versions": 3}}),
            answer(200, {"policies": [{"name": "for-you"}]}),
            answer(200, {"status": "ok"}),
            answer(200, {"openapi": "3.1.0"}),
        ]
    )
    sent = client_with(transport)
    assert sent.delete_policy("old")["deleted"] == {"model_versions": 3}
    assert [p["name"] for p in sent.list_policies()] == ["for-you"]
    assert sent.health() == {"status": "ok"}
    assert sent.openapi()["openapi"] == "3.1.0"
    assert transport.paths() == [
        "DELETE /v1/policies/old",
        "GET /v1/policies",
        "GET /v1/health",
        "GET /v1/openapi.json",
    ]
    assert all(
        request.body is None and "content-type" not in request.headers for request in transport.sent
    )


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_a_non_finite_number_is_refused_before_anything_is_sent(number: float) -> None:
    transport = FakeTransport()
    with pytest.raises(ValueError, match="JSON"):
        client_with(transport).rank("for-you", [{"id": "a", "features": {"price": number}}])
    assert transport.sent == []


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="retries"):
        client_with(FakeTransport(), retries=-1)
