"""What the Delta Lake and Iceberg sinks share: one commit per table per batch that replaces
exactly the batch's runs and carries the batch's identity, retried when a concurrent writer
of other runs committed first.

A batch writes its bad rows first and its events last, so the events commit marks the whole
batch: when it is in the events table's history, the bad rows' commit is in theirs.
"""

from __future__ import annotations

import abc
import json
import logging
import random
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._spark import running_session
from .exceptions import TableFormatUnavailableError
from .sinks import RUN_COLUMN, BatchCommitSink, RunRows, count_batch_rows

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from .runs import Run

_logger = logging.getLogger(__name__)

EVENTS = "events"
BAD_ROWS = "bad_rows"

#: The key of a commit's batch identity (Delta user metadata, Iceberg snapshot property).
BATCH_ID_KEY = "spark-manifests.batch-id"
#: The key of the labels of the runs a commit replaced.
RUNS_KEY = "spark-manifests.runs"


def run_labels(runs: Sequence[Run]) -> list[str]:
    return sorted({run.label for run in runs})


def runs_predicate(runs: Sequence[Run]) -> str:
    """``run IN ('…', …)``: labels are ``YYYY-mm-DD-hh-MM-SS``, nothing to escape."""
    return f"{RUN_COLUMN} IN ({', '.join(repr(label) for label in run_labels(runs))})"


def commit_metadata(runs: Sequence[Run], batch_id: str) -> dict[str, str]:
    return {RUNS_KEY: ",".join(run_labels(runs)), BATCH_ID_KEY: batch_id}


def active_spark(spark: SparkSession | None) -> SparkSession:
    """``spark``, or the session running in this process."""
    if spark is not None:
        return spark
    running = running_session()
    if running is None:
        raise TableFormatUnavailableError(
            "No SparkSession is running: start one (with the table format's package) "
            "before the sink reads its table's history, or pass spark= to the sink."
        )
    return running


def require_class(spark: SparkSession, class_name: str, what: str) -> None:
    """Raise one line naming ``what`` to add when the JVM lacks ``class_name``."""
    try:
        spark._jvm.java.lang.Class.forName(  # type: ignore[union-attr]
            class_name,
            True,
            spark._jvm.java.lang.Thread.currentThread().getContextClassLoader(),  # type: ignore[union-attr]
        )
    except Exception:
        raise TableFormatUnavailableError(
            f"This SparkSession lacks {what}; start it with spark-manifests' "
            "table_format_spark_config(...) settings (or --packages/--conf to the same effect)."
        ) from None


