"""The local stack over real HTTP: the API, rewards -> SQS -> learning, keys, `serendip serve`."""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest

from local.gateway import MAX_BODY_BYTES, Gateway, GatewayServer, api_routes
from local.lambda_events import LocalFunction
from local.serve_cli import rank_example, reward_example
from local.stack import LocalStack
from local.state import read_state
from tests.e2e.conftest import PYTHON, ROOT, Client, child_env, free_port, wait_for_health

CANDIDATES = [
    {"id": f"item-{i}", "category": "sports" if i % 2 else "music", "features": {"len": "short"}}
    for i in range(10)
]


def rank(client: Client, policy: str = "for-you", **kwargs: Any) -> dict[str, Any]:
    body = {"context": {"user": {"cohort": "a"}}, "candidates": CANDIDATES}
    status, payload, _ = client.call("POST", f"/v1/policies/{policy}/rank", body, **kwargs)
    assert status == 200, payload
    return dict(payload)


def head(client: Client, policy: str = "for-you") -> int:
    status, payload, _ = client.call("GET", f"/v1/policies/{policy}/models")
    assert status == 200, payload
    return int(payload["head"])


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "local.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# ---------------------------------------------------------------- the API


def test_health_answers_without_a_key(stack: LocalStack) -> None:
    status, payload, headers = Client(stack.url).call("GET", "/v1/health")
    assert (status, payload) == (200, {"status": "ok"})
    assert headers["Content-Type"].startswith("application/json")


def test_state_file_points_at_the_running_stack(stack: LocalStack) -> None:
    assert read_state() == stack.state()


def test_rank_returns_a_slate_with_probabilities(client: Client) -> None:
    answer = rank(client)
    assert answer["policy"] == "for-you" and answer["logged"] is True
    assert answer["event_id"].startswith("evt_")
    assert [slot["position"] for slot in answer["slate"]] == [1, 2, 3, 4, 5]
    assert len({slot["id"] for slot in answer["slate"]}) == 5
    assert all(0 < slot["probability"] <= 1 for slot in answer["slate"])


def test_rank_without_a_key_is_401(stack: LocalStack) -> None:
    status, payload, _ = Client(stack.url).call(
        "POST", "/v1/policies/for-you/rank", {"context": {}, "candidates": ["a"]}
    )
    assert status == 401 and payload["error"] == "unauthorized"


def test_signed_rewards_are_learned_into_a_new_model_version(
    stack: LocalStack, client: Client
) -> None:
    before = head(client)
    answer = rank(client)
    rewards = {
        "rewards": [
            {"event_id": answer["event_id"], "item_id": slot["id"], "type": "click", "value": 1}
            for slot in answer["slate"]
        ]
    }
    status, payload, _ = client.call("POST", "/v1/rewards", rewards, signed=True)
    assert (status, payload) == (202, {"accepted": 5})
    stack.drain(timeout=20)
    assert head(client) > before
    assert sum(p.stats.deleted for p in stack.pollers) >= 1
    assert sum(p.stats.errors for p in stack.pollers) == 0


def test_unsigned_or_badly_signed_rewards_are_401_and_queue_nothing(
    stack: LocalStack, client: Client
) -> None:
    answer = rank(client)
    stack.drain(timeout=20)  # whatever other tests queued
    body = {"event_id": answer["event_id"], "item_id": answer["slate"][0]["id"]}
    status, payload, _ = client.call("POST", "/v1/rewards", body)
    assert status == 401 and payload["error"] == "unauthorized"
    bad = {"x-serendip-signature": f"t={int(time.time())},v1={'0' * 64}"}
    status, _, _ = client.call("POST", "/v1/rewards", body, headers=bad)
    assert status == 401
    assert [poller.queue_depth() for poller in stack.pollers] == [(0, 0), (0, 0)]


def test_concurrent_ranks_all_succeed(client: Client) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: rank(client), range(24)))
    assert len({answer["event_id"] for answer in answers}) == 24


def test_unknown_routes_are_404_and_wrong_methods_405(client: Client) -> None:
    status, payload, _ = client.call("GET", "/v1/nothing/here")
    assert status == 404 and payload["error"] == "not_found"
    status, payload, headers = client.call("DELETE", "/v1/policies/for-you/rank")
    assert status == 405 and payload["error"] == "method_not_allowed"
    assert headers["Allow"] == "POST"


