"""Cold start: a fresh process imports the rank handler and serves its first request.

Every measurement runs in a new interpreter (``python -m benchmarks.cold_start``) against moto's
server in a process of its own, so the model comes through the real model store path: inline in
DynamoDB up to the inline limit, from S3 beyond it. A setup process first stores models grown to
target sizes and times saving and loading each of them (serialise + compress + store, and
fetch + verify + decompress + deserialise). Its top-level imports are the standard library and
``benchmarks.fresh_process`` only, so that a child's import timings start clean.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.fresh_process import (
    ROOT,
    STACK,
    TENANT,
    child_environment,
    child_main,
    current_rss_mb,
    moto_server,
    peak_rss_mb,
    run_child,
    spread,
)

if TYPE_CHECKING:
    from bandit.serve.vw import VWModel

RANK_PATH = "/v1/policies/{policy}/rank"
# Model sizes (serialised bytes) timed for save and load; cold start uses the two named below.
MODEL_SIZES: dict[str, int] = {
    "10 KB": 10_000,
    "100 KB": 100_000,
    "1 MB": 1_000_000,
    "4 MB": 4_000_000,
}
COLD_START_SIZES = ("100 KB", "4 MB")


def rank_event(policy: str, api_key: str, seed: int, candidates: int = 100, slots: int = 10) -> Any:
    """An API Gateway proxy event ranking ``candidates`` simulated items into ``slots``."""
    from bandit.simulate.simulation import Population
    from local.demo import rank_body
    from local.lambda_events import proxy_event

    body = rank_body(Population(seed=seed, candidates=candidates).next_request(), slots)
    return proxy_event(
        "POST",
        f"/v1/policies/{policy}/rank",
        resource=RANK_PATH,
        body=json.dumps(body),
        headers={"content-type": "application/json", "x-api-key": api_key},
    )


# ---------------------------------------------------------------- stored models


def policy_for(target_bytes: int) -> str:
    """The benchmark policy whose head model was grown to ``target_bytes``."""
    return f"model-{target_bytes}"


def grow(model: VWModel, target_bytes: int) -> int:
    """Learn examples with fresh features until ``model`` serialises to ``target_bytes`` or more.

    Returns the serialised size. Small targets use one feature per namespace, so the size lands
    close to the target; large ones use eight. At VW's default ``-b 18`` a model saturates at
    about 4.2 MB.
    """
    width = 1 if target_bytes < 200_000 else 8
    size = len(model.to_bytes())
    count = 0
    per_example: float | None = None
    while size < target_bytes:
        batch = 1 if per_example is None else max(1, int((target_bytes - size) / per_example / 2))
        for _ in range(batch):
            count += 1
            shared = "shared |C " + " ".join(f"c{count}x{j}" for j in range(width))
            actions = [
                "|I " + " ".join(f"i{count}x{a}x{j}" for j in range(width)) for a in range(4)
            ]
            model.learn(shared, actions, chosen=count % 4, reward=count % 2, probability=0.25)
        grown = len(model.to_bytes())
        per_example = max(1.0, (grown - size) / batch)
        size = grown
    return size


def _setup(args: list[str]) -> dict[str, Any]:
    """Child: create the stack's resources, a key, and one policy per model size (timed)."""
    sizes: dict[str, int] = json.loads(args[0])
    repeats = int(args[1])
    from local.resources import create_resources

    resources = create_resources(STACK)
    os.environ.update(resources)
    from bandit.serve.ranker import build_model
    from bandit.spec import load_spec, parse_spec
    from functions.common import model_store, policy_store
    from functions.common.auth import create_key

    key = create_key(TENANT, {"rank"})
    base = json.loads(load_spec(ROOT / "policies" / "for-you.yaml").model_dump_json())
    models: dict[str, Any] = {}
    for label, target in sizes.items():
        policy = policy_for(target)
        spec = parse_spec({**base, "name": policy})
        policy_store.put(TENANT, spec)
        model = build_model(spec)
        serialised = grow(model, target)
        saves: list[float] = []
        loads: list[float] = []
        head = 0
        # One untimed round first: the first call of a process builds its AWS clients.
        for attempt in range(repeats + 1):
            started = time.perf_counter()
            head = model_store.save(TENANT, policy, model, expected_head=head)
            saved = time.perf_counter()
            model_store.load(TENANT, policy, head).close()
            if attempt:
                saves.append(saved - started)
                loads.append(time.perf_counter() - saved)
        stored = model_store.versions(TENANT, policy)[0]
        models[label] = {
            "target_bytes": target,
            "serialised_bytes": serialised,
            "stored_bytes": stored.size,
            "stored_in": stored.stored_in,
            "policy": policy,
            "head_version": head,
            "save_s": spread(saves),
            "load_s": spread(loads),
        }
    return {
        "resources": resources,
        "api_key": key.api_key,
        "repeats": repeats,
        "models": models,
    }


