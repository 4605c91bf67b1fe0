"""The Python client package (``serendip_client``) against the local stack over real HTTP:
rank, signed rewards, learning seen through the progress route, metrics pages, policies (YAML
too), models and rollback, activation, the catalog, and the errors an app sees."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from functions.common import metrics_service, policy_store
from functions.common.auth import NewKey, create_key
from local.stack import LocalStack
from serendip_client import NotFoundError, Serendip, UnauthorizedError, ValidationError
from serendip_client.models import RankResult
from tests.e2e.conftest import ROOT

TENANT = "e2e-python-client"
DEADLINE_SECONDS = 180.0  # the learner runs in the stack's poller; generous for a busy machine
EVENTS = 12
CANDIDATES = [
    {"id": f"{category}-{n}", "category": category, "features": {"size": n}}
    for category in ("shoes", "hats", "bags")
    for n in range(2)
]
T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None]) -> T:
    """Poll ``check`` until it returns a value, within the deadline."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def key(stack: LocalStack) -> NewKey:
    """A tenant of its own with the shipped policies."""
    made = create_key(TENANT, {"rank", "reward", "admin"})
    policy_store.seed(TENANT, ROOT / "policies")
    return made


@pytest.fixture(scope="module")
def client(stack: LocalStack, key: NewKey) -> Serendip:
    return Serendip(stack.url, key.api_key, key.webhook_secret, timeout=30)


