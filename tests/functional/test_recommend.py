"""Recommend from the catalog through the real handlers: index build, retrieval, exact slates."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import boto3
import numpy as np
import pytest
from scipy.stats import chi2 as chi2_distribution

from bandit.evaluate.slot_draws import slot_probabilities
from bandit.serve.ranker import Ranker
from bandit.spec import parse_spec
from functions.admin.app import lambda_handler as admin_handler
from functions.common import decision_store, index_builder, index_store, policy_store
from functions.common.errors import StorageError
from functions.common.settings import reset_settings
from functions.index.app import lambda_handler as index_handler
from functions.rank.app import lambda_handler as rank_handler
from functions.rank.app import service
from functions.rewards.app import lambda_handler as rewards_handler
from local.lambda_events import FakeLambdaContext
from tests.functional.conftest import Api
from tests.functional.test_learning_loop import deliver

RECOMMEND = "/v1/policies/{policy}/recommend"
CATEGORIES = ("jazz", "rock", "folk", "soul")


def items(count: int = 40, dims: int = 4) -> list[dict[str, Any]]:
    """A catalog in four categories, each item with an embedding near its category's axis."""
    out = []
    for n in range(count):
        category = CATEGORIES[n % 4]
        embedding = [0.1] * dims
        embedding[n % 4] = 1.0
        out.append(
            {
                "id": f"song-{n:02d}",
                "category": category,
                "creator": f"band-{n % 5}",
                "features": {"tempo": n % 7},
                "created_at": 1_700_000_000 + n,
                "embedding": embedding,
            }
        )
    return out


def upsert(api: Api, catalog: list[dict[str, Any]]) -> None:
    status, payload, _ = api.call(admin_handler, "PUT", "/v1/items", {"items": catalog})
    assert status == 200, payload


def build() -> dict[str, Any]:
    return dict(index_handler({}, FakeLambdaContext(timeout_ms=900_000)))


def recommend(api: Api, body: dict[str, Any], policy: str = "for-you") -> tuple[int, Any, dict]:
    return api.call(
        rank_handler, "POST", f"/v1/policies/{policy}/recommend", body, resource=RECOMMEND
    )


def test_before_the_first_build_recommend_answers_503_with_retry_after(
    aws: dict[str, str], api: Api
) -> None:
    status, payload, headers = recommend(api, {"user_id": "u-1"})
    assert status == 503
    assert payload["error"] == "index_not_built"
    assert headers.get("Retry-After") == "60"


def test_recommend_retrieves_from_the_catalog_and_logs_an_exact_slate(
    aws: dict[str, str], api: Api
) -> None:
    # Given a catalog of 40 items with embeddings, indexed
    upsert(api, items())
    report = build()
    assert report["built"] == ["acme"], report
    # When a new user asks for recommendations with no candidates
    status, answer, _ = recommend(api, {"user_id": "u-new", "context": {"device": "ios"}})
    # Then a slate comes back from the catalog, each slot with its source and probability
    assert status == 200, answer
    assert len(answer["slate"]) == 5
    assert answer["retrieval"]["candidates"] == 40  # a small catalog: all of it fits
    assert {s["source"] for s in answer["slate"]} <= {"coverage", "new", "popular"}
    record = decision_store.get("acme", answer["event_id"]).record
    assert record.retrieval is not None
    assert record.retrieval.index_version == answer["retrieval"]["index_version"]
    assert len(record.retrieval.sources) == len(record.candidates) == 40
    # And the logged probabilities are exact given the retrieved set
    stored = policy_store.get("acme", "for-you")
    ranker = Ranker(stored.spec, service().models.get("acme", "for-you", stored.spec, 0)[0].model)
    logged = [s.probability for s in record.slate]
    assert slot_probabilities(ranker, record) == pytest.approx(logged, abs=1e-9)


