"""What each function of the template may do on AWS, and whether the calls it made were allowed.

moto does not check that a function's role allows what the function does (its IAM emulation
matches DynamoDB calls against ``*``), so a missing grant shows only on AWS, as AccessDenied.
This module reads the roles that ``samtranslator`` expands from ``template.yaml`` (policy
templates such as ``DynamoDBReadPolicy`` become statements) and evaluates IAM permissions
(``local.aws_calls.Permission``) against them, the way IAM does for identity policies: a
request is allowed when an ``Allow`` statement matches its action and resource and no ``Deny``
does. ``*`` and ``?`` are IAM's wildcards. Resources are ARNs in one fixed account and region,
with each resource named by its logical id (``arn:aws:dynamodb:us-east-1:123456789012:table/
DecisionsTable``), so that calls made under any stack name compare with the template.

``PermissionUsage`` aggregates the permissions of recorded calls per function (a call made by a
handler invoked directly, outside ``LocalFunction``, is attributed to the function whose handler
module is on the stack; a local SQS poller's calls to the function it feeds, as Lambda's event
source mapping runs with the function's role). ``check`` gives the calls not granted and the
grants never used. Example::

    policies = function_policies(translated_template())
    policies["RankFunction"].allows("dynamodb:GetItem", table_arn("KeysTable"))
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from local.aws_calls import AwsCall, Permission

PARTITION = "aws"
REGION = "us-east-1"
ACCOUNT = "123456789012"
_PSEUDO = {
    "AWS::Partition": PARTITION,
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "serendip",
}
FUNCTION_TYPE = "AWS::Lambda::Function"
ROLE_TYPE = "AWS::IAM::Role"
_TABLE, _QUEUE, _BUCKET, _KEY = (
    "AWS::DynamoDB::Table",
    "AWS::SQS::Queue",
    "AWS::S3::Bucket",
    "AWS::KMS::Key",
)
_SERVICE_TYPES = {"dynamodb": _TABLE, "sqs": _QUEUE, "s3": _BUCKET, "kms": _KEY}
# The AWS-managed policies SAM attaches, as AWS defines them (only their Allow statements).
MANAGED_POLICIES: dict[str, list[dict[str, Any]]] = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": [
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": "*",
        }
    ],
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess": [
        {
            "Effect": "Allow",
            "Action": [
                "xray:PutTraceSegments",
                "xray:PutTelemetryRecords",
                "xray:GetSamplingRules",
                "xray:GetSamplingTargets",
                "xray:GetSamplingStatisticSummaries",
            ],
            "Resource": "*",
        }
    ],
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole": [
        {
            "Effect": "Allow",
            "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
            "Resource": "*",
        },
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": "*",
        },
    ],
}


class PolicyError(ValueError):
    """The template holds something this evaluator cannot read (it refuses rather than guess)."""


# ---------------------------------------------------------------- ARNs of logical resources


def table_arn(logical_id: str) -> str:
    """The ARN a table of the template has here (named by its logical id)."""
    return f"arn:{PARTITION}:dynamodb:{REGION}:{ACCOUNT}:table/{logical_id}"


def queue_arn(logical_id: str) -> str:
    """The ARN a queue of the template has here."""
    return f"arn:{PARTITION}:sqs:{REGION}:{ACCOUNT}:{logical_id}"


def bucket_arn(logical_id: str) -> str:
    """The ARN a bucket of the template has here."""
    return f"arn:{PARTITION}:s3:::{logical_id}"


def key_arn(logical_id: str) -> str:
    """The ARN a KMS key of the template has here."""
    return f"arn:{PARTITION}:kms:{REGION}:{ACCOUNT}:key/{logical_id}"


_ARNS = {_TABLE: table_arn, _QUEUE: queue_arn, _BUCKET: bucket_arn, _KEY: key_arn}


def _ref(logical_id: str, resources: Mapping[str, Any]) -> str:
    if logical_id in _PSEUDO:
        return _PSEUDO[logical_id]
    kind = resources.get(logical_id, {}).get("Type")
    if kind == _QUEUE:  # a queue's Ref is its URL
        return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{logical_id}"
    if kind is None:
        raise PolicyError(f"Ref to unknown resource {logical_id}")
    return logical_id  # tables, buckets, keys and roles: their name (or id) is the logical id


def _getatt(logical_id: str, attribute: str, resources: Mapping[str, Any]) -> str:
    kind = resources.get(logical_id, {}).get("Type")
    if attribute == "Arn" and kind in _ARNS:
        return _ARNS[kind](logical_id)
    if attribute == "QueueName" and kind == _QUEUE:
        return logical_id
    if attribute == "KeyId" and kind == _KEY:
        return logical_id
    raise PolicyError(f"unsupported Fn::GetAtt {logical_id}.{attribute}")


_SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")


def resolve(value: Any, resources: Mapping[str, Any]) -> Any:
    """``value`` with ``Ref``, ``Fn::GetAtt``, ``Fn::Sub`` and ``Fn::Join`` resolved."""
    if isinstance(value, list):
        return [resolve(inner, resources) for inner in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        return _ref(value["Ref"], resources)
    if set(value) == {"Fn::GetAtt"}:
        argument = value["Fn::GetAtt"]
        parts = argument.split(".", 1) if isinstance(argument, str) else argument
        return _getatt(parts[0], parts[1], resources)
    if set(value) == {"Fn::Sub"}:
        return _sub(value["Fn::Sub"], resources)
    if set(value) == {"Fn::Join"}:
        delimiter, parts = value["Fn::Join"]
        return str(delimiter).join(str(resolve(part, resources)) for part in parts)
    intrinsic = next((key for key in value if key.startswith("Fn::")), None)
    if intrinsic:
        raise PolicyError(f"unsupported intrinsic {intrinsic} in a policy")
    return {key: resolve(inner, resources) for key, inner in value.items()}


def _sub(argument: Any, resources: Mapping[str, Any]) -> str:
    text, variables = (argument, {}) if isinstance(argument, str) else argument
    bound = {name: resolve(inner, resources) for name, inner in variables.items()}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in bound:
            return str(bound[name])
        if "." in name and not name.startswith("AWS::"):
            logical_id, attribute = name.split(".", 1)
            return _getatt(logical_id, attribute, resources)
        return _ref(name, resources)

    return _SUB_VARIABLE.sub(replace, text)


# ---------------------------------------------------------------- statements and roles


@cache
def _pattern(glob: str, ignore_case: bool) -> re.Pattern[str]:
    """IAM's wildcards: ``*`` any run of characters, ``?`` any one character."""
    return re.compile(
        "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob),
        re.DOTALL | (re.IGNORECASE if ignore_case else 0),
    )


