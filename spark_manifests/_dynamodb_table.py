"""The run manifest's DynamoDB table: creating it, or checking the one that exists."""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import ClientError

from ._aws import aws_errors, error_code
from ._dynamodb_items import KEY, table_resource
from .exceptions import SparkManifestsError

_logger = logging.getLogger(__name__)


def ensure_table(
    dynamodb: Any,
    table_name: str,
    read_capacity: int | None,
    write_capacity: int | None,
    *,
    wait: bool,
) -> None:
    """Create the table unless it exists (see ``RunManifests.create``), and wait until
    it is ACTIVE when ``wait``."""
    if (read_capacity is None) != (write_capacity is None):
        raise ValueError("Give both read_capacity and write_capacity, or neither.")
    table = _describe(dynamodb, table_name)
    if table is None:
        _create_table(dynamodb, table_name, read_capacity, write_capacity)
    else:
        _check_layout(table_name, table)
    if wait and (table is None or table.get("TableStatus") != "ACTIVE"):
        with aws_errors("wait for the run manifest table", table_resource(table_name)):
            dynamodb.get_waiter("table_exists").wait(
                TableName=table_name, WaiterConfig={"Delay": 2, "MaxAttempts": 150}
            )


def _describe(dynamodb: Any, table_name: str) -> dict[str, Any] | None:
    with aws_errors("describe the run manifest table", table_resource(table_name)):
        try:
            return dynamodb.describe_table(TableName=table_name)["Table"]  # type: ignore[no-any-return]
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            return None


def _create_table(
    dynamodb: Any, table_name: str, read_capacity: int | None, write_capacity: int | None
) -> None:
    billing: dict[str, Any] = {"BillingMode": "PAY_PER_REQUEST"}
    if read_capacity is not None:
        billing = {
            "BillingMode": "PROVISIONED",
            "ProvisionedThroughput": {
                "ReadCapacityUnits": read_capacity,
                "WriteCapacityUnits": write_capacity,
            },
        }
    with aws_errors("create the run manifest table", table_resource(table_name)):
        try:
            dynamodb.create_table(
                TableName=table_name,
                AttributeDefinitions=[{"AttributeName": KEY, "AttributeType": "S"}],
                KeySchema=[{"AttributeName": KEY, "KeyType": "HASH"}],
                **billing,
            )
            _logger.info("Created the run manifest table %s", table_name)
        except ClientError as exc:
            # Another job created it between our DescribeTable and CreateTable.
            if error_code(exc) != "ResourceInUseException":
                raise


def _check_layout(table_name: str, table: dict[str, Any]) -> None:
    keys = [(k["AttributeName"], k["KeyType"]) for k in table.get("KeySchema", [])]
    types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    if keys != [(KEY, "HASH")] or types.get(KEY) != "S":
        raise SparkManifestsError(
            f"The DynamoDB table {table_name} exists but its key is {keys} "
            f"({types}); a run manifest needs the hash key {KEY} (type S) and no sort key. "
            "Use another table name."
        )
