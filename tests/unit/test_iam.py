"""The IAM evaluator behind the call-coverage test: it finds a missing grant and an unused one."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from local.aws_calls import Permission, permissions
from local.iam import (
    PolicyError,
    bucket_arn,
    check,
    function_policies,
    logical_name,
    matches,
    queue_arn,
    table_arn,
)
from local.resources import translated_template

TEMPLATE = translated_template()


def without_statement(function: str, action: str) -> dict[str, Any]:
    """The template with every statement of ``function``'s role that grants ``action`` removed."""
    template = copy.deepcopy(TEMPLATE)
    role = template["Resources"][f"{function}Role"]["Properties"]
    for policy in role["Policies"]:
        statements = policy["PolicyDocument"]["Statement"]
        policy["PolicyDocument"]["Statement"] = [
            s
            for s in statements
            if action not in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        ]
    return template


def test_a_call_the_role_does_not_grant_is_reported_denied() -> None:
    # Given the rewards function's role without its read of the policies table
    policies = function_policies(without_statement("RewardsFunction", "dynamodb:GetItem"))
    usage = {("RewardsFunction", "dynamodb:GetItem", table_arn("PoliciesTable")): 1}
    # When its activation's read of a policy is checked
    report = check(policies, usage)
    # Then the call is denied, as AWS would answer AccessDenied
    assert report.denied == [("RewardsFunction", "dynamodb:GetItem", table_arn("PoliciesTable"))]


def test_the_shipped_roles_grant_what_each_function_needs_and_nothing_across() -> None:
    policies = function_policies(TEMPLATE)
    rank, rewards, learn = (
        policies[n] for n in ("RankFunction", "RewardsFunction", "LearnFunction")
    )
    assert rank.allows("dynamodb:PutItem", table_arn("DecisionsTable"))
    assert rank.allows("s3:GetObject", bucket_arn("ModelBucket") + "/models/acme/for-you/1.vw.z")
    # Rank never lists the bucket (every tenant's model keys), nor writes models
    assert not rank.allows("s3:ListBucket", bucket_arn("ModelBucket"))
    assert not rank.allows("dynamodb:PutItem", table_arn("ModelsTable"))
    assert not rewards.allows("dynamodb:DeleteItem", table_arn("DecisionsTable"))
    assert not rewards.allows("sqs:SendMessage", queue_arn("LearnQueue"))
    assert learn.allows("dynamodb:UpdateItem", table_arn("DecisionsTable"))
    assert not learn.allows("dynamodb:PutItem", table_arn("KeysTable"))


def test_a_grant_no_call_used_is_listed_unused() -> None:
    policies = function_policies(TEMPLATE)
    report = check(policies, {("RankFunction", "dynamodb:GetItem", table_arn("KeysTable")): 1})
    unused = {(function, grant.action, grant.resource) for function, grant in report.unused}
    assert ("RankFunction", "dynamodb:GetItem", table_arn("KeysTable")) not in unused
    assert ("RankFunction", "dynamodb:PutItem", table_arn("DecisionsTable")) in unused
    # AWS-managed policies (logs, traces) are not ours to trim
    assert not any(grant.policy.startswith("arn:") for _, grant in report.unused)


def test_a_statement_the_evaluator_cannot_read_is_refused_not_guessed() -> None:
    template = copy.deepcopy(TEMPLATE)
    statement = template["Resources"]["RankFunctionRole"]["Properties"]["Policies"][0]
    statement["PolicyDocument"]["Statement"][0]["Condition"] = {
        "Bool": {"aws:SecureTransport": "true"}
    }
    with pytest.raises(PolicyError, match="Condition"):
        function_policies(template)


def test_transactions_need_each_entrys_action_on_each_table() -> None:
    needed = permissions(
        "dynamodb",
        "TransactWriteItems",
        {
            "TransactItems": [
                {"Put": {"TableName": "s-ModelsTable"}},
                {"Update": {"TableName": "s-DecisionsTable"}},
                {"ConditionCheck": {"TableName": "s-PoliciesTable"}},
            ]
        },
        None,
    )
    assert [(p.action, p.resource) for p in needed] == [
        ("dynamodb:PutItem", "s-ModelsTable"),
        ("dynamodb:UpdateItem", "s-DecisionsTable"),
        ("dynamodb:ConditionCheckItem", "s-PoliciesTable"),
    ]
    assert permissions("s3", "ListObjectsV2", {"Bucket": "b"}, None) == (
        Permission("s3:ListBucket", "s3", "b"),
    )


@given(st.text(alphabet="ab/:*?", max_size=8), st.text(alphabet="ab/:", max_size=8))
def test_a_pattern_without_wildcards_matches_only_itself(glob: str, text: str) -> None:
    if "*" not in glob and "?" not in glob:
        assert matches(glob, text) == (glob == text)
    assert matches("*", text)
    assert matches(glob.replace("?", "*"), text) or not matches(glob, text)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("serendip-test-RewardQueue", "RewardQueue"),
        ("serendip-RewardDLQ", "RewardDLQ"),
        ("stack-learnqueue.fifo", "LearnQueue"),
        ("arn:aws:dynamodb:us-east-1:1:table/x-ModelsTable", "ModelsTable"),
        ("someone-elses-table", None),
    ],
)
def test_physical_names_map_to_their_logical_ids(name: str, expected: str | None) -> None:
    candidates = ["RewardQueue", "RewardDLQ", "LearnQueue", "ModelsTable"]
    assert logical_name(name, candidates, {}) == expected
