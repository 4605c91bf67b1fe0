"""Fuzzing: schemathesis against the OpenAPI document the running local stack serves.

The schema is loaded over HTTP from ``/v1/openapi.json``. Every operation gets a bounded number
of generated requests, valid ones (by the schema) and invalid ones, all sent with a valid API key
of a tenant of its own; reward posts are signed over the exact bytes sent. Every response must
be free of server errors and match the document: a documented status code and content type, and
a body that validates against the documented schema. Invalid requests must be refused. Rewards
the webhook accepted must all be processed: none may end in the dead-letter queue.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bandit.domain import Candidate
from bandit.spec import load_spec
from functions.common import catalog, dlq, policy_store
from functions.common.auth import create_key, sign
from functions.common.index_builder import build_all
from local.stack import LocalStack
from tests.e2e.conftest import ROOT

TENANT = "e2e-fuzz"
POLICY = "fuzz-for-you"
EXAMPLES_PER_VARIANT = 25  # per operation and variant (valid, invalid, any policy)
SIGNATURE_HEADER = "x-serendip-signature"
RESPONSE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
NEGATIVE_CHECKS = [*RESPONSE_CHECKS, negative_data_rejection]


class SigningAuth(requests.auth.AuthBase):
    """The tenant's API key on every request, and the webhook signature over the exact body."""

    def __init__(self, api_key: str, webhook_secret: str) -> None:
        self.api_key = api_key
        self.webhook_secret = webhook_secret

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["x-api-key"] = self.api_key
        if request.path_url.split("?", 1)[0] == "/v1/rewards":
            body = request.body or b""
            raw = body.encode() if isinstance(body, str) else body
            request.headers[SIGNATURE_HEADER] = sign(raw, self.webhook_secret, int(time.time()))
        return request


@dataclass
class FuzzRun:
    """What was sent per operation, the statuses seen and each distinct failure once."""

    operations: list[str] = field(default_factory=list)
    cases: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def record(self, case: Any, mode: GenerationMode, status: int, error: FailureGroup) -> None:
        """Keep the first example of each (operation, mode, status, failure kind)."""
        for failure in error.exceptions:
            key = f"{case.operation.label} [{mode.value}] {status} {failure.code} {failure.title}"
            example = f"{failure.message[:500]}\n{case.as_curl_command()[:1000]}"
            self.failures.setdefault(key, example)


def _fixed_parameters(operation: Any, api_key: str, *, pin_policy: bool) -> dict[str, Any]:
    """What generation must not vary: the credentials (``SigningAuth`` sets them) and, when
    ``pin_policy``, the tenant's policy, so that valid bodies reach the services past the 404.
    """
    headers = {"x-api-key": api_key}
    if operation.path == "/v1/rewards":
        headers[SIGNATURE_HEADER] = "signed when sent"
    fixed: dict[str, Any] = {"headers": headers}
    if pin_policy and "{policy}" in operation.path:
        fixed["path_parameters"] = {"policy": POLICY}
    return fixed


def _variants(operation: Any) -> list[tuple[GenerationMode, bool]]:
    """(generation mode, policy pinned) runs for an operation.

    Invalid requests need a body or query to break (path parameters are free strings); a
    policy in the path is also fuzzed itself, with valid requests.
    """
    variants = [(GenerationMode.POSITIVE, True)]
    if operation.body or operation.query:
        variants.append((GenerationMode.NEGATIVE, True))
    if "{policy}" in operation.path:
        variants.append((GenerationMode.POSITIVE, False))
    return variants


def _fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    fixed: dict[str, Any],
    send: Callable[[Any], Any],
    run: FuzzRun,
) -> None:
    strategy = operation.as_strategy(generation_mode=mode, **fixed)
    checks = NEGATIVE_CHECKS if mode is GenerationMode.NEGATIVE else RESPONSE_CHECKS

    @settings(
        max_examples=EXAMPLES_PER_VARIANT,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def one(case: Any) -> None:
        response = send(case)
        run.cases[operation.label] += 1
        run.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=checks)
        except FailureGroup as error:
            # Collected rather than raised: one run shows every distinct failure, unshrunk.
            run.record(case, mode, response.status_code, error)

    one()


@pytest.fixture(scope="module")
def fuzzed(stack: LocalStack) -> FuzzRun:
    """Every operation of the served schema, valid and invalid requests, then the queue drained."""
    key = create_key(TENANT, {"rank", "reward", "admin"})
    spec = load_spec(ROOT / "policies" / "for-you.yaml").model_copy(update={"name": POLICY})
    policy_store.put(TENANT, spec)
    # A catalog, indexed, so that recommend's valid requests reach retrieval and ranking
    catalog.upsert(TENANT, [Candidate(f"fuzz-{n}", category=f"c{n % 3}") for n in range(30)])
    assert build_all(lambda: 600.0, [TENANT]).built == [TENANT]
    schema = schemathesis.openapi.from_url(f"{stack.url}/v1/openapi.json")
    run = FuzzRun()
    started = time.monotonic()
    with requests.Session() as session:
        session.auth = SigningAuth(key.api_key, key.webhook_secret)

        def send(case: Any) -> Any:
            return case.call(base_url=stack.url, session=session, timeout=30)

        for result in schema.get_all_operations():
            operation = result.ok()
            run.operations.append(operation.label)
            for mode, pin_policy in _variants(operation):
                fixed = _fixed_parameters(operation, key.api_key, pin_policy=pin_policy)
                _fuzz_operation(operation, mode, fixed, send, run)
    stack.drain(timeout=120)
    run.seconds = time.monotonic() - started
    return run


def test_every_operation_was_fuzzed_within_bounds(fuzzed: FuzzRun) -> None:
    documented = {
        f"{method.upper()} {path}"
        for path, methods in json.loads((ROOT / "docs" / "openapi.json").read_text())[
            "paths"
        ].items()
        for method in methods
    }
    # schemathesis leaves out the endpoint that served it the schema
    assert set(fuzzed.operations) == documented - {"GET /v1/openapi.json"}
    for operation in fuzzed.operations:
        assert 1 <= fuzzed.cases[operation] <= 3 * EXAMPLES_PER_VARIANT, operation
    assert sum(fuzzed.cases.values()) >= 15 * EXAMPLES_PER_VARIANT
    print(
        f"\nschemathesis: {sum(fuzzed.cases.values())} cases over {len(fuzzed.operations)} "
        f"operations in {fuzzed.seconds:.0f} s; statuses {dict(sorted(fuzzed.statuses.items()))}"
    )


def test_no_server_error_and_every_response_matches_the_document(fuzzed: FuzzRun) -> None:
    report = "\n".join(f"{key}\n    {message}" for key, message in fuzzed.failures.items())
    assert not fuzzed.failures, report
    assert not any(status >= 500 for status in fuzzed.statuses)


def test_some_requests_were_accepted_and_some_refused(fuzzed: FuzzRun) -> None:
    assert sum(n for status, n in fuzzed.statuses.items() if status < 300) > 0
    assert fuzzed.statuses[422] > 0


def test_every_accepted_reward_was_processed(fuzzed: FuzzRun) -> None:
    dead = [letter for letter in dlq.peek(wait_seconds=0) if TENANT in letter.body]
    assert not dead, [letter.excerpt() for letter in dead]
