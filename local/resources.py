"""Create the stack's tables, queues, bucket and KMS key from ``template.yaml`` (the one truth).

The SAM template is translated offline with ``samtranslator`` (no AWS call: a stub managed-policy
loader and a region-only boto3 session), and every ``AWS::DynamoDB::Table``, ``AWS::SQS::Queue``,
``AWS::S3::Bucket`` and ``AWS::KMS::Key`` of the result is created with boto3 against whatever
endpoint boto3 is configured for (``AWS_ENDPOINT_URL`` -> a moto server, or moto's in-process
``mock_aws``). Nothing here duplicates a table definition.

Names are ``f"{stack_name}-{LogicalId}"`` (lowercased for buckets). ``create_resources`` returns
the environment the functions need, derived from ``Globals.Function.Environment.Variables``:
every variable that references a resource (``!Ref``/``!GetAtt``) maps to the created name or URL.
A variable that references a template parameter (a deploy-time setting) is left out: locally it
takes the code's default, or the value in the shell's environment.

``python -m local.resources --check`` translates the template and checks that every function's
handler file exists and that every resource-like environment variable references a resource.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.exceptions import ClientError
from samtranslator.metrics.metrics import DummyMetricsPublisher, Metrics
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import intrinsics_multi_constructor

from local.kms_keys import create_kms_key

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
DEFAULT_STACK = "serendip-local"
DEFAULT_REGION = "us-east-1"

TABLE = "AWS::DynamoDB::Table"
QUEUE = "AWS::SQS::Queue"
BUCKET = "AWS::S3::Bucket"
KMS_KEY = "AWS::KMS::Key"
CREATED_TYPES = (TABLE, QUEUE, BUCKET, KMS_KEY)
SAM_FUNCTION = "AWS::Serverless::Function"

# Placeholder bucket for local CodeUri/ContentUri paths: samtranslator only accepts S3 locations
# (``sam validate`` does the same substitution before translating).
_ARTIFACTS = "s3://serendip-local-artifacts/"
_LOCAL_URIS = {SAM_FUNCTION: "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}
# Environment variables whose names say they carry a resource name or URL must reference one.
_RESOURCE_SUFFIXES = ("_TABLE", "_BUCKET", "_QUEUE_URL", "_DLQ_URL", "_KEY_ID")
# CloudFormation table properties that boto3's create_table takes unchanged.
_TABLE_PASSTHROUGH = (
    "AttributeDefinitions",
    "KeySchema",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "BillingMode",
    "ProvisionedThroughput",
)
_QUEUE_NOT_ATTRIBUTES = ("QueueName", "Tags")

Template = dict[str, Any]


class TemplateError(Exception):
    """The template cannot be translated or references something it does not define."""


# ---------------------------------------------------------------- loading and translating


class _CfnLoader(yaml.SafeLoader):
    """A SafeLoader that reads CloudFormation short tags (``!Ref``, ``!GetAtt``, ``!Sub``...).

    It reuses samtranslator's tag constructor on a private subclass, so the global
    ``yaml.SafeLoader`` is left untouched (``samtranslator.yaml_helper.yaml_parse`` patches it).
    """


_CfnLoader.add_multi_constructor("!", intrinsics_multi_constructor)


def load_template(path: Path = TEMPLATE) -> Template:
    """The SAM template as a dict, short tags expanded to their long forms (a copy: parsed
    once per version of the file)."""
    return copy.deepcopy(_parsed(*_version_of(path)))


def _version_of(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=8)
def _parsed(path: str, _mtime_ns: int, _size: int) -> Template:
    loaded = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_CfnLoader)
    if not isinstance(loaded, dict) or not isinstance(loaded.get("Resources"), dict):
        raise TemplateError(f"{path} is not a CloudFormation template with Resources")
    return loaded


class _NoManagedPolicies:
    """Managed-policy loader that never calls IAM (the template names no managed policy)."""

    def load(self) -> dict[str, str]:
        """No managed policies by name."""
        return {}


def _with_s3_code_locations(template: Template) -> Template:
    """A copy whose local ``CodeUri``/``ContentUri`` paths are placeholder S3 locations."""
    result = copy.deepcopy(template)
    function_globals = result.get("Globals", {}).get("Function", {})
    if isinstance(function_globals.get("CodeUri"), str):
        function_globals["CodeUri"] = _s3_location(function_globals["CodeUri"])
    for resource in result["Resources"].values():
        key = _LOCAL_URIS.get(resource.get("Type", ""))
        properties = resource.get("Properties", {})
        if key and isinstance(properties.get(key), str):
            properties[key] = _s3_location(properties[key])
    return result


def _s3_location(uri: str) -> str:
    if uri.startswith("s3://"):
        return uri
    return _ARTIFACTS + (uri.strip("/") or "root")


def translate(template: Template, region: str | None = None) -> Template:
    """Translate a loaded SAM template to plain CloudFormation, offline."""
    session = boto3.session.Session(region_name=region or _default_region())
    metrics = Metrics("ServerlessTransform", DummyMetricsPublisher())  # records, never sends
    translator = Translator(None, Parser(), boto_session=session, metrics=metrics)
    policies = _NoManagedPolicies()
    try:
        with _quiet_feature_toggles():
            translated: Template = translator.translate(
                _with_s3_code_locations(template),
                parameter_values={},
                get_managed_policy_map=policies.load,
            )
    except Exception as error:  # samtranslator raises its own hierarchy with a `message`
        details = [getattr(cause, "message", str(cause)) for cause in getattr(error, "causes", [])]
        message = getattr(error, "message", str(error))
        raise TemplateError("; ".join([message, *details])) from error
    finally:
        metrics.publish()
    return translated


@contextmanager
def _quiet_feature_toggles() -> Iterator[None]:
    """Silence samtranslator's "Feature ... not available in Feature Toggle Config" warnings.

    Offline there is no feature-toggle config, so every toggle is off, as intended.
    """
    toggles = logging.getLogger("samtranslator.feature_toggle")
    level = toggles.level
    toggles.setLevel(logging.ERROR)
    try:
        yield
    finally:
        toggles.setLevel(level)


def _default_region() -> str:
    return boto3.session.Session().region_name or DEFAULT_REGION


def translated_template(path: Path = TEMPLATE, region: str | None = None) -> Template:
    """``template.yaml`` translated by samtranslator into a plain CloudFormation template (a
    copy: translated once per version of the file and region).

    >>> translated_template()["Resources"]["RankFunction"]["Type"]
    'AWS::Lambda::Function'
    """
    return copy.deepcopy(_translated(*_version_of(path), region or _default_region()))


@functools.lru_cache(maxsize=8)
def _translated(path: str, mtime_ns: int, size: int, region: str) -> Template:
    return translate(copy.deepcopy(_parsed(path, mtime_ns, size)), region)


# ---------------------------------------------------------------- intrinsics


@dataclass(frozen=True, slots=True)
class Created:
    """A created resource: what ``Ref`` gives and what ``Fn::GetAtt`` can read."""

    ref: str
    attributes: Mapping[str, str] = field(default_factory=dict)


def references(value: Any) -> Iterator[str]:
    """Logical ids named by ``Ref`` or ``Fn::GetAtt`` anywhere inside ``value``."""
    if isinstance(value, dict):
        if set(value) == {"Ref"} and isinstance(value["Ref"], str):
            yield value["Ref"]
            return
        if set(value) == {"Fn::GetAtt"}:
            yield _getatt(value["Fn::GetAtt"])[0]
            return
        for inner in value.values():
            yield from references(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from references(inner)


def _getatt(argument: Any) -> tuple[str, str]:
    parts = argument.split(".", 1) if isinstance(argument, str) else list(argument)
    if len(parts) != 2 or not all(isinstance(part, str) for part in parts):
        raise TemplateError(f"malformed Fn::GetAtt: {argument!r}")
    return parts[0], parts[1]


def resolve(value: Any, created: Mapping[str, Created]) -> Any:
    """``value`` with every ``Ref``/``Fn::GetAtt`` to a created resource replaced by its value."""
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            return _lookup(created, value["Ref"]).ref
        if set(value) == {"Fn::GetAtt"}:
            logical_id, attribute = _getatt(value["Fn::GetAtt"])
            attributes = _lookup(created, logical_id).attributes
            if attribute not in attributes:
                raise TemplateError(f"unsupported Fn::GetAtt {logical_id}.{attribute}")
            return attributes[attribute]
        intrinsic = next((key for key in value if key.startswith("Fn::")), None)
        if intrinsic:
            raise TemplateError(f"unsupported intrinsic {intrinsic} in {value!r}")
        return {key: resolve(inner, created) for key, inner in value.items()}
    if isinstance(value, list):
        return [resolve(inner, created) for inner in value]
    return value


def _lookup(created: Mapping[str, Created], logical_id: str) -> Created:
    if logical_id not in created:
        raise TemplateError(f"{logical_id} is not a created table, queue or bucket")
    return created[logical_id]


# ---------------------------------------------------------------- creating


def stack_resources(template: Template) -> dict[str, Template]:
    """The tables, queues and buckets of a translated template, dependencies first."""
    wanted = {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource.get("Type") in CREATED_TYPES
    }
    graph = {
        logical_id: {ref for ref in references(resource.get("Properties", {})) if ref in wanted}
        for logical_id, resource in wanted.items()
    }
    return {
        logical_id: wanted[logical_id] for logical_id in TopologicalSorter(graph).static_order()
    }


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def create_table(client: Any, name: str, properties: Template) -> Created:
    """Create a DynamoDB table (or keep the existing one), then its TTL and backups."""
    request = {key: properties[key] for key in _TABLE_PASSTHROUGH if key in properties}
    stream = properties.get("StreamSpecification")
    if stream:
        request["StreamSpecification"] = {"StreamEnabled": True, **stream}
    try:
        client.create_table(TableName=name, **request)
    except ClientError as error:
        if _error_code(error) != "ResourceInUseException":
            raise
    client.get_waiter("table_exists").wait(TableName=name)
    _enable_ttl(client, name, properties.get("TimeToLiveSpecification"))
    recovery = properties.get("PointInTimeRecoverySpecification")
    if recovery:
        client.update_continuous_backups(TableName=name, PointInTimeRecoverySpecification=recovery)
    arn = client.describe_table(TableName=name)["Table"]["TableArn"]
    return Created(ref=name, attributes={"Arn": arn})


def _enable_ttl(client: Any, name: str, spec: Template | None) -> None:
    if not spec or not spec.get("Enabled"):
        return
    current = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    if current.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        return
    client.update_time_to_live(TableName=name, TimeToLiveSpecification=spec)


def queue_attributes(properties: Template) -> dict[str, str]:
    """SQS ``Attributes`` from a queue's (resolved) CloudFormation properties."""
    return {
        key: _attribute_string(value)
        for key, value in properties.items()
        if key not in _QUEUE_NOT_ATTRIBUTES
    }