class TableSink(BatchCommitSink):
    """A sink of one events table and one bad-rows table of a table format.

    Subclasses write one table (``_replace``), say whether an error is a commit conflict
    with another writer (``_is_conflict``) and list a table's commits (``_commits``), from
    which the batch identity and time travel are read the same way for every format.
    """

    #: Bad rows go to a second table (``keep_bad_rows=False`` leaves them out per instance).
    writes_bad_rows = True
    #: Java class names (or error classes) of concurrent-commit conflicts, as a regex.
    _conflicts: re.Pattern[str]

    def __init__(
        self, *, spark: SparkSession | None, max_conflict_retries: int, keep_bad_rows: bool
    ) -> None:
        if max_conflict_retries < 0:
            raise ValueError("max_conflict_retries must be 0 or more")
        self._spark = spark
        self.max_conflict_retries = max_conflict_retries
        self.writes_bad_rows = keep_bad_rows

    # -- the BatchCommitSink interface --------------------------------------------------
    def write_batch(
        self,
        events: DataFrame,
        bad_rows: DataFrame | None,
        runs: Sequence[Run],
        *,
        batch_id: str,
    ) -> None:
        if self.writes_bad_rows:
            self._commit(BAD_ROWS, bad_rows, runs, batch_id=batch_id, spark=events.sparkSession)
        self._commit(EVENTS, events, runs, batch_id=batch_id, spark=events.sparkSession)

    def batch_committed(self, batch_id: str) -> bool:
        return self._commit_of(active_spark(self._spark), EVENTS, batch_id) is not None

    def batch_rows(self, batch_id: str, runs: Sequence[Run]) -> dict[str, RunRows] | None:
        """The events and bad rows of each run, counted in the tables as the batch's commits
        left them (time travel to them): one grouped count, asked on resume only.

        Bad rows the sink does not keep (``keep_bad_rows=False``) are not counted (0).
        """
        spark = active_spark(self._spark)
        events_at = self._commit_of(spark, EVENTS, batch_id)
        if events_at is None:
            return None  # the batch did not land
        bad_rows = None
        bad_rows_at = self._commit_of(spark, BAD_ROWS, batch_id) if self.writes_bad_rows else None
        if bad_rows_at is not None:  # else no bad-rows table yet: the batch had none
            bad_rows = self._read_at(spark, BAD_ROWS, bad_rows_at)
        return count_batch_rows(self._read_at(spark, EVENTS, events_at), bad_rows, runs)

    def _commit_of(self, spark: SparkSession, table: str, batch_id: str) -> Any | None:
        """The version (snapshot id) of ``table``'s commit recorded with ``batch_id``."""
        from pyspark.sql import functions as F

        if not self._table_exists(spark, table):
            return None
        found = self._commits(spark, table).where(F.col("batch_id") == batch_id).first()
        return None if found is None else found["at"]

    def _before_first_commit_of(self, run: Run, table: str) -> int | None:
        """The version (snapshot) just before the first commit that wrote ``run`` to
        ``table``; ``None`` when that was the table's first commit, or no commit wrote it."""
        from pyspark.sql import functions as F

        commits = self._commits(active_spark(self._spark), table)
        first = commits.where(F.array_contains("runs", run.label)).orderBy("order").first()
        return None if first is None or first["before"] is None else int(first["before"])

    # -- one commit, retried on conflicts with other writers ----------------------------
    def _commit(
        self,
        table: str,
        frame: DataFrame | None,
        runs: Sequence[Run],
        *,
        batch_id: str,
        spark: SparkSession,
    ) -> None:
        """Replace ``runs`` in ``table`` with ``frame`` (``None``: with nothing) in one commit."""
        if frame is None:
            if not self._table_exists(spark, table):
                return
            frame = spark.createDataFrame([], self._read(spark, table).schema)
        metadata = commit_metadata(runs, batch_id)
        for attempt in range(self.max_conflict_retries + 1):
            try:
                self._replace(spark, table, frame, runs, metadata)
                return
            except Exception as exc:
                if attempt == self.max_conflict_retries or not self._is_conflict(exc):
                    raise
                delay = min(5.0, 0.2 * 2**attempt) * (0.5 + random.random())
                _logger.info(
                    "Commit to %s conflicted with another writer (%s); retrying in %.1f s",
                    self.table_name(table),
                    type(exc).__name__,
                    delay,
                )
                time.sleep(delay)

    def _is_conflict(self, exc: Exception) -> bool:
        return bool(self._conflicts.search(f"{type(exc).__name__}: {exc}"))

    # -- what each format defines -------------------------------------------------------
    @abc.abstractmethod
    def table_name(self, table: str) -> str:
        """How ``table`` (``events`` or ``bad_rows``) is named to Spark: a path or a name."""

    @abc.abstractmethod
    def _table_exists(self, spark: SparkSession, table: str) -> bool: ...

    @abc.abstractmethod
    def _read(self, spark: SparkSession, table: str) -> DataFrame: ...

    @abc.abstractmethod
    def _replace(
        self,
        spark: SparkSession,
        table: str,
        frame: DataFrame,
        runs: Sequence[Run],
        metadata: dict[str, str],
    ) -> None: ...

    @abc.abstractmethod
    def _read_at(self, spark: SparkSession, table: str, at: Any) -> DataFrame:
        """``table`` as the commit ``at`` (a version or snapshot id) left it."""

    @abc.abstractmethod
    def _commits(self, spark: SparkSession, table: str) -> DataFrame:
        """The commits of ``table``, a row each: ``batch_id`` (string), ``runs`` (array of
        run labels), ``order`` (the commit order), ``at`` (the commit's version or snapshot
        id, to time travel to it) and ``before`` (the version or snapshot id to time travel
        to for the table as it was before the commit; null for the first)."""


def metadata_json(metadata: dict[str, Any]) -> str:
    return json.dumps(metadata, sort_keys=True, separators=(",", ":"))