def matches(glob: str, text: str, *, ignore_case: bool = False) -> bool:
    """Whether ``text`` matches the IAM pattern ``glob``.

    >>> matches("arn:aws:s3:::b/*", "arn:aws:s3:::b/models/x"), matches("a?c", "abbc")
    (True, False)
    """
    return _pattern(glob, ignore_case).fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class Grant:
    """One action on one resource pattern, as a statement of a function's role allows it."""

    action: str
    resource: str
    policy: str  # the role policy (or managed policy ARN) it comes from

    def allows(self, action: str, resource: str) -> bool:
        """Whether this grant covers ``action`` on ``resource``."""
        return matches(self.action, action, ignore_case=True) and matches(self.resource, resource)


@dataclass
class FunctionPolicy:
    """The Allow and Deny grants of one function's role."""

    function: str
    allow: list[Grant] = field(default_factory=list)
    deny: list[Grant] = field(default_factory=list)

    def granting(self, action: str, resource: str) -> list[Grant]:
        """The Allow grants that cover the request (empty if none does, or a Deny does)."""
        if any(grant.allows(action, resource) for grant in self.deny):
            return []
        return [grant for grant in self.allow if grant.allows(action, resource)]

    def allows(self, action: str, resource: str) -> bool:
        """Whether IAM allows ``action`` on ``resource`` for this function."""
        return bool(self.granting(action, resource))


def _strings(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(inner) for inner in value]


def _grants(statement: Mapping[str, Any], policy: str, where: str) -> tuple[str, list[Grant]]:
    unknown = set(statement) - {"Effect", "Action", "Resource", "Sid"}
    if unknown:  # NotAction, NotResource, Condition, Principal: not evaluated here
        raise PolicyError(f"{where}: statement keys {sorted(unknown)} are not evaluated")
    effect = statement.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f"{where}: Effect {effect!r}")
    grants = [
        Grant(action, resource, policy)
        for action in _strings(statement["Action"])
        for resource in _strings(statement["Resource"])
    ]
    return effect, grants


