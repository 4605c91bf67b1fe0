"""Decision record bytes and DynamoDB write units per rank, by candidate count.

A rank's decision record is stored as its zlib-compressed JSON (``functions.common.
decision_store.put``): a DynamoDB item of that blob plus about ``ITEM_OVERHEAD_BYTES`` of keys
and attributes, written with ``ceil(item / 1 KB)`` write units; a blob over the inline limit
goes to S3 instead (one PUT, and the item keeps only its key). The records here are for-you's,
ranked in process from the simulated population's candidates (each with a category, a creator
and two features), ``slots`` shown.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

from bandit.serve.ranker import Ranker, RankRequest
from bandit.simulate.simulation import Population
from bandit.spec import load_spec
from functions.common.decision_store import INLINE_RECORD_BYTES
from local.resources import ROOT

SIZES = (20, 100, 1_000)
# Keys (event, policy, open-events shard), timestamps, counters and flags of a decision item.
ITEM_OVERHEAD_BYTES = 200


def record_sizes(sizes: tuple[int, ...] = SIZES, slots: int = 10) -> dict[str, Any]:
    """Per candidate count: JSON and compressed bytes, item bytes and write units per rank."""
    spec = load_spec(ROOT / "policies" / "for-you.yaml")
    out: dict[str, Any] = {"slots": slots, "inline_limit_bytes": INLINE_RECORD_BYTES}
    for size in sizes:
        population = Population(seed=5, candidates=size, n_items=max(400, size))
        ranker = Ranker(spec, clock=lambda: 0.0)
        request = population.next_request()
        result = ranker.rank(
            RankRequest(
                event_id="evt_size",
                context=request.context,
                candidates=request.candidates,
                user_id=request.user_id,
                slate_size=slots,
                timestamp=0.0,
            )
        )
        text = result.record(spec, 0).model_dump_json().encode()
        compressed = len(zlib.compress(text, 3))
        inline = compressed <= INLINE_RECORD_BYTES
        item = (compressed if inline else 100) + ITEM_OVERHEAD_BYTES
        out[str(size)] = {
            "json_bytes": len(text),
            "compressed_bytes": compressed,
            "item_bytes": item,
            "write_units": math.ceil(item / 1024),
            "stored_in": "inline" if inline else "s3",
        }
    return out


def markdown(data: dict[str, Any]) -> list[str]:
    """The section of docs/performance.md."""
    lines = [
        "## Decision record size",
        "",
        f"`benchmarks/record_sizes.py`: for-you's record of one rank ({data['slots']} slots), "
        "by candidate count; stored zlib-compressed in the decisions table (write units: "
        "1 per KB of item), in S3 past "
        f"{data['inline_limit_bytes'] // 1000} KB compressed.",
        "",
        "| candidates | JSON | compressed | item | write units per rank | stored |",
        "|---|---|---|---|---|---|",
    ]
    for size in SIZES:
        row = data.get(str(size))
        if row is None:
            continue
        lines.append(
            f"| {size:,} | {row['json_bytes'] / 1e3:.1f} KB | {row['compressed_bytes'] / 1e3:.1f} "
            f"KB | {row['item_bytes'] / 1e3:.1f} KB | {row['write_units']} | {row['stored_in']} |"
        )
    return lines
