"""Reading the catalog back on moto: ``GET /v1/items`` page by page and ``GET /v1/items/{id}``.

Pages come in id order, at most ``limit`` items (and ``ITEMS_PAGE_BYTES`` of JSON) each; a page
that is not the last returns ``next_token``, bound to the tenant like the metrics route's. Any
scope may read; another tenant's items are not there.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.admin.app import lambda_handler as admin_handler
from functions.common import admin_service, page_tokens
from functions.common.auth import NewKey, create_key
from local.lambda_events import FakeLambdaContext, proxy_event, response_json
from tests.functional.conftest import Api

ITEM = "/v1/items/{item_id}"
# Ids in code-point order, which is DynamoDB's byte order of their UTF-8
IDS = sorted([f"sku-{n:03d}" for n in range(30)] + ["Älg", "épée", "书", "🙂 smile", "a b"])


def list_items(key: NewKey, **query: Any) -> tuple[int, Any]:
    event = proxy_event(
        "GET",
        "/v1/items",
        resource="/v1/items",
        headers={"x-api-key": key.api_key},
        query=urlencode(query),
    )
    response = admin_handler(event, FakeLambdaContext())
    return response["statusCode"], response_json(response)


def every_page(key: NewKey, limit: int) -> list[list[str]]:
    """The ids of every page, following ``next_token``."""
    pages: list[list[str]] = []
    token: str | None = None
    while True:
        query: dict[str, Any] = {"limit": limit}
        if token:
            query["next_token"] = token
        status, page = list_items(key, **query)
        assert status == 200, page
        pages.append([item["id"] for item in page["items"]])
        token = page["next_token"]
        if token is None:
            return pages
        assert len(pages) <= len(IDS) + 1, "next_token never ends"


def upsert(api: Api, items: list[dict[str, Any]]) -> None:
    status, answer, _ = api.call(admin_handler, "PUT", "/v1/items", {"items": items})
    assert status == 200, answer


@pytest.fixture
def catalog(aws: dict[str, str], api: Api) -> list[dict[str, Any]]:
    """acme's catalog: the ids of ``IDS``, each with all its fields (embeddings on some)."""
    items = [
        {
            "id": item_id,
            "category": f"c{n % 3}",
            "creator": f"maker-{n % 4}",
            "created_at": 1_700_000_000 + n,
            "features": {"n": n, "tags": ["x", str(n)]},
            **({"embedding": [0.1 * n, -2.5, 3.0]} if n % 5 == 0 else {}),
        }
        for n, item_id in enumerate(IDS)
    ]
    upsert(api, items)
    return items


def test_pages_list_the_catalog_in_id_order_each_once(
    catalog: list[dict[str, Any]], tenant: NewKey
) -> None:
    pages = every_page(tenant, limit=10)
    assert [len(page) for page in pages] == [10, 10, 10, 5]
    assert [item_id for page in pages for item_id in page] == IDS
    # The default page is 100: one page here
    status, whole = list_items(tenant)
    assert status == 200 and whole["next_token"] is None
    assert [item["id"] for item in whole["items"]] == IDS


def test_an_item_reads_back_as_it_was_upserted(
    catalog: list[dict[str, Any]], tenant: NewKey, api: Api
) -> None:
    sent = catalog[5]  # one with an embedding
    status, item, _ = api.call(admin_handler, "GET", f"/v1/items/{sent['id']}", resource=ITEM)
    assert status == 200, item
    assert {k: item[k] for k in sent} == sent
    assert item["updated_at"] > sent["created_at"]
    status, page = list_items(tenant, limit=1000)
    listed = {i["id"]: i for i in page["items"]}
    assert listed[sent["id"]] == item
    assert listed[catalog[1]["id"]]["embedding"] is None
    # Ids beyond ASCII (the path as API Gateway hands it on: percent-decoded)
    status, item, _ = api.call(admin_handler, "GET", "/v1/items/书", resource=ITEM)
    assert (status, item["id"]) == (200, "书")


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(limit=st.integers(min_value=1, max_value=len(IDS) + 3))
def test_any_page_size_reads_every_item_once(
    catalog: list[dict[str, Any]], tenant: NewKey, limit: int
) -> None:
    pages = every_page(tenant, limit)
    assert [item_id for page in pages for item_id in page] == IDS
    assert all(len(page) == limit for page in pages[:-1])
    assert 1 <= len(pages[-1]) <= limit


def test_a_page_stops_before_its_json_grows_too_large(
    aws: dict[str, str], api: Api, tenant: NewKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given items of about 1 KB each, and pages of at most three and a half items' JSON
    text = {f"t{n}": "x" * 250 for n in range(4)}
    upsert(api, [{"id": f"big-{n}", "features": text} for n in range(7)])
    status, one, _ = api.call(admin_handler, "GET", "/v1/items/big-0", resource=ITEM)
    assert status == 200
    size = len(json.dumps(one))
    assert size > 1000
    monkeypatch.setattr(admin_service, "ITEMS_PAGE_BYTES", 3 * size + size // 2)
    # Then pages of 3 items come back, each with a token, and together they hold all 7
    pages = every_page(tenant, limit=100)
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [i for page in pages for i in page] == [f"big-{n}" for n in range(7)]


def test_unknown_or_another_tenants_items_are_not_found(
    catalog: list[dict[str, Any]], api: Api, other_tenant: NewKey
) -> None:
    status, error, _ = api.call(admin_handler, "GET", "/v1/items/no-such", resource=ITEM)
    assert (status, error["error"], error["field"]) == (404, "not_found", "item_id")
    other = Api(other_tenant)
    status, error, _ = other.call(admin_handler, "GET", "/v1/items/sku-001", resource=ITEM)
    assert (status, error["field"]) == (404, "item_id")
    status, page = list_items(other_tenant)
    assert (status, page) == (200, {"items": [], "next_token": None})


def test_any_scope_may_read_the_catalog(catalog: list[dict[str, Any]]) -> None:
    rank_only = create_key("acme", {"rank"})
    status, page = list_items(rank_only, limit=2)
    assert status == 200 and [i["id"] for i in page["items"]] == IDS[:2]
    status, item, _ = Api(rank_only).call(admin_handler, "GET", "/v1/items/sku-001", resource=ITEM)
    assert status == 200 and item["id"] == "sku-001"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"next_token": "!!"}, "next_token"),
        ({"next_token": page_tokens.encode_token("globex", "sku-001")}, "next_token"),
        ({"next_token": page_tokens.encode_token("acme#for-you", "3")}, "next_token"),
        ({"next_token": page_tokens.encode_token("acme", "")}, "next_token"),
        ({"next_token": "A" * 3000}, "next_token"),
    ],
)
def test_a_bad_limit_or_token_is_422_naming_it(
    catalog: list[dict[str, Any]], tenant: NewKey, query: dict[str, Any], field: str
) -> None:
    status, error = list_items(tenant, **query)
    assert (status, error["error"], error["field"]) == (422, "validation_error", field), error


def test_a_token_reads_on_from_where_its_page_ended(
    catalog: list[dict[str, Any]], tenant: NewKey
) -> None:
    status, first = list_items(tenant, limit=4)
    assert status == 200 and first["next_token"]
    # A token of this tenant's own making at any id reads on from just after that id
    status, page = list_items(tenant, limit=2, next_token=page_tokens.encode_token("acme", IDS[9]))
    assert [i["id"] for i in page["items"]] == IDS[10:12]
    status, page = list_items(tenant, limit=3, next_token=first["next_token"])
    assert [i["id"] for i in page["items"]] == IDS[4:7]