def _attribute_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def create_queue(client: Any, name: str, properties: Template) -> Created:
    """Create an SQS queue with its attributes (creating an identical queue again is a no-op)."""
    if properties.get("FifoQueue") and not name.endswith(".fifo"):
        name += ".fifo"
    url: str = client.create_queue(QueueName=name, Attributes=queue_attributes(properties))[
        "QueueUrl"
    ]
    arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return Created(ref=url, attributes={"Arn": arn, "QueueName": name, "QueueUrl": url})


def create_bucket(client: Any, name: str, properties: Template) -> Created:
    """Create an S3 bucket (or keep ours), then its encryption, public access block and such."""
    request: Template = {"Bucket": name}
    region = client.meta.region_name
    if region and region != DEFAULT_REGION:
        request["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        client.create_bucket(**request)
    except ClientError as error:
        if _error_code(error) != "BucketAlreadyOwnedByYou":
            raise
    for configure in _BUCKET_SETTINGS:
        configure(client, name, properties)
    return Created(ref=name, attributes={"Arn": f"arn:aws:s3:::{name}"})


def _bucket_encryption(client: Any, name: str, properties: Template) -> None:
    encryption = properties.get("BucketEncryption")
    if encryption:
        # CloudFormation's rule key differs from the S3 API's.
        rules = [
            {
                (
                    "ApplyServerSideEncryptionByDefault"
                    if key == "ServerSideEncryptionByDefault"
                    else key
                ): value
                for key, value in rule.items()
            }
            for rule in encryption["ServerSideEncryptionConfiguration"]
        ]
        client.put_bucket_encryption(
            Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules}
        )


