"""A description of the machine a benchmark ran on, stored with its results."""

from __future__ import annotations

import os
import platform
from importlib.metadata import version
from typing import Any


def describe() -> dict[str, Any]:
    """CPU model, core count, Python and library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "vowpalwabbit": version("vowpalwabbit"),
        "numpy": version("numpy"),
        "platform": platform.platform(),
    }