@contextmanager
def stored_models(sizes: Mapping[str, int], repeats: int) -> Iterator[dict[str, Any]]:
    """A moto server holding a policy per model size, for the duration of the block.

    Yields the setup's result: ``api_key`` (scope ``rank``, tenant ``TENANT``), ``models`` (by
    label: sizes, where stored, policy, head version, save and load times over ``repeats``) and
    ``env``, the environment of a child process that should use them.
    """
    with moto_server() as endpoint:
        setup, _ = run_child(
            "benchmarks.cold_start",
            "setup",
            [json.dumps(dict(sizes)), str(repeats)],
            child_environment(endpoint),
        )
        yield {**setup, "env": child_environment(endpoint, setup["resources"])}


# ---------------------------------------------------------------- the cold start itself


def _first_rank(args: list[str]) -> dict[str, Any]:
    """Child: import the rank handler, then serve one request (loading the stored model)."""
    from local.lambda_events import FakeLambdaContext

    event = json.loads(Path(args[0]).read_text())
    rss_before = current_rss_mb()
    started = time.perf_counter()
    from functions.rank import app

    imported = time.perf_counter()
    response = app.lambda_handler(event, FakeLambdaContext())  # type: ignore[arg-type]
    served = time.perf_counter()
    if response["statusCode"] != 200:
        raise RuntimeError(f"rank answered {response['statusCode']}: {response['body']}")
    body = json.loads(response["body"])
    return {
        "import_s": imported - started,
        "first_request_s": served - imported,
        "model_version": body["model_version"],
        "degraded": body["degraded"],
        "rss_before_import_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(),
    }


def cold_start(
    repeats: int = 5,
    cold_sizes: Sequence[str] = COLD_START_SIZES,
    progress: Callable[[str], None] | None = None,
    stored: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Model save/load time by size, and cold starts of the rank handler with stored models.

    Each cold start is a fresh interpreter: import ``functions.rank.app``, then serve the first
    rank request (100 candidates, 10 slots), which reads the key, the policy and the head model
    from moto and writes the decision. ``repeats`` runs per size, sizes interleaved. ``stored``
    is a ``stored_models`` result to use (default: store ``MODEL_SIZES`` for this call).
    """
    if stored is None:
        with stored_models(MODEL_SIZES, repeats) as made:
            return cold_start(repeats, cold_sizes, progress, made)
    models = stored["models"]
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in cold_sizes}
    with tempfile.TemporaryDirectory(prefix="serendip-bench-") as directory:
        events: dict[str, Path] = {}
        for n, label in enumerate(cold_sizes):
            path = Path(directory) / f"event-{n}.json"
            path.write_text(json.dumps(rank_event(models[label]["policy"], stored["api_key"], n)))
            events[label] = path
        for attempt in range(repeats):
            for label in cold_sizes:
                if progress is not None:
                    progress(f"cold start {attempt + 1}/{repeats}, {label} model")
                result, wall = run_child(
                    "benchmarks.cold_start", "first-rank", [str(events[label])], stored["env"]
                )
                if result["model_version"] != models[label]["head_version"] or result["degraded"]:
                    raise RuntimeError(f"cold start did not serve the stored {label} model")
                runs[label].append({**result, "process_s": wall})
    return {
        "repeats": repeats,
        "save_load_repeats": stored["repeats"],
        "candidates": 100,
        "slots": 10,
        "models": {label: _model_row(row) for label, row in models.items()},
        "cold_start": {label: _summary(models[label], rows) for label, rows in runs.items()},
    }


def _model_row(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key not in ("policy", "head_version")}


def _summary(model: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "serialised_bytes": model["serialised_bytes"],
        "stored_bytes": model["stored_bytes"],
        "stored_in": model["stored_in"],
        "import_s": spread([r["import_s"] for r in rows]),
        "first_request_s": spread([r["first_request_s"] for r in rows]),
        "import_and_first_request_s": spread([r["import_s"] + r["first_request_s"] for r in rows]),
        "process_s": spread([r["process_s"] for r in rows]),
        "peak_rss_mb": spread([r["peak_rss_mb"] for r in rows]),
    }


if __name__ == "__main__":
    raise SystemExit(child_main({"setup": _setup, "first-rank": _first_rank}))
