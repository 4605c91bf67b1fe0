"""The long-lived-stack benchmark's pieces that need no stack: RSS of a process tree read from
/proc, and its section of the performance document with both verdicts."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from benchmarks.stack_memory import markdown, stack_rss_mb

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")


def test_rss_covers_the_process_and_its_children() -> None:
    # Given this process with a child that sleeps
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        # When the stack's RSS is read from this process down
        rss = stack_rss_mb(os.getpid())
    finally:
        child.kill()
        child.wait()

    # Then this process is "stack" and the child is counted under its own label
    assert rss["stack"] > 0
    assert rss[f"other {child.pid}"] > 0


def window(rounds: int, p95: float, stack: float, moto: float) -> dict[str, Any]:
    return {
        "rounds": rounds,
        "rounds_per_s": 20.0,
        "rank": {"p50_ms": p95 / 4, "p95_ms": p95, "max_ms": p95 * 3},
        "rewards_p50_ms": 5.0,
        "rss_mb": {"stack": stack, "moto": moto},
        "total_rss_mb": stack + moto,
        "load_1m": 1.5,
    }


def test_the_section_gives_both_targets_their_verdict() -> None:
    # Given a run whose memory stayed low but whose rank p95 doubled
    result = {
        "rounds": 2_000,
        "window": 1_000,
        "candidates": 20,
        "start_rss_mb": {"stack": 250.0, "moto": 100.0},
        "windows": [window(1_000, 80.0, 280.0, 140.0), window(2_000, 160.0, 280.0, 180.0)],
        "peak_total_rss_mb": 460.0,
        "p95_growth": 2.0,
        "rss_ok": True,
        "p95_ok": False,
    }

    # When it is rendered
    lines = markdown(result)

    # Then each target has its figure and verdict, and each window its row
    text = "\n".join(lines)
    assert "| peak 460 MB | met |" in text
    assert "| 160 ms / 80 ms = 2.00x | NOT met |" in text
    assert "| 2,000 | 20.0 | 40 ms | 160 ms | 480 ms | 180 MB | 280 MB | 460 MB | 1.5 |" in text
