"""Watermark records of the DynamoDB run manifest (see ``spark_manifests._watermarks``).

One item per archive in the manifest table, keyed ``spark_manifests#watermark#<archive>``:

====================  ====  ====================================================
attribute             type  meaning
====================  ====  ====================================================
``RunId``             S     ``spark_manifests#watermark#`` + the archive key
``WatermarkRunId``    S     every run ordered before it is settled; absent: none
``WatermarkVersion``  N     raised by one on every write (compare-and-set)
``ReconciledAt``      S     when a full listing last advanced it, ISO-8601 UTC
``UpdatedAt``         S     when it was last written, ISO-8601 UTC
====================  ====  ====================================================

It has no ``RunStatus``: a reader that scans the table must skip keys with that prefix
(``entries`` does).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from ._aws import aws_errors, error_code
from ._dynamodb_items import KEY, iso_text, table_resource
from ._time import from_iso
from ._watermarks import watermark_item_id
from .manifest import Watermark

RUN_ID = "WatermarkRunId"
VERSION = "WatermarkVersion"
RECONCILED_AT = "ReconciledAt"
UPDATED_AT = "UpdatedAt"


def read_watermark(dynamodb: Any, table_name: str, archive: str) -> Watermark:
    """The archive's record, by a consistent GetItem (one read unit)."""
    with aws_errors("read the watermark", table_resource(table_name)):
        item = dynamodb.get_item(
            TableName=table_name,
            Key={KEY: {"S": watermark_item_id(archive)}},
            ConsistentRead=True,
        ).get("Item")
    if item is None:
        return Watermark(archive)
    reconciled = item.get(RECONCILED_AT, {}).get("S")
    return Watermark(
        archive,
        item.get(RUN_ID, {}).get("S"),
        int(item[VERSION]["N"]),
        None if reconciled is None else from_iso(reconciled),
    )


def write_watermark(dynamodb: Any, table_name: str, new: Watermark, now: float) -> bool:
    """Write ``new`` if the stored version is the one before it (no item for version 1).

    An UpdateItem, as the runs' writes are: the table needs no IAM action more.
    """
    names = {
        "#version": VERSION,
        "#updated": UPDATED_AT,
        "#run": RUN_ID,
        "#reconciled": RECONCILED_AT,
    }
    values: dict[str, Any] = {":version": {"N": str(new.version)}, ":updated": {"S": iso_text(now)}}
    sets, removes = ["#version = :version", "#updated = :updated"], []
    if new.run_id is None:
        removes.append("#run")
    else:
        sets.append("#run = :run")
        values[":run"] = {"S": new.run_id}
    if new.reconciled_at is None:
        removes.append("#reconciled")
    else:
        sets.append("#reconciled = :reconciled")
        values[":reconciled"] = {"S": iso_text(new.reconciled_at.timestamp())}
    if new.version > 1:
        condition = "#version = :expected"
        values[":expected"] = {"N": str(new.version - 1)}
    else:
        condition = "attribute_not_exists(#id)"
        names["#id"] = KEY
    update = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
    with aws_errors("write the watermark", table_resource(table_name)):
        try:
            dynamodb.update_item(
                TableName=table_name,
                Key={KEY: {"S": watermark_item_id(new.archive)}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            return False
    return True
