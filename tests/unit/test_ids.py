"""Tenant ids cannot collide: no two (tenant, id) pairs share a storage key or key prefix."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.common.decision_store import event_key, policy_key
from functions.common.ids import check_tenant
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
