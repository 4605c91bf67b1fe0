"""What the fresh-process benchmarks share: a moto server for the duration of a step, the
environment of a child process pointed at it, the child protocol (arguments in, one JSON file
out) and memory readings.

Its top-level imports are the standard library only, so that a child's import timings start
clean.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STACK = "serendip-bench"
TENANT = "bench"
CHILD_TIMEOUT_SECONDS = 600.0

ChildMode = Callable[[list[str]], dict[str, Any]]


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's server on loopback for the duration of the block; yields its endpoint URL."""
    from local.moto_process import MotoProcess

    server = MotoProcess("127.0.0.1")
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def child_environment(
    endpoint: str | None = None, resources: Mapping[str, str] | None = None
) -> dict[str, str]:
    """This process's environment without AWS or Powertools settings, then pointed at moto.

    With ``endpoint`` every AWS client of the child talks to that moto server; ``resources``
    names its tables, queue and bucket (as ``local.resources.create_resources`` returns them).
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "POWERTOOLS_", "SERENDIP_"))
    }
    env.update(
        {
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_SERVICE_NAME": "serendip",
            "POWERTOOLS_METRICS_NAMESPACE": "Serendip",
            "POWERTOOLS_LOG_LEVEL": "ERROR",
            "PYTHONWARNINGS": "ignore",
        }
    )
    if endpoint is not None:
        from local.stack import moto_environment

        for name, value in moto_environment(endpoint).items():
            if value is not None:
                env[name] = value
    env.update(resources or {})
    return env


def run_child(
    module: str, mode: str, args: Sequence[str], env: Mapping[str, str]
) -> tuple[dict[str, Any], float]:
    """Run ``python -m module mode OUT args...`` in a fresh interpreter.

    Returns the JSON the child wrote to ``OUT`` and the child's wall time in seconds (interpreter
    start to exit). Raises ``RuntimeError`` with the tail of its stderr if it fails.
    """
    with tempfile.TemporaryDirectory(prefix="serendip-bench-") as directory:
        out = Path(directory) / "result.json"
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", module, mode, str(out), *args],
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=CHILD_TIMEOUT_SECONDS,
            check=False,
        )
        wall = time.perf_counter() - started
        if done.returncode != 0 or not out.exists():
            tail = done.stderr.decode(errors="replace").strip()[-1500:]
            raise RuntimeError(f"{module} {mode} exited with {done.returncode}: {tail}")
        result: dict[str, Any] = json.loads(out.read_text())
        return result, wall


def child_main(modes: Mapping[str, ChildMode], argv: list[str] | None = None) -> int:
    """Entry point of a child: ``MODE OUT [ARGS...]`` runs ``modes[MODE](ARGS)`` into ``OUT``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] not in modes:
        print(f"usage: MODE OUT [ARGS...], MODE one of {sorted(modes)}", file=sys.stderr)
        return 2
    mode, out, rest = argv[0], Path(argv[1]), argv[2:]
    result = modes[mode](rest)
    out.write_text(json.dumps(result))
    return 0


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB.

    ``VmHWM`` of ``/proc/self/status`` where there is one: on Linux ``ru_maxrss`` keeps the peak
    of the process that exec'd, so in a child started by a big parent it reports the parent's
    peak. Without ``/proc``, ``ru_maxrss`` read as KB (as Linux reports it).
    """
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    """This process's resident set size now (``VmRSS``), in MB; 0.0 where ``/proc`` is missing."""
    return _status_mb("VmRSS") or 0.0


def spread(samples: Sequence[float]) -> dict[str, float]:
    """Min, median and max of ``samples`` (seconds).

    >>> spread([3.0, 1.0, 2.0])
    {'min': 1.0, 'median': 2.0, 'max': 3.0}
    """
    return {
        "min": float(min(samples)),
        "median": float(statistics.median(samples)),
        "max": float(max(samples)),
    }
