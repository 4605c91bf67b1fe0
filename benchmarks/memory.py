"""Peak memory (RSS) of the rank and learn processes, each measured in a fresh interpreter.

The rank process imports the rank handler, loads a 100 KB and a 4 MB stored model (one rank on
each policy) and serves ranks on both, alternating, against moto's server in another process (so
moto's own memory is not counted). The learn process is the one ``learner_speed`` runs: a fresh
interpreter draining events from SQS. Peak RSS is the kernel's high-water mark of the process
(``VmHWM``; see ``cold_start.peak_rss_mb`` for why not ``ru_maxrss`` in a child).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.cold_start import COLD_START_SIZES, MODEL_SIZES, rank_event, stored_models
from benchmarks.fresh_process import child_main, current_rss_mb, peak_rss_mb, run_child

DISTINCT_REQUESTS = 20  # requests cycled through: enough variety, little memory in the child


def _rank_process(args: list[str]) -> dict[str, Any]:
    """Child: import the handler, load every model, serve ``ranks`` requests; RSS by phase."""
    from local.lambda_events import FakeLambdaContext

    by_policy: dict[str, list[dict[str, Any]]] = json.loads(Path(args[0]).read_text())
    ranks = int(args[1])
    phases = {"start": current_rss_mb()}
    from functions.rank import app

    phases["imported"] = current_rss_mb()

    def serve(event: dict[str, Any]) -> None:
        response = app.lambda_handler(event, FakeLambdaContext())  # type: ignore[arg-type]
        if response["statusCode"] != 200:
            raise RuntimeError(f"rank answered {response['statusCode']}: {response['body']}")

    for events in by_policy.values():
        serve(events[0])
    phases["models_loaded"] = current_rss_mb()
    rotation = [event for pair in zip(*by_policy.values(), strict=True) for event in pair]
    for n in range(ranks):
        serve(rotation[n % len(rotation)])
    phases["served"] = current_rss_mb()
    return {"ranks": ranks, "rss_mb": phases, "peak_rss_mb": peak_rss_mb()}


def rank_process_memory(
    ranks: int = 1_000,
    sizes: Sequence[str] = COLD_START_SIZES,
    progress: Callable[[str], None] | None = None,
    stored: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Peak RSS of a fresh rank process serving ``ranks`` requests on models of ``sizes``.

    ``stored`` is a ``cold_start.stored_models`` result holding those sizes (default: store
    them for this call).
    """
    if stored is None:
        with stored_models({label: MODEL_SIZES[label] for label in sizes}, 1) as made:
            return rank_process_memory(ranks, sizes, progress, made)
    models = stored["models"]
    events = {
        label: [
            rank_event(models[label]["policy"], stored["api_key"], seed)
            for seed in range(DISTINCT_REQUESTS)
        ]
        for label in sizes
    }
    with tempfile.TemporaryDirectory(prefix="serendip-bench-") as directory:
        path = Path(directory) / "events.json"
        path.write_text(json.dumps(events))
        if progress is not None:
            progress(f"rank process: {ranks:,} ranks on the {' and '.join(sizes)} models")
        result, _ = run_child("benchmarks.memory", "rank", [str(path), str(ranks)], stored["env"])
    return {
        **result,
        "models": {
            label: {
                "serialised_bytes": models[label]["serialised_bytes"],
                "stored_bytes": models[label]["stored_bytes"],
                "stored_in": models[label]["stored_in"],
            }
            for label in sizes
        },
    }


def peak_memory(
    ranks: int = 1_000,
    learner: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    stored: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The rank process's memory, and the learn process's from ``learner_speed``'s SQS run.

    ``learner`` is ``learner_speed.learner_bench``'s result; without it no learn row is given.
    ``stored`` as for ``rank_process_memory``.
    """
    result: dict[str, Any] = {
        "rank_process": rank_process_memory(ranks, progress=progress, stored=stored)
    }
    if learner is not None:
        sqs = learner["sqs"]
        result["learn_process"] = {
            "events": sqs["events"],
            "slot_examples": sqs["slot_examples"],
            "rss_mb": sqs["rss_mb"],
            "peak_rss_mb": sqs["peak_rss_mb"],
        }
    return result


if __name__ == "__main__":
    raise SystemExit(child_main({"rank": _rank_process}))
