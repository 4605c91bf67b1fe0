"""``serendip keys list|rotate-secret|retire-secret`` on moto: secrets shown once, never listed.

With no local stack state the CLI acts on the ambient configuration (this moto). Refusals exit
2 and name the argument at fault.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from functions.common.auth import NewKey, create_key, sign
from functions.rewards.app import lambda_handler as rewards_handler
from local.cli import main as serendip
from local.state import STATE_DIR_ENV
from tests.functional.conftest import Api, KeyClock

BODY = json.dumps({"event_id": "evt-1", "item_id": "a"}).encode()


@pytest.fixture(autouse=True)
def no_local_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``serendip keys ...``; its exit code, stdout and stderr."""
    code = serendip(["keys", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def signs(key: NewKey, secret: str) -> bool:
    headers = {"x-serendip-signature": sign(BODY, secret, int(time.time()))}
    status, _, _ = Api(key).call(rewards_handler, "POST", "/v1/rewards", BODY, headers=headers)
    return status == 202


def listed(capsys: pytest.CaptureFixture[str], tenant: str) -> tuple[dict[str, Any], str]:
    code, out, _ = run(capsys, "list", "--tenant", tenant)
    assert code == 0
    return json.loads(out), out


def test_rotate_then_retire_through_the_cli(
    aws: dict[str, str], tenant: NewKey, capsys: pytest.CaptureFixture[str], key_clock: KeyClock
) -> None:
    # When a secret is added: it is printed once, with its id
    code, out, err = run(capsys, "rotate-secret", "--key-id", tenant.key_id)
    assert code == 0, err
    added = json.loads(out)
    assert set(added) == {"key_id", "secret_id", "webhook_secret", "active_secrets"}
    assert (added["key_id"], added["active_secrets"]) == (tenant.key_id, 2)
    assert "retire-secret" in err
    assert signs(tenant, tenant.webhook_secret) and signs(tenant, added["webhook_secret"])
    # Then the old one is retired by its id, and stops signing once the key is read again
    # (API_KEY_CACHE_SECONDS at most)
    code, out, _ = run(
        capsys, "retire-secret", "--key-id", tenant.key_id, "--secret-id", tenant.secret_id
    )
    assert code == 0
    assert json.loads(out) == {
        "key_id": tenant.key_id,
        "secret_id": tenant.secret_id,
        "retired": True,
        "active_secrets": 1,
    }
    key_clock.pass_cache_time()
    assert not signs(tenant, tenant.webhook_secret)
    assert signs(tenant, added["webhook_secret"])


def test_list_shows_keys_and_secret_ids_but_no_secret(
    aws: dict[str, str], tenant: NewKey, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given acme has two keys, one rotated and one revoked, and globex has its own
    second = create_key("acme", {"rank"}, name="reporting")
    create_key("globex", {"rank"})
    assert run(capsys, "rotate-secret", "--key-id", tenant.key_id)[0] == 0
    assert run(capsys, "revoke", "--api-key", second.api_key)[0] == 0
    code, out, err = run(capsys, "rotate-secret", "--key-id", second.key_id)
    assert (code, out) == (2, "") and "revoked" in err  # a revoked key gets no new secret
    # When acme's keys are listed
    listing, out = listed(capsys, "acme")
    # Then each key shows its id, scopes, dates, status and secret ids: nothing secret
    keys = {key["key_id"]: key for key in listing["keys"]}
    assert set(keys) == {tenant.key_id, second.key_id}
    assert keys[second.key_id]["status"] == "revoked"
    assert keys[second.key_id]["name"] == "reporting"
    assert keys[tenant.key_id]["status"] == "active"
    assert keys[tenant.key_id]["scopes"] == ["admin", "rank", "reward"]
    assert len(keys[tenant.key_id]["secrets"]) == 2
    assert keys[tenant.key_id]["secrets"][0]["secret_id"] == tenant.secret_id
    assert set(keys[tenant.key_id]["secrets"][0]) == {"secret_id", "created"}
    for hidden in (tenant.webhook_secret, second.webhook_secret, tenant.api_key, "whsec_"):
        assert hidden not in out
    assert "sk_" not in out and "sealed" not in out


@pytest.mark.parametrize(
    ("argv", "argument", "message"),
    [
        (["rotate-secret", "--key-id", "0" * 64], "--key-id", "no API key with id"),
        (["retire-secret", "--key-id", "0" * 64, "--secret-id", "ws_x"], "--key-id", "no API"),
        (["retire-secret", "--key-id", "{key}", "--secret-id", "ws_nope"], "--secret-id", "has"),
        (["retire-secret", "--key-id", "{key}", "--secret-id", "{secret}"], "--secret-id", "last"),
    ],
    ids=["rotate-unknown-key", "retire-unknown-key", "unknown-secret", "last-secret"],
)
def test_refusals_exit_2_naming_the_argument(
    aws: dict[str, str],
    *,
    tenant: NewKey,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    argument: str,
    message: str,
) -> None:
    filled = [a.format(key=tenant.key_id, secret=tenant.secret_id) for a in argv]
    code, out, err = run(capsys, *filled)
    assert (code, out) == (2, "")
    assert f"{argument}: " in err and message in err
    assert signs(tenant, tenant.webhook_secret)  # nothing changed


def test_a_third_active_secret_is_refused(
    aws: dict[str, str], tenant: NewKey, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "rotate-secret", "--key-id", tenant.key_id)[0] == 0
    code, out, err = run(capsys, "rotate-secret", "--key-id", tenant.key_id)
    assert (code, out) == (2, "")
    assert "--key-id: " in err and "at most 2" in err and "retire one first" in err
    (key,) = listed(capsys, "acme")[0]["keys"]
    assert len(key["secrets"]) == 2


def test_list_of_a_tenant_without_keys_is_empty(
    aws: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert listed(capsys, "nobody")[0] == {"tenant": "nobody", "keys": []}
