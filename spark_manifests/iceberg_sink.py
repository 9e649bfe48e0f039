"""Apache Iceberg output: an events table and a bad-rows table, identity-partitioned by run.

A batch replaces exactly its runs in one snapshot per table: an overwrite by the filter
``run IN (…)`` (a dynamic partition overwrite that also empties a run now giving no rows),
with the batch's identity in the snapshot summary (``snapshot-property.spark-manifests.batch-id``).
On resume, ``IcebergSink.batch_committed`` looks for it in the table's ``snapshots``.

Catalogs: with ``warehouse``, a Hadoop catalog on that path is configured on the session
under ``catalog``, unless the session configures ``catalog`` as another kind; without it,
``catalog`` must name one the session configures (Glue, REST, JDBC, Hive, Nessie).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._table_sink import (
    BATCH_ID_KEY,
    EVENTS,
    RUNS_KEY,
    TableSink,
    active_spark,
    require_class,
)
from .exceptions import OutputInUseError, TableFormatUnavailableError
from .sinks import RUN_COLUMN

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from .runs import Run

__all__ = ["IcebergSink"]

_logger = logging.getLogger(__name__)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")
#: Iceberg's commit conflicts (retried inside Iceberg first) and a lost race to create.
_ICEBERG_CONFLICTS = re.compile(
    r"CommitFailedException|ValidationException: Found conflicting"
    r"|TableAlreadyExistsException|TABLE_OR_VIEW_ALREADY_EXISTS"
)
#: Table properties: schema merge on write, and which manifest's runs the table holds.
_ACCEPT_ANY_SCHEMA = "write.spark.accept-any-schema"
_MANIFEST_PROPERTY = "spark-manifests.manifest"


class IcebergSink(TableSink):
    """Iceberg tables ``<catalog>.<namespace>.events`` and ``….bad_rows``.

    Parameters
    ----------
    warehouse
        A folder (local, ``s3a://``, ``s3://`` on EMR) for a Hadoop catalog named
        ``catalog``; ``None`` when the session configures ``catalog`` itself.
    catalog, namespace
        Where the tables are: ``<catalog>.<namespace>.events``.
    keep_bad_rows
        Write bad rows to ``<catalog>.<namespace>.bad_rows``.
    max_conflict_retries
        Commits that lose to a concurrent writer (after Iceberg's own retries) are tried
        again this often.
    spark
        The session used to read the tables' snapshots; the running one by default.

    Examples
    --------
    >>> sink = IcebergSink("s3a://acme/warehouse/", catalog="lake", namespace="snowplow")
    >>> sink.table_name("events")
    'lake.snowplow.events'
    """

    _conflicts = _ICEBERG_CONFLICTS

    def __init__(
        self,
        warehouse: str | None = None,
        *,
        catalog: str = "spark_manifests",
        namespace: str = "snowplow",
        keep_bad_rows: bool = True,
        max_conflict_retries: int = 10,
        spark: SparkSession | None = None,
    ) -> None:
        super().__init__(
            spark=spark, max_conflict_retries=max_conflict_retries, keep_bad_rows=keep_bad_rows
        )
        for what, name in (("catalog", catalog), ("namespace", namespace)):
            if not _IDENTIFIER.match(name):
                raise ValueError(f"The Iceberg {what} {name!r} is not a plain SQL identifier.")
        self.warehouse = warehouse
        self.catalog = catalog
        self.namespace = namespace
        self._manifest: str | None = None
        self._configured: set[int] = set()

    def table_name(self, table: str) -> str:
        return f"{self.catalog}.{self.namespace}.{table}"

    def output_path(self, run: Run) -> str:
        """The events table's name: its rows ``WHERE run = '<label>'`` are the run's."""
        return self.table_name(EVENTS)

    def prepare(self, *, job_name: str, manifest: str | None) -> None:
        """Check the session, and refuse tables that hold another manifest's runs (recorded
        in the table property ``spark-manifests.manifest``)."""
        spark = self._session(None)
        self._manifest = manifest
        if manifest is None or not self._table_exists(spark, EVENTS):
            return
        table = self.table_name(EVENTS)
        properties = {row[0]: row[1] for row in spark.sql(f"SHOW TBLPROPERTIES {table}").collect()}
        recorded = properties.get(_MANIFEST_PROPERTY)
        if recorded is None:
            spark.sql(
                f"ALTER TABLE {table} SET TBLPROPERTIES "
                f"('{_MANIFEST_PROPERTY}'={_sql_string(manifest)})"
            )
        elif recorded != manifest:
            raise OutputInUseError(
                f"The Iceberg table {table} holds the runs of the manifest {recorded}; job "
                f"{job_name!r} uses {manifest}. Give this job its own namespace, or if the "
                f"manifest moved, unset the table property {_MANIFEST_PROPERTY}."
            )

    def _session(self, spark: SparkSession | None) -> SparkSession:
        """The session, with the catalog configured (once per session)."""
        spark = active_spark(spark or self._spark)
        if id(spark) in self._configured:
            return spark
        require_class(
            spark,
            "org.apache.iceberg.spark.SparkCatalog",
            "Apache Iceberg's package (org.apache.iceberg:iceberg-spark-runtime)",
        )
        prefix = f"spark.sql.catalog.{self.catalog}"
        users_catalog = spark.conf.get(prefix, None) and (
            spark.conf.get(f"{prefix}.type", None) != "hadoop"
        )
        if users_catalog:
            pass  # Glue, REST, Hive...: used as the session configures it, whatever --output
        elif self.warehouse is not None:
            spark.conf.set(prefix, "org.apache.iceberg.spark.SparkCatalog")
            spark.conf.set(f"{prefix}.type", "hadoop")
            spark.conf.set(f"{prefix}.warehouse", self.warehouse)
        elif not spark.conf.get(prefix, None):
            raise TableFormatUnavailableError(
                f"The Iceberg catalog {self.catalog!r} is not configured: set {prefix} (and "
                "its type/uri) on the session, or give the sink a warehouse path."
            )
        self._configured.add(id(spark))
        return spark

    def _table_exists(self, spark: SparkSession, table: str) -> bool:
        spark = self._session(spark)
        return bool(spark.catalog.tableExists(self.table_name(table)))

    def _read(self, spark: SparkSession, table: str) -> DataFrame:
        return self._session(spark).read.table(self.table_name(table))

    def _read_at(self, spark: SparkSession, table: str, at: Any) -> DataFrame:
        # SQL: Spark 3.5's read.table() drops a versionAsOf option.
        name = self.table_name(table)
        return self._session(spark).sql(f"SELECT * FROM {name} VERSION AS OF {int(at)}")

    def _replace(
        self,
        spark: SparkSession,
        table: str,
        frame: DataFrame,
        runs: Sequence[Run],
        metadata: dict[str, str],
    ) -> None:
        from pyspark.sql import functions as F

        spark = self._session(spark)
        writer = frame.writeTo(self.table_name(table))
        for key, value in metadata.items():
            writer = writer.option(f"snapshot-property.{key}", value)
        if not self._table_exists(spark, table):
            spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {self.catalog}.{self.namespace}")
            writer = writer.partitionedBy(F.col(RUN_COLUMN)).tableProperty(
                _ACCEPT_ANY_SCHEMA, "true"
            )
            if self._manifest is not None:
                writer = writer.tableProperty(_MANIFEST_PROPERTY, self._manifest)
            _logger.info("Creating the Iceberg table %s", self.table_name(table))
            writer.create()
            return
        runs_filter = F.col(RUN_COLUMN).isin(sorted({run.label for run in runs}))
        writer.option("merge-schema", "true").option("check-ordering", "false").overwrite(
            runs_filter
        )

    def _commits(self, spark: SparkSession, table: str) -> DataFrame:
        from pyspark.sql import functions as F

        snapshots = self._session(spark).read.table(f"{self.table_name(table)}.snapshots")
        return snapshots.select(
            F.element_at("summary", F.lit(BATCH_ID_KEY)).alias("batch_id"),
            F.split(F.element_at("summary", F.lit(RUNS_KEY)), ",").alias("runs"),
            F.col("committed_at").alias("order"),
            F.col("snapshot_id").alias("at"),
            F.col("parent_id").alias("before"),
        )

    def snapshot_before(self, run: Run, *, table: str = EVENTS) -> int | None:
        """The id of the snapshot just before the first one that wrote ``run``, for time
        travel (SQL's ``VERSION AS OF``: Spark 3.5's ``read.table`` ignores a
        ``versionAsOf`` option); ``None`` when the run was written by the first snapshot or
        never.

        Examples
        --------
        >>> snapshot = sink.snapshot_before(run)  # doctest: +SKIP
        >>> spark.sql(f"SELECT * FROM {name} VERSION AS OF {snapshot}")  # doctest: +SKIP
        """
        return self._before_first_commit_of(run, table)


def _sql_string(value: str) -> str:
    """``value`` as a Spark SQL string literal: a manifest path may hold quotes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
