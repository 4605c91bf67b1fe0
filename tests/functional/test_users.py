"""User profiles on moto: interaction counts and recent rewarded categories."""

from __future__ import annotations

from functions.common import users
from functions.common.tables import UserItem


def test_interactions_count_and_categories_are_kept_and_trimmed(aws: dict[str, str]) -> None:
    assert users.interactions("acme", "u1") == 0
    users.record_interaction("acme", "u1", [])
    users.record_interaction("acme", "u1", ["shoes"])
    users.record_interaction("acme", "u1", ["hats", "shoes"])
    assert users.interactions("acme", "u1") == 3
    assert UserItem.get("acme#u1").recent_categories == ["shoes", "hats", "shoes"]
    for _ in range(60):
        users.record_interaction("acme", "u1", ["bags", "bags"])
    profile = UserItem.get("acme#u1")
    assert profile.interactions == 63
    assert len(profile.recent_categories) <= 2 * users.RECENT_CATEGORIES
    assert profile.recent_categories[-1] == "bags"
    assert users.interactions("globex", "u1") == 0