def _bucket_public_access(client: Any, name: str, properties: Template) -> None:
    block = properties.get("PublicAccessBlockConfiguration")
    if block:
        client.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=block)


def _bucket_ownership(client: Any, name: str, properties: Template) -> None:
    ownership = properties.get("OwnershipControls")
    if ownership:
        client.put_bucket_ownership_controls(Bucket=name, OwnershipControls=ownership)


def _bucket_versioning(client: Any, name: str, properties: Template) -> None:
    versioning = properties.get("VersioningConfiguration")
    if versioning:
        client.put_bucket_versioning(Bucket=name, VersioningConfiguration=versioning)


def _bucket_lifecycle(client: Any, name: str, properties: Template) -> None:
    """CloudFormation's ``LifecycleConfiguration`` (prefix expirations) in S3's API shape."""
    rules = properties.get("LifecycleConfiguration", {}).get("Rules", [])
    if not rules:
        return
    client.put_bucket_lifecycle_configuration(
        Bucket=name,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": rule["Id"],
                    "Status": rule["Status"],
                    "Filter": {"Prefix": rule.get("Prefix", "")},
                    "Expiration": {"Days": int(rule["ExpirationInDays"])},
                }
                for rule in rules
            ]
        },
    )


_BUCKET_SETTINGS: tuple[Callable[[Any, str, Template], None], ...] = (
    _bucket_encryption,
    _bucket_lifecycle,
    _bucket_public_access,
    _bucket_ownership,
    _bucket_versioning,
)


def create_key(client: Any, name: str, properties: Template) -> Created:
    """Create a KMS key (or find ours by its alias): ``Ref`` is its id."""
    key_id, arn = create_kms_key(client, name, properties)
    return Created(ref=key_id, attributes={"Arn": arn, "KeyId": key_id})