def function_policies(translated: Mapping[str, Any]) -> dict[str, FunctionPolicy]:
    """Every function of a translated template and the grants of its execution role."""
    resources = translated["Resources"]
    policies: dict[str, FunctionPolicy] = {}
    for function, resource in resources.items():
        if resource.get("Type") != FUNCTION_TYPE:
            continue
        role_ref = resource["Properties"]["Role"]
        role_id = role_ref["Fn::GetAtt"][0] if isinstance(role_ref, dict) else None
        if role_id is None or resources.get(role_id, {}).get("Type") != ROLE_TYPE:
            raise PolicyError(f"{function}: role {role_ref!r} is not a role of the template")
        role = resources[role_id]["Properties"]
        policy = FunctionPolicy(function)
        documents: list[tuple[str, list[Any]]] = []
        for arn in role.get("ManagedPolicyArns", []):
            if arn not in MANAGED_POLICIES:
                raise PolicyError(f"{function}: managed policy {arn} is not known here")
            documents.append((arn, MANAGED_POLICIES[arn]))
        for inline in role.get("Policies", []):
            documents.append(
                (inline["PolicyName"], resolve(inline["PolicyDocument"]["Statement"], resources))
            )
        for name, statements in documents:
            for number, statement in enumerate(statements):
                effect, grants = _grants(statement, name, f"{function} {name}[{number}]")
                (policy.allow if effect == "Allow" else policy.deny).extend(grants)
        policies[function] = policy
    return policies


def handler_modules(translated: Mapping[str, Any]) -> dict[str, str]:
    """Handler module file (``functions/rank/app.py``) to the function that runs it."""
    modules: dict[str, str] = {}
    for function, resource in translated["Resources"].items():
        if resource.get("Type") == FUNCTION_TYPE:
            handler = str(resource["Properties"]["Handler"])
            modules[handler.rpartition(".")[0] + ".py"] = function
    return modules


# ---------------------------------------------------------------- calls as ARNs


def environment_references(translated: Mapping[str, Any]) -> dict[str, str]:
    """Environment variables of the functions that ``Ref`` a resource, to its logical id."""
    found: dict[str, str] = {}
    for resource in translated["Resources"].values():
        if resource.get("Type") != FUNCTION_TYPE:
            continue
        variables = resource["Properties"].get("Environment", {}).get("Variables", {})
        for variable, value in variables.items():
            if isinstance(value, dict) and set(value) == {"Ref"}:
                found[variable] = value["Ref"]
    return found


def logical_ids(translated: Mapping[str, Any]) -> dict[str, list[str]]:
    """The tables, queues, buckets and keys of a template, by service."""
    found: dict[str, list[str]] = {service: [] for service in _SERVICE_TYPES}
    for logical_id, resource in translated["Resources"].items():
        for service, kind in _SERVICE_TYPES.items():
            if resource.get("Type") == kind:
                found[service].append(logical_id)
    return found


def logical_name(name: str, candidates: Iterable[str], aliases: Mapping[str, str]) -> str | None:
    """The logical id a physical name belongs to (``serendip-test-LearnQueue.fifo``).

    Created resources are named ``<stack>-<LogicalId>`` (buckets lowercase, FIFO queues with
    ``.fifo``); ``aliases`` maps other physical names (a KMS key id) to logical ids.

    >>> logical_name("s-LearnQueue.fifo", ["LearnQueue", "LearnDLQ"], {})
    'LearnQueue'
    """
    bare = name.rsplit("/", 1)[-1] if name.startswith("arn:") else name
    if bare in aliases:
        return aliases[bare]
    bare = bare.removesuffix(".fifo").lower()
    for logical_id in candidates:
        if bare == logical_id.lower() or bare.endswith(f"-{logical_id.lower()}"):
            return logical_id
    return None


def permission_arn(
    permission: Permission, ids: Mapping[str, list[str]], aliases: Mapping[str, str]
) -> str:
    """The ARN IAM checks a permission against, with resources named by logical id."""
    if permission.resource == "*" or permission.service not in _SERVICE_TYPES:
        return "*"
    logical_id = logical_name(permission.resource, ids[permission.service], aliases)
    if logical_id is None:
        return f"unknown:{permission.service}:{permission.resource}"
    arn = _ARNS[_SERVICE_TYPES[permission.service]](logical_id)
    return arn + permission.path


# ---------------------------------------------------------------- usage and the check


UsageKey = tuple[str, str, str]  # (function, action, resource ARN)


