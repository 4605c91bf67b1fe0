"""The catalog index builder: taste factors and catalog indexes, off the rank path.

On a schedule (``IndexFunction``) it scans every user's rewarded items once (all tenants),
then for every tenant with a catalog or rewarded users: fits the tenant's taste factors
(``bandit.learn.taste_factors``, over ``TASTE_KINDS`` in ``TASTE_DIMS``), reads the catalog,
and builds the catalog index (``bandit.retrieve``): a ``taste`` space of the items' taste
vectors, an ``embedding`` space of the vectors items were upserted with, and popularity as the
number of users whose recent rewards hold the item. The build is saved to S3
(``functions.common.index_store``), where rank and recommend load it per container.

A tenant whose inputs did not change since its last build (same rewarded histories, same
catalog) is skipped. Tenants are built in id order while time allows; the rest wait for the
next run, and the report says so.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from bandit.errors import SerendipError
from bandit.learn.history import Rewarded
from bandit.learn.taste_factors import fit
from bandit.retrieve.index import CatalogIndex
from functions.common import catalog, index_store, policy_store, users
from functions.common.errors import StorageError
from functions.common.observability import logger, metrics
from functions.common.settings import settings

TASTE_SPACE = "taste"
EMBEDDING_SPACE = "embedding"
# Seconds a tenant's build must have left to start (reading, fitting and indexing 100,000
# items takes well under this on one Lambda core; see docs/performance.md).
START_SECONDS = 60.0


@dataclass
class BuildReport:
    """What one run of the builder did."""

    tenants: int = 0
    built: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    postponed: list[str] = field(default_factory=list)
    seconds: float = 0.0


def build_all(remaining: Callable[[], float], tenants: Sequence[str] | None = None) -> BuildReport:
    """Build every tenant's index (or only ``tenants``) while ``remaining()`` seconds allow."""
    started = time.perf_counter()
    report = BuildReport()
    histories = users.histories(lambda: remaining() - START_SECONDS / 2)
    names = sorted(set(tenants) if tenants is not None else set(histories) | _policy_tenants())
    report.tenants = len(names)
    for name in names:
        if remaining() < START_SECONDS:
            report.postponed.append(name)
            continue
        try:
            outcome = build_tenant(name, histories.get(name, []), remaining)
        except StorageError as exc:
            logger.error("catalog index build failed", extra={"tenant": name, "error": exc.detail})
            report.failed.append(name)
            continue
        except (SerendipError, ValueError) as exc:
            # One tenant's data must not stop the others' builds: its previous build serves.
            logger.exception(
                "catalog index build failed", extra={"tenant": name, "error": str(exc)}
            )
            report.failed.append(name)
            continue
        (report.built if outcome else report.unchanged).append(name)
    report.seconds = time.perf_counter() - started
    metrics.add_metric(name="IndexesBuilt", unit="Count", value=len(report.built))
    if report.failed:
        metrics.add_metric(name="IndexBuildsFailed", unit="Count", value=len(report.failed))
    return report


def build_tenant(
    tenant: str, rewarded: Sequence[Sequence[Rewarded]], remaining: Callable[[], float]
) -> bool:
    """Build and save one tenant's index; False when its inputs did not change."""
    entries = catalog.entries(tenant, lambda: remaining() - START_SECONDS / 4)
    fingerprint = _fingerprint(rewarded, entries)
    previous = index_store.head(tenant)
    if previous is not None and previous.fingerprint == fingerprint:
        return False
    config = settings()
    factors = fit(rewarded, kinds=config.taste_kinds, dims=config.taste_dims)
    rows = factors.rows()
    taste: dict[str, np.ndarray] = {}
    embedding: dict[str, np.ndarray] = {}
    # Items' own embeddings form one space of the size most items have; others are left out.
    sizes = Counter(len(e.embedding) for e in entries if e.embedding is not None)
    size = sizes.most_common(1)[0][0] if sizes else 0
    for entry in entries:
        item = entry.candidate
        vector = factors.item_vector(rows, item.id, item.category, item.creator)
        if vector is not None:
            taste[item.id] = vector
        if entry.embedding is not None and len(entry.embedding) == size:
            embedding[item.id] = entry.embedding
    if sum(sizes.values()) > len(embedding):
        logger.warning(
            "items with embeddings of another size left out of the embedding space",
            extra={
                "tenant": tenant,
                "size": size,
                "left_out": sum(sizes.values()) - len(embedding),
            },
        )
    # Popularity: how many users' recent rewards hold the item (a user counts once per item).
    popularity = Counter(item for history in rewarded for item in {r.item_id for r in history})
    vectors = {
        name: space for name, space in ((TASTE_SPACE, taste), (EMBEDDING_SPACE, embedding)) if space
    }
    index = CatalogIndex.build(
        [entry.candidate for entry in entries],
        vectors=vectors,
        popularity={item: float(count) for item, count in popularity.items()},
        label=fingerprint[:16],
    )
    head = index_store.save(
        tenant, index, factors, users=len(rewarded), fingerprint=fingerprint, previous=previous
    )
    logger.info(
        "catalog index built",
        extra={
            "tenant": tenant,
            "version": head.version,
            "items": head.items,
            "users": head.users,
            "taste_tokens": len(factors.tokens),
        },
    )
    return True


def _policy_tenants() -> set[str]:
    """Tenants that have policies (a new tenant's catalog is indexed before any reward)."""
    return policy_store.tenants()


def _fingerprint(
    rewarded: Sequence[Sequence[Rewarded]], entries: Sequence[catalog.CatalogEntry]
) -> str:
    """A digest of everything a build reads: changes when a reward or an item changes."""
    digest = hashlib.sha256()
    config = settings()
    digest.update(f"{','.join(config.taste_kinds)}:{config.taste_dims}".encode())
    for history in sorted(
        "\x1f".join(f"{r.item_id}\x1e{r.category}\x1e{r.creator}" for r in h) for h in rewarded
    ):
        digest.update(history.encode())
        digest.update(b"\x1d")
    for entry in entries:
        digest.update(f"{entry.candidate.id}\x1e{entry.updated_at!r}\x1d".encode())
    return digest.hexdigest()
