"""Settings are read lazily from the environment and cached until reset."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from functions.common.settings import reset_settings, settings


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    reset_settings()
    yield
    reset_settings()


def test_defaults_name_the_stack_resources(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DECISIONS_TABLE", "MODEL_BUCKET", "INLINE_MODEL_BYTES", "POLICIES_DIR"):
        monkeypatch.delenv(name, raising=False)
    current = settings()
    assert current.decisions_table == "serendip-decisions"
    assert current.model_bucket == "serendip-models"
    assert current.inline_model_bytes == 350 * 1024
    assert (current.policies_dir / "for-you.yaml").exists()


def test_environment_is_read_on_first_use_and_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DECISIONS_TABLE", "first")
    assert settings().decisions_table == "first"
    monkeypatch.setenv("DECISIONS_TABLE", "second")
    assert settings().decisions_table == "first"
    reset_settings()
    assert settings().decisions_table == "second"
