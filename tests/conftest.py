"""Session-wide: every AWS call of the session is recorded for the IAM check, which runs last."""

from __future__ import annotations

import gc
from contextlib import ExitStack
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import pynamodb.connection.base as pynamodb_connection
import pytest

from local.aws_calls import record_into
from local.iam import PermissionUsage
from local.resources import translated_template
from tests.iam_session import ROOT, SESSION, suite_files

_recording = ExitStack()
# The session's heap is large (VW, scipy, scikit-learn, moto's and botocore's models) and each
# moto-backed test leaves cyclic garbage behind. Python's own full collections would scan all of
# it again and again (a third of the suite's time); instead every test's garbage is collected
# once, when it ends, and what survives is frozen out of later collections.
_FULL_COLLECTION_THRESHOLD = 1_000  # Python's default is 10: a full pass after every 10 of gen 1


def pytest_configure(config: pytest.Config) -> None:
    SESSION.usage = PermissionUsage(translated_template(), ROOT)
    _recording.enter_context(record_into(SESSION.usage))
    patch = _recording.enter_context(pytest.MonkeyPatch.context())
    patch.setattr(pynamodb_connection, "get_session", _session_with_shared_models)


@cache
def _botocore_models() -> Any:
    return botocore.session.get_session().get_component("data_loader")


def _session_with_shared_models() -> Any:
    """A botocore session for pynamodb that reads botocore's service models only once.

    pynamodb starts a session (and re-reads the JSON models) per connection, and the fixtures
    unbind the tables for every test: per test, that reading cost more than the test itself.
    """
    session = botocore.session.get_session()
    session.register_component("data_loader", _botocore_models())
    return session


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
    _collect_and_freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, _FULL_COLLECTION_THRESHOLD)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """After the test's fixtures are gone: free its garbage, freeze what is still alive."""
    _collect_and_freeze()


def _collect_and_freeze() -> None:
    gc.collect()
    gc.freeze()