_CREATORS: dict[str, tuple[str, Callable[[Any, str, Template], Created]]] = {
    TABLE: ("dynamodb", create_table),
    QUEUE: ("sqs", create_queue),
    BUCKET: ("s3", create_bucket),
    KMS_KEY: ("kms", create_key),
}


def resource_name(stack_name: str, logical_id: str, resource_type: str) -> str:
    """The physical name of a created resource (buckets are lowercase)."""
    name = f"{stack_name}-{logical_id}"
    return name.lower() if resource_type == BUCKET else name


def function_environment(template: Template) -> dict[str, Any]:
    """``Globals.Function.Environment.Variables`` of the (untranslated) SAM template."""
    variables = (
        template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    )
    return dict(variables) if isinstance(variables, dict) else {}


def create_resources(
    stack_name: str = DEFAULT_STACK, template_path: Path = TEMPLATE
) -> dict[str, str]:
    """Create every table, queue, bucket and KMS key of the template; return the functions' env.

    Idempotent: existing resources are kept. The returned mapping holds every global function
    environment variable that references a resource (``DECISIONS_TABLE``, ``MODEL_BUCKET``,
    ``REWARD_QUEUE_URL``...), mapped to the created name or URL.
    """
    template = load_template(template_path)
    region = _default_region()
    translated = translated_template(template_path, region)
    clients: dict[str, Any] = {}
    created: dict[str, Created] = {}
    for logical_id, resource in stack_resources(translated).items():
        service, create = _CREATORS[resource["Type"]]
        if service not in clients:
            clients[service] = boto3.client(service, region_name=region)
        properties = resolve(resource.get("Properties", {}), created)
        name = resource_name(stack_name, logical_id, resource["Type"])
        created[logical_id] = create(clients[service], name, properties)
    parameters = set(template.get("Parameters") or {})
    return {
        variable: str(resolve(value, created))
        for variable, value in function_environment(template).items()
        if (targets := set(references(value))) and not targets & parameters
    }


# ---------------------------------------------------------------- checking


def check(template_path: Path = TEMPLATE) -> list[str]:
    """Problems of the template: untranslatable, missing handler files, dangling env references."""
    try:
        template = load_template(template_path)
        translated = translate(template)
    except (TemplateError, OSError, yaml.YAMLError) as error:
        return [f"{template_path}: {error}"]
    return [
        *_handler_problems(template, template_path.parent),
        *_environment_problems(template, translated),
    ]


def _handler_problems(template: Template, root: Path) -> list[str]:
    """Every function's handler must be a module file under its CodeUri."""
    code_uri = template.get("Globals", {}).get("Function", {}).get("CodeUri", ".")
    problems = []
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != SAM_FUNCTION:
            continue
        properties = resource.get("Properties", {})
        handler = str(properties.get("Handler", ""))
        module, _, function = handler.rpartition(".")
        path = root / str(properties.get("CodeUri", code_uri)) / f"{module}.py"
        if not module or not function:
            problems.append(f"{logical_id}: malformed Handler {handler!r}")
        elif not path.is_file():
            problems.append(f"{logical_id}: handler file {path.relative_to(root)} does not exist")
    return problems


def _environment_problems(template: Template, translated: Template) -> list[str]:
    """Global env vars must reference created resources (or, for settings, template parameters);
    resource-like names must reference resources."""
    problems = []
    kinds = {
        logical_id: resource.get("Type") for logical_id, resource in translated["Resources"].items()
    }
    parameters = set(template.get("Parameters") or {})
    for variable, value in function_environment(template).items():
        targets = list(references(value))
        if not targets and variable.endswith(_RESOURCE_SUFFIXES):
            problems.append(f"Globals env {variable} is {value!r}, not a reference to a resource")
        if targets and set(targets) <= parameters and not variable.endswith(_RESOURCE_SUFFIXES):
            continue  # a deploy-time setting
        for target in targets:
            if kinds.get(target) not in CREATED_TYPES:
                problems.append(
                    f"Globals env {variable} references {target}, "
                    "which is not a table, queue, bucket or KMS key of the template"
                )
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m local.resources [--check | --stack NAME]``."""
    parser = argparse.ArgumentParser(prog="python -m local.resources", description=__doc__)
    parser.add_argument("--template", type=Path, default=TEMPLATE, help="SAM template path")
    parser.add_argument(
        "--check", action="store_true", help="only translate and check the template (offline)"
    )
    parser.add_argument("--stack", default=DEFAULT_STACK, help="name prefix of created resources")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.template)
        for problem in problems:
            print(f"template check: {problem}", file=sys.stderr)
        if not problems:
            print(f"template check: {args.template.name} translates and is consistent")
        return 1 if problems else 0
    for variable, value in create_resources(args.stack, args.template).items():
        print(f"{variable}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
