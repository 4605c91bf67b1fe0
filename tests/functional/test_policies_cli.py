"""``serendip policies put|get|list`` on moto: the CLI's HTTP calls answered by the admin handler.

The client is replaced by one that turns each request into the proxy event API Gateway would
send (``--url`` names the endpoint; no local stack is recorded), so the file goes through the
API as sent and the API's refusals come back to the command line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from functions.admin.app import lambda_handler as admin_handler
from functions.common import policy_store
from functions.common.auth import NewKey, create_key
from local import policies_cli
from local.cli import main as serendip
from local.client import HttpResponse
from local.lambda_events import FakeLambdaContext, match_resource, proxy_event, response_json
from local.state import STATE_DIR_ENV

ROOT = Path(__file__).resolve().parents[2]
URL = "http://api.test"
RESOURCES = ["/v1/policies", "/v1/policies/{policy}"]


class HandlerClient:
    """``SerendipClient``'s ``request``, answered by the admin handler in process."""

    sent: ClassVar[list[tuple[str, str, bytes | None, dict[str, str]]]] = []

    def __init__(self, url: str, api_key: str, *_: Any, **__: Any) -> None:
        assert url == URL
        self.api_key = api_key

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> HttpResponse:
        all_headers = {"content-type": "application/json", "x-api-key": self.api_key}
        all_headers.update(headers or {})
        self.sent.append((method, path, raw, all_headers))
        decoded = unquote(urlsplit(path).path)  # API Gateway hands the path on decoded
        resource = next(r for r in RESOURCES if match_resource(r, decoded) is not None)
        event = proxy_event(method, decoded, resource=resource, body=raw, headers=all_headers)
        response = admin_handler(event, FakeLambdaContext())
        answered = {k.lower(): v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()}
        answered.update({k.lower(): v for k, v in (response.get("headers") or {}).items()})
        return HttpResponse(response["statusCode"], response_json(response), answered)


@pytest.fixture(autouse=True)
def through_the_handler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path))  # no local stack recorded
    monkeypatch.delenv(policies_cli.API_KEY_ENV, raising=False)
    monkeypatch.setattr(policies_cli, "SerendipClient", HandlerClient)
    HandlerClient.sent = []


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = serendip(["policies", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_put_sends_the_yaml_as_written_and_get_gives_it_back(
    aws: dict[str, str], tenant: NewKey, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a spec file as a person writes it, with a comment and no name
    spec_file = tmp_path / "weekly-picks.yaml"
    spec_file.write_text("# the weekly picks\nslate_size: 3\nexploration:\n  budget: 0.15\n")
    # When it is put
    code, out, err = run(capsys, "put", str(spec_file), "--url", URL, "--api-key", tenant.api_key)
    # Then the file's bytes went as YAML to the name of its stem, and the policy is stored
    assert code == 0, err
    method, path, raw, headers = HandlerClient.sent[-1]
    assert (method, path, raw) == ("PUT", "/v1/policies/weekly-picks", spec_file.read_bytes())
    assert headers["content-type"] == "application/yaml"
    assert json.loads(out)["spec_version"] == 1
    assert "stored weekly-picks (spec version 1, model version 0)" in err
    assert policy_store.get("acme", "weekly-picks").spec.slate_size == 3
    # And get prints it as YAML that puts back to the same spec
    code, out, err = run(capsys, "get", "weekly-picks", "--url", URL, "--api-key", tenant.api_key)
    assert code == 0, err
    printed = yaml.safe_load(out)
    assert (printed["slate_size"], printed["exploration"]["budget"]) == (3, 0.15)
    before = policy_store.get("acme", "weekly-picks").spec
    again = tmp_path / "again.yaml"
    again.write_text(out)
    code, out, err = run(
        capsys,
        "put",
        str(again),
        "--name",
        "weekly-picks",
        "--url",
        URL,
        "--api-key",
        tenant.api_key,
    )
    assert code == 0, err
    assert policy_store.get("acme", "weekly-picks").spec == before
    # And as JSON, the same spec
    code, out, _ = run(
        capsys,
        "get",
        "weekly-picks",
        "--format",
        "json",
        "--url",
        URL,
        "--api-key",
        tenant.api_key,
    )
    assert code == 0 and json.loads(out) == printed


def test_put_of_a_shipped_file_takes_its_name_and_list_shows_it(
    aws: dict[str, str],
    tenant: NewKey,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a tenant with no policy yet, and its key in the environment
    fresh = create_key("newco", {"admin"})
    monkeypatch.setenv(policies_cli.API_KEY_ENV, fresh.api_key)
    code, out, _ = run(capsys, "list", "--url", URL)
    assert code == 0 and json.loads(out) == {"policies": []}
    # When the shipped for-you.yaml is put
    code, out, err = run(capsys, "put", str(ROOT / "policies" / "for-you.yaml"), "--url", URL)
    assert code == 0, err
    assert HandlerClient.sent[-1][1] == "/v1/policies/for-you"
    # Then list shows it, with its versions
    code, out, err = run(capsys, "list", "--url", URL)
    assert code == 0, err
    (listed,) = json.loads(out)["policies"]
    assert (listed["name"], listed["spec_version"], listed["model_version"]) == ("for-you", 1, 0)
    assert "1 policies" in err


REFUSED_PUTS = [
    (
        "name: for-you\nvw:\n  args: ['--data', '/etc/passwd']\n",
        [],
        "422 validation_error (field vw.args[0])",
    ),
    ("exploration: {budget: [\n", [], "400 bad_request (field body): body: not valid YAML"),
    ("name: for-you\n", ["--name", "explore"], "422 validation_error (field name)"),
    ("a: &x 1\nb: *x\n", [], "anchors and aliases"),
]


@pytest.mark.parametrize("case", REFUSED_PUTS)
def test_a_refused_put_prints_the_apis_error_with_its_field_and_exits_2(
    aws: dict[str, str],
    tenant: NewKey,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: tuple[str, list[str], str],
) -> None:
    content, argv, expected = case
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(content)
    code, out, err = run(
        capsys, "put", str(spec_file), *argv, "--url", URL, "--api-key", tenant.api_key
    )
    assert (code, out) == (2, "")
    assert expected in err, err
    assert "request id " in err
    assert policy_store.get("acme", "for-you").spec_version == 1


def test_errors_without_a_key_a_file_or_a_policy(
    aws: dict[str, str], tenant: NewKey, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "list", "--url", URL)
    assert code == 2 and "--api-key" in err and policies_cli.API_KEY_ENV in err
    code, _, err = run(capsys, "put", str(tmp_path / "missing.yaml"), "--url", URL)
    assert code == 2 and "cannot read" in err
    code, _, err = run(capsys, "get", "nope", "--url", URL, "--api-key", tenant.api_key)
    assert code == 2 and "404 not_found" in err
    code, _, err = run(capsys, "list", "--url", URL, "--api-key", "sk_wrong")
    assert code == 2 and "401 unauthorized" in err
    # No stack named, none running, no URL: refused, saying how to start one
    with pytest.raises(SystemExit) as refused:
        run(capsys, "list", "--api-key", tenant.api_key)
    assert refused.value.code == 2
    assert "serendip serve" in capsys.readouterr().err
