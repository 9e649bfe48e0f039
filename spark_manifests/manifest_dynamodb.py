"""The run manifest on DynamoDB, on the Snowplow Analytics SDK's table layout.

``RunManifests(dynamodb_client, table_name)`` takes the SDK's constructor arguments and
offers its ``create``, ``add`` and ``contains``, so code written for the SDK ports by
changing one import. A table the SDK created and filled works unchanged: its items hold
only ``RunId`` and count as processed (status ``LEGACY``).

Table layout
------------
Hash key ``RunId`` (type S), no sort key: the SDK's. For an S3 archive the run id is the
bucket-relative key of the run folder with a trailing slash
(``enriched/archive/run=2017-04-11-10-31-05/``). Every other attribute is optional:

Notes
-----
==================  ====  ==========================================================
attribute           type  meaning
==================  ====  ==========================================================
``RunId``           S     the run id (hash key)
``RunStatus``       S     ``PROCESSING``, ``COMMITTED``, ``FAILED`` or ``SKIPPED``;
                          absent on items the Snowplow SDK wrote (read as ``LEGACY``)
``Owner``           S     the job that claimed the run last
``LeaseExpiresAt``  N     when the owner's claim lapses, epoch seconds; set while
                          ``PROCESSING`` only
``Attempts``        N     how many times the run was claimed
``StartedAt``       S     when the last claim was made, ISO-8601 UTC
``CommittedAt``     S     when the run was committed, ISO-8601 UTC
``UpdatedAt``       S     when the item last changed, ISO-8601 UTC
``RowsIn``          N     lines read from the run
``RowsOut``         N     rows written for the run
``BadRows``         N     lines that became bad rows
``OutputPath``      S     where the run's output was written
``Error``           S     the last failure (up to 8,000 characters), or why the run
                          was skipped
==================  ====  ==========================================================

Every expression names attributes through ``ExpressionAttributeNames`` (``Owner`` and
``Error`` are DynamoDB reserved words). Writes are conditional: a claim succeeds only on a
missing item, an expired lease, or a failed run with attempts left (a run the caller holds
under a live lease is renewed instead); ``commit``, ``fail`` and ``release`` only while the
caller holds the run, else ``OwnershipLostError`` and nothing is
written. A failed condition returns the item as it was
(``ReturnValuesOnConditionCheckFailure='ALL_OLD'``), so the error says who holds the run
without a second read. botocore resends a write whose answer timed out; when the resent write
fails its condition on the item its first sending wrote (committed or failed under the
caller), it counts as done.

Caveat for tables shared with SDK-based readers: the SDK's ``contains`` is true for any
item, so it also counts runs that are only claimed, failed or skipped as processed.

IAM actions used: ``dynamodb:DescribeTable`` and ``CreateTable`` (``create`` only),
``GetItem``, ``BatchGetItem``, ``UpdateItem``, ``DeleteItem``, ``Scan``; the same serve the
per-archive watermark items (``spark_manifests._dynamodb_watermark``), which
``RunManifests.entries`` hides.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from botocore.exceptions import ClientError

from ._aws import aws_errors, error_code
from ._dynamodb_items import (
    ABANDONED_CONDITION,
    CLAIM_CONDITION,
    HELD_CONDITION,
    KEY,
    MARK_CONDITION,
    NOT_LEASED_CONDITION,
    PLACEHOLDER_RE,
    SKIP_CONDITION,
    attribute_names,
    entry_from_item,
    item_key,
    table_resource,
    typed_value,
)
from ._dynamodb_reads import batch_get_items
from ._dynamodb_table import ensure_table
from ._dynamodb_watermark import read_watermark, write_watermark
from ._manifest_rules import (
    check_claim,
    check_owner,
    holds_live,
    in_progress,
    left_as_committed,
    ownership_lost,
    settled_by,
)
from ._watermarks import is_watermark_item_id
from .exceptions import (
    OwnershipLostError,
    RetryableError,
    RunInProgressError,
)
from .manifest import (
    DEFAULT_LEASE_SECONDS,
    DEFAULT_MAX_ATTEMPTS,
    ManifestEntry,
    RunManifest,
    RunStatus,
    Watermark,
    check_run_id,
    clip_error,
    refusal_of,
    unique_run_ids,
)

_logger = logging.getLogger(__name__)

__all__ = ["RunManifests"]

#: BatchGetItem calls in flight at once (botocore pools 10 connections a client).
DEFAULT_READ_CONCURRENCY = 8
# Conditional writes in flight at once in edit_many (one request per run).
EDIT_CONCURRENCY = 8


class RunManifests(RunManifest):
    """The run manifest in a DynamoDB table (the Snowplow Analytics SDK's layout).

    Parameters
    ----------
    dynamodb_client
        A boto3 DynamoDB client (as the SDK takes).
    table_name
        The table; ``create`` makes it.
    clock
        Returns the current time in epoch seconds; decides lease expiry.
    read_concurrency
        BatchGetItem calls in flight at once when reading many runs (boto3 clients are
        thread-safe; keep it at or below the client's ``max_pool_connections``, 10 by default).
    owns_client
        Close ``dynamodb_client`` when the manifest is closed (``open_manifest`` sets it for
        a client it made); a client passed in is the caller's to close by default.

    Examples
    --------
    >>> manifests = RunManifests(boto3.client("dynamodb"), "acme-runs")  # doctest: +SKIP
    >>> manifests.create()  # doctest: +SKIP
    >>> manifests.contains("enriched/archive/run=2017-04-11-10-31-05/")  # doctest: +SKIP
    False
    """

    def __init__(
        self,
        dynamodb_client: Any,
        table_name: str,
        *,
        clock: Callable[[], float] = time.time,
        read_concurrency: int = DEFAULT_READ_CONCURRENCY,
        owns_client: bool = False,
    ) -> None:
        if read_concurrency < 1:
            raise ValueError(f"read_concurrency must be at least 1, not {read_concurrency!r}.")
        self.dynamodb = dynamodb_client
        self.read_concurrency = read_concurrency
        self.table_name = table_name
        self._clock = clock
        self._sleep: Callable[[float], None] = time.sleep
        self._owns_client = owns_client

    def __repr__(self) -> str:
        return f"RunManifests({self.table_name!r})"

    @property
    def _resource(self) -> str:
        return table_resource(self.table_name)

    # -- table ---------------------------------------------------------------------------

    def create(
        self,
        *,
        read_capacity: int | None = None,
        write_capacity: int | None = None,
        wait: bool = True,
    ) -> None:
        """Create the table unless it exists, and wait until it is ACTIVE.

        On-demand billing (PAY_PER_REQUEST) unless both capacities are given. An existing
        table is kept as it is (its billing mode too) if its key is ``RunId`` (S).

        Raises
        ------
        SparkManifestsError
            The table exists with another key schema.
        """
        ensure_table(self.dynamodb, self.table_name, read_capacity, write_capacity, wait=wait)

    # -- reads ---------------------------------------------------------------------------

    def get(self, run_id: str) -> ManifestEntry | None:
        check_run_id(run_id)
        with aws_errors("read the run manifest", self._resource):
            item = self.dynamodb.get_item(
                TableName=self.table_name, Key=item_key(run_id), ConsistentRead=True
            ).get("Item")
        return None if item is None else entry_from_item(item)

    def get_many(self, run_ids: Iterable[str]) -> dict[str, ManifestEntry]:
        """Entries by run id, read with BatchGetItem (100 keys a call)."""
        entries = (entry_from_item(item) for item in self._batch_get(run_ids))
        return {entry.run_id: entry for entry in entries}

    def _pending_facts(self, run_ids: list[str]) -> dict[str, ManifestEntry]:
        # pending() needs a few attributes, not whole items with their metrics; the error
        # is read too, for the warning about failed runs out of attempts.
        items = self._batch_get(run_ids, projection="#id, #status, #attempts, #error")
        return {entry.run_id: entry for entry in map(entry_from_item, items)}

    def _batch_get(
        self, run_ids: Iterable[str], *, projection: str | None = None
    ) -> Iterator[dict[str, Any]]:
        return batch_get_items(
            self.dynamodb,
            self.table_name,
            unique_run_ids(run_ids),
            projection=projection,
            concurrency=self.read_concurrency,
            sleep=self._sleep,
        )

    def entries(self) -> Iterator[ManifestEntry]:
        paginator = self.dynamodb.get_paginator("scan")
        with aws_errors("scan the run manifest", self._resource):
            for page in paginator.paginate(TableName=self.table_name, ConsistentRead=True):
                for item in page.get("Items", []):
                    if not is_watermark_item_id(item[KEY]["S"]):
                        yield entry_from_item(item)

    # -- watermarks (see spark_manifests._watermarks) ---------------------------------------

    supports_watermarks = True

    def _read_watermark(self, archive: str) -> Watermark:
        return read_watermark(self.dynamodb, self.table_name, archive)

    def _write_watermark(self, new: Watermark) -> bool:
        return write_watermark(self.dynamodb, self.table_name, new, self._clock())

    # -- writes --------------------------------------------------------------------------

    def add(self, run_id: str) -> None:
        check_run_id(run_id)
        self._edit_unless_held(
            "mark",
            run_id,
            "SET #status = :committed, #committed = :at, #updated = :at REMOVE #lease, #error",
            MARK_CONDITION,
        )

    def claim(
        self,
        run_id: str,
        owner: str,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> bool:
        check_claim(run_id, owner, lease_seconds, max_attempts)
        now = self._clock()
        claimed, old = self._update(
            "claim a run",
            run_id,
            "SET #status = :processing, #owner = :owner, #lease = :until,"
            " #attempts = if_not_exists(#attempts, :zero) + :one,"
            " #started = :at, #updated = :at",
            CLAIM_CONDITION,
            at=now,
            owner=owner,
            until=now + lease_seconds,
            max=max_attempts,
        )
        if claimed or not holds_live(old, owner, now):
            return claimed
        try:
            self.renew(run_id, owner, lease_seconds=lease_seconds)
        except OwnershipLostError:
            return False  # its lease ran out and another job took it in between
        return True

    def commit(
        self,
        run_id: str,
        owner: str,
        *,
        rows_in: int | None = None,
        rows_out: int | None = None,
        bad_rows: int | None = None,
        output_path: str | None = None,
    ) -> None:
        metrics: dict[str, Any] = {
            "rows_in": rows_in,
            "rows_out": rows_out,
            "bad_rows": bad_rows,
            "output": output_path,
        }
        given = {name: value for name, value in metrics.items() if value is not None}
        sets = "".join(f", #{name} = :{name}" for name in given)
        update = f"SET #status = :committed, #committed = :at, #updated = :at{sets}"
        self._update_held(
            "commit",
            run_id,
            owner,
            update + " REMOVE #lease, #error",
            done=RunStatus.COMMITTED,
            **given,
        )

    def renew(self, run_id: str, owner: str, *, lease_seconds: float) -> None:
        check_claim(run_id, owner, lease_seconds, 1)
        now = self._clock()
        self._update_held(
            "renew the lease of",
            run_id,
            owner,
            "SET #lease = :until, #updated = :at",
            at=now,
            until=now + lease_seconds,
        )

    def fail(self, run_id: str, owner: str, error: str) -> None:
        self._update_held(
            "record the failure of",
            run_id,
            owner,
            "SET #status = :failed, #error = :error, #updated = :at REMOVE #lease",
            done=RunStatus.FAILED,
            error=clip_error(str(error)),
        )

    def fail_abandoned(self, run_id: str, error: str, *, max_attempts: int) -> bool:
        check_run_id(run_id)
        failed, _ = self._update(
            "record the failure of an abandoned run",
            run_id,
            "SET #status = :failed, #error = :error, #updated = :at REMOVE #lease",
            ABANDONED_CONDITION,
            error=clip_error(str(error)),
            max=max_attempts,
        )
        return failed

    def release(self, run_id: str, owner: str) -> None:
        check_run_id(run_id)
        check_owner(owner)
        released, old = self._delete("release a run", run_id, HELD_CONDITION, owner=owner)
        if not released:
            raise ownership_lost("release", run_id, owner, old)

    def skip(self, run_id: str, reason: str | None = None) -> None:
        check_run_id(run_id)
        update = "SET #status = :skipped, #updated = :at"
        update += ", #error = :error REMOVE #lease" if reason else " REMOVE #lease, #error"
        values: dict[str, Any] = {"error": clip_error(reason)} if reason else {}
        self._edit_unless_held("skip", run_id, update, SKIP_CONDITION, **values)

    def _unmark(self, run_id: str) -> None:
        unmarked, old = self._delete("unmark a run", run_id, NOT_LEASED_CONDITION)
        if not unmarked:
            raise in_progress("unmark", run_id, old)

    def _edit_each(
        self, one_run: Callable[[str], None], run_ids: list[str]
    ) -> list[RunInProgressError | None]:
        if len(run_ids) <= 1:
            return super()._edit_each(one_run, run_ids)
        with ThreadPoolExecutor(min(EDIT_CONCURRENCY, len(run_ids))) as pool:
            return list(pool.map(lambda run_id: refusal_of(one_run, run_id), run_ids))

    @property
    def uri(self) -> str | None:
        return f"dynamodb://{self.table_name}"

    def close(self) -> None:
        if self._owns_client and hasattr(self.dynamodb, "close"):
            self.dynamodb.close()

    # -- helpers -------------------------------------------------------------------------

    def _edit_unless_held(
        self, verb: str, run_id: str, update: str, condition: str, **values: Any
    ) -> None:
        """An operator's edit (see ``left_as_committed``); retried when a lease ran out
        between the write and the check that explains its refusal."""
        for _ in range(3):
            written, entry = self._update(f"{verb} a run", run_id, update, condition, **values)
            if written or left_as_committed(verb, run_id, entry, self._clock()):
                return
        raise RetryableError(f"Could not {verb} {run_id!r}: it kept changing; try again.")

    def _update_held(
        self,
        verb: str,
        run_id: str,
        owner: str,
        update: str,
        *,
        done: RunStatus | None = None,
        **values: Any,
    ) -> None:
        """An update of a run ``owner`` holds; a run ``owner`` already left in status
        ``done`` counts as updated (``settled_by``)."""
        check_run_id(run_id)
        check_owner(owner)
        written, old = self._update(
            f"{verb} a run", run_id, update, HELD_CONDITION, owner=owner, **values
        )
        if written or (done is not None and settled_by(old, owner, done)):
            return
        raise ownership_lost(verb, run_id, owner, old)

    def _update(
        self, action: str, run_id: str, update: str, condition: str, **values: Any
    ) -> tuple[bool, ManifestEntry | None]:
        """A conditional UpdateItem; see ``_write``."""
        return self._write(
            action,
            self.dynamodb.update_item,
            run_id,
            condition,
            {"UpdateExpression": update},
            values,
        )

    def _delete(
        self, action: str, run_id: str, condition: str, **values: Any
    ) -> tuple[bool, ManifestEntry | None]:
        """A conditional DeleteItem; see ``_write``."""
        return self._write(action, self.dynamodb.delete_item, run_id, condition, {}, values)

    def _write(
        self,
        action: str,
        call: Callable[..., Any],
        run_id: str,
        condition: str,
        params: dict[str, Any],
        values: dict[str, Any],
    ) -> tuple[bool, ManifestEntry | None]:
        """A conditional write: ``(True, None)`` if written, else ``(False, entry)`` with the
        entry as it was when the condition failed (``None`` if there was no item)."""
        values.setdefault("at", self._clock())
        text = " ".join([*params.values(), condition])
        names = attribute_names(text)
        typed = {p: typed_value(p[1:], values) for p in PLACEHOLDER_RE.findall(text) if p[0] == ":"}
        with aws_errors(action, self._resource):
            try:
                call(
                    TableName=self.table_name,
                    Key=item_key(run_id),
                    ConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=typed,
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    **params,
                )
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise
                old = exc.response.get("Item")
                return False, None if old is None else entry_from_item(old)
        return True, None
