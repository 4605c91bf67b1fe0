"""template.yaml translates offline and says what the design says (pure: no sockets, no moto)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import tomllib
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from functions.common.settings import Settings, request_rate
from functions.common.tables import KEY_LISTING_ATTRIBUTES, ApiKeyItem
from local.iam import function_policies
from local.resources import (
    TEMPLATE,
    check,
    function_environment,
    load_template,
    main,
    references,
    stack_resources,
    translate,
    translated_template,
)

ROOT = Path(__file__).resolve().parents[2]

HANDLERS = {
    "RankFunction": "functions/rank/app.lambda_handler",
    "RewardsFunction": "functions/rewards/app.lambda_handler",
    "RouteFunction": "functions/route/app.lambda_handler",
    "LearnFunction": "functions/learn/app.lambda_handler",
    "SweepFunction": "functions/sweep/app.lambda_handler",
    "IndexFunction": "functions/index/app.lambda_handler",
    "AdminFunction": "functions/admin/app.lambda_handler",
    "PersonalizerFunction": "functions/personalizer/app.lambda_handler",
}

ROUTES = {
    ("POST", "/v1/policies/{policy}/rank"): "RankFunction",
    ("POST", "/v1/policies/{policy}/recommend"): "RankFunction",
    ("POST", "/v1/rewards"): "RewardsFunction",
    ("POST", "/v1/events/{event_id}/activate"): "RewardsFunction",
    ("GET", "/v1/events/{event_id}"): "RewardsFunction",
    ("GET", "/v1/policies"): "AdminFunction",
    ("GET", "/v1/policies/{policy}"): "AdminFunction",
    ("PUT", "/v1/policies/{policy}"): "AdminFunction",
    ("DELETE", "/v1/policies/{policy}"): "AdminFunction",
    ("GET", "/v1/policies/{policy}/models"): "AdminFunction",
    ("POST", "/v1/policies/{policy}/rollback"): "AdminFunction",
    ("GET", "/v1/policies/{policy}/metrics"): "AdminFunction",
    ("GET", "/v1/policies/{policy}/progress"): "AdminFunction",
    ("PUT", "/v1/policies/{policy}/challenger"): "AdminFunction",
    ("GET", "/v1/policies/{policy}/challenger"): "AdminFunction",
    ("DELETE", "/v1/policies/{policy}/challenger"): "AdminFunction",
    ("POST", "/v1/policies/{policy}/challenger/promote"): "AdminFunction",
    ("POST", "/v1/policies/{policy}/challenger/rollback"): "AdminFunction",
    ("PUT", "/v1/items"): "AdminFunction",
    ("GET", "/v1/items"): "AdminFunction",
    ("GET", "/v1/items/{item_id}"): "AdminFunction",
    ("GET", "/v1/health"): "AdminFunction",
    ("GET", "/v1/openapi.json"): "AdminFunction",
    ("ANY", "/personalizer/{proxy+}"): "PersonalizerFunction",
}

Key = tuple[str, str]  # (attribute name, attribute type)
# env var, hash key, range key, {GSI name: (hash, range, projection)}, TTL attribute
TableSpec = tuple[str, Key, Key | None, dict[str, tuple[Key, Key | None, str]], str | None]

TABLES: dict[str, TableSpec] = {
    "DecisionsTable": (
        "DECISIONS_TABLE",
        ("pk", "S"),
        None,
        {
            "by_policy": (("policy_key", "S"), ("ts", "N"), "ALL"),
            "open_events": (("open_shard", "S"), ("closes_at", "N"), "INCLUDE"),
        },
        "expires_at",
    ),
    "PoliciesTable": ("POLICIES_TABLE", ("pk", "S"), ("sk", "S"), {}, None),
    "ModelsTable": ("MODELS_TABLE", ("pk", "S"), ("version", "N"), {}, None),
    "ItemsTable": ("ITEMS_TABLE", ("pk", "S"), ("sk", "S"), {}, None),
    "UsersTable": ("USERS_TABLE", ("pk", "S"), None, {}, None),
    "CountersTable": ("COUNTERS_TABLE", ("pk", "S"), ("sk", "S"), {}, "expires_at"),
    "KeysTable": (
        "KEYS_TABLE",
        ("pk", "S"),
        None,
        {"by_tenant": (("tenant", "S"), None, "INCLUDE")},
        None,
    ),
}

# Exactly what each function's role allows (inline policies): action -> resources. Anything else
# is a least-privilege violation; ``tests/functional/test_iam.py`` proves each one is used and
# covers every call. Polling a queue comes with the SQS event (a managed policy, checked below).
MODELS = "ModelBucket/models/*"
RECORDS = "ModelBucket/decisions/*"
INDEXES = "ModelBucket/indexes/*"
RETRAIN = "ModelBucket/retrain/*"
ACCESS: dict[str, dict[str, set[str]]] = {
    "RankFunction": {
        "dynamodb:GetItem": {
            "table/KeysTable",
            "table/PoliciesTable",
            "table/ModelsTable",
            "table/UsersTable",
            "table/CountersTable",  # the catalog index head
        },
        "dynamodb:BatchGetItem": {"table/ItemsTable", "table/CountersTable"},
        "dynamodb:Query": {"table/CountersTable"},
        "dynamodb:UpdateItem": {"table/CountersTable"},
        "dynamodb:PutItem": {"table/DecisionsTable"},
        "s3:GetObject": {MODELS, INDEXES},
        "s3:PutObject": {RECORDS},
    },
    "IndexFunction": {
        "dynamodb:Scan": {"table/UsersTable", "table/PoliciesTable"},
        "dynamodb:Query": {"table/ItemsTable"},
        "dynamodb:GetItem": {"table/CountersTable"},
        "dynamodb:PutItem": {"table/CountersTable"},
        "s3:PutObject": {INDEXES},
        "s3:DeleteObject": {INDEXES},
    },
    "RewardsFunction": {
        "dynamodb:GetItem": {"table/KeysTable", "table/DecisionsTable", "table/PoliciesTable"},
        "dynamodb:UpdateItem": {"table/DecisionsTable"},
        "sqs:SendMessage": {"RewardQueue"},
        "kms:Decrypt": {"key/WebhookSecretsKey"},
        "s3:GetObject": {RECORDS},
    },
    "RouteFunction": {
        "dynamodb:BatchGetItem": {"table/DecisionsTable"},
        "sqs:SendMessage": {"LearnQueue"},
    },
    "LearnFunction": {
        "dynamodb:BatchGetItem": {
            "table/DecisionsTable",
            "table/UsersTable",
            "table/CountersTable",
        },
        "dynamodb:UpdateItem": {"table/DecisionsTable", "table/PoliciesTable"},
        "dynamodb:GetItem": {"table/PoliciesTable", "table/ModelsTable", "table/CountersTable"},
        "dynamodb:Query": {"table/ModelsTable", "table/DecisionsTable/index/by_policy"},
        "dynamodb:PutItem": {"table/ModelsTable", "table/UsersTable", "table/CountersTable"},
        "dynamodb:DeleteItem": {"table/ModelsTable"},
        "dynamodb:BatchWriteItem": {"table/CountersTable"},
        "s3:GetObject": {MODELS, RECORDS, RETRAIN},
        "s3:PutObject": {MODELS, RETRAIN},
        "s3:DeleteObject": {MODELS, RETRAIN},
        "sqs:SendMessage": {"LearnQueue"},
    },
    "SweepFunction": {
        "dynamodb:Query": {"table/DecisionsTable/index/open_events"},
        "dynamodb:GetItem": {"table/CountersTable"},
        "dynamodb:UpdateItem": {"table/CountersTable"},
        "sqs:SendMessage": {"LearnQueue"},
    },
    "AdminFunction": {
        "dynamodb:GetItem": {
            "table/KeysTable",
            "table/PoliciesTable",
            "table/ModelsTable",
            "table/ItemsTable",
            "table/CountersTable",
        },
        "dynamodb:Query": {
            "table/PoliciesTable",
            "table/ModelsTable",
            "table/ItemsTable",
            "table/DecisionsTable/index/by_policy",
            "table/CountersTable",
        },
        "dynamodb:PutItem": {"table/PoliciesTable", "table/ModelsTable", "table/CountersTable"},
        "dynamodb:DeleteItem": {
            "table/PoliciesTable",
            "table/ModelsTable",
            "table/CountersTable",
        },
        "dynamodb:UpdateItem": {"table/PoliciesTable"},
        "dynamodb:BatchWriteItem": {"table/ItemsTable"},
        "s3:GetObject": {MODELS, RECORDS},
        "s3:PutObject": {MODELS},
        "s3:DeleteObject": {MODELS},
        "sqs:SendMessage": {"LearnQueue"},
    },
    "PersonalizerFunction": {
        "dynamodb:GetItem": {
            "table/KeysTable",
            "table/PoliciesTable",
            "table/ModelsTable",
            "table/DecisionsTable",
            "table/CountersTable",
        },
        "dynamodb:Query": {
            "table/CountersTable",
            "table/ModelsTable",
            "table/DecisionsTable/index/by_policy",
        },
        "dynamodb:UpdateItem": {
            "table/CountersTable",
            "table/DecisionsTable",
            "table/PoliciesTable",
        },
        "dynamodb:BatchGetItem": {"table/CountersTable"},
        "dynamodb:PutItem": {
            "table/CountersTable",
            "table/DecisionsTable",
            "table/PoliciesTable",
            "table/ModelsTable",
        },
        "dynamodb:DeleteItem": {"table/CountersTable", "table/ModelsTable"},
        "s3:GetObject": {MODELS, RECORDS},
        "s3:PutObject": {MODELS, RECORDS},
        "s3:DeleteObject": {MODELS},
        "sqs:SendMessage": {"RewardQueue"},
    },
}


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return translated_template(region="us-east-1")


def _resources(cfn: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in cfn["Resources"].items() if r["Type"] == kind}


def test_template_translates_to_the_expected_resources(cfn: dict[str, Any]) -> None:
    assert set(_resources(cfn, "AWS::Lambda::Function")) == set(HANDLERS)
    assert set(_resources(cfn, "AWS::DynamoDB::Table")) == set(TABLES)
    assert set(_resources(cfn, "AWS::SQS::Queue")) == {
        "RewardQueue",
        "RewardDLQ",
        "LearnQueue",
        "LearnDLQ",
    }
    assert set(_resources(cfn, "AWS::S3::Bucket")) == {"ModelBucket"}
    assert set(_resources(cfn, "AWS::KMS::Key")) == {"WebhookSecretsKey"}
    assert set(_resources(cfn, "AWS::ApiGateway::RestApi")) == {"ServingApi"}
    assert len(_resources(cfn, "AWS::Lambda::LayerVersion")) == 1
    assert not any(r["Type"].startswith("AWS::Serverless::") for r in cfn["Resources"].values())


def test_functions_have_their_handlers_runtime_and_shared_settings(
    sam: dict[str, Any], cfn: dict[str, Any]
) -> None:
    functions = _resources(cfn, "AWS::Lambda::Function")
    (layer,) = _resources(cfn, "AWS::Lambda::LayerVersion")
    env_names = set(function_environment(sam))
    for name, handler in HANDLERS.items():
        properties = functions[name]["Properties"]
        assert properties["Handler"] == handler
        assert properties["Runtime"] == "python3.12"
        assert properties["Architectures"] == ["x86_64"]
        # The sweep only reads an index and sends messages; the index builder fits factors
        # and builds nearest-neighbour graphs, and the Personalizer API replays logs for its
        # evaluations (more memory is more CPU on Lambda).
        memory = {"SweepFunction": 256, "IndexFunction": 3008, "PersonalizerFunction": 2048}
        assert properties["MemorySize"] == memory.get(name, 1024)
        assert properties["TracingConfig"] == {"Mode": "Active"}
        background = {"RouteFunction", "LearnFunction", "SweepFunction"}
        # The Personalizer API evaluates within API Gateway's 29 s.
        timeouts = {"IndexFunction": 900, "PersonalizerFunction": 29}
        timeouts |= dict.fromkeys(background, 60)
        assert properties["Timeout"] == timeouts.get(name, 10)
        assert properties["Layers"] == [{"Ref": layer}]
        variables = properties["Environment"]["Variables"]
        assert set(variables) == env_names
        assert variables["POWERTOOLS_SERVICE_NAME"] == "serendip"
        assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "Serendip"
        assert variables["POWERTOOLS_LOG_LEVEL"] == "INFO"
    for name in HANDLERS:  # one code location built by the Makefile
        resource = sam["Resources"][name]
        assert resource["Properties"]["CodeUri"] == "."
        assert resource["Metadata"] == {"BuildMethod": "makefile"}


def test_every_function_builds_with_a_makefile_target_that_copies_only_our_code() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = re.search(r"^FUNCTION_BUILDS :=(.*?)\n\n", makefile, re.MULTILINE | re.DOTALL)
    assert targets is not None
    assert set(targets.group(1).replace("\\", " ").split()) == {f"build-{f}" for f in HANDLERS}
    assert "bandit functions policies" in makefile
    assert "__pycache__" in makefile


def test_layer_requirements_match_the_project_dependencies(sam: dict[str, Any]) -> None:
    layer = sam["Resources"]["DependenciesLayer"]
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    assert layer["Metadata"]["BuildMethod"] == "python3.12"
    lines = (ROOT / layer["Properties"]["ContentUri"] / "requirements.txt").read_text().splitlines()
    shipped = {Requirement(line) for line in lines if line.strip() and not line.startswith("#")}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    expected = {Requirement(spec).name.lower(): Requirement(spec).specifier for spec in project}
    assert {r.name.lower(): r.specifier for r in shipped} == expected
    extras = {r.name.lower(): r.extras for r in shipped}
    assert extras["aws-lambda-powertools"] == {"tracer"}


def test_api_routes_are_exactly_the_designed_ones(cfn: dict[str, Any]) -> None:
    body = cfn["Resources"]["ServingApi"]["Properties"]["Body"]
    routes = {}
    for path, methods in body["paths"].items():
        for method, operation in methods.items():
            uri = operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
            verb = "ANY" if method == "x-amazon-apigateway-any-method" else method.upper()
            routes[(verb, path)] = re.search(r"\$\{(\w+)\.Arn\}", uri).group(1)  # type: ignore[union-attr]
    assert routes == ROUTES


def test_router_and_learner_consume_their_queues_with_partial_batch_failures(
    cfn: dict[str, Any],
) -> None:
    mappings = {
        m["Properties"]["FunctionName"]["Ref"]: m["Properties"]
        for m in _resources(cfn, "AWS::Lambda::EventSourceMapping").values()
    }
    assert set(mappings) == {"RouteFunction", "LearnFunction"}
    route, learn = mappings["RouteFunction"], mappings["LearnFunction"]
    assert route["EventSourceArn"] == {"Fn::GetAtt": ["RewardQueue", "Arn"]}
    assert learn["EventSourceArn"] == {"Fn::GetAtt": ["LearnQueue", "Arn"]}
    for properties in (route, learn):
        assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # Large router batches make few learn messages; FIFO event sources take at most 10.
    assert (route["BatchSize"], route["MaximumBatchingWindowInSeconds"]) == (500, 1)
    assert learn["BatchSize"] == 10
    assert "MaximumBatchingWindowInSeconds" not in learn


def test_the_learn_queue_serialises_each_policy_fifo(cfn: dict[str, Any]) -> None:
    queue = cfn["Resources"]["LearnQueue"]["Properties"]
    dlq = cfn["Resources"]["LearnDLQ"]["Properties"]
    assert queue["FifoQueue"] is True and dlq["FifoQueue"] is True
    assert (queue["DeduplicationScope"], queue["FifoThroughputLimit"]) == (
        "messageGroup",
        "perMessageGroupId",
    )
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["LearnDLQ", "Arn"]},
        "maxReceiveCount": 5,
    }
    assert (
        queue["VisibilityTimeout"] == 6 * cfn["Resources"]["LearnFunction"]["Properties"]["Timeout"]
    )


def test_sweep_runs_every_minute_and_the_index_builder_every_ten(cfn: dict[str, Any]) -> None:
    rules = {
        rule["Properties"]["Targets"][0]["Arn"]["Fn::GetAtt"][0]: rule["Properties"]
        for rule in _resources(cfn, "AWS::Events::Rule").values()
    }
    assert rules["SweepFunction"]["ScheduleExpression"] == "rate(1 minute)"
    assert rules["IndexFunction"]["ScheduleExpression"] == "rate(10 minutes)"
    assert set(rules) == {"SweepFunction", "IndexFunction"}


def test_reward_queue_redrives_to_the_dlq_after_five_receives(cfn: dict[str, Any]) -> None:
    queue = cfn["Resources"]["RewardQueue"]["Properties"]
    dlq = cfn["Resources"]["RewardDLQ"]["Properties"]
    learn_timeout = cfn["Resources"]["RouteFunction"]["Properties"]["Timeout"]
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["RewardDLQ", "Arn"]},
        "maxReceiveCount": 5,
    }
    assert queue["VisibilityTimeout"] == 6 * learn_timeout
    assert queue["MessageRetentionPeriod"] == 4 * 24 * 3600
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert queue["SqsManagedSseEnabled"] is True
    assert dlq["SqsManagedSseEnabled"] is True
    assert list(stack_resources(cfn)).index("RewardDLQ") < list(stack_resources(cfn)).index(
        "RewardQueue"
    )


@pytest.mark.parametrize("logical_id", sorted(TABLES))
def test_table_keys_indexes_and_ttl(
    sam: dict[str, Any], cfn: dict[str, Any], logical_id: str
) -> None:
    env, hash_key, range_key, indexes, ttl = TABLES[logical_id]
    properties = cfn["Resources"][logical_id]["Properties"]
    types = {a["AttributeName"]: a["AttributeType"] for a in properties["AttributeDefinitions"]}

    def schema(keys: list[dict[str, str]]) -> tuple[tuple[str, str], tuple[str, str] | None]:
        by_type = {k["KeyType"]: (k["AttributeName"], types[k["AttributeName"]]) for k in keys}
        assert set(by_type) <= {"HASH", "RANGE"}
        return by_type["HASH"], by_type.get("RANGE")

    assert "TableName" not in properties
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert schema(properties["KeySchema"]) == (hash_key, range_key)
    found = {
        gsi["IndexName"]: (*schema(gsi["KeySchema"]), gsi["Projection"]["ProjectionType"])
        for gsi in properties.get("GlobalSecondaryIndexes", [])
    }
    assert found == indexes
    key_names = {hash_key[0]} | {k[0] for k in (range_key,) if k}
    for gsi_hash, gsi_range, _ in indexes.values():
        key_names |= {gsi_hash[0]} | ({gsi_range[0]} if gsi_range else set())
    assert set(types) == key_names  # every defined attribute is a key somewhere
    if ttl:
        assert properties["TimeToLiveSpecification"] == {"AttributeName": ttl, "Enabled": True}
    else:
        assert "TimeToLiveSpecification" not in properties
    assert function_environment(sam)[env] == {"Ref": logical_id}


def test_the_key_index_projects_what_listing_needs_and_no_secret(cfn: dict[str, Any]) -> None:
    (index,) = cfn["Resources"]["KeysTable"]["Properties"]["GlobalSecondaryIndexes"]
    projected = index["Projection"]["NonKeyAttributes"]
    assert projected == KEY_LISTING_ATTRIBUTES
    assert projected == ApiKeyItem.by_tenant.Meta.projection.non_key_attributes
    assert not {"sealed_secrets", "webhook_secrets"} & set(projected)


def test_webhook_secrets_are_sealed_with_a_rotating_kms_key(
    sam: dict[str, Any], cfn: dict[str, Any]
) -> None:
    key = cfn["Resources"]["WebhookSecretsKey"]["Properties"]
    assert (key["KeyUsage"], key["EnableKeyRotation"]) == ("ENCRYPT_DECRYPT", True)
    assert function_environment(sam)["WEBHOOK_SECRETS_KEY_ID"] == {"Ref": "WebhookSecretsKey"}
    assert sam["Outputs"]["WebhookSecretsKeyId"]["Value"] == {"Ref": "WebhookSecretsKey"}
    # Only the webhook opens secrets; no function seals them (the operator's CLI does)
    openers = {f for f in HANDLERS if _access(cfn, f).get("kms:Decrypt")}
    assert openers == {"RewardsFunction"}
    assert _access(cfn, "RewardsFunction")["kms:Decrypt"] == {"key/WebhookSecretsKey"}


def test_durable_tables_have_point_in_time_recovery(cfn: dict[str, Any]) -> None:
    for logical_id in ("DecisionsTable", "PoliciesTable", "ModelsTable"):
        spec = cfn["Resources"][logical_id]["Properties"]["PointInTimeRecoverySpecification"]
        assert spec == {"PointInTimeRecoveryEnabled": True}


def test_model_bucket_is_private_and_encrypted(sam: dict[str, Any]) -> None:
    bucket = sam["Resources"]["ModelBucket"]["Properties"]
    assert "BucketName" not in bucket
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    rule = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert "VersioningConfiguration" not in bucket


def _access(cfn: dict[str, Any], function: str) -> dict[str, set[str]]:
    """The role's inline grants as action -> resources (``table/X``, ``ModelBucket/models/*``)."""
    access: dict[str, set[str]] = defaultdict(set)
    policy = function_policies(cfn)[function]
    assert not policy.deny
    for grant in policy.allow:
        if grant.policy.startswith("arn:"):  # AWS-managed, checked below
            continue
        assert grant.resource != "*", f"{function} has a wildcard resource"
        access[grant.action].add(grant.resource.split(":", 5)[-1])
    return dict(access)


