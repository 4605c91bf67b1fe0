"""Tenant ids cannot collide: no two (tenant, id) pairs share a storage key or key prefix."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.common.budget_ledger import DynamoLedger
from functions.common.counters import _popularity_pk, _totals_key
from functions.common.decision_store import event_key, policy_key
from functions.common.ids import check_tenant
from functions.common.model_store import model_key
from functions.common.users import _key as user_key
from local.cli import main

tenants = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True)
ids = st.text(min_size=1, max_size=40)


@given(tenants, tenants, ids, ids)
def test_two_tenants_never_share_an_event_key_or_its_tenant_prefix(
    first: str, second: str, one: str, other: str
) -> None:
    if first == second:
        assert (event_key(first, one) == event_key(second, other)) == (one == other)
        return
    # Whatever the event ids hold ('#' included), the text before the first '#' is the tenant.
    assert event_key(first, one) != event_key(second, other)
    assert not event_key(first, one).startswith(f"{second}#")
    assert not policy_key(first, one).startswith(f"{second}#")


@pytest.mark.parametrize("bad", ["acme#x", "", "Acme", "-acme", "a" * 64, "acme x", "acmé"])
def test_an_id_that_could_reach_into_another_tenants_keys_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="tenant"):
        check_tenant(bad)


def test_keys_create_refuses_such_a_tenant_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["keys", "create", "--tenant", "acme#x", "--scopes", "rank"])
    assert exited.value.code == 2
    assert "tenant 'acme#x'" in capsys.readouterr().err


policies = st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True)
triples = st.tuples(tenants, policies, ids)
# Which of (tenant, policy, id) each key layout holds; the id is an event, user, item or segment.
HOLDS = {
    "DecisionsTable": (0, 2),
    "DecisionsByPolicy": (0, 1),
    "ModelsTable": (0, 1),
    "UsersTable": (0, 2),
    "CountersTable.popularity": (0, 1, 2),
    "CountersTable.totals": (0, 1),
    "CountersTable.budget": (0, 1, 2),
}


def storage_keys(tenant: str, policy: str, some_id: str) -> dict[str, tuple[str, ...]]:
    """The key (partition, and sort where it carries an id) of every layout, by table."""
    ledger = DynamoLedger(tenant, policy, shards=4, bucket_seconds=60)
    return {
        "DecisionsTable": (event_key(tenant, some_id),),
        "DecisionsByPolicy": (policy_key(tenant, policy),),
        "ModelsTable": (model_key(tenant, policy),),
        "UsersTable": (user_key(tenant, some_id),),
        "CountersTable.popularity": (_popularity_pk(tenant, policy, some_id), some_id),
        "CountersTable.totals": _totals_key(tenant, policy),
        "CountersTable.budget": (ledger._pk(some_id, 3),),
    }


@given(triples, triples)
def test_distinct_triples_never_share_a_storage_key_or_a_tenants_prefix(
    first: tuple[str, str, str], second: tuple[str, str, str]
) -> None:
    one, other = storage_keys(*first), storage_keys(*second)
    for layout, key in one.items():
        # Two triples share a layout's key exactly when they agree on what it holds
        same = all(first[i] == second[i] for i in HOLDS[layout])
        assert (key == other[layout]) == same, (layout, key)
        # Two layouts of one table never share a key
        for layout_other, key_other in other.items():
            if layout_other != layout and layout_other.split(".")[0] == layout.split(".")[0]:
                assert key[0] != key_other[0], (layout, layout_other, key)
        # No key of one tenant lies under another tenant's prefix
        if first[0] != second[0]:
            assert not key[0].startswith(f"{second[0]}#"), (layout, key)