class PermissionUsage:
    """The permissions recorded calls needed, per function (a sink for ``record_aws_calls``)."""

    def __init__(self, translated: Mapping[str, Any], root: Path) -> None:
        self._ids = logical_ids(translated)
        self._modules = {
            str(root / module): name for module, name in handler_modules(translated).items()
        }
        self._functions = set(self._modules.values())
        self._tests = str(root / "tests") + os.sep
        self.aliases: dict[str, str] = {}  # physical names the suffix rule cannot map
        self._variables = environment_references(translated)
        self.counts: Counter[UsageKey] = Counter()
        # Where each permission was first needed (pytest's current test, when under pytest)
        self.first_seen: dict[UsageKey, str] = {}
        self.unattributed = 0  # calls made outside every function (tests, the CLI, moto setup)
        self._lock = threading.Lock()

    def add(self, call: AwsCall) -> None:
        """Record the permissions one call needed, under the function that made it."""
        function = (
            call.function or self._function_of_thread(call.thread) or self._function_on_stack()
        )
        if function is None or function not in self._functions:
            with self._lock:
                self.unattributed += 1
            return
        keys = [
            (function, permission.action, self._arn(permission)) for permission in call.permissions
        ]
        with self._lock:
            for key in keys:
                if key not in self.counts:
                    self.first_seen[key] = os.environ.get("PYTEST_CURRENT_TEST", "")
            self.counts.update(keys)

    def _arn(self, permission: Permission) -> str:
        arn = permission_arn(permission, self._ids, self.aliases)
        if arn.startswith("unknown:"):  # a physical name only the environment knows (a key id)
            for variable, logical_id in self._variables.items():
                value = os.environ.get(variable)
                if value:
                    self.aliases[value] = logical_id
                    self.aliases[value.rsplit("/", 1)[-1]] = logical_id
            arn = permission_arn(permission, self._ids, self.aliases)
        return arn

    def _function_of_thread(self, thread: str) -> str | None:
        name = thread.removesuffix("-poller")
        return name if name != thread and name in self._functions else None

    def _function_on_stack(self) -> str | None:
        """The function whose handler is the innermost on the stack, unless test code is nearer.

        A test that injects work into a handler (a learner racing an admin call, run from a
        hook) makes calls that are the test's, not the handler's.
        """
        frame = sys._getframe(2)
        while frame is not None:
            filename = frame.f_code.co_filename
            function = self._modules.get(filename)
            if function is not None:
                return function
            if filename.startswith(self._tests):
                return None
            frame = frame.f_back  # type: ignore[assignment]
        return None

    def functions(self) -> set[str]:
        """The functions that made at least one call."""
        with self._lock:
            return {function for function, _, _ in self.counts}

    def merge(self, other: PermissionUsage) -> None:
        """Add another usage's counts to this one."""
        with self._lock:
            self.counts.update(other.counts)
            self.unattributed += other.unattributed


@dataclass(frozen=True, slots=True)
class IamReport:
    """What ``check`` found: calls no grant covers, and grants no call used."""

    denied: list[UsageKey]
    unused: list[tuple[str, Grant]]
    used: dict[str, dict[str, list[str]]]  # function -> action -> resources

    def table(self) -> str:
        """A markdown table: function, calls made (action on resource), the grants used."""
        lines = ["| function | action | resources |", "|---|---|---|"]
        for function, actions in sorted(self.used.items()):
            for action, arns in sorted(actions.items()):
                shown = ", ".join(_grouped(arns))
                lines.append(f"| {function} | `{action}` | {shown} |")
        return "\n".join(lines)


def _short(arn: str) -> str:
    return arn.split(":", 5)[-1] if arn.startswith("arn:") else arn


def _grouped(arns: Iterable[str]) -> list[str]:
    """Resources as shown: S3 objects by their bucket's top-level prefix, with a count.

    >>> _grouped(["arn:aws:s3:::B/models/a", "arn:aws:s3:::B/models/b", "arn:aws:sqs:r:1:Q"])
    ['B/models/* (2 objects)', 'Q']
    """
    shown: Counter[str] = Counter()
    for arn in arns:
        short = _short(arn)
        if arn.startswith(f"arn:{PARTITION}:s3:::") and short.count("/") >= 2:
            bucket, prefix, _ = short.split("/", 2)
            shown[f"{bucket}/{prefix}/*"] += 1
        else:
            shown[short] += 0
    return [
        f"{name} ({count} object{'s' if count > 1 else ''})" if count else name
        for name, count in sorted(shown.items())
    ]


def check(
    policies: Mapping[str, FunctionPolicy],
    usage: Mapping[UsageKey, int],
    *,
    managed: bool = False,
) -> IamReport:
    """The calls in ``usage`` not allowed by their function's role, and the unused grants.

    Grants of AWS-managed policies count as unused only with ``managed`` (they are AWS's, and
    cover the logs and traces Lambda writes outside the code).
    """
    denied: list[UsageKey] = []
    used_grants: set[tuple[str, Grant]] = set()
    used: dict[str, dict[str, list[str]]] = {}
    for function, action, arn in sorted(usage):
        policy = policies.get(function)
        granting = policy.granting(action, arn) if policy else []
        if not granting:
            denied.append((function, action, arn))
            continue
        used.setdefault(function, {}).setdefault(action, []).append(arn)
        used_grants.update((function, grant) for grant in granting)
    unused = [
        (function, grant)
        for function, policy in sorted(policies.items())
        for grant in policy.allow
        if (function, grant) not in used_grants and (managed or not grant.policy.startswith("arn:"))
    ]
    return IamReport(denied, unused, used)