@pytest.mark.parametrize("function", sorted(HANDLERS))
def test_each_function_has_least_privilege(cfn: dict[str, Any], function: str) -> None:
    assert _access(cfn, function) == ACCESS[function]
    role = cfn["Resources"][f"{function}Role"]["Properties"]
    managed = {
        "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    }
    if function in {"RouteFunction", "LearnFunction"}:  # SQS events attach the poller's policy
        managed.add("arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole")
    assert set(role["ManagedPolicyArns"]) == managed


def test_only_the_reward_fronts_send_rewards_and_only_router_sweep_and_retrains_send_work(
    cfn: dict[str, Any],
) -> None:
    def senders(queue: str) -> set[str]:
        return {f for f in HANDLERS if queue in _access(cfn, f).get("sqs:SendMessage", set())}

    # The webhook, and the Personalizer API (its rewards carry the key, not a signature)
    assert senders("RewardQueue") == {"RewardsFunction", "PersonalizerFunction"}
    # Rewards, due events, and a retrain's chunks: the first from the PUT, the next from the last
    assert senders("LearnQueue") == {
        "RouteFunction",
        "SweepFunction",
        "AdminFunction",
        "LearnFunction",
    }


def test_settings_read_every_resource_the_environment_names(sam: dict[str, Any]) -> None:
    env = function_environment(sam)
    wanted = {
        f.name.upper()
        for f in dataclasses.fields(Settings)
        if f.name.endswith(("_table", "_bucket", "_url"))
    }
    assert wanted <= set(env)
    assert env["REWARD_QUEUE_URL"] == {"Ref": "RewardQueue"}
    assert env["REWARD_DLQ_URL"] == {"Ref": "RewardDLQ"}
    assert env["MODEL_BUCKET"] == {"Ref": "ModelBucket"}


def test_outputs_name_the_api_url_and_every_stateful_resource(sam: dict[str, Any]) -> None:
    outputs = sam["Outputs"]
    api_url = outputs["ApiUrl"]["Value"]["Fn::Sub"]
    assert api_url == "https://${ServingApi}.execute-api.${AWS::Region}.amazonaws.com/${Stage}"
    referenced = {next(references(o["Value"]), None) for o in outputs.values()}
    queues = {"RewardQueue", "RewardDLQ", "LearnQueue", "LearnDLQ"}
    assert set(TABLES) | {"ModelBucket"} | queues <= referenced


def test_loading_leaves_the_global_safe_loader_alone() -> None:
    load_template()
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.safe_load("value: !Ref Something")


def _copy_project(tmp_path: Path, with_handlers: bool) -> Path:
    template = tmp_path / "template.yaml"
    shutil.copy(TEMPLATE, template)
    (tmp_path / "layer").mkdir()
    if with_handlers:
        for handler in HANDLERS.values():
            module = tmp_path / (handler.rpartition(".")[0] + ".py")
            module.parent.mkdir(parents=True, exist_ok=True)
            module.write_text("def lambda_handler(event, context):\n    return None\n")
    return template


def test_check_passes_when_every_handler_file_exists(tmp_path: Path) -> None:
    assert check(_copy_project(tmp_path, with_handlers=True)) == []


def test_check_reports_missing_handlers_and_unreferenced_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template = _copy_project(tmp_path, with_handlers=False)
    text = template.read_text().replace("MODEL_BUCKET: !Ref ModelBucket", "MODEL_BUCKET: my-bucket")
    text = text.replace("KEYS_TABLE: !Ref KeysTable", "KEYS_TABLE: !Ref DependenciesLayer")
    template.write_text(text)
    assert main(["--check", "--template", str(template)]) == 1
    errors = capsys.readouterr().err
    for function in HANDLERS:
        assert f"{function}: handler file" in errors
    assert "MODEL_BUCKET" in errors
    assert "KEYS_TABLE references DependenciesLayer" in errors


def test_an_untranslatable_template_is_a_clear_check_failure(tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(
        "Transform: AWS::Serverless-2016-10-31\nResources:\n  F:\n"
        "    Type: AWS::Serverless::Function\n    Properties:\n      Handler: 7\n"
    )
    (problem,) = check(template)
    assert "template.yaml" in problem


def test_translation_needs_no_region_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    translated = translate(load_template())
    assert translated["Resources"]["RankFunction"]["Type"] == "AWS::Lambda::Function"


# ---------------------------------------------------------------- operations: alarms, dashboard,
# usage plan, per-tenant rates, samconfig.toml (docs/operations.md)

TOPIC = {"Fn::If": ["CreateAlarmTopic", {"Ref": "AlarmTopic"}, {"Ref": "AlarmTopicArn"}]}
APP = [{"Name": "service", "Value": "serendip"}]  # what Powertools' EMF lines carry
STAGE = [
    {"Name": "ApiName", "Value": {"Ref": "AWS::StackName"}},  # the API's name: SAM's title
    {"Name": "Stage", "Value": {"Ref": "Stage"}},
]


def _queue(logical_id: str) -> list[dict[str, Any]]:
    return [{"Name": "QueueName", "Value": {"Fn::GetAtt": [logical_id, "QueueName"]}}]


# alarm -> namespace, metric, dimensions, statistic, threshold parameter, missing data
AlarmSpec = tuple[str, str, list[dict[str, Any]], str, str, str]
ALARMS: dict[str, AlarmSpec] = {
    "RewardDlqDepthAlarm": (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        _queue("RewardDLQ"),
        "Maximum",
        "DlqDepthThreshold",
        "ignore",
    ),
    "LearnDlqDepthAlarm": (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        _queue("LearnDLQ"),
        "Maximum",
        "DlqDepthThreshold",
        "ignore",
    ),
    "RewardQueueAgeAlarm": (
        "AWS/SQS",
        "ApproximateAgeOfOldestMessage",
        _queue("RewardQueue"),
        "Maximum",
        "QueueAgeThresholdSeconds",
        "ignore",
    ),
    "LearnQueueAgeAlarm": (
        "AWS/SQS",
        "ApproximateAgeOfOldestMessage",
        _queue("LearnQueue"),
        "Maximum",
        "QueueAgeThresholdSeconds",
        "ignore",
    ),
    "LearnErrorsAlarm": (
        "AWS/Lambda",
        "Errors",
        [{"Name": "FunctionName", "Value": {"Ref": "LearnFunction"}}],
        "Sum",
        "LearnErrorsThreshold",
        "notBreaching",
    ),
    "LearnGroupsFailedAlarm": (
        "Serendip",
        "LearnGroupsFailed",
        APP,
        "Sum",
        "LearnGroupsFailedThreshold",
        "notBreaching",
    ),
    "RankLatencyP95Alarm": (
        "Serendip",
        "RankLatency",
        APP,
        "p95",
        "RankLatencyP95ThresholdMs",
        "notBreaching",
    ),
    "ApiLatencyP95Alarm": (
        "AWS/ApiGateway",
        "Latency",
        STAGE,
        "p95",
        "ApiLatencyP95ThresholdMs",
        "notBreaching",
    ),
    "Api5xxAlarm": (
        "AWS/ApiGateway",
        "5XXError",
        STAGE,
        "Average",
        "Api5xxRateThreshold",
        "notBreaching",
    ),
    "DecisionsNotLoggedAlarm": (
        "Serendip",
        "DecisionsNotLogged",
        APP,
        "Sum",
        "DecisionsNotLoggedThreshold",
        "notBreaching",
    ),
    "BudgetWritesFailedAlarm": (
        "Serendip",
        "BudgetWritesFailed",
        APP,
        "Sum",
        "BudgetWritesFailedThreshold",
        "notBreaching",
    ),
    "EventsFailedAlarm": (
        "Serendip",
        "EventsFailed",
        APP,
        "Sum",
        "EventsFailedThreshold",
        "notBreaching",
    ),
}
# Metric math: |explored - target| / served over the rank path's three metrics.
DRIFT_METRICS = {
    "explored": "ExploredSlots",
    "served": "ServedSlots",
    "target": "BudgetTargetSlots",
}
APP_METRIC_SOURCES = {  # each app metric an alarm watches -> the module that emits it
    "LearnGroupsFailed": "functions/common/learn_service.py",
    "RankLatency": "functions/common/rank_service.py",
    "DecisionsNotLogged": "functions/common/rank_service.py",
    "ExploredSlots": "functions/common/rank_service.py",
    "ServedSlots": "functions/common/rank_service.py",
    "BudgetTargetSlots": "functions/common/rank_service.py",
    "BudgetWritesFailed": "functions/common/budget_ledger.py",
    "EventsFailed": "functions/common/learn_service.py",
}


def _alarms(cfn: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: r["Properties"] for n, r in _resources(cfn, "AWS::CloudWatch::Alarm").items()}


def _parameter(sam: dict[str, Any], name: str) -> dict[str, Any]:
    parameter: dict[str, Any] = sam["Parameters"][name]
    assert parameter.get("Description"), f"{name} has no Description"
    assert "Default" in parameter, f"{name} has no Default"
    return parameter


def _alarm_metrics(alarm: dict[str, Any]) -> list[tuple[str, str]]:
    """(namespace, metric) of every metric an alarm reads, plain or in its metric math."""
    if "Metrics" not in alarm:
        return [(alarm["Namespace"], alarm["MetricName"])]
    return [
        (m["MetricStat"]["Metric"]["Namespace"], m["MetricStat"]["Metric"]["MetricName"])
        for m in alarm["Metrics"]
        if "MetricStat" in m
    ]


def test_the_template_has_exactly_the_documented_alarms(cfn: dict[str, Any]) -> None:
    assert set(_alarms(cfn)) == set(ALARMS) | {"BudgetDriftAlarm"}
    documented = (ROOT / "docs" / "operations.md").read_text()
    for name in _alarms(cfn):
        assert f"`{name}`" in documented, f"{name} is not in docs/operations.md"


@pytest.mark.parametrize("name", sorted(ALARMS))
def test_each_alarm_watches_its_metric_against_its_parameter(
    sam: dict[str, Any], cfn: dict[str, Any], name: str
) -> None:
    namespace, metric, dimensions, statistic, threshold, missing = ALARMS[name]
    alarm = _alarms(cfn)[name]
    assert (alarm["Namespace"], alarm["MetricName"]) == (namespace, metric)
    assert alarm["Dimensions"] == dimensions
    stat_key = "ExtendedStatistic" if statistic.startswith("p") else "Statistic"
    assert alarm[stat_key] == statistic
    assert alarm["Threshold"] == {"Ref": threshold}
    assert _parameter(sam, threshold)["Type"] == "Number"
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["TreatMissingData"] == missing
    assert alarm["AlarmActions"] == alarm["OKActions"] == [TOPIC]
    assert "docs/operations.md" in alarm["AlarmDescription"]
    # Sustained alarms look back over parameters: N breaching minutes out of M
    if alarm["Period"] == 60:
        assert alarm["EvaluationPeriods"] == {"Ref": "AlarmSustainedPeriods"}
        assert alarm["DatapointsToAlarm"] == {"Ref": "AlarmSustainedDatapoints"}
    else:
        assert (alarm["Period"], alarm["EvaluationPeriods"]) == (300, 1)


def test_alarm_dimensions_reference_the_template_s_own_resources(cfn: dict[str, Any]) -> None:
    resources = cfn["Resources"]
    for name, alarm in _alarms(cfn).items():
        dimensions = list(alarm.get("Dimensions", []))
        for metric in alarm.get("Metrics", []):
            dimensions += metric.get("MetricStat", {}).get("Metric", {}).get("Dimensions", [])
        for dimension in dimensions:
            for target in references(dimension["Value"]):
                assert (
                    target in resources or target in cfn["Parameters"] or target.startswith("AWS::")
                ), f"{name} names {target}"
        if alarm.get("Namespace") == "AWS/SQS":
            (queue,) = references(alarm["Dimensions"])
            assert resources[queue]["Type"] == "AWS::SQS::Queue"
        if alarm.get("Namespace") == "AWS/Lambda":
            (function,) = references(alarm["Dimensions"])
            assert resources[function]["Type"] == "AWS::Lambda::Function"


def test_every_dead_letter_queue_has_a_depth_alarm(cfn: dict[str, Any]) -> None:
    dlqs = {
        queue["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for queue in _resources(cfn, "AWS::SQS::Queue").values()
        if "RedrivePolicy" in queue["Properties"]
    }
    assert dlqs == {"RewardDLQ", "LearnDLQ"}
    watched = {
        next(references(alarm["Dimensions"]))
        for alarm in _alarms(cfn).values()
        if alarm.get("MetricName") == "ApproximateNumberOfMessagesVisible"
    }
    assert watched == dlqs
    # And every queue that has a DLQ has an age alarm
    aged = {
        next(references(alarm["Dimensions"]))
        for alarm in _alarms(cfn).values()
        if alarm.get("MetricName") == "ApproximateAgeOfOldestMessage"
    }
    assert aged == {"RewardQueue", "LearnQueue"}


def test_app_metric_alarms_name_exactly_the_dimensions_powertools_emits() -> None:
    from functions.common.observability import metrics

    # Given the functions' own Metrics object, one metric serialised as EMF
    metrics.add_metric(name="LearnGroupsFailed", unit="Count", value=1)
    try:
        blob = metrics.serialize_metric_set()
    finally:
        metrics.clear_metrics()
    (directive,) = blob["_aws"]["CloudWatchMetrics"]
    # Then its namespace and dimensions are exactly what the alarms name
    emitted = [{"Name": d, "Value": blob[d]} for d in directive["Dimensions"][0]]
    assert (directive["Namespace"], emitted) == ("Serendip", APP)


@pytest.mark.parametrize("metric", sorted(APP_METRIC_SOURCES))
def test_every_alarmed_app_metric_is_emitted_by_the_code(metric: str) -> None:
    source = (ROOT / APP_METRIC_SOURCES[metric]).read_text()
    assert re.search(rf'add_metric\(\s*name="{metric}"', source), metric


def test_budget_drift_is_metric_math_over_the_rank_path_s_slot_counts(
    sam: dict[str, Any], cfn: dict[str, Any]
) -> None:
    alarm = _alarms(cfn)["BudgetDriftAlarm"]
    by_id = {m["Id"]: m for m in alarm["Metrics"]}
    assert set(by_id) == {"drift"} | set(DRIFT_METRICS)
    for metric_id, metric in DRIFT_METRICS.items():
        stat = by_id[metric_id]["MetricStat"]
        assert stat["Metric"] == {"Namespace": "Serendip", "MetricName": metric, "Dimensions": APP}
        assert (stat["Stat"], stat["Period"]) == ("Sum", {"Ref": "BudgetDriftPeriodSeconds"})
        assert by_id[metric_id]["ReturnData"] is False
    drift = by_id["drift"]
    assert drift["ReturnData"] is True
    assert drift["Expression"] == {
        "Fn::Sub": "IF(served >= ${BudgetDriftMinSlots}, ABS(explored - target) / served, 0)"
    }
    assert alarm["Threshold"] == {"Ref": "BudgetDriftThreshold"}
    assert alarm["EvaluationPeriods"] == {"Ref": "BudgetDriftEvaluationPeriods"}
    assert (alarm["TreatMissingData"], alarm["AlarmActions"]) == ("notBreaching", [TOPIC])
    for name in ("BudgetDriftThreshold", "BudgetDriftMinSlots", "BudgetDriftPeriodSeconds"):
        _parameter(sam, name)


def test_the_stack_creates_an_alarm_topic_only_when_given_none(
    sam: dict[str, Any], cfn: dict[str, Any]
) -> None:
    assert _parameter(sam, "AlarmTopicArn")["Default"] == ""
    assert cfn["Conditions"]["CreateAlarmTopic"] == {"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}
    (topic,) = _resources(cfn, "AWS::SNS::Topic")
    assert cfn["Resources"][topic]["Condition"] == "CreateAlarmTopic"
    assert topic == "AlarmTopic"
    assert sam["Outputs"]["AlarmTopicArn"]["Value"] == TOPIC
    pattern = sam["Parameters"]["AlarmTopicArn"]["AllowedPattern"]
    assert re.fullmatch(pattern, "arn:aws:sns:eu-west-1:123456789012:ops-pager")
    assert not re.fullmatch(pattern, "ops-pager")


def _substituted(template: str, known: set[str]) -> str:
    """``template`` with each ``${Name}`` / ``${Name.Attr}`` replaced, checked in ``known``."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1).split(".")[0]
        assert name in known or name.startswith("AWS::"), f"${{{match.group(1)}}} is unknown"
        return f"<{match.group(1)}>"

    return re.sub(r"\$\{([^}]+)\}", replace, template)


def _dashboard(cfn: dict[str, Any]) -> dict[str, Any]:
    body = cfn["Resources"]["ServingDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    known = set(cfn["Resources"]) | set(cfn["Parameters"])
    loaded: dict[str, Any] = json.loads(_substituted(body, known))
    return loaded


def _dashboard_metrics(dashboard: dict[str, Any]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(namespace, metric, dimension name/value pairs) of every metric line of every widget."""
    found = []
    for widget in dashboard["widgets"]:
        for line in widget["properties"].get("metrics", []):
            fields = [part for part in line if isinstance(part, str)]
            if fields:
                found.append((fields[0], fields[1], tuple(fields[2:])))
    return found


def test_the_dashboard_is_json_and_shows_every_alarm_s_metric(cfn: dict[str, Any]) -> None:
    dashboard = _dashboard(cfn)
    shown = {(namespace, metric) for namespace, metric, _ in _dashboard_metrics(dashboard)}
    for name, alarm in _alarms(cfn).items():
        for metric in _alarm_metrics(alarm):
            assert metric in shown, f"{name}'s {metric} is not on the dashboard"
    # And its alarm widget lists every alarm
    (alarm_widget,) = [w for w in dashboard["widgets"] if w["type"] == "alarm"]
    listed = {arn.rsplit(":alarm:", 1)[1] for arn in alarm_widget["properties"]["alarms"]}
    assert listed == {f"<{name}>" for name in _alarms(cfn)}
    for widget in dashboard["widgets"]:
        if widget["type"] == "metric":
            assert widget["properties"]["region"] == "<AWS::Region>"


def test_the_dashboard_shows_every_function_queue_and_reward_outcome(cfn: dict[str, Any]) -> None:
    from functions.common.decision_store import RewardOutcome

    shown = _dashboard_metrics(_dashboard(cfn))
    for function in _resources(cfn, "AWS::Lambda::Function"):
        for metric in ("Errors", "Throttles", "Duration"):
            assert ("AWS/Lambda", metric, ("FunctionName", f"<{function}>")) in shown
    for queue in _resources(cfn, "AWS::SQS::Queue"):
        dimensions = ("QueueName", f"<{queue}.QueueName>")
        assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", dimensions) in shown
    app = {metric for namespace, metric, _ in shown if namespace == "Serendip"}
    outcomes = {"Rewards" + o.value.title().replace("_", "") for o in RewardOutcome}
    assert outcomes | {"RankLatency", "EventsLearned", "RequestsRateLimited"} <= app
    api = {metric for namespace, metric, _ in shown if namespace == "AWS/ApiGateway"}
    assert {"Latency", "4XXError", "5XXError", "Count"} <= api
    for namespace, _, dimensions in shown:  # app metrics carry exactly the EMF dimension
        if namespace == "Serendip":
            assert dimensions == ("service", "serendip")


def test_the_usage_plan_is_bound_to_the_serving_stage(
    sam: dict[str, Any], cfn: dict[str, Any]
) -> None:
    plan = cfn["Resources"]["TenantUsagePlan"]["Properties"]
    assert plan["ApiStages"] == [
        {"ApiId": {"Ref": "ServingApi"}, "Stage": {"Ref": "ServingApiStage"}}
    ]
    assert cfn["Resources"]["ServingApiStage"]["Type"] == "AWS::ApiGateway::Stage"
    assert plan["Throttle"] == {
        "RateLimit": {"Ref": "UsagePlanRateLimit"},
        "BurstLimit": {"Ref": "UsagePlanBurstLimit"},
    }
    assert plan["Quota"] == {
        "Limit": {"Ref": "UsagePlanQuotaLimit"},
        "Period": {"Ref": "UsagePlanQuotaPeriod"},
    }
    assert _parameter(sam, "UsagePlanQuotaPeriod")["AllowedValues"] == ["DAY", "WEEK", "MONTH"]
    # Serendip reads x-api-key itself: no method requires an API Gateway key
    body = cfn["Resources"]["ServingApi"]["Properties"]["Body"]
    assert "securityDefinitions" not in body
    assert "api_key" not in json.dumps(body)
    assert sam["Outputs"]["TenantUsagePlanId"]["Value"] == {"Ref": "TenantUsagePlan"}


def test_tenant_rates_reach_every_function_with_the_code_s_defaults(sam: dict[str, Any]) -> None:
    env = function_environment(sam)
    assert env["TENANT_RATE_LIMIT"] == {"Ref": "TenantRateLimit"}
    assert env["TENANT_RATE_OVERRIDES"] == {"Ref": "TenantRateOverrides"}
    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
    limit = _parameter(sam, "TenantRateLimit")["Default"]
    assert request_rate(limit, "TENANT_RATE_LIMIT") == defaults["tenant_rate"]
    assert _parameter(sam, "TenantRateOverrides")["Default"] == ""
    assert defaults["tenant_rate_overrides"] == ()


SAM_ENVIRONMENTS = ("default", "staging")


def _samconfig() -> dict[str, Any]:
    return tomllib.loads((ROOT / "samconfig.toml").read_text())


def _overrides(text: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in text.split())


def _allowed(parameter: dict[str, Any], value: str) -> bool:
    if "AllowedValues" in parameter and value not in [str(v) for v in parameter["AllowedValues"]]:
        return False
    if "AllowedPattern" in parameter and not re.fullmatch(parameter["AllowedPattern"], value):
        return False
    if parameter["Type"] == "Number":
        number = float(value)
        return bool(
            parameter.get("MinValue", number) <= number <= parameter.get("MaxValue", number)
        )
    return True


@pytest.mark.parametrize("environment", SAM_ENVIRONMENTS)
def test_samconfig_deploys_with_iam_capability_and_valid_parameters(
    sam: dict[str, Any], environment: str
) -> None:
    config = _samconfig()
    assert config["version"] == 0.1
    stack = config[environment]["global"]["parameters"]["stack_name"]
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,127}", stack)
    deploy = config[environment]["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert (deploy["resolve_s3"], deploy["confirm_changeset"]) == (True, True)
    assert config[environment]["build"]["parameters"]["build_in_source"] is True
    for name, value in _overrides(deploy["parameter_overrides"]).items():
        assert name in sam["Parameters"], f"{environment}: {name} is not a template parameter"
        assert _allowed(sam["Parameters"][name], value), f"{environment}: {name}={value}"


def test_the_template_needs_no_capability_beyond_iam(sam: dict[str, Any]) -> None:
    # Nested applications or macros would need CAPABILITY_AUTO_EXPAND; named IAM resources
    # CAPABILITY_NAMED_IAM.
    kinds = {resource["Type"] for resource in sam["Resources"].values()}
    assert "AWS::Serverless::Application" not in kinds
    assert sam["Transform"] == "AWS::Serverless-2016-10-31"
    for resource in sam["Resources"].values():
        assert "RoleName" not in resource.get("Properties", {})


def test_check_takes_parameters_for_settings_but_not_for_resource_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template = _copy_project(tmp_path, with_handlers=True)
    text = template.read_text()
    assert "TENANT_RATE_LIMIT: !Ref TenantRateLimit" in text
    template.write_text(text.replace("MODEL_BUCKET: !Ref ModelBucket", "MODEL_BUCKET: !Ref Stage"))
    assert main(["--check", "--template", str(template)]) == 1
    errors = capsys.readouterr().err
    assert "MODEL_BUCKET references Stage" in errors
    assert "TENANT_RATE" not in errors
