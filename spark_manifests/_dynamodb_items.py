"""DynamoDB items of the run manifest: attribute names, condition expressions, typed values,
and the reading of an item back into a ``ManifestEntry``.

The table layout is documented in ``spark_manifests.manifest_dynamodb``.
"""

from __future__ import annotations

import random
import re
from datetime import datetime
from typing import Any

from ._manifest_rules import parse_status, utc_from_epoch
from ._time import from_iso
from .manifest import ManifestEntry, RunStatus

#: Expression placeholder -> attribute name. Expressions use only placeholders.
ATTRIBUTES = {
    "#id": "RunId",
    "#status": "RunStatus",
    "#owner": "Owner",
    "#lease": "LeaseExpiresAt",
    "#attempts": "Attempts",
    "#started": "StartedAt",
    "#committed": "CommittedAt",
    "#updated": "UpdatedAt",
    "#rows_in": "RowsIn",
    "#rows_out": "RowsOut",
    "#bad_rows": "BadRows",
    "#output": "OutputPath",
    "#error": "Error",
}


KEY = ATTRIBUTES["#id"]


CLAIM_CONDITION = (
    "attribute_not_exists(#id)"
    " OR ((attribute_not_exists(#attempts) OR #attempts < :max) AND ("
    "(#status = :processing AND (attribute_not_exists(#lease) OR #lease <= :now))"
    " OR #status = :failed))"
)


HELD_CONDITION = "#status = :processing AND #owner = :owner"


ABANDONED_CONDITION = (
    "#status = :processing AND #attempts >= :max"
    " AND (attribute_not_exists(#lease) OR #lease <= :now)"
)


SKIP_CONDITION = (
    "attribute_not_exists(#id) OR #status IN (:failed, :skipped)"
    " OR (#status = :processing AND (attribute_not_exists(#lease) OR #lease <= :now))"
)


NOT_LEASED_CONDITION = (
    "attribute_not_exists(#status) OR #status <> :processing"
    " OR attribute_not_exists(#lease) OR #lease <= :now"
)


MARK_CONDITION = (
    "attribute_not_exists(#id) OR (attribute_exists(#status) AND #status <> :committed"
    f" AND ({NOT_LEASED_CONDITION}))"
)


PLACEHOLDER_RE = re.compile(r"[#:]\w+")


def attribute_names(expression: str) -> dict[str, str]:
    """ExpressionAttributeNames for the placeholders an expression uses (and only those:
    DynamoDB rejects unused ones)."""
    return {p: ATTRIBUTES[p] for p in PLACEHOLDER_RE.findall(expression) if p[0] == "#"}


def typed_value(name: str, values: dict[str, Any]) -> dict[str, str]:
    """The DynamoDB-typed value of an expression placeholder (without its colon)."""
    constants = {
        "processing": RunStatus.PROCESSING,
        "committed": RunStatus.COMMITTED,
        "failed": RunStatus.FAILED,
        "skipped": RunStatus.SKIPPED,
    }
    if name in constants:
        return {"S": constants[name].value}
    if name in ("zero", "one"):
        return {"N": "0" if name == "zero" else "1"}
    if name == "now":
        return {"N": number_text(values["at"])}
    value = values[name]
    if name == "at":
        return {"S": iso_text(value)}
    if isinstance(value, str):
        return {"S": value}
    return {"N": number_text(value)}


def number_text(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.6f}"


def iso_text(epoch: float) -> str:
    return utc_from_epoch(epoch).isoformat()  # type: ignore[union-attr]


def item_key(run_id: str) -> dict[str, dict[str, str]]:
    return {KEY: {"S": run_id}}


def entry_from_item(item: dict[str, Any]) -> ManifestEntry:
    def text(placeholder: str) -> str | None:
        return item.get(ATTRIBUTES[placeholder], {}).get("S")  # type: ignore[no-any-return]

    def number(placeholder: str) -> float | None:
        value = item.get(ATTRIBUTES[placeholder], {}).get("N")
        return None if value is None else float(value)

    def integer(placeholder: str) -> int | None:
        value = number(placeholder)
        return None if value is None else int(value)

    def moment(placeholder: str) -> datetime | None:
        value = text(placeholder)
        return None if value is None else from_iso(value)

    run_id = str(text("#id"))
    return ManifestEntry(
        run_id=run_id,
        status=parse_status(run_id, text("#status")),
        owner=text("#owner"),
        lease_expires_at=utc_from_epoch(number("#lease")),
        attempts=integer("#attempts") or 0,
        started_at=moment("#started"),
        committed_at=moment("#committed"),
        updated_at=moment("#updated"),
        rows_in=integer("#rows_in"),
        rows_out=integer("#rows_out"),
        bad_rows=integer("#bad_rows"),
        output_path=text("#output"),
        error=text("#error"),
    )


def backoff_seconds(retry: int) -> float:
    """Full-jitter exponential backoff, as AWS recommends for BatchGetItem."""
    return random.uniform(0, min(5.0, 0.05 * 2**retry))


def table_resource(table_name: str) -> str:
    """The table as error messages name it."""
    return f"DynamoDB table {table_name}"
