"""The benchmark harness runs end to end (tiny sizes) and writes its results and summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.__main__ import main as bench_main
from benchmarks.performance_doc import performance_markdown


def _positive_percentiles(row: dict[str, Any]) -> bool:
    return all(row[key] > 0 for key in ("p50_ms", "p95_ms", "p99_ms"))


def _positive_spread(row: dict[str, Any]) -> bool:
    return 0 < row["min"] <= row["median"] <= row["max"]


def test_bench_harness_writes_results_and_summary(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    performance = tmp_path / "performance.md"
    argv = ["--quick", "--results", str(tmp_path), "--doc", str(doc)]
    assert bench_main([*argv, "--performance-doc", str(performance)]) == 0
    quality = json.loads((tmp_path / "quality.json").read_text())
    assert set(quality["policies"]) >= {"for-you", "explore", "uniform-random", "oracle"}
    assert quality["policies"]["oracle"]["oracle_ratio_last_quarter"] == 1.0
    speed = json.loads((tmp_path / "core_speed.json").read_text())
    assert speed["rank_100x10"]["rank"]["p95_ms"] > 0
    assert set(speed["rank_sizes"]) == {"20x5", "100x10", "500x20"}
    assert all(_positive_percentiles(row["rank"]) for row in speed["rank_sizes"].values())
    summary = doc.read_text()
    assert "| for-you >= 85% of oracle CTR, last quarter |" in summary
    assert "| core rank p95 <= 2 ms" in summary
    handler = json.loads((tmp_path / "handler_speed.json").read_text())
    assert handler["rank_handler_moto"]["rank"]["p95_ms"] > 0
    assert "## Rank handler on moto" in summary
    latency = json.loads((tmp_path / "aws_latency.json").read_text())["4ms"]
    for mode in ("sequential", "rounds"):
        assert _positive_percentiles(latency[mode]["rank"])
        assert latency[mode]["aws_calls_per_rank"] >= 2  # the profile read, the decision write
    coverage = json.loads((tmp_path / "estimator_coverage.json").read_text())
    assert set(coverage["methods"]) >= {"ips", "snips", "dr"}
    assert "| SNIPS 95% interval covers the true value in >= 90% of seeds |" in summary
    bake = json.loads((tmp_path / "bakeoff.json").read_text())
    assert "wine" in bake["datasets"]
    assert "## Contextual Bandit Bake-off" in summary
    _check_performance(tmp_path, performance.read_text())
    assert "## Rank handler with AWS's latency" in performance.read_text()
    sizes = json.loads((tmp_path / "record_sizes.json").read_text())
    assert [sizes[n]["write_units"] >= 1 for n in ("20", "100", "1000")] == [True] * 3
    assert sizes["20"]["compressed_bytes"] < sizes["100"]["compressed_bytes"]
    assert sizes["100"]["compressed_bytes"] < sizes["1000"]["compressed_bytes"]
    assert "## Decision record size" in performance.read_text()


def _check_performance(results: Path, doc: str) -> None:
    http = json.loads((results / "http_speed.json").read_text())
    for way in ("http_keep_alive", "http_new_connection", "direct"):
        assert _positive_percentiles(http[way])
    learner = json.loads((results / "learner_speed.json").read_text())
    assert learner["core"]["slot_examples_per_second"] > 0
    sqs = learner["sqs"]
    assert sqs["events"] > 0 and sqs["slot_examples"] >= sqs["events"]
    assert sqs["events_per_second"] > 0 and sqs["slot_examples_per_second"] > 0
    cold = json.loads((results / "cold_start.json").read_text())
    assert set(cold["models"]) == {"10 KB", "100 KB", "1 MB", "4 MB"}
    for model in cold["models"].values():
        assert model["serialised_bytes"] >= model["target_bytes"] > 0
        assert model["stored_bytes"] > 0 and model["stored_in"] in {"inline", "s3"}
        assert _positive_spread(model["save_s"]) and _positive_spread(model["load_s"])
    assert cold["models"]["10 KB"]["stored_in"] == "inline"
    assert cold["models"]["4 MB"]["stored_in"] == "s3"
    assert set(cold["cold_start"]) == {"100 KB", "4 MB"}
    for start in cold["cold_start"].values():
        for key in ("import_s", "first_request_s", "import_and_first_request_s", "process_s"):
            assert _positive_spread(start[key])
    memory = json.loads((results / "memory.json").read_text())
    assert memory["rank_process"]["peak_rss_mb"] > 0
    assert memory["learn_process"]["peak_rss_mb"] > 0
    peers = json.loads((results / "peers.json").read_text())
    assert {"floor", "stream", "targets"} <= set(peers)
    load = json.loads((results / "load.json").read_text())
    assert load["requests"] > 0 and load["server_errors"] == 0
    assert load["rewards"]["accepted"] > 0 and load["rewards"]["lost"] == 0
    _check_learning_loop(json.loads((results / "learning_loop.json").read_text()))
    stack = json.loads((results / "stack_memory.json").read_text())
    assert [row["rounds"] for row in stack["windows"]] == [20, 40, 60]
    assert all(row["rss_mb"]["stack"] > 0 and row["rss_mb"]["moto"] > 0 for row in stack["windows"])
    assert set(stack["statuses"]) == {"rank 200", "rewards 202"}
    restart = json.loads((results / "restart_survival.json").read_text())
    assert restart["accepted"] == 20 and restart["learned_after_restart"] == 20
    assert restart["lost"] == 0
    run = json.loads((results / "run.json").read_text())
    assert run["quick"] is True and run["total_seconds"] > 0
    for heading in (
        "## Targets",
        "## Core rank latency",
        "## Rank handler end to end",
        "## Learner throughput",
        "## Cold start",
        "### Model save and load by size",
        "## Peak memory",
        "## Run time",
        "## Machine and command",
        "## Peers: serendip against raw VW, MABWiser and a numpy LinUCB",
        "## Load on the local stack",
        "## Learning loop",
        "### AWS requests per learned event",
        "### Reward to changed ranking",
        "### Closing at scale",
        "## Memory and latency of a long-lived local stack",
        "## Restart survival",
    ):
        assert heading in doc
    for target in (
        "| core rank p95 <= 1 ms at (100 candidates, 10 slots) |",
        "| rank handler p95 <= 15 ms, in process on moto |",
        "| cold start (import + first rank) <= 1.5 s with a 100 KB model",
        "| learner >= 3,000 slot examples/s on one core, core only |",
        "| rank process peak RSS <= 250 MB |",
        "| `make bench` completes in under 15 minutes |",
        "| <= 1.5 DynamoDB requests per learned event (10 events) |",
        "| reward -> changed ranking p95 <= 2 s (3 trials) |",
        "| all of 100 due events closed and learned within 120 s |",
        "| close delay p99 <= 60 s (100 due events) |",
    ):
        assert target in doc
    assert "| 500 x 20 |" in doc
    assert "| HTTP on the local stack, keep-alive |" in doc


def _check_learning_loop(loop: dict[str, Any]) -> None:
    (run,) = loop["requests"].values()
    assert run["events_learned"] == run["events"] == 10
    assert {"LearnFunction", "SweepFunction"} <= set(run["background_functions"])
    assert run["per_learned_event"]["dynamodb"] > 0 and run["per_rank"]["dynamodb"] > 0
    assert run["per_reward_post"]["sqs"] == 1.0  # one queued message per webhook post
    assert run["event_source_per_event"]["dynamodb"] == 0
    fresh = loop["freshness"]
    assert fresh["trials"] == 3 and 0 < fresh["min_s"] <= fresh["p50_s"] <= fresh["max_s"]
    closing = loop["closing"]
    assert closing["closed"] == closing["learned"] == closing["events"] == 100
    assert closing["still_open"] == 0 and 0 < closing["close_delay_p50_s"] <= closing["total_s"]


def test_learning_loop_section_gives_each_target_its_verdict() -> None:
    from benchmarks.learning_loop import markdown

    per = {"dynamodb": 7.5, "sqs": 0.0, "s3": 0.0, "total": 7.5}
    run = {
        "events": 100,
        "candidates": 30,
        "background_functions": ["LearnFunction", "SweepFunction"],
        "per_learned_event": per,
        "per_learned_event_by_operation": {"dynamodb": {"UpdateItem": 7.5}},
        "per_rank": {**per, "dynamodb": 5.0},
        "per_reward_post": {**per, "dynamodb": 1.0, "sqs": 1.0},
        "event_source_per_event": {**per, "dynamodb": 0.0, "sqs": 0.4},
        "batches": 20,
        "model_versions": 20,
        "sweep_runs": 1,
    }
    closing = {
        "events": 20_000,
        "closed": 20_000,
        "learned": 20_000,
        "still_open": 0,
        "delays_lower_bounds": 0,
        "total_s": 100.0,
        "swept_s": 100.0,
        "close_delay_p50_s": 50.0,
        "close_delay_p99_s": 99.0,
        "close_delay_max_s": 100.0,
        "sweep_interval_s": 5.0,
        "deadline_s": 240.0,
        "delay_source": "closed_at",
        "poll_interval_s": 2.0,
        "sweep_runs": 20,
        "background_functions": ["LearnFunction", "SweepFunction"],
        "requests_per_closed_event": {**per, "dynamodb": 1.2},
    }
    fresh = {"trials": 30, "p50_s": 0.9, "p95_s": 1.1, "min_s": 0.8, "max_s": 1.2}
    fresh["poll_interval_s"] = 0.02
    lines = markdown({"requests": {"100": run}, "freshness": fresh, "closing": closing})
    assert "| <= 1.5 DynamoDB requests per learned event (100 events) | 7.50 | NOT met |" in lines
    assert "| reward -> changed ranking p95 <= 2 s (30 trials) | 1.10 s | met |" in lines
    assert "| all of 20,000 due events closed and learned within 120 s | 100 s | met |" in lines
    assert "| close delay p99 <= 60 s (20,000 due events) | 99 s | NOT met |" in lines


def test_performance_doc_renders_plugged_sections_only_when_their_results_exist(
    tmp_path: Path,
) -> None:
    def peers(data: dict[str, Any]) -> list[str]:
        return ["## Peers", "", f"peer figure {data['figure']}"]

    def load(data: dict[str, Any]) -> list[str]:
        return ["## Load", "", f"load figure {data['figure']}"]

    without = performance_markdown(tmp_path, peers=peers, load=load)
    assert "## Peers" not in without and "## Load" not in without
    (tmp_path / "peers.json").write_text(json.dumps({"figure": 7}))
    with_peers = performance_markdown(tmp_path, peers=peers, load=load)
    assert "peer figure 7" in with_peers and "## Load" not in with_peers
    assert "## Peers" not in performance_markdown(tmp_path)
