"""A process-wide cache of each policy's head model, reloaded when the head moves.

If a new head cannot be loaded (storage down, checksum failure), the last good model keeps
serving and the caller is told it is degraded: a model that fails its checksum is never served.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from bandit.errors import ModelError
from bandit.serve.ranker import build_model
from bandit.serve.vw import VWModel
from bandit.spec import PolicySpec
from functions.common import model_store
from functions.common.errors import StorageError
from functions.common.observability import logger


@dataclass
class CachedModel:
    """A loaded model and the version it is."""

    version: int
    model: VWModel
    spec_args: tuple[str, ...]
    lineage: str | None = None  # the creation of the policy it belongs to


class ModelCache:
    """Head models by (tenant, policy)."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, str], CachedModel] = {}
        self._lock = threading.Lock()

    def get(
        self, tenant: str, policy: str, spec: PolicySpec, head: int, lineage: str | None = None
    ) -> tuple[CachedModel, bool]:
        """The model at ``head`` (loading it if needed) and whether an older one was served.

        ``lineage`` is the policy's creation (``StoredPolicy.lineage``): a model cached for an
        earlier policy of the same name is never served, not even as the last good one.
        """
        key = (tenant, policy)
        args = tuple(spec.vw_args())
        cached = self._models.get(key)
        if cached and cached.lineage != lineage:
            cached = None
        if cached and cached.version == head and cached.spec_args == args:
            return cached, False
        try:
            fresh = self._load(tenant, policy, spec, head, lineage)
        except (ModelError, StorageError) as exc:
            if cached is None:
                raise
            logger.error(
                "serving the last good model",
                extra={"policy": policy, "cached": cached.version, "head": head, "error": str(exc)},
            )
            return cached, True
        with self._lock:
            self._models[key] = fresh
        return fresh, False

    @staticmethod
    def _load(
        tenant: str, policy: str, spec: PolicySpec, head: int, lineage: str | None
    ) -> CachedModel:
        args = tuple(spec.vw_args())
        if head == 0:
            return CachedModel(0, build_model(spec), args, lineage)
        model = model_store.load(tenant, policy, head)
        if tuple(model.args) != args:
            # A spec change that resets the model saves a fresh head with it (policy_store), so
            # this is a head and a spec read at different moments: never serve a blank model
            # under a version number that names other weights.
            raise ModelError(f"model version {head} was built with other VW arguments")
        return CachedModel(head, model, args, lineage)

    def peek(self, tenant: str, policy: str) -> CachedModel | None:
        """The model kept for the policy, whatever its version (no read)."""
        return self._models.get((tenant, policy))

    def put(self, tenant: str, policy: str, cached: CachedModel) -> None:
        """Remember a model the caller just saved (the learner's own head)."""
        with self._lock:
            self._models[(tenant, policy)] = cached

    def forget(self, tenant: str, policy: str) -> None:
        """Drop a policy's model (its head moved under a learner)."""
        with self._lock:
            self._models.pop((tenant, policy), None)
