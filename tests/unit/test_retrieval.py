"""``bandit.retrieve``: the catalog index, its byte format and the retrieval sources."""

from __future__ import annotations

import subprocess
import sys
from functools import cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bandit.domain import Candidate
from bandit.errors import FieldError
from bandit.retrieve.blob import MAGIC, CatalogIndexError
from bandit.retrieve.index import CatalogIndex
from bandit.retrieve.retrieval import RetrievalRequest, Retrieved, retrieve
from bandit.retrieve.settings import RetrievalSpec, Source, SourceQuotas
from bandit.retrieve.vectors import VectorSpace
from bandit.serve.ranker import Ranker, RankRequest
from bandit.spec import PolicySpec

CATEGORIES = 8
CLUSTERS = 16


def clustered(items: int, dims: int, clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around ``clusters`` random centres, and each vector's cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dims))
    labels = rng.integers(0, clusters, items)
    vectors = centres[labels] + 0.45 * rng.normal(size=(items, dims))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32), labels


def catalog(items: int = 600, seed: int = 3) -> tuple[list[Candidate], CatalogIndex, np.ndarray]:
    """A catalog whose categories hint at the taste clusters, with both vector spaces."""
    taste, labels = clustered(items, 16, CLUSTERS, seed)
    embedding, _ = clustered(items, 8, CLUSTERS, seed + 1)
    rng = np.random.default_rng(seed)
    candidates = [
        Candidate(
            f"item-{n:04d}",
            {"price": float(n % 7), "tags": ["a", "b"][: n % 3]},
            category=f"cat-{labels[n] % CATEGORIES}" if n % 11 else None,
            creator=f"maker-{n % 5}",
            created_at=1_700_000_000.0 + float(rng.integers(0, 10**6)),
        )
        for n in range(items)
    ]
    ids = [c.id for c in candidates]
    index = CatalogIndex.build(
        candidates,
        vectors={
            "taste": dict(zip(ids, taste.tolist(), strict=True)),
            "embedding": dict(zip(ids, embedding.tolist(), strict=True)),
        },
        popularity={i: float(rng.random()) for i in ids[::2]},
        threads=1,
    )
    return candidates, index, labels


@cache
def shared_catalog() -> tuple[list[Candidate], CatalogIndex, np.ndarray]:
    return catalog()


def allowed(candidate: Candidate, request: RetrievalRequest) -> bool:
    if request.categories is not None and candidate.category not in request.categories:
        return False
    return candidate.category not in request.exclude_categories and candidate.id not in {
        *request.exclude,
        *request.history_item_ids,
    }


ids_strategy = st.lists(st.integers(0, 599).map(lambda n: f"item-{n:04d}"), max_size=30)
category_names = st.sampled_from([f"cat-{n}" for n in range(CATEGORIES)])
requests = st.builds(
    RetrievalRequest,
    history_item_ids=ids_strategy,
    size=st.integers(1, 120),
    categories=st.none() | st.sets(category_names, max_size=4),
    exclude_categories=st.sets(category_names, max_size=3),
    exclude=st.sets(st.integers(0, 599).map(lambda n: f"item-{n:04d}"), max_size=200),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests)
def test_retrieval_honours_filters_size_dedup_and_is_deterministic(
    request: RetrievalRequest,
) -> None:
    # Given a catalog and any request
    candidates, index, _ = shared_catalog()
    # When it is retrieved twice
    got = retrieve(index, request)
    again = retrieve(index, request)
    # Then filters and exclusions hold for every source, nothing repeats, size is met when the
    # catalog allows, and the same request gives the same ordered set
    assert all(allowed(c, request) for c in got.candidates)
    assert len(set(got.item_ids)) == len(got.item_ids) == len(got.sources)
    eligible = sum(allowed(c, request) for c in candidates)
    assert len(got.candidates) == min(request.size or 100, eligible)
    assert got == again
    by_id = {c.id: c for c in candidates}
    assert all(by_id[c.id] == c for c in got.candidates)


def test_ann_recall_at_10_against_brute_force_on_clustered_data() -> None:
    # Given 5,000 clustered vectors in 32 dimensions and 200 queries near the clusters
    vectors, _ = clustered(5_000, 32, 25, seed=11)
    queries, _ = clustered(200, 32, 25, seed=11)
    space = VectorSpace.build(np.arange(5_000), vectors, threads=1)
    # When each query's 10 nearest are searched
    found = [set(space.search(q, 10).tolist()) for q in queries]
    # Then at least 90% of the exact (numpy) top 10 are found
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    recall = np.mean([len(f & set(e.tolist())) / 10 for f, e in zip(found, exact, strict=True)])
    assert recall >= 0.9, recall


