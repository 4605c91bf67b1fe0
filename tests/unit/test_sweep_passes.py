"""The sweep's passes: two per scheduled minute on AWS, as time allows; one where told so."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from functions.common import sweep_service
from functions.common.settings import reset_settings


@pytest.fixture(autouse=True)
def counted_passes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    passes: list[float] = []

    def dispatch(now: float, report: sweep_service.SweepReport) -> None:
        report.passes += 1
        passes.append(now)

    monkeypatch.setattr(sweep_service, "dispatch", dispatch)
    reset_settings()
    yield passes
    reset_settings()


def run(remaining: list[float]) -> tuple[sweep_service.SweepReport, list[float]]:
    slept: list[float] = []
    report = sweep_service.sweep(
        lambda: remaining.pop(0), clock=lambda: 1_000.0, sleep=slept.append
    )
    return report, slept


@pytest.mark.parametrize(
    ("env", "remaining", "passes"),
    [
        (None, [59.0, 29.0], 2),  # a minute's invocation: now, and 30 s later
        (None, [29.0], 1),  # too little time left for a second pass
        ("1", [59.0], 1),  # the local stack: one pass per (twice as frequent) call
        ("3", [59.0, 29.0], 2),  # never past the invocation's time
    ],
)
def test_passes(
    monkeypatch: pytest.MonkeyPatch, env: str | None, remaining: list[float], passes: int
) -> None:
    if env is None:
        monkeypatch.delenv("SWEEP_PASSES", raising=False)
    else:
        monkeypatch.setenv("SWEEP_PASSES", env)
    report, slept = run(list(remaining))
    assert report.passes == passes
    assert len(slept) == passes - 1
    assert all(0.0 <= s <= sweep_service.PASS_SECONDS for s in slept)
