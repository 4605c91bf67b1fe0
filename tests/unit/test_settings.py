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


@pytest.mark.parametrize(("raw", "expected"), [("90", 90), ("1", 1), ("98", 98)])
def test_events_per_save_is_read_within_a_transaction(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: int
) -> None:
    monkeypatch.setenv("LEARN_EVENTS_PER_SAVE", raw)
    assert settings().events_per_save == expected


@pytest.mark.parametrize("raw", ["0", "99", "ten", "-3"])
def test_events_per_save_outside_one_transaction_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("LEARN_EVENTS_PER_SAVE", raw)
    with pytest.raises(ValueError, match="LEARN_EVENTS_PER_SAVE must be 1 to 98"):
        settings()
