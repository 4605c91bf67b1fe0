"""The docs match the code, and the README's commands, the CLI and the bench harness work."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bandit.decision_log import DecisionRecord
from bandit.spec import PolicySpec
from local.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[2]


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```sh\n(.*?)```", readme, re.DOTALL)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert [line for line in ci.splitlines() if line.startswith("make")] == ["make test"]


def test_decision_log_doc_lists_every_field_and_its_example_parses() -> None:
    doc = (ROOT / "docs" / "decision-log.md").read_text()
    for field in DecisionRecord.model_fields:
        assert f"| `{field}` |" in doc, f"docs/decision-log.md does not describe {field}"
    example = re.search(r"```json\n(.*?)```", doc, re.DOTALL)
    assert example is not None
    record = DecisionRecord.model_validate(json.loads(example.group(1)))
    assert record.shown_ids() == ["shoe-1", "hat-7"]


def test_policy_doc_lists_every_spec_field() -> None:
    doc = (ROOT / "docs" / "policies.md").read_text()
    for name, field in PolicySpec.model_fields.items():
        annotation = field.annotation
        nested = getattr(annotation, "model_fields", None)
        if nested:
            for inner in nested:
                assert f"`{name}.{inner}" in doc, f"docs/policies.md lacks {name}.{inner}"
        else:
            assert f"`{name}`" in doc, f"docs/policies.md lacks {name}"


def test_simulate_shows_ctr_rising_above_uniform(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["simulate", "--decisions", "1600"]) == 0
    output = capsys.readouterr().out
    rows = re.findall(r"│\s+[\d,]+-[\d,]+ │\s+([\d.]+) │\s+([\d.]+) │", output)
    assert len(rows) == 8
    first_policy, _ = map(float, rows[0])
    last_policy, last_uniform = map(float, rows[-1])
    assert last_policy > first_policy
    assert last_policy > 2 * last_uniform


def test_committed_openapi_matches_the_routes() -> None:
    from functions.admin.openapi import openapi_document

    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert committed == openapi_document(), (
        "docs/openapi.json is stale: serendip openapi > docs/openapi.json"
    )


def test_api_doc_covers_every_route() -> None:
    from functions.admin.openapi import openapi_document

    doc = (ROOT / "docs" / "api.md").read_text()
    for path, methods in openapi_document()["paths"].items():
        for method in methods:
            assert f"{method.upper()} {path}" in doc, f"docs/api.md lacks {method.upper()} {path}"


def test_every_template_route_has_a_handler_route_and_back() -> None:
    from functions.admin.openapi import openapi_document
    from local.resources import load_template

    template = load_template()
    declared = {
        (event["Properties"]["Method"].lower(), event["Properties"]["Path"])
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
        for event in resource["Properties"].get("Events", {}).values()
        if event["Type"] == "Api"
    }
    served = {
        (method, path)
        for path, methods in openapi_document()["paths"].items()
        for method in methods
    }
    # The Personalizer API is Azure's contract (docs/personalizer.md), routed inside its function
    personalizer = ("any", "/personalizer/{proxy+}")
    assert personalizer in declared
    assert declared - {personalizer} == served
