"""The permissions every AWS call of this test session needed, per function of the template.

``tests/conftest.py`` starts recording when the session starts; ``tests/functional/test_iam.py``
(which runs after every other test) checks them against the roles of ``template.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from local.iam import PermissionUsage

ROOT = Path(__file__).resolve().parents[1]
# The suites whose calls the check is about (the unused-grant check needs all of them to run).
SUITES = ("tests/functional", "tests/reliability", "tests/e2e")


@dataclass
class Session:
    """What the session recorded and which test files it ran."""

    usage: PermissionUsage | None = None
    files: set[str] = field(default_factory=set)
    whole_suites: bool = False  # every test of SUITES was collected (no -k, -m or file choice)


SESSION = Session()


def suite_files() -> set[str]:
    """Every test file of SUITES, relative to the project root."""
    return {
        str(path.relative_to(ROOT))
        for suite in SUITES
        for path in (ROOT / suite).rglob("test_*.py")
    }