def test_similar_items_come_from_the_cluster_of_the_history() -> None:
    # Given a user whose history is five items of one taste cluster
    candidates, index, labels = shared_catalog()
    cluster = int(labels[0])
    history = [c.id for c, label in zip(candidates, labels, strict=True) if label == cluster][:5]
    # When retrieved
    got = retrieve(index, RetrievalRequest(history_item_ids=history, size=40))
    # Then the similar source's items are nearly all of that cluster
    position = {c.id: n for n, c in enumerate(candidates)}
    similar = [
        c.id for c, s in zip(got.candidates, got.sources, strict=True) if s is Source.SIMILAR
    ]
    share = np.mean([labels[position[i]] == cluster for i in similar])
    assert len(similar) == 16 and share >= 0.9, (len(similar), share)


def test_a_user_with_history_gets_each_source_its_quota() -> None:
    # Given a user with history on a catalog with taste and embedding vectors
    candidates, index, _ = shared_catalog()
    history = [c.id for c in candidates[:10]]
    # When 100 candidates are retrieved with the default quotas
    got = retrieve(index, RetrievalRequest(history_item_ids=history))
    # Then every source gives its share
    assert got.counts() == {
        "similar": 40,
        "embedding": 20,
        "coverage": 10,
        "new": 10,
        "popular": 20,
    }
    assert not set(history) & set(got.item_ids)


def test_a_new_user_on_a_new_catalog_falls_back_to_coverage_new_and_popular() -> None:
    # Given a catalog with no vectors and no popularity, and a user with no history
    items = [Candidate(f"n{k:02d}", category=f"c{k % 4}", created_at=float(k)) for k in range(50)]
    index = CatalogIndex.build(items)
    # When 20 candidates are retrieved
    got = retrieve(index, RetrievalRequest(size=20))
    # Then the personal sources' places fall to coverage, new and popular: 20 all the same
    assert len(got.candidates) == 20
    assert got.counts() == {"coverage": 5, "new": 5, "popular": 10}
    # coverage: each category's best (ties go to the newest), round robin
    assert got.item_ids[:5] == ["n49", "n48", "n47", "n46", "n45"]
    assert got.item_ids[5:10] == ["n44", "n43", "n42", "n41", "n40"]
    # And a catalog smaller than the size gives all it has; an empty one gives nothing
    assert len(retrieve(index, RetrievalRequest(size=80)).candidates) == 50
    assert retrieve(CatalogIndex.build([]), RetrievalRequest()).candidates == ()


def test_the_user_vector_queries_the_taste_space() -> None:
    # Given a user vector pointing at one item's taste
    _candidates, index, _ = shared_catalog()
    target = index.spaces["taste"].vectors([index.positions["item-0007"]])[0]
    # When retrieved with it and no history
    got = retrieve(index, RetrievalRequest(user_vector=target.tolist(), size=10))
    # Then that item comes first, from the similar source
    assert got.item_ids[0] == "item-0007" and got.sources[0] is Source.SIMILAR
    with pytest.raises(FieldError, match="user_vector"):
        retrieve(index, RetrievalRequest(user_vector=[1.0, 2.0]))


def test_the_round_trip_through_bytes_gives_identical_retrieval() -> None:
    # Given an index and its blob
    candidates, index, _ = shared_catalog()
    blob = index.to_bytes()
    # When loaded from the bytes
    loaded = CatalogIndex.from_bytes(blob)
    # Then every request retrieves the very same candidates from the very same sources
    for n in range(0, 600, 37):
        request = RetrievalRequest(
            history_item_ids=[c.id for c in candidates[n : n + 6]],
            exclude={candidates[(n + 50) % 600].id},
            exclude_categories={"cat-3"},
            size=150,
        )
        assert retrieve(loaded, request) == retrieve(index, request)
    assert loaded.to_bytes() == blob


