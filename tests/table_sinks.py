"""Scenarios every table-format sink (Delta Lake, Iceberg) must pass, on realistic data:
sample archives read by ``read_enriched``, written batch by batch, read back with
``spark.read`` and checked event by event."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_manifests._table_sink import BAD_ROWS, EVENTS, TableSink
from spark_manifests.enriched import read_enriched
from spark_manifests.runs import Run, list_runs
from spark_manifests.samples import write_sample_archive

SinkFactory = Callable[[], TableSink]
TableReader = Callable[[TableSink, str], DataFrame]


def batch_id() -> str:
    return f"test-job/{uuid.uuid4()}"


def sample_runs(tmp_path: Path, *, runs: int = 4, events_per_run: int = 30) -> list[Run]:
    archive = tmp_path / "archive"
    write_sample_archive(
        archive, runs=runs, events_per_run=events_per_run, files_per_run=2, bad_line_ratio=0.1
    )
    return list_runs(archive)


def read_runs(spark: SparkSession, runs: Sequence[Run]) -> tuple[DataFrame, DataFrame]:
    read = read_enriched(spark, [run.path for run in runs])
    return read.events, read.bad_rows


def write(sink: TableSink, spark: SparkSession, runs: Sequence[Run]) -> str:
    """Write ``runs`` as one batch; its batch id."""
    events, bad_rows = read_runs(spark, runs)
    identity = batch_id()
    sink.write_batch(events, bad_rows, runs, batch_id=identity)
    return identity


def event_keys(frame: DataFrame) -> Counter[tuple[str, str]]:
    """How often each (event_id, run) is in ``frame``: one Spark job."""
    return Counter((row[0], row[1]) for row in frame.select("event_id", "run").collect())


def assert_exactly_once(table: DataFrame, expected: DataFrame | Counter[tuple[str, str]]) -> None:
    """``table`` holds each event of ``expected`` once, and nothing else."""
    got = event_keys(table)
    want = expected if isinstance(expected, Counter) else event_keys(expected)
    assert set(want.values()) == {1}
    assert sum(got.values()) == sum(want.values()) > 0
    assert got == want


def check_batches_land_once(
    spark: SparkSession, make_sink: SinkFactory, read: TableReader, runs: list[Run]
) -> None:
    sink = make_sink()
    first, second = write(sink, spark, runs[:2]), write(sink, spark, runs[2:])
    events, bad_rows = read_runs(spark, runs)
    assert_exactly_once(read(sink, EVENTS), events)
    assert read(sink, BAD_ROWS).count() == bad_rows.count() > 0
    # A resumed job (a new process: a new sink) finds both batches, and no other.
    resumed = make_sink()
    assert resumed.batch_committed(first)
    assert resumed.batch_committed(second)
    assert not resumed.batch_committed(batch_id())


def check_kill_before_manifest_commit(
    spark: SparkSession, make_sink: SinkFactory, read: TableReader, runs: list[Run]
) -> None:
    """The table commit landed, the manifest commit did not: the resume must see the batch
    (and commit it without writing); the batch the driver saved but never wrote is absent."""
    landed = write(make_sink(), spark, runs[:2])
    saved_but_never_written = batch_id()
    resumed = make_sink()
    assert resumed.batch_committed(landed)
    assert not resumed.batch_committed(saved_but_never_written)
    events, bad_rows = read_runs(spark, runs[:2])
    assert_exactly_once(read(resumed, EVENTS), events)
    # Its rows, for the manifest, are counted in the tables as that commit left them: a
    # later batch that rewrites one of its runs with fewer rows changes nothing.
    redo, redo_bad = read_runs(spark, runs[1:2])
    resumed.write_batch(redo.limit(3), redo_bad.limit(0), runs[1:2], batch_id=batch_id())
    events_per_run, bad_per_run = rows_per_run(events), rows_per_run(bad_rows)
    assert resumed.batch_rows(landed, runs[:2]) == {
        run.label: (events_per_run[run.label], bad_per_run.get(run.label, 0), 0) for run in runs[:2]
    }
    assert resumed.batch_rows(saved_but_never_written, runs[:2]) is None


def rows_per_run(frame: DataFrame) -> dict[str, int]:
    return {row[0]: row[1] for row in frame.groupBy("run").count().collect()}


def check_redo_and_backfill(
    spark: SparkSession, make_sink: SinkFactory, read: TableReader, runs: list[Run]
) -> None:
    """A run redone after ``manifest unmark`` replaces its rows (now fewer); an older run
    back-filled after newer ones lands: nothing is skipped as 'already seen'."""
    sink = make_sink()
    write(sink, spark, runs[2:])
    write(sink, spark, runs[:1])  # back-filled: older than what the table holds
    events, bad_rows = read_runs(spark, runs[2:3])
    fewer = events.where(F.col("event_id") < F.lit("8"))
    redo = batch_id()
    sink.write_batch(fewer, bad_rows.limit(0), runs[2:3], batch_id=redo)
    assert sink.batch_committed(redo)
    expected = event_keys(read_runs(spark, [runs[0], runs[3]])[0]) + event_keys(fewer)
    assert_exactly_once(read(sink, EVENTS), expected)
    bad = read(sink, BAD_ROWS)
    assert bad.where(F.col("run") == runs[2].label).count() == 0
    assert bad.where(F.col("run") == runs[3].label).count() > 0


def check_schema_evolution(
    spark: SparkSession, make_sink: SinkFactory, read: TableReader, runs: list[Run]
) -> None:
    """A shredded column new in a later run is added; a later run without it still lands."""
    sink = make_sink()
    write(sink, spark, runs[:1])
    events, bad_rows = read_runs(spark, runs[1:2])
    extra = "contexts_com_acme_checkout_1"
    value = F.array(F.struct(F.lit("basket").alias("step"), F.lit(3).alias("items")))
    sink.write_batch(events.withColumn(extra, value), bad_rows, runs[1:2], batch_id=batch_id())
    write(sink, spark, runs[2:3])
    table = read(sink, EVENTS)
    assert extra in table.columns
    per_run = {
        row["run"]: row["n"]
        for row in table.where(F.col(extra).isNotNull())
        .groupBy("run")
        .agg(F.count("*").alias("n"))
        .collect()
    }
    assert per_run == {runs[1].label: events.count()}
    assert_exactly_once(table, read_runs(spark, runs[:3])[0])


def check_concurrent_writers(
    spark: SparkSession, make_sink: SinkFactory, read: TableReader, runs: list[Run]
) -> None:
    """Two workers write disjoint runs to one table at once, creation of it included."""
    errors: list[BaseException] = []
    identities: list[str] = []

    def worker(mine: Sequence[Run]) -> None:
        try:
            sink = make_sink()
            for run in mine:
                identities.append(write(sink, spark, [run]))
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(runs[i::2],)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    sink = make_sink()
    assert all(sink.batch_committed(identity) for identity in identities)
    assert_exactly_once(read(sink, EVENTS), read_runs(spark, runs)[0])


def time_travel_excludes(table_before: DataFrame, run: Run, others: DataFrame) -> None:
    assert table_before.where(F.col("run") == run.label).count() == 0
    assert_exactly_once(table_before, others)


ALL_SCENARIOS: list[Callable[..., Any]] = [
    check_batches_land_once,
    check_kill_before_manifest_commit,
    check_redo_and_backfill,
    check_schema_evolution,
    check_concurrent_writers,
]
