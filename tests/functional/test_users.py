"""User profiles on moto: interaction counts and recent rewarded categories."""

from __future__ import annotations

from typing import Any

import pytest

from bandit.learn.history import Rewarded
from functions.common import users
from functions.common.tables import UserItem


def rewarded(*categories: str) -> list[Rewarded]:
    return [Rewarded(f"item-{category}", category) for category in categories]


def test_interactions_count_and_categories_are_kept_and_trimmed(aws: dict[str, str]) -> None:
    assert users.interactions("acme", "u1") == 0
    users.record_interaction("acme", "u1", rewarded())
    users.record_interaction("acme", "u1", rewarded("shoes"))
    users.record_interaction("acme", "u1", rewarded("hats", "shoes"))
    assert users.interactions("acme", "u1") == 3
    assert UserItem.get("acme#u1").recent_categories == ["shoes", "hats", "shoes"]
    for _ in range(60):
        users.record_interaction("acme", "u1", rewarded("bags", "bags"))
    profile = UserItem.get("acme#u1")
    assert profile.interactions == 63
    assert len(profile.recent_categories) <= 2 * users.RECENT_CATEGORIES
    assert profile.recent_categories[-1] == "bags"
    assert users.interactions("globex", "u1") == 0


def test_many_users_are_written_at_once_and_a_concurrent_writer_is_never_lost(
    aws: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a user another learner (another policy) writes between our read and our write
    users.record_interaction("acme", "u1", rewarded("shoes"))
    batch_get = UserItem.batch_get
    raced: list[int] = []

    def read_then_race(*args: Any, **kwargs: Any) -> Any:
        read = list(batch_get(*args, **kwargs))
        if not raced:
            raced.append(1)
            users.record_interaction("acme", "u1", rewarded("hats"))
        return iter(read)

    monkeypatch.setattr(UserItem, "batch_get", read_then_race)
    # When 150 users' learned events are recorded in one call
    learned = {f"u{i}": (2, rewarded("bags")) for i in range(1, 151)}
    users.record_interactions("acme", learned)
    # Then every count is exact, the racing write included, and the lost race was retried
    assert users.interactions("acme", "u1") == 1 + 1 + 2
    assert UserItem.get("acme#u1").recent_categories == ["shoes", "hats", "bags"]
    assert [users.interactions("acme", f"u{i}") for i in range(2, 151)] == [2] * 149