def test_a_blob_of_another_format_version_or_corrupted_is_refused() -> None:
    blob = bytearray(CatalogIndex.build([Candidate("a")]).to_bytes())
    other = bytearray(blob)
    other[len(MAGIC)] = 2
    with pytest.raises(CatalogIndexError, match="format version 2 is not supported"):
        CatalogIndex.from_bytes(bytes(other))
    corrupt = bytearray(blob)
    corrupt[-1] ^= 0xFF
    with pytest.raises(CatalogIndexError, match="checksum"):
        CatalogIndex.from_bytes(bytes(corrupt))
    with pytest.raises(CatalogIndexError, match="not a catalog index"):
        CatalogIndex.from_bytes(b"SERENDIP-VW1\n...")


def test_bad_catalogs_requests_and_settings_fail_naming_the_field() -> None:
    with pytest.raises(FieldError, match="duplicate item id 'a'"):
        CatalogIndex.build([Candidate("a"), Candidate("a")])
    with pytest.raises(FieldError, match=r"vectors\.taste: vectors must be finite"):
        CatalogIndex.build([Candidate("a")], vectors={"taste": {"a": [float("nan")]}})
    with pytest.raises(FieldError, match="one length"):
        CatalogIndex.build(
            [Candidate("a"), Candidate("b")], vectors={"taste": {"a": [1.0], "b": [1.0, 2.0]}}
        )
    index = CatalogIndex.build([Candidate("a")])
    with pytest.raises(FieldError, match="size"):
        retrieve(index, RetrievalRequest(size=501))
    with pytest.raises(FieldError, match="history_weights"):
        retrieve(index, RetrievalRequest(history_item_ids=["a"], history_weights=[1.0, 2.0]))
    with pytest.raises(ValidationError, match="shares must sum to 1"):
        SourceQuotas(similar=0.9)
    with pytest.raises(ValidationError, match="size"):
        RetrievalSpec(size=0)
    with pytest.raises(ValidationError, match="extra"):
        RetrievalSpec.model_validate({"sise": 10})


def test_filters_reach_into_the_nearest_neighbour_search() -> None:
    # Given a history of one cluster and an allow-list of a single category
    candidates, index, labels = shared_catalog()
    history = [c.id for c, label in zip(candidates, labels, strict=True) if label == 2][:5]
    request = RetrievalRequest(history_item_ids=history, categories={"cat-5"}, size=30)
    # When retrieved
    got = retrieve(index, request)
    # Then only that category comes back, and the searches widened to still find some
    assert {c.category for c in got.candidates} == {"cat-5"}
    assert len(got.candidates) == 30


def test_the_retrieved_set_ranks_with_the_policy() -> None:
    # Given a retrieved set
    _, index, _ = shared_catalog()
    got: Retrieved = retrieve(index, RetrievalRequest(size=50))
    # When the ranker ranks it
    ranker = Ranker(PolicySpec(name="recommend", slate_size=10), clock=lambda: 1.7e9)
    result = ranker.rank(RankRequest("evt-1", {"device": "phone"}, got.candidates))
    # Then the slate is drawn from the set with exact probabilities
    assert len(result.slots) == 10
    assert {s.item_id for s in result.slots} <= set(got.item_ids)
    assert all(0 < s.probability <= 1 for s in result.slots)


def test_the_index_library_leaves_vowpal_wabbit_working_whatever_loads_first() -> None:
    # A library that links its own C++ runtime can break VW's argument parsing when it is
    # loaded first ("Failed to convert 0.1"); recommend loads both in one process.
    script = (
        "import bandit.retrieve.vectors\n"
        "from bandit.serve.vw import VWModel\n"
        "model = VWModel(['--cb_type', 'dm', '--learning_rate', '0.1'])\n"
        "model.learn('shared |C a=1', ['|I id=x', '|I id=y'], chosen=0, reward=1.0, "
        "probability=0.5)\n"
        "print(len(model.score('shared |C a=1', ['|I id=x', '|I id=y'])))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"


def test_a_filtered_search_returns_the_exact_best_of_the_allowed_items() -> None:
    # Given a space and a filter that allows about a tenth of the items
    vectors, _ = clustered(3_000, 16, 10, seed=5)
    space = VectorSpace.build(np.arange(3_000), vectors, threads=1)
    allowed = np.arange(3_000) % 10 == 3
    query = vectors[17]
    # When searched for 25 hits within the filter
    found = space.search(query, 25, allowed)
    # Then they are the 25 best allowed items, best first (as numpy finds them)
    stored = space.vectors(list(range(3_000)))
    scores = np.where(allowed, stored @ query, -np.inf)
    assert found.tolist() == np.argsort(-scores, kind="stable")[:25].tolist()
    assert space.search(query, 25, np.zeros(3_000, dtype=bool)).tolist() == []