def test_filters_and_exclusions_hold_on_every_slot(aws: dict[str, str], api: Api) -> None:
    upsert(api, items())
    build()
    body = {
        "user_id": "u-2",
        "filters": {"categories": ["jazz", "rock"], "exclude_categories": ["rock"]},
        "exclude": ["song-00", "song-04"],
        "size": 7,
    }
    for _ in range(20):
        status, answer, _ = recommend(api, body)
        assert status == 200, answer
        record = decision_store.get("acme", answer["event_id"]).record
        categories = {c.category for c in record.candidates}
        ids = {c.id for c in record.candidates}
        assert categories == {"jazz"}
        assert not ids & {"song-00", "song-04"}
        assert len(record.candidates) == 7
    # Filters nothing passes: 422 naming filters, nothing logged
    status, payload, _ = recommend(api, {"filters": {"categories": ["polka"]}})
    assert status == 422
    assert payload["field"] == "filters"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"size": 0}, "size"),
        ({"size": 501}, "size"),
        ({"filters": {"categories": []}}, "filters.categories"),
        ({"candidates": ["song-01"]}, "candidates"),
        ({"exclude": ["x" * 257]}, "exclude[0]"),
    ],
)
def test_bad_requests_get_422_naming_the_field(
    aws: dict[str, str], api: Api, body: dict[str, Any], field: str
) -> None:
    upsert(api, items(8))
    build()
    status, payload, _ = recommend(api, body)
    assert status == 422, payload
    assert payload["field"] == field


def test_bad_embeddings_are_refused_at_upsert(aws: dict[str, str], api: Api) -> None:
    bad = items(2)
    bad[1]["embedding"] = [float("nan"), 1.0]
    status, payload, _ = api.call(
        admin_handler, "PUT", "/v1/items", json.dumps({"items": bad}).replace("NaN", "1e400")
    )
    assert status == 422
    assert payload["field"].startswith("items[1].embedding")


def test_rewarded_taste_reaches_similar_retrieval_and_collaborative_affinities(
    aws: dict[str, str], api: Api
) -> None:
    # Given a catalog, and a policy with collaborative on
    upsert(api, items())
    spec = policy_store.get("acme", "for-you").spec
    collaborative = spec.collaborative.model_copy(update={"enabled": True})
    policy_store.put("acme", spec.model_copy(update={"collaborative": collaborative}))
    build()
    # And users whose rewards are all jazz (songs 0, 4, 8, ...) or all rock
    for user in range(12):
        liked = CATEGORIES[user % 2]
        status, answer, _ = recommend(
            api, {"user_id": f"fan-{user}", "filters": {"categories": [liked]}, "size": 10}
        )
        assert status == 200, answer
        rewards = [
            {"event_id": answer["event_id"], "item_id": s["id"], "type": "click"}
            for s in answer["slate"]
        ]
        status, _, _ = api.call(
            rewards_handler,
            "POST",
            "/v1/rewards",
            json.dumps({"rewards": [*rewards[:-1], {**rewards[-1], "final": True}]}),
            sign_body=True,
        )
        assert status == 202
    assert deliver(aws)["failures"] == []
    # When the index is rebuilt from their rewards
    report = build()
    assert report["built"] == ["acme"], report
    head = index_store.head("acme")
    assert head is not None and head.users == 12
    service().indexes = index_store.IndexCache()  # a fresh container
    # Then a jazz fan's recommendations come mostly from jazz, through the taste space
    status, answer, _ = recommend(api, {"user_id": "fan-0", "size": 12})
    assert status == 200, answer
    record = decision_store.get("acme", answer["event_id"]).record
    assert record.retrieval is not None
    sources = Counter(record.retrieval.sources)
    assert sources["similar"] > 0
    similar = [
        c.category
        for c, s in zip(record.candidates, record.retrieval.sources, strict=True)
        if s == "similar"
    ]
    assert Counter(similar).most_common(1)[0][0] == "jazz"
    # And the decision logged every candidate's affinity, jazz above rock
    assert record.affinities is not None and len(record.affinities) == len(record.candidates)
    by_category: dict[str, list[float]] = {}
    for candidate, value in zip(record.candidates, record.affinities, strict=True):
        if value is not None:
            by_category.setdefault(str(candidate.category), []).append(value)
    assert np.mean(by_category["jazz"]) > np.mean(by_category.get("rock", [-1.0])) + 0.2


def test_an_unchanged_tenant_is_not_rebuilt(aws: dict[str, str], api: Api) -> None:
    upsert(api, items(10))
    assert build()["built"] == ["acme"]
    first = index_store.head("acme")
    assert build()["unchanged"] == ["acme"]
    assert index_store.head("acme") == first
    upsert(api, items(11))
    assert build()["built"] == ["acme"]
    second = index_store.head("acme")
    assert first is not None and second is not None and second.version > first.version
    assert second.items == 11


