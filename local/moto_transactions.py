"""DynamoDB transactions for the local stack's moto server, without copying whole tables.

moto's ``transact_write_items`` deep-copies every table a transaction touches, so that it can
put them back if the transaction is cancelled. With the decision log in one table, every model
save then copied the whole log: saves slowed down as the log grew, and the server's memory grew
with it. This version keeps DynamoDB's semantics (every condition holds or nothing is written,
with the same cancellation reasons) by checking every condition first, then applying the writes;
should a write still fail, only the items the transaction touched (at most 100) are put back.
"""

from __future__ import annotations

import copy
from typing import Any

from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend

MAX_ITEMS = 100
_OPERATIONS = frozenset({"ConditionCheck", "Put", "Delete", "Update"})


def _key(backend: DynamoDBBackend, op_type: str, op: dict[str, Any]) -> dict[str, Any]:
    if op_type != "Put":
        return dict(op["Key"])
    table = backend.get_table(op["TableName"])
    key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = op["Item"][table.range_key_attr]
    return key


def _check(backend: DynamoDBBackend, op: dict[str, Any], key: dict[str, Any]) -> tuple[Any, ...]:
    """(None, None, None) when the condition holds, else moto's cancellation reason."""
    current = backend.get_item(op["TableName"], key)
    condition = op.get("ConditionExpression")
    if condition is None:
        return (None, None, None)
    expression = get_filter_expression(
        condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
    )
    if expression.expr(current):
        return (None, None, None)
    old = None
    if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
        old = current.to_json()["Attributes"]
    return ("ConditionalCheckFailed", str(ConditionalCheckFailed().message), old)


def _apply(backend: DynamoDBBackend, op_type: str, op: dict[str, Any], key: dict[str, Any]) -> None:
    names = op.get("ExpressionAttributeNames") or {}
    values = op.get("ExpressionAttributeValues") or {}
    if op_type == "Put":
        backend.put_item(op["TableName"], op["Item"])
    elif op_type == "Delete":
        backend.delete_item(op["TableName"], key)
    elif op_type == "Update":
        backend.update_item(
            op["TableName"],
            key,
            update_expression=op["UpdateExpression"],
            expression_attribute_names=names,
            expression_attribute_values=values,
        )


def _restore(backend: DynamoDBBackend, saved: list[tuple[str, dict[str, Any], Any]]) -> None:
    for table_name, key, before in reversed(saved):
        if before is None:
            if backend.get_item(table_name, key) is not None:
                backend.delete_item(table_name, key)
        else:
            backend.put_item(table_name, before.to_json()["Attributes"])


def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    """TransactWriteItems: all conditions hold and every write lands, or nothing changes."""
    if len(transact_items) > MAX_ITEMS:
        raise TooManyTransactionsException()
    ops: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    targets: set[tuple[str, str]] = set()
    for item in transact_items:
        if len(item) > 1:
            raise TransactWriteSingleOpException
        op_type, op = next(iter(item.items()))
        if op_type not in _OPERATIONS:
            raise ValueError("Unsupported transaction operation")
        key = _key(self, op_type, op)
        target = (str(op["TableName"]), str(dict(sorted(key.items()))))
        if target in targets:
            raise MultipleTransactionsException()
        targets.add(target)
        ops.append((op_type, op, key))
    reasons = [_check(self, op, key) for _, op, key in ops]
    if any(code is not None for code, _, _ in reasons):
        raise TransactionCanceledException(reasons)
    saved: list[tuple[str, dict[str, Any], Any]] = []
    try:
        for op_type, op, key in ops:
            if op_type == "ConditionCheck":
                continue
            saved.append((op["TableName"], key, copy.deepcopy(self.get_item(op["TableName"], key))))
            _apply(self, op_type, op, key)
    except Exception:
        _restore(self, saved)
        raise


def install() -> None:
    """Use this transaction path in this process's moto (the local stack's server)."""
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
