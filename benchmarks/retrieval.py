"""Recommend in process: retrieve a candidate set from a large catalog, then rank it.

``python -m benchmarks.retrieval [--quick]`` builds a catalog index of 100,000 items (5,000
with ``--quick``) with 64-dimension taste and embedding vectors in 50 clusters, and reports:
build time and memory, blob size, load time (in this process, and the RSS a fresh process
grows by loading it), and recommend latency: ``bandit.retrieve.retrieval.retrieve`` (size 100)
then ``Ranker.rank`` of the retrieved set (slate of 10, the for-you policy), over 2,000 requests
(80% of users with a history of 1 to 20 items of one taste cluster, 20% new users; every request
excludes 5 items, one in ten allows 3 categories only). As a baseline in the same run, it times
the nearest-neighbour search against an exact numpy search of the same catalog for the same
queries and counts (and the search's recall against it). Results go to
``benchmarks/results/retrieval.json``; ``python -m benchmarks.performance_doc`` then regenerates
``docs/performance.md`` (``make bench`` runs it as a step and does both).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # via scikit-learn

from bandit.decision_log import LoggedReward
from bandit.domain import Candidate
from bandit.learn.learning import learn_record
from bandit.retrieve.index import CatalogIndex
from bandit.retrieve.retrieval import RetrievalRequest, retrieve
from bandit.serve.ranker import Ranker, RankRequest
from bandit.spec import load_spec
from benchmarks.core_speed import percentiles
from benchmarks.fresh_process import (
    ROOT,
    child_environment,
    child_main,
    current_rss_mb,
    run_child,
)
from benchmarks.machine import describe

ITEMS, QUICK_ITEMS = 100_000, 5_000
REQUESTS, QUICK_REQUESTS = 2_000, 200
WARMUP, QUICK_WARMUP = 300, 30
DIMENSIONS = 64
CLUSTERS = 50
CATEGORIES = 40
SIZE = 100
SLATE = 10
TARGET_P95_MS = 15.0
NOW = 1_750_000_000.0
POLICY = ROOT / "policies" / "for-you.yaml"


def clustered(count: int, rng: np.random.Generator) -> tuple[NDArray[np.float32], NDArray[Any]]:
    """``count`` unit vectors around ``CLUSTERS`` random centres, and each one's cluster."""
    centres = rng.normal(size=(CLUSTERS, DIMENSIONS)).astype(np.float32)
    labels = rng.integers(0, CLUSTERS, count)
    vectors = centres[labels] + 0.5 * rng.normal(size=(count, DIMENSIONS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors, labels


def catalog(count: int, seed: int = 7) -> dict[str, Any]:
    """A synthetic catalog: items, their taste and embedding vectors, popularity scores."""
    rng = np.random.default_rng(seed)
    taste, labels = clustered(count, rng)
    embedding, _ = clustered(count, rng)
    ids = [f"item-{n:06d}" for n in range(count)]
    items = [
        Candidate(
            item_id,
            {"price": round(float(rng.gamma(2.0, 10.0)), 2), "rating": int(rng.integers(1, 6))},
            category=f"cat-{(int(labels[n]) + int(rng.integers(0, 3))) % CATEGORIES}",
            creator=f"creator-{int(rng.integers(0, 2_000))}",
            created_at=NOW - float(rng.exponential(30 * 86_400)),
        )
        for n, item_id in enumerate(ids)
    ]
    return {
        "items": items,
        "labels": labels,
        "taste": taste,
        "vectors": {
            "taste": dict(zip(ids, taste, strict=True)),
            "embedding": dict(zip(ids, embedding, strict=True)),
        },
        "popularity": {i: float(p) for i, p in zip(ids, rng.pareto(1.5, count), strict=True)},
    }


def requests(data: dict[str, Any], count: int, seed: int = 11) -> list[RetrievalRequest]:
    """The request stream (see the module docstring)."""
    rng = np.random.default_rng(seed)
    ids = [item.id for item in data["items"]]
    labels = data["labels"]
    by_cluster = [np.flatnonzero(labels == c) for c in range(CLUSTERS)]
    stream = []
    for _ in range(count):
        history: list[str] = []
        if rng.random() >= 0.2:
            members = by_cluster[int(rng.integers(0, CLUSTERS))]
            picked = rng.choice(members, size=int(rng.integers(1, 21)), replace=False)
            history = [ids[int(n)] for n in picked]
        categories = None
        if rng.random() < 0.1:
            categories = {f"cat-{int(c)}" for c in rng.choice(CATEGORIES, 3, replace=False)}
        exclude = {ids[int(n)] for n in rng.integers(0, len(ids), 5)}
        stream.append(
            RetrievalRequest(
                history_item_ids=history, size=SIZE, categories=categories, exclude=exclude
            )
        )
    return stream


def _ranker(index: CatalogIndex, warmup: int, rng: np.random.Generator) -> Ranker:
    """The for-you policy at slates of 10, trained on ``warmup`` events over retrieved sets."""
    spec = load_spec(POLICY)
    ranker = Ranker(spec, clock=lambda: NOW)
    for n in range(warmup):
        got = retrieve(index, RetrievalRequest(size=SIZE, exclude={index.items.ids[n]}))
        result = ranker.rank(
            RankRequest(f"w{n}", _context(n), got.candidates, f"u{n % 50}", slate_size=SLATE)
        )
        rewards = [
            LoggedReward(item_id=slot.item_id, type="click", timestamp=NOW + 1)
            for slot in result.slots
            if rng.random() < 0.1
        ]
        record = result.record(spec, 0).model_copy(update={"rewards": rewards})
        learn_record(ranker.model, record, spec)
    return ranker


def _context(n: int) -> dict[str, Any]:
    return {"device": ("phone", "tablet", "desktop")[n % 3], "hour": n % 24}


def recommend_latency(
    index: CatalogIndex, stream: Sequence[RetrievalRequest], warmup: int
) -> dict[str, Any]:
    """Retrieve then rank every request of ``stream``; percentiles of each part and the sum."""
    rng = np.random.default_rng(5)
    ranker = _ranker(index, warmup, rng)
    retrieving: list[float] = []
    ranking: list[float] = []
    cpu: list[float] = []
    sizes: list[int] = []
    sources: dict[str, int] = {}
    for n, request in enumerate(stream):
        started, cpu_started = time.perf_counter(), time.process_time()
        got = retrieve(index, request)
        retrieved = time.perf_counter()
        ranker.rank(
            RankRequest(f"r{n}", _context(n), got.candidates, f"u{n % 500}", slate_size=SLATE)
        )
        ranking.append(time.perf_counter() - retrieved)
        retrieving.append(retrieved - started)
        cpu.append(time.process_time() - cpu_started)
        sizes.append(len(got.candidates))
        for source, count in got.counts().items():
            sources[source] = sources.get(source, 0) + count
    total = [a + b for a, b in zip(retrieving, ranking, strict=True)]
    return {
        "requests": len(stream),
        "size": SIZE,
        "slate": SLATE,
        "retrieved_min": min(sizes),
        "retrieve": percentiles(retrieving),
        "rank": percentiles(ranking),
        "total": percentiles(total),
        "total_cpu": percentiles(cpu),
        "sources": {k: v / len(stream) for k, v in sorted(sources.items())},
    }


def search_baseline(
    index: CatalogIndex, data: dict[str, Any], stream: Sequence[RetrievalRequest]
) -> dict[str, Any]:
    """The taste space's search against an exact numpy search, same queries, ``SIZE`` hits.

    The numpy search runs with BLAS on one thread (as on a one-vCPU Lambda): its threads cost
    more than they save on a matrix-vector product when the machine is busy.
    """
    space = index.spaces["taste"]
    matrix: NDArray[np.float32] = data["taste"]
    queries = [
        matrix[[index.positions[i] for i in r.history_item_ids]].mean(axis=0)
        for r in stream
        if r.history_item_ids
    ]
    queries = [q / np.linalg.norm(q) for q in queries]
    ann: list[float] = []
    exact: list[float] = []
    recall10: list[float] = []
    recall100: list[float] = []
    for query in queries:
        started = time.perf_counter()
        found = space.search(query, SIZE)
        ann.append(time.perf_counter() - started)
        with threadpool_limits(1):
            started = time.perf_counter()
            scores = matrix @ query
            top = np.argpartition(-scores, SIZE)[:SIZE]
            top = top[np.argsort(-scores[top])]
            exact.append(time.perf_counter() - started)
        recall10.append(len(set(found[:10].tolist()) & set(top[:10].tolist())) / 10)
        recall100.append(len(set(found.tolist()) & set(top.tolist())) / SIZE)
    return {
        "queries": len(queries),
        "count": SIZE,
        "ann": percentiles(ann),
        "numpy_exact": percentiles(exact),
        "recall_at_10": float(np.mean(recall10)),
        "recall_at_100": float(np.mean(recall100)),
    }


def _load_child(args: list[str]) -> dict[str, Any]:
    """In a fresh interpreter: RSS after import, after reading the blob, after loading it."""
    imported = current_rss_mb()
    blob = Path(args[0]).read_bytes()
    read = current_rss_mb()
    started = time.perf_counter()
    index = CatalogIndex.from_bytes(blob)
    seconds = time.perf_counter() - started
    del blob
    gc.collect()
    return {
        "items": len(index),
        "load_s": seconds,
        "rss_mb": {"imported": imported, "blob_read": read, "loaded": current_rss_mb()},
    }


def retrieval_bench(quick: bool, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every figure of the module docstring, as one JSON-encodable dict."""
    note = progress or (lambda _: None)
    count = QUICK_ITEMS if quick else ITEMS
    data = catalog(count)
    note(f"building the index of {count:,} items x {DIMENSIONS} dims, 2 vector spaces")
    before = current_rss_mb()
    started = time.perf_counter()
    index = CatalogIndex.build(
        data["items"], vectors=data["vectors"], popularity=data["popularity"]
    )
    build_s = time.perf_counter() - started
    build_rss = current_rss_mb() - before
    blob = index.to_bytes()
    loads = []
    for _ in range(3):
        started = time.perf_counter()
        loaded = CatalogIndex.from_bytes(blob)
        loads.append(time.perf_counter() - started)
    with tempfile.TemporaryDirectory(prefix="serendip-bench-") as directory:
        path = Path(directory) / "catalog.idx"
        path.write_bytes(blob)
        fresh, _ = run_child("benchmarks.retrieval", "load", [str(path)], child_environment())
    stream = requests(data, QUICK_REQUESTS if quick else REQUESTS)
    note(f"recommend: {len(stream):,} requests, retrieve {SIZE} then rank a slate of {SLATE}")
    latency = recommend_latency(loaded, stream, QUICK_WARMUP if quick else WARMUP)
    baseline = search_baseline(loaded, data, stream)
    rss = fresh["rss_mb"]
    return {
        "items": count,
        "dimensions": DIMENSIONS,
        "clusters": CLUSTERS,
        "spaces": sorted(index.spaces),
        "build_s": build_s,
        "build_rss_growth_mb": build_rss,
        "index_bytes": len(blob),
        "load_s": float(np.median(loads)),
        "fresh_process": {
            "load_s": fresh["load_s"],
            "rss_growth_mb": rss["loaded"] - rss["imported"],
            "rss_mb": rss,
        },
        "recommend": latency,
        "search": baseline,
        "target_p95_ms": TARGET_P95_MS,
    }


def _ms(value: float) -> str:
    return f"{value:.0f} ms" if value >= 100 else f"{value:#.3g} ms"


def _row(label: str, row: dict[str, float]) -> str:
    return f"| {label} | {_ms(row['p50_ms'])} | {_ms(row['p95_ms'])} | {_ms(row['p99_ms'])} |"


def markdown(result: dict[str, Any]) -> list[str]:
    """The section of docs/performance.md."""
    rec, search, fresh = result["recommend"], result["search"], result["fresh_process"]
    p95 = rec["total"]["p95_ms"]
    verdict = "met" if p95 <= result["target_p95_ms"] else "NOT met"
    ratio = search["numpy_exact"]["p50_ms"] / search["ann"]["p50_ms"]
    mix = ", ".join(f"{name} {share:.1f}" for name, share in rec["sources"].items())
    return [
        "## Recommend: retrieval from the catalog, then rank",
        "",
        f"`bandit.retrieve` over a catalog of {result['items']:,} items with "
        f"{result['dimensions']}-dimension vectors in {result['clusters']} clusters, in "
        f"{len(result['spaces'])} vector spaces ({', '.join(result['spaces'])}; faiss HNSW, "
        f"half-precision vectors). Built in {result['build_s']:.1f} s (RSS +"
        f"{result['build_rss_growth_mb']:.0f} MB); the blob is "
        f"{result['index_bytes'] / 1e6:.1f} MB and loads in {result['load_s'] * 1e3:.0f} ms in "
        f"process; a fresh process grows by {fresh['rss_growth_mb']:.0f} MB loading it "
        f"({fresh['load_s'] * 1e3:.0f} ms).",
        "",
        f"Recommend in process: retrieve {rec['size']} candidates, then `Ranker.rank` a slate "
        f"of {rec['slate']} with the for-you policy, {rec['requests']:,} requests (a fifth "
        f"from new users; every request excludes items, a tenth allows 3 categories only). "
        f"Target p95 <= {result['target_p95_ms']:g} ms: **{_ms(p95)}, {verdict}**. "
        f"Candidates per request by source: {mix}.",
        "",
        "| part | p50 | p95 | p99 |",
        "|---|---|---|---|",
        _row("retrieve (size 100)", rec["retrieve"]),
        _row("rank (slate of 10)", rec["rank"]),
        _row("recommend (both)", rec["total"]),
        _row("recommend, CPU time of the process", rec["total_cpu"]),
        "",
        f"Nearest-neighbour search of {search['count']} hits against an exact numpy search "
        f"(matrix product with BLAS on one thread + partial sort) of the same catalog, "
        f"{search['queries']:,} queries: "
        f"exact / HNSW p50 = {ratio:.1f}x; HNSW recall@10 {search['recall_at_10']:.3f}, "
        f"recall@100 {search['recall_at_100']:.3f}.",
        "",
        "| search | p50 | p95 | p99 |",
        "|---|---|---|---|",
        _row("HNSW (faiss)", search["ann"]),
        _row("exact (numpy)", search["numpy_exact"]),
        "",
        "Command: `.venv/bin/python -m benchmarks.retrieval && .venv/bin/python -m "
        "benchmarks.performance_doc` (a step of `make bench`).",
    ]


CHILD_MODES = {"load": _load_child}


def main(argv: list[str] | None = None) -> int:
    """``--quick`` for the small catalog; ``load OUT BLOB`` is the fresh-process child."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in CHILD_MODES:
        return child_main(CHILD_MODES, argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.retrieval", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a 5,000-item catalog")
    args = parser.parse_args(argv)
    result = retrieval_bench(args.quick, progress=lambda m: print(m, file=sys.stderr))
    payload = {"machine": describe(), "command": "python -m benchmarks.retrieval", **result}
    (ROOT / "benchmarks" / "results" / "retrieval.json").write_text(
        json.dumps(payload, indent=2) + "\n"
    )
    print("\n".join(markdown(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