def test_the_first_slot_frequencies_match_the_logged_probabilities(
    aws: dict[str, str], api: Api
) -> None:
    # Given a policy that explores every slot (so each call draws from one fixed distribution)
    spec = parse_spec(
        {
            "name": "wide",
            "slate_size": 2,
            "exploration": {"budget": 1.0},
            "cold_start": {
                "new_item": {"boost": 3.0, "max_age_hours": 48, "max_impressions": None}
            },
        }
    )
    policy_store.put("acme", spec)
    # And a catalog of 8 where half the items are new (boosted 3x in exploratory draws)
    catalog = items(8)
    for item in catalog[:4]:
        item["created_at"] = time.time() - 3600
    upsert(api, catalog)
    index_builder.build_all(lambda: 600.0)
    draws = 600
    counts: Counter[str] = Counter()
    probability: dict[str, float] = {}
    for _ in range(draws):
        status, answer, _ = recommend(api, {"size": 8}, policy="wide")
        assert status == 200, answer
        first = answer["slate"][0]
        counts[first["id"]] += 1
        previous = probability.setdefault(first["id"], first["probability"])
        assert first["probability"] == pytest.approx(previous, abs=1e-12)
    # Then the logged probabilities of the items seen first sum to about 1, new items 3x old
    assert sum(probability.values()) == pytest.approx(1.0, abs=1e-9)
    assert probability["song-00"] == pytest.approx(3 * probability["song-07"], rel=1e-9)
    # And the frequencies pass a chi-square test against them (p > 0.001)
    statistic = sum((counts[i] - draws * p) ** 2 / (draws * p) for i, p in probability.items())
    assert chi2_distribution.sf(statistic, len(probability) - 1) > 0.001


def test_a_corrupt_build_is_refused_and_the_last_good_one_keeps_serving(
    aws: dict[str, str], api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a container that loaded a good build
    upsert(api, items(6))
    build()
    cache = index_store.IndexCache()
    good = cache.get("acme")
    assert good is not None and len(good.catalog) == 6
    # When a newer build's catalog object is corrupted after its head moved
    upsert(api, items(7))
    build()
    head = index_store.head("acme")
    assert head is not None and head.version > good.head.version
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.put_object(Bucket=aws["MODEL_BUCKET"], Key=head.catalog_key, Body=b"not an index")
    monkeypatch.setenv("INDEX_CACHE_SECONDS", "0")
    reset_settings()
    # Then loading it fails its checksum, and the container keeps the good build
    with pytest.raises(StorageError, match="checksum"):
        index_store.load(head)
    assert cache.get("acme") is good
    # And a fresh container, with nothing to fall back on, gets the error (a 503 on recommend)
    with pytest.raises(StorageError):
        index_store.IndexCache().get("acme")


def test_tenants_that_do_not_fit_in_the_time_left_wait_for_the_next_run(
    aws: dict[str, str], api: Api
) -> None:
    upsert(api, items(4))
    report = index_builder.build_all(lambda: index_builder.START_SECONDS - 1.0)
    assert report.postponed == ["acme"] and report.built == []
    assert index_store.head("acme") is None


def test_embeddings_of_another_size_are_left_out_and_one_bad_tenant_stops_no_other(
    aws: dict[str, str], api: Api, other_tenant: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a catalog where most items have 4-number embeddings and two have 3 or 2
    catalog = items(10)
    catalog[3]["embedding"] = [1.0, 0.0, 0.0]
    catalog[7]["embedding"] = [0.5, 0.5]
    upsert(api, catalog)
    # When the index is built
    assert "acme" in build()["built"]
    # Then the embedding space holds the 8 items of the common size
    stored = index_store.load(index_store.head("acme"))  # type: ignore[arg-type]
    assert len(stored.catalog.spaces["embedding"]) == 8
    # And a tenant whose build fails is reported while the others still build
    real = index_builder.build_tenant

    def failing(tenant: str, *args: Any) -> bool:
        if tenant == "acme":
            raise ValueError("bad data")
        return real(tenant, *args)

    monkeypatch.setattr(index_builder, "build_tenant", failing)
    report = build()
    assert report["failed"] == ["acme"]
    assert "globex" in report["built"] + report["unchanged"]
