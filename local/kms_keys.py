"""Create a template's ``AWS::KMS::Key`` on moto (or wherever boto3 points), idempotently.

A KMS key has no name, so the created key is found again by an alias of the resource name
(``alias/<stack>-<LogicalId>``): creating the stack's resources twice keeps one key, and the
secrets sealed with it stay readable.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

# CloudFormation key properties that KMS's CreateKey takes under the same name.
_PASSTHROUGH = ("Description", "KeySpec", "KeyUsage", "MultiRegion")


def create_kms_key(client: Any, name: str, properties: dict[str, Any]) -> tuple[str, str]:
    """Create the key (or find the one made before); returns its id and ARN."""
    alias = f"alias/{name}"
    try:
        metadata = client.describe_key(KeyId=alias)["KeyMetadata"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "NotFoundException":
            raise
        request = {key: properties[key] for key in _PASSTHROUGH if key in properties}
        metadata = client.create_key(**request)["KeyMetadata"]
        client.create_alias(AliasName=alias, TargetKeyId=metadata["KeyId"])
    if properties.get("EnableKeyRotation"):
        client.enable_key_rotation(KeyId=metadata["KeyId"])
    return str(metadata["KeyId"]), str(metadata["Arn"])