def test_bodies_over_6_mb_are_413_without_being_read(stack: LocalStack) -> None:
    address = urlsplit(stack.url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
    try:
        connection.putrequest("POST", "/v1/policies/for-you/rank")
        connection.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["error"] == "payload_too_large"
    finally:
        connection.close()


def test_query_strings_and_path_parameters_reach_the_handler(client: Client) -> None:
    status, payload, _ = client.call("GET", "/v1/policies/explore?verbose=1")
    assert status == 200 and payload["name"] == "explore"


# ---------------------------------------------------------------- the gateway's own answers


def _fake(name: str, handler: Any, path: str = "/x", method: str = "GET") -> LocalFunction:
    function = LocalFunction(
        name,
        "unused.handler",
        events={"E": {"Type": "Api", "Properties": {"Path": path, "Method": method}}},
    )
    function._handler = handler
    return function


def test_gateway_maps_handler_failures_and_proxies_binary_bodies(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def explode(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("handler bug")

    def binary(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {
            "statusCode": 201,
            "multiValueHeaders": {"X-Seen": [event["pathParameters"]["id"], "two"]},
            "body": "AAEC",
            "isBase64Encoded": True,
        }

    functions = {
        "Boom": _fake("Boom", explode, "/boom"),
        "Bad": _fake("Bad", lambda event, context: {"body": "no status"}, "/bad"),
        "Bin": _fake("Bin", binary, "/bin/{id}"),
    }
    server = GatewayServer(Gateway(api_routes(functions)), port=0)
    server.start()
    try:
        address = f"http://127.0.0.1:{server.port}"
        with caplog.at_level("ERROR", logger="serendip.gateway"):
            status, payload, _ = Client(address).call("GET", "/boom")
        assert (status, payload["error"]) == (500, "internal_error")
        assert "Boom raised on GET /boom" in caplog.text and "handler bug" in caplog.text
        status, payload, _ = Client(address).call("GET", "/bad")
        assert (status, payload["error"]) == (502, "bad_gateway")
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", "/bin/42")
        response = connection.getresponse()
        assert (response.status, response.read()) == (201, b"\x00\x01\x02")
        assert response.headers.get_all("X-Seen") == ["42", "two"]
        connection.close()
    finally:
        server.stop()


# ---------------------------------------------------------------- the command line


def test_banner_examples_run_as_printed(stack: LocalStack) -> None:
    if not (shutil.which("bash") and shutil.which("curl") and shutil.which("openssl")):
        pytest.skip("needs bash, curl and openssl")
    ranked = subprocess.run(
        ["bash", "-c", rank_example(stack.url, stack.api_key)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    answer = json.loads(ranked.stdout)
    assert "item-1" in {slot["id"] for slot in answer["slate"]}
    script = f"EVENT={answer['event_id']}\n" + reward_example(
        stack.url, stack.api_key, stack.webhook_secret
    )
    posted = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    assert json.loads(posted.stdout) == {"accepted": 1}


def test_keys_create_finds_the_running_stack_by_its_state_file(
    stack: LocalStack, state_dir: Path
) -> None:
    done = cli(
        "keys",
        "create",
        "--tenant",
        "demo",
        "--scopes",
        "rank",
        "--name",
        "e2e",
        env=child_env(SERENDIP_STATE_DIR=str(state_dir)),
    )
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert created["tenant"] == "demo" and created["scopes"] == ["rank"]
    assert created["api_key"].startswith("sk_") and created["webhook_secret"].startswith("whsec_")
    key_client = Client(stack.url, created["api_key"])
    rank(key_client)
    status, payload, _ = key_client.call("PUT", "/v1/items", {"items": [{"id": "x"}]})
    assert status == 403, payload  # no admin scope


def test_webhook_secret_rotation_over_the_running_stack(stack: LocalStack, state_dir: Path) -> None:
    # Given a key made by the CLI (its secret sealed by the stack's KMS key on moto's server)
    env = child_env(SERENDIP_STATE_DIR=str(state_dir))
    done = cli("keys", "create", "--tenant", "demo", "--scopes", "rank,reward", env=env)
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    # When a second secret is added and the first retired
    done = cli("keys", "rotate-secret", "--key-id", created["key_id"], env=env)
    assert done.returncode == 0, done.stderr
    rotated = json.loads(done.stdout)
    retire = ("--key-id", created["key_id"], "--secret-id", created["secret_id"])
    assert cli("keys", "retire-secret", *retire, env=env).returncode == 0
    # Then rewards signed with the new secret are accepted over HTTP, the old one's refused
    answer = rank(Client(stack.url, created["api_key"]))
    body = {"event_id": answer["event_id"], "item_id": answer["slate"][0]["id"]}
    new = Client(stack.url, created["api_key"], rotated["webhook_secret"])
    old = Client(stack.url, created["api_key"], created["webhook_secret"])
    assert new.call("POST", "/v1/rewards", body, signed=True)[0] == 202
    assert old.call("POST", "/v1/rewards", body, signed=True)[0] == 401
    # And the listing names both ids it knows of, and no secret
    listing = cli("keys", "list", "--tenant", "demo", env=env)
    assert listing.returncode == 0, listing.stderr
    assert rotated["secret_id"] in listing.stdout
    assert created["secret_id"] not in listing.stdout
    assert rotated["webhook_secret"] not in listing.stdout


def test_keys_create_with_cfn_stack_reads_cloudformation_outputs(
    stack: LocalStack, tmp_path: Path
) -> None:
    # Given a deployed stack (on this moto) whose outputs name the keys table and KMS key
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {
            "KeysTableName": {"Value": stack.resources["KEYS_TABLE"]},
            "WebhookSecretsKeyId": {"Value": stack.resources["WEBHOOK_SECRETS_KEY_ID"]},
        },
    }
    boto3.client("cloudformation").create_stack(
        StackName="serendip-prod", TemplateBody=json.dumps(template)
    )
    # When `keys create --cfn-stack` runs with no local stack to find (an empty state dir)
    env = child_env(
        SERENDIP_STATE_DIR=str(tmp_path),
        AWS_ENDPOINT_URL=stack.moto_endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    done = cli(
        "keys",
        "create",
        "--tenant",
        "demo",
        "--scopes",
        "rank,admin",
        "--cfn-stack",
        "serendip-prod",
        env=env,
    )
    # Then the key lands in that table and works
    assert done.returncode == 0, done.stderr
    assert "CloudFormation stack serendip-prod" in done.stderr
    rank(Client(stack.url, json.loads(done.stdout)["api_key"]))


def test_keys_create_without_any_stack_says_what_to_do(tmp_path: Path) -> None:
    done = cli("keys", "create", "--tenant", "t", env=child_env(SERENDIP_STATE_DIR=str(tmp_path)))
    assert done.returncode != 0
    assert "serendip serve" in done.stderr and "--stack" in done.stderr


def _read_lines(stream: Any, lines: list[str], banner_done: threading.Event) -> None:
    for line in stream:
        lines.append(line)
        if "Press Ctrl-C to stop" in line:
            banner_done.set()


def test_serve_runs_prints_its_banner_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [PYTHON, "-m", "local.cli", "serve", "--port", str(port), "--api-key", "sk_e2e_serve"],
        cwd=ROOT,
        env=child_env(SERENDIP_STATE_DIR=str(tmp_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    banner_done = threading.Event()
    reader = threading.Thread(target=_read_lines, args=(process.stdout, lines, banner_done))
    reader.start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_health(url)
        assert banner_done.wait(30), "".join(lines)
        banner = "".join(lines)
        assert url in banner and "sk_e2e_serve" in banner
        assert f"curl -s -X POST {url}/v1/policies/for-you/rank" in banner
        assert "x-serendip-signature" in banner and "openssl dgst -sha256 -hmac" in banner
        assert (tmp_path / "stacks" / "default.json").is_file()
        rank(Client(url, "sk_e2e_serve"))
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert time.monotonic() - started < 10
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(5)
    stderr = process.stderr.read() if process.stderr else ""
    assert "stopped" in "".join(lines), stderr
    assert "Traceback" not in stderr, stderr
    assert not (tmp_path / "stacks" / "default.json").exists()


def test_a_second_ctrl_c_during_the_stop_does_not_interrupt_it(tmp_path: Path) -> None:
    # Given a running serve
    port = free_port()
    process = subprocess.Popen(
        [PYTHON, "-m", "local.cli", "serve", "--port", str(port), "--workers", "1"],
        cwd=ROOT,
        env=child_env(SERENDIP_STATE_DIR=str(tmp_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_health(f"http://127.0.0.1:{port}")
        # When an impatient user presses Ctrl-C twice, then once more
        for _ in range(3):
            process.send_signal(signal.SIGINT)
            time.sleep(0.05)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    out, err = process.communicate()
    # Then the stop runs to its end, cleanly: exit 0, no traceback, the state file removed
    assert code == 0, err
    assert "stopped" in out and "Traceback" not in err, err
    assert not (tmp_path / "stacks" / "default.json").exists()
