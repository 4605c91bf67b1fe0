"""The README's policy commands over real HTTP: ``serendip policies`` against the running stack.

Run as a user runs them, in a process of their own that finds the stack by its state file and
calls its API with the demo key; then the same policy read, deleted and created again over HTTP.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from local.stack import LocalStack
from tests.e2e.conftest import PYTHON, ROOT, Client, child_env


def policies(*args: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "local.cli", "policies", *args],
        cwd=ROOT,
        env=child_env(SERENDIP_STATE_DIR=str(state_dir)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_put_get_list_as_the_readme_says(
    stack: LocalStack, state_dir: Path, client: Client, tmp_path: Path
) -> None:
    # Given a spec file of a new policy, as a person writes it
    spec_file = tmp_path / "e2e-weekly.yaml"
    spec_file.write_text("# weekly picks\nslate_size: 2\nexploration: {budget: 0.2}\n")
    # When it is put with the running stack's demo key
    done = policies("put", str(spec_file), state_dir=state_dir)
    assert done.returncode == 0, done.stderr
    assert "using local stack 'default'" in done.stderr
    assert json.loads(done.stdout)["name"] == "e2e-weekly"
    # Then the stack serves it, and get and list show it
    status, ranked, headers = client.call(
        "POST",
        "/v1/policies/e2e-weekly/rank",
        {"context": {}, "candidates": [{"id": "a"}, {"id": "b"}, {"id": "c"}]},
    )
    assert status == 200 and len(ranked["slate"]) == 2, ranked
    assert headers.get("x-request-id")
    done = policies("get", "e2e-weekly", state_dir=state_dir)
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout)["exploration"]["budget"] == 0.2
    done = policies("list", state_dir=state_dir)
    names = [p["name"] for p in json.loads(done.stdout)["policies"]]
    assert {"e2e-weekly", "for-you", "explore"} <= set(names)
    # And a refusal names its field on the command line
    spec_file.write_text("vw: {args: ['--data', '/etc/passwd']}\n")
    done = policies("put", str(spec_file), state_dir=state_dir)
    assert done.returncode == 2
    assert "422 validation_error (field vw.args[0])" in done.stderr
    # (the package's stack is shared: leave the demo tenant as it was)
    assert client.call("DELETE", "/v1/policies/e2e-weekly")[0] == 200


def test_delete_and_create_again_over_http(stack: LocalStack, client: Client) -> None:
    raw = (
        (ROOT / "policies" / "explore.yaml").read_text().replace("name: explore", "name: e2e-gone")
    )
    yaml_type = {"content-type": "application/yaml"}
    status, put, _ = client.call("PUT", "/v1/policies/e2e-gone", raw.encode(), headers=yaml_type)
    assert status == 200, put
    status, deleted, headers = client.call("DELETE", "/v1/policies/e2e-gone")
    assert status == 200 and deleted["policy"] == "e2e-gone", deleted
    assert headers.get("x-request-id")
    status, _, _ = client.call("GET", "/v1/policies/e2e-gone")
    assert status == 404
    status, again, _ = client.call("PUT", "/v1/policies/e2e-gone", raw.encode(), headers=yaml_type)
    assert status == 200 and (again["spec_version"], again["model_version"]) == (1, 0), again
    # curl -d sends a form type: refused naming the header
    status, error, _ = client.call(
        "PUT",
        "/v1/policies/e2e-gone",
        raw.encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert (status, error["field"]) == (400, "content-type")
    assert client.call("DELETE", "/v1/policies/e2e-gone")[0] == 200
