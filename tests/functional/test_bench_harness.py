"""The benchmark harness runs end to end (tiny sizes) and writes its results and summary."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.__main__ import main as bench_main


def test_bench_harness_writes_results_and_summary(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    assert bench_main(["--quick", "--results", str(tmp_path), "--doc", str(doc)]) == 0
    quality = json.loads((tmp_path / "quality.json").read_text())
    assert set(quality["policies"]) >= {"for-you", "explore", "uniform-random", "oracle"}
    assert quality["policies"]["oracle"]["oracle_ratio_last_quarter"] == 1.0
    speed = json.loads((tmp_path / "core_speed.json").read_text())
    assert speed["rank_100x10"]["rank"]["p95_ms"] > 0
    summary = doc.read_text()
    assert "| for-you >= 85% of oracle CTR, last quarter |" in summary
    assert "| core rank p95 <= 2 ms" in summary
    handler = json.loads((tmp_path / "handler_speed.json").read_text())
    assert handler["rank_handler_moto"]["rank"]["p95_ms"] > 0
    assert "## Rank handler on moto" in summary
    coverage = json.loads((tmp_path / "estimator_coverage.json").read_text())
    assert set(coverage["methods"]) >= {"ips", "snips", "dr"}
    assert "| SNIPS 95% interval covers the true value in >= 90% of seeds |" in summary
    bake = json.loads((tmp_path / "bakeoff.json").read_text())
    assert "wine" in bake["datasets"]
    assert "## Contextual Bandit Bake-off" in summary