@pytest.fixture(scope="module")
def learned(stack: LocalStack, client: Serendip) -> dict[str, Any]:
    """EVENTS ranks, every slot rewarded (the first with 1), learned as the progress route
    reports, in two rounds (so that the learner saves at least two model versions); the window
    [since, until) holds exactly these events."""
    since = time.time()
    ranked: list[RankResult] = []
    for round_events in (EVENTS // 2, EVENTS - EVENTS // 2):
        batch = [
            client.rank(
                "for-you",
                CANDIDATES,
                context={"user": {"plan": "free"}},
                user_id=f"reader-{n % 3}",
                slate_size=3,
            )
            for n in range(round_events)
        ]
        ranked += batch
        rewards = [
            {"event_id": r["event_id"], "item_id": slot["id"], "value": 1.0 if i == 0 else 0.0}
            for r in batch
            for i, slot in enumerate(r["slate"])
        ]
        for _ in range(2):  # the second post repeats the first
            accepted = client.post_rewards(rewards)  # type: ignore[arg-type]
            assert accepted == {"accepted": round_events * 3}

        def all_learned(count: int = len(ranked)) -> bool:
            return client.progress("for-you")["total"]["events_learned"] >= count

        wait_for("the progress route to count every event learned", all_learned)
    until = time.time()
    stack.drain(timeout=120)  # the repeated posts' rewards too
    progress = client.progress("for-you")
    return {"ranked": ranked, "since": since, "until": until, "progress": progress}


def test_health_openapi_and_the_shipped_policies(client: Serendip) -> None:
    assert client.health() == {"status": "ok"}
    paths = client.openapi()["paths"]
    assert {"/v1/rewards", "/v1/policies/{policy}/rank", "/v1/items"} <= set(paths)
    names = {policy["name"] for policy in client.list_policies()}
    assert {"for-you", "explore"} <= names
    assert client.get_policy("explore")["spec"]["slate_size"] == 5


def test_rank_then_signed_rewards_are_learned_once(
    client: Serendip, learned: dict[str, Any]
) -> None:
    # Given EVENTS ranked and each slot rewarded twice (the second post a duplicate)
    for ranked in learned["ranked"]:
        assert len(ranked["slate"]) == 3 and ranked["logged"] is True
        assert all(0.0 < slot["probability"] <= 1.0 for slot in ranked["slate"])
        # Then every event is learned, into a model version past the one that ranked it
        state = client.event(ranked["event_id"])
        assert state["status"] == "learned", state
        assert state["learned_version"] is not None
        assert state["learned_version"] > ranked["model_version"]
        assert (state["slots"], state["rewards"]) == (3, 3)
    # And the progress route counts each event and each slot once
    total = learned["progress"]["total"]
    assert total["events_learned"] == EVENTS
    assert total["slots_learned"] == EVENTS * 3
    # (the repeated post's rewards: duplicates, or late once their event was learned)
    outcomes = total["rewards"]
    assert outcomes["applied"] == EVENTS * 3
    assert outcomes["duplicate"] + outcomes["late"] == EVENTS * 3


def test_metrics_pages_add_up_to_the_window(
    client: Serendip, learned: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given pages of at most 5 events (the stack runs the handlers in this process)
    monkeypatch.setattr(metrics_service, "MAX_RECORDS", 5)
    # When every page of the window of the EVENTS ranks is read
    pages = list(client.metrics_pages("for-you", since=learned["since"], until=learned["until"]))
    # Then 5 + 5 + 2 events, each once, and the slot counts add up
    assert [page["records"]["read"] for page in pages] == [5, 5, 2]
    assert [page["records"]["complete"] for page in pages] == [False, False, True]
    assert sum(page["n_events"] for page in pages) == EVENTS
    assert sum(page["metrics"]["n_slots"] for page in pages) == EVENTS * 3
    assert len(pages) == math.ceil(EVENTS / 5)


def test_models_page_by_page_and_a_rollback(
    stack: LocalStack, client: Serendip, learned: dict[str, Any]
) -> None:
    # Given the kept versions, read one per page
    versions = [v["version"] for v in client.list_models("for-you", page_size=1)]
    head = client.models_page("for-you")["head"]
    assert versions == sorted(versions, reverse=True) and versions[0] == head
    assert len(versions) >= 2 and len(set(versions)) == len(versions)
    # When the oldest becomes the head again
    oldest = versions[-1]
    rolled = client.rollback("for-you", oldest)
    # Then a new head copies it, and it leads the list
    assert rolled == {"policy": "for-you", "head": rolled["head"], "rolled_back_from": oldest}
    assert rolled["head"] > head
    newest = next(client.list_models("for-you"))
    assert (newest["version"], newest["rolled_back_from"]) == (rolled["head"], oldest)
    with pytest.raises(NotFoundError):
        client.rollback("for-you", 10**9)


def test_activation_with_impressions(client: Serendip) -> None:
    ranked = client.rank("for-you", CANDIDATES, slate_size=3, defer_activation=True)
    event_id = ranked["event_id"]
    assert client.event(event_id)["activated"] is False
    assert client.activate(event_id, seen_through=2) == {
        "event_id": event_id,
        "activated": True,
        "seen": [1, 2],
        "late": False,
    }
    again = client.activate(event_id, seen=[1])
    assert (again["activated"], again["seen"]) == (False, [1, 2])
    with pytest.raises(ValidationError) as refused:
        client.activate(event_id, seen=[4])
    assert refused.value.field == "seen[0]"
    assert client.event(event_id)["seen"] == [1, 2]


def test_errors_carry_status_code_field_and_request_id(stack: LocalStack, key: NewKey) -> None:
    client = Serendip(stack.url, key.api_key, key.webhook_secret, timeout=30)
    with pytest.raises(ValidationError) as invalid:
        client.rank("for-you", CANDIDATES, slate_size=0)
    assert (invalid.value.status, invalid.value.error) == (422, "validation_error")
    assert invalid.value.field == "slate_size"
    assert invalid.value.request_id  # quoted when reporting a problem
    with pytest.raises(NotFoundError) as missing:
        client.get_policy("no-such-policy")
    assert (missing.value.status, missing.value.error) == (404, "not_found")
    with pytest.raises(UnauthorizedError):
        Serendip(stack.url, "sk_not_a_key").list_policies()
    forged = Serendip(stack.url, key.api_key, "whsec_not_the_secret")
    with pytest.raises(UnauthorizedError, match="signature"):
        forged.post_reward("evt_unknown", "shoes-0")


def test_a_policy_from_yaml_replaced_by_json_then_deleted(client: Serendip, tmp_path: Path) -> None:
    # Given the shipped explore spec under another name, as a YAML file
    text = (ROOT / "policies" / "explore.yaml").read_text()
    yaml_text = text.replace("name: explore", "name: py-client-yaml", 1)
    spec_file = tmp_path / "py-client-yaml.yaml"
    spec_file.write_text(yaml_text)
    # When it is put from the file, then from YAML text with a change, then as a dict
    first = client.put_policy("py-client-yaml", spec_file)
    assert (first["name"], first["spec"]["slate_size"]) == ("py-client-yaml", 5)
    second = client.put_policy(
        "py-client-yaml", yaml_text.replace("slate_size: 5", "slate_size: 6"), model="fresh"
    )
    third = client.put_policy("py-client-yaml", {**second["spec"], "slate_size": 7})
    # Then each one is the stored spec
    assert (second["spec"]["slate_size"], third["spec"]["slate_size"]) == (6, 7)
    assert first["spec_version"] < second["spec_version"] < third["spec_version"]
    assert client.get_policy("py-client-yaml")["spec"]["slate_size"] == 7
    # And once deleted it is gone
    assert client.delete_policy("py-client-yaml")["policy"] == "py-client-yaml"
    with pytest.raises(NotFoundError):
        client.get_policy("py-client-yaml")


def test_the_catalog_in_upserts_of_500_read_page_by_page(client: Serendip) -> None:
    items = [
        {"id": f"item-{n:04d}", "category": ("news", "film")[n % 2], "features": {"n": n}}
        for n in range(1100)
    ]
    assert client.put_items(items) == {"upserted": 1100}  # type: ignore[arg-type]
    listed = list(client.list_items(page_size=400))
    assert [item["id"] for item in listed] == [item["id"] for item in items]
    one = client.get_item("item-0007")
    assert (one["category"], one.get("features")) == ("film", {"n": 7})
    with pytest.raises(NotFoundError):
        client.get_item("item-none")
