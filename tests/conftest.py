"""Session-wide: every AWS call of the session is recorded for the IAM check, which runs last."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest

from local.aws_calls import record_into
from local.iam import PermissionUsage
from local.resources import translated_template
from tests.iam_session import ROOT, SESSION, suite_files

_recording = ExitStack()


def pytest_configure(config: pytest.Config) -> None:
    SESSION.usage = PermissionUsage(translated_template(), ROOT)
    _recording.enter_context(record_into(SESSION.usage))


def pytest_unconfigure(config: pytest.Config) -> None:
    _recording.close()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``after_all_suites`` run after every other test, in any test order."""
    last = [item for item in items if item.get_closest_marker("after_all_suites")]
    items[:] = [item for item in items if item not in last] + last


def pytest_collection_finish(session: pytest.Session) -> None:
    files = {str(Path(item.path).relative_to(ROOT)) for item in session.items}
    SESSION.files = files
    chosen = bool(session.config.option.keyword or session.config.option.markexpr)
    SESSION.whole_suites = not chosen and suite_files() <= files
