"""Delta Lake output: an events table and a bad-rows table, by path, partitioned by run.

A batch replaces exactly its runs with ``replaceWhere`` on the ``run`` column, one Delta
commit per table, and records its identity in the commit's ``userMetadata``
(``{"spark-manifests.batch-id": …, "spark-manifests.runs": …}``). On resume,
``DeltaSink.batch_committed`` looks for it in the table's history.

Why not ``txnAppId``/``txnVersion``: Delta silently skips a write whose version is not above
the last one recorded for its app id, so a per-table counter drops a run redone after
``manifest unmark`` or back-filled behind newer runs. The user metadata carries the identity
without that rule, and a rewrite is idempotent anyway (it replaces its runs).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._locations import Location, PathLike
from ._table_sink import (
    BATCH_ID_KEY,
    EVENTS,
    RUNS_KEY,
    TableSink,
    active_spark,
    metadata_json,
    require_class,
    runs_predicate,
)
from .sinks import RUN_COLUMN, ParquetSink

if TYPE_CHECKING:
    import boto3
    from pyspark.sql import DataFrame, SparkSession

    from .runs import Run

__all__ = ["DeltaSink"]

_logger = logging.getLogger(__name__)

#: Delta's concurrent-modification errors (io.delta.exceptions.*, or their error classes).
_DELTA_CONFLICTS = (
    r"Concurrent(Append|DeleteRead|DeleteDelete|Transaction|Write)Exception"
    r"|MetadataChangedException|ProtocolChangedException"
    r"|DELTA_CONCURRENT_\w+|DELTA_METADATA_CHANGED|DELTA_PROTOCOL_CHANGED"
)


class DeltaSink(TableSink):
    """Delta Lake tables ``<output>/events`` and ``<output>/bad_rows``, partitioned by ``run``.

    Parameters
    ----------
    output
        A local folder, ``file://`` or ``s3a://`` path (``s3://`` on EMR); the tables are
        created on the first write.
    keep_bad_rows
        Write bad rows to ``<output>/bad_rows`` (a Delta table too).
    max_conflict_retries
        Commits that lose to a concurrent writer of other runs are tried again this often.
    spark
        The session used to read the tables' history; the running one by default.
    client, session
        boto3 S3 client or session for the output's owner file on S3 (see ``prepare``).

    Notes
    -----
    The session needs Delta's package, SQL extension and catalog:
    ``table_format_spark_config("delta", ...)`` gives them for the running Spark.

    Examples
    --------
    >>> sink = DeltaSink("s3a://acme/lake/snowplow/")
    >>> sink.table_name("events")
    's3a://acme/lake/snowplow/events'
    """

    _conflicts = re.compile(_DELTA_CONFLICTS)

    def __init__(
        self,
        output: PathLike | Location,
        *,
        keep_bad_rows: bool = True,
        max_conflict_retries: int = 10,
        spark: SparkSession | None = None,
        client: Any | None = None,
        session: boto3.session.Session | None = None,
    ) -> None:
        super().__init__(
            spark=spark, max_conflict_retries=max_conflict_retries, keep_bad_rows=keep_bad_rows
        )
        # The owner file (which manifest's runs these tables hold) is ParquetSink's.
        self._owner = ParquetSink(output, client=client, session=session)
        self.location = self._owner.location

    def prepare(self, *, job_name: str, manifest: str | None) -> None:
        """Refuse tables that hold another manifest's runs; see ``ParquetSink.prepare``."""
        require_class(
            active_spark(self._spark),
            "io.delta.sql.DeltaSparkSessionExtension",
            "Delta Lake's package (io.delta:delta-spark)",
        )
        self._owner.prepare(job_name=job_name, manifest=manifest)

    def table_name(self, table: str) -> str:
        return self.location.join(table).uri

    def output_path(self, run: Run) -> str:
        """The events table: its rows ``WHERE run = '<label>'`` are the run's."""
        return self.table_name(EVENTS)

    def _table_exists(self, spark: SparkSession, table: str) -> bool:
        jvm = spark._jvm
        log = jvm.org.apache.hadoop.fs.Path(self.table_name(table) + "/_delta_log")  # type: ignore[union-attr]
        filesystem = log.getFileSystem(spark._jsc.hadoopConfiguration())  # type: ignore[union-attr]
        return bool(filesystem.exists(log))

    def _read(self, spark: SparkSession, table: str) -> DataFrame:
        return spark.read.format("delta").load(self.table_name(table))

    def _read_at(self, spark: SparkSession, table: str, at: Any) -> DataFrame:
        return (
            spark.read.format("delta").option("versionAsOf", int(at)).load(self.table_name(table))
        )

    def _replace(
        self,
        spark: SparkSession,
        table: str,
        frame: DataFrame,
        runs: Sequence[Run],
        metadata: dict[str, str],
    ) -> None:
        _logger.debug("Replacing %s in %s", runs_predicate(runs), self.table_name(table))
        (
            frame.write.format("delta")
            .mode("overwrite")
            .option("replaceWhere", runs_predicate(runs))
            .option("mergeSchema", "true")
            .option("userMetadata", metadata_json(metadata))
            .partitionBy(RUN_COLUMN)
            .save(self.table_name(table))
        )

    def _commits(self, spark: SparkSession, table: str) -> DataFrame:
        from pyspark.sql import functions as F

        path = self.table_name(table).replace("`", "``")
        history = spark.sql(f"DESCRIBE HISTORY delta.`{path}`")
        return history.select(
            F.get_json_object("userMetadata", f"$['{BATCH_ID_KEY}']").alias("batch_id"),
            F.split(F.get_json_object("userMetadata", f"$['{RUNS_KEY}']"), ",").alias("runs"),
            F.col("version").alias("order"),
            F.col("version").alias("at"),
            F.when(F.col("version") > 0, F.col("version") - 1).alias("before"),
        )

    def version_before(self, run: Run, *, table: str = EVENTS) -> int | None:
        """The table version just before the first commit that wrote ``run``, for time
        travel (``versionAsOf``); ``None`` when the run was written by the first commit or
        never.

        Examples
        --------
        >>> version = sink.version_before(run)  # doctest: +SKIP
        >>> spark.read.format("delta").option("versionAsOf", version)  # doctest: +SKIP
        """
        return self._before_first_commit_of(run, table)
