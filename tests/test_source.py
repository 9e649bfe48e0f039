"""ManifestedRunSource: the driver loop, end to end on local Spark, SQLite and a state directory."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from conftest import job_environment
from spark_manifests import (
    ArchiveNotFoundError,
    CorruptStateError,
    InvalidLocationError,
    JobAlreadyRunningError,
    JobFailedError,
    ManifestedRunSource,
    OutputInUseError,
    RetryableError,
    RunInputError,
    RunStatus,
    SparkManifestsError,
    SQLiteRunManifest,
    StateStore,
    read_enriched,
    write_sample_archive,
)
from spark_manifests import _batch_writer as batch_writer_module
from spark_manifests import _counting as counting_module
from spark_manifests import _snapshots as snapshots_module
from spark_manifests import source as source_module
from spark_manifests.retry import RetryPolicy
from spark_manifests.sinks import ParquetSink, Sink

RUNS = 4
EVENTS_PER_RUN = 120
NO_WAIT = RetryPolicy(max_retries=3, initial_delay=0.0)


class SimulatedCrash(BaseException):
    """Stands for the driver dying: not an Exception, so nothing in the loop catches it."""


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("archive")
    write_sample_archive(
        path, runs=RUNS, events_per_run=EVENTS_PER_RUN, files_per_run=2, bad_line_ratio=0.05, seed=7
    )
    return str(path)


@pytest.fixture
def make_source(spark: SparkSession, archive: str, tmp_path: Path):
    def make(**options) -> ManifestedRunSource:
        options.setdefault("output", str(tmp_path / "output"))
        options.setdefault("manifest", SQLiteRunManifest(str(tmp_path / "manifest.sqlite")))
        options.setdefault("state", StateStore(str(tmp_path / "state")))
        options.setdefault("job_name", "test_job")
        options.setdefault("retry", NO_WAIT)
        options.setdefault("spark", spark)
        return ManifestedRunSource(options.pop("archive", archive), **options)

    return make


def read_output(spark: SparkSession, source: ManifestedRunSource, folder: str = "events"):
    return spark.read.parquet(os.path.join(source.sink.location.key, folder))


def sorted_events(frame: DataFrame) -> DataFrame:
    return frame.select("run", "event_id", "event", "collector_tstamp").orderBy("event_id")


def test_processes_every_run_once_and_a_second_run_finds_nothing(make_source, spark) -> None:
    source = make_source()
    summary = source.run()

    assert summary.runs_committed == RUNS
    assert summary.rows_in == RUNS * EVENTS_PER_RUN
    assert summary.rows_out + summary.bad_rows == summary.rows_in
    assert summary.bad_rows > 0
    events, bad_rows = read_output(spark, source), read_output(spark, source, "bad_rows")
    assert events.count() == summary.rows_out
    assert bad_rows.count() == summary.bad_rows
    assert events.select("run").distinct().count() == RUNS
    entries = list(source.manifest.entries())
    assert {e.status for e in entries} == {RunStatus.COMMITTED}
    assert sum(e.rows_in for e in entries) == RUNS * EVENTS_PER_RUN
    events_per_run = Counter(row.run for row in events.select("run").collect())
    bad_per_run = Counter(row.run for row in bad_rows.select("run").collect())
    for entry in entries:
        label = entry.run_id.rstrip("/").rsplit("=", 1)[1]
        assert entry.output_path.rstrip("/").endswith(f"events/run={label}")
        assert (entry.rows_in, entry.rows_out, entry.bad_rows) == (
            EVENTS_PER_RUN,
            events_per_run[label],
            bad_per_run[label],
        )

    again = make_source(manifest=source.manifest, state=source.state_store).run()
    assert (again.runs_committed, again.batches, again.rows_in) == (0, 0, 0)
    completed = source.state_store.get_or_create("test_job")
    assert completed.origin == "completed"
    assert completed["summary"]["runs_committed"] == 0


def test_a_session_factory_is_called_only_when_a_batch_is_read(make_source, spark) -> None:
    calls = []

    def session() -> SparkSession:
        calls.append(1)
        return spark

    first = make_source(spark=session, limit=1)
    [oldest] = first.pending()
    assert calls == []
    assert first.run().runs_committed == 1
    assert calls == [1]

    idle = make_source(spark=session, until=oldest.timestamp)
    assert idle.run().runs_committed == 0
    assert calls == [1], "a job with nothing pending started Spark"


def test_a_missing_archive_fails_before_the_job_state_is_touched(make_source, tmp_path) -> None:
    source = make_source(archive=str(tmp_path / "nowhere"))

    with pytest.raises(ArchiveNotFoundError, match="nowhere"):
        source.run()

    # No running snapshot: the next start is a fresh job, not the resume of a crashed one.
    assert source.state_store.get_or_create("test_job").origin == "new"


def test_rewriting_a_run_replaces_its_partition(make_source, spark) -> None:
    source = make_source()
    source.run()
    before = sorted_events(read_output(spark, source)).cache()
    first = min(source.manifest.entries(), key=lambda e: e.run_id)
    source.manifest.unmark(first.run_id)

    summary = make_source(manifest=source.manifest, state=source.state_store).run()

    assert summary.runs_committed == 1
    after = sorted_events(read_output(spark, source))
    assert_df_equality(before, after)
    assert after.groupBy("event_id").count().where("count > 1").count() == 0


def test_a_rewrite_that_gives_a_run_no_rows_removes_its_old_ones(make_source, spark) -> None:
    source = make_source()
    source.run()
    first = min(source.manifest.entries(), key=lambda e: e.run_id)
    label = first.run_id.rstrip("/").rsplit("=", 1)[1]
    events_before = read_output(spark, source).where(F.col("run") != label).count()
    bad_before = read_output(spark, source, "bad_rows").where(F.col("run") != label).count()
    assert events_before > 0
    assert bad_before > 0
    source.manifest.unmark(first.run_id)

    def without_bad_rows(spark, paths):
        events, bad_rows = read_enriched(spark, paths)
        return events, bad_rows.where("false")

    again = make_source(
        manifest=source.manifest,
        state=source.state_store,
        reader=without_bad_rows,
        transform=lambda events: events.where("false"),
    ).run()

    assert (again.runs_committed, again.rows_out, again.bad_rows) == (1, 0, 0)
    events, bad_rows = read_output(spark, source), read_output(spark, source, "bad_rows")
    assert events.where(F.col("run") == label).count() == 0
    assert bad_rows.where(F.col("run") == label).count() == 0
    assert events.count() == events_before
    assert bad_rows.count() == bad_before


def test_batches_group_runs_by_count_and_bytes(make_source) -> None:
    by_count = make_source(max_runs_per_batch=3)
    written: list[tuple[str, ...]] = []
    by_count.on("batch_written", lambda event: written.append(event.run_ids))
    assert by_count.run().batches == 2
    assert [len(ids) for ids in written] == [3, 1]

    by_bytes = make_source(
        max_bytes_per_batch=1,
        output=by_count.sink.location.key + "2",
        job_name="by_bytes",
        manifest=SQLiteRunManifest(":memory:"),
    )
    assert by_bytes.run().batches == RUNS


def test_a_full_batch_is_processed_before_the_next_runs_are_listed(make_source) -> None:
    # Runs listed long before their batch may change meanwhile, and each listing costs a
    # request on S3.
    source = make_source(max_runs_per_batch=2)
    inspected: list[str] = []
    inspect = source._planner.inspect

    def recording(runs):
        inspected.extend(run.id for run in runs)
        return inspect(runs)

    source._planner.inspect = recording
    pending = source.pending()
    batches = source._planner.batches(pending)

    first = next(batches)
    assert [listing.run for listing in first] == pending[:2]
    assert inspected == [run.id for run in pending[:2]]


def test_runs_committed_with_their_output_elsewhere_are_named_in_a_warning(
    make_source, tmp_path, caplog
) -> None:
    shared = SQLiteRunManifest(str(tmp_path / "shared.sqlite"))
    first = make_source(manifest=shared, output=str(tmp_path / "parquet"))
    runs = first.pending()
    for run in runs[:2]:
        assert shared.claim(run.id, first.owner)
        shared.commit(run.id, first.owner, output_path=first.sink.output_path(run))

    with caplog.at_level(logging.WARNING, logger="spark_manifests"):
        second = make_source(manifest=shared, output=str(tmp_path / "page_views"))
        assert second.pending() == runs[2:]
        assert second.pending() == runs[2:]  # warned once per source
        # A worker of the same job (same output) is not warned.
        make_source(manifest=shared, output=str(tmp_path / "parquet"), job_name="w2").pending()

    warnings = [r.getMessage() for r in caplog.records if "output elsewhere" in r.getMessage()]
    assert len(warnings) == 1
    assert f"({first.sink.output_path(runs[1])}, where this job would write " in warnings[0]
    assert "its own manifest (--manifest)" in warnings[0]


def test_read_returns_runs_without_touching_the_manifest(make_source) -> None:
    source = make_source(transform=lambda events: events.withColumn("seen", F.lit(1)))
    first, second = source.read(3), source.read(3)

    assert first is not None
    assert "seen" in first.columns  # the transform applies, as in the job
    assert second is not None
    assert first.select("run").distinct().count() == 3
    assert second.select("run").distinct().count() == 1
    assert source.read(3) is None
    assert list(source.manifest.entries()) == []
    assert len(source.pending()) == RUNS


def test_a_retryable_error_is_retried(make_source) -> None:
    calls = Counter()

    def flaky(events: DataFrame) -> DataFrame:
        calls["transform"] += 1
        if calls["transform"] < 3:
            raise RetryableError("throttled, try again")
        return events

    summary = make_source(transform=flaky).run()

    assert calls["transform"] == 3
    assert summary.runs_committed == RUNS
    assert summary.runs_failed == 0


def test_a_retryable_error_that_persists_fails_only_its_run(make_source, archive) -> None:
    stuck_label = sorted(os.listdir(archive))[0].split("=", 1)[1]
    tries = Counter()

    def throttled(events: DataFrame, runs) -> DataFrame:
        if any(run.label == stuck_label for run in runs):
            tries[stuck_label] += 1
            raise RetryableError("throttled, try again")
        return events

    source = make_source(transform=throttled, max_runs_per_batch=1)
    summary = source.run()

    assert tries[stuck_label] == NO_WAIT.max_retries + 1
    assert (summary.runs_committed, summary.runs_failed) == (RUNS - 1, 1)
    [failed] = [e for e in source.manifest.entries() if e.status is RunStatus.FAILED]
    assert failed.run_id.rstrip("/").endswith(stuck_label)
    assert "throttled" in failed.error


def test_a_failing_event_handler_is_logged_and_the_job_goes_on(make_source, caplog) -> None:
    def broken(event) -> None:
        raise ValueError("handler bug")

    summary = make_source().on("run_committed", broken).run()

    assert summary.runs_committed == RUNS
    failures = [r for r in caplog.records if "handler of the run_committed event" in r.message]
    assert len(failures) == RUNS
    assert all("handler bug" in str(r.exc_info[1]) for r in failures)


@pytest.mark.parametrize("shred", [True, False], ids=["lines-counted", "lines-unknown"])
def test_a_custom_sink_gets_every_run(make_source, spark, caplog, shred) -> None:
    class CountingSink(Sink):
        def __init__(self) -> None:
            self.rows: dict[str, int] = {}

        def write(self, events: DataFrame, runs) -> None:
            for row in events.groupBy("run").count().collect():
                self.rows[row["run"]] = row["count"]

        def has_output(self, run) -> bool:
            return run.label in self.rows

        def output_path(self, run) -> str:
            return f"memory://{run.label}"

    sink = CountingSink()
    source = make_source(
        sink=sink, output=None, reader=lambda spark, paths: read_enriched(spark, paths, shred=shred)
    )
    committed: list[dict] = []
    source.on("run_committed", lambda event: committed.append(event.data))
    caplog.set_level("WARNING", logger="spark_manifests")
    summary = source.run()

    assert summary.runs_committed == RUNS
    # Bad lines the sink does not keep are still counted, and said to be dropped.
    assert summary.rows_in == RUNS * EVENTS_PER_RUN
    assert summary.bad_rows == summary.rows_in - summary.rows_out > 0
    assert f"{summary.bad_rows} bad lines were not kept, because CountingSink" in caplog.text
    assert sorted(sink.rows) == [row["run"] for row in source.status_rows()]
    assert sum(sink.rows.values()) == summary.rows_out
    assert sum(data["rows_out"] for data in committed) == summary.rows_out
    assert {e.output_path for e in source.manifest.entries()} == {
        f"memory://{label}" for label in sink.rows
    }


def test_a_custom_sink_that_defines_write_bad_rows_gets_them(make_source) -> None:
    class ListSink(Sink):
        def __init__(self) -> None:
            self.bad_rows = 0

        def write(self, events: DataFrame, runs) -> None:
            events.count()

        def write_bad_rows(self, bad_rows: DataFrame, runs) -> None:
            self.bad_rows += bad_rows.count()

        def has_output(self, run) -> bool:
            return False

        def output_path(self, run) -> str:
            return f"memory://{run.label}"

    sink = ListSink()
    summary = make_source(sink=sink, output=None).run()

    assert sink.writes_bad_rows
    assert sink.bad_rows == summary.bad_rows > 0


def test_a_sink_writing_through_foreach_partition_is_counted_apart(
    make_source, monkeypatch, caplog
) -> None:
    # Observations report on DataFrame actions only: the job waited for them for ever.
    monkeypatch.setattr(counting_module, "OBSERVATION_WAIT_SECONDS", 1.0)

    class ForeachSink(Sink):
        def write(self, events: DataFrame, runs) -> None:
            events.foreachPartition(lambda rows: sum(1 for _ in rows))

        def has_output(self, run) -> bool:
            return False

        def output_path(self, run) -> str:
            return f"http://example.com/{run.label}"

    summary = make_source(sink=ForeachSink(), output=None).run()

    assert summary.runs_committed == RUNS
    assert summary.rows_in == RUNS * EVENTS_PER_RUN
    assert summary.rows_out == summary.rows_in - summary.bad_rows
    assert "were not counted while the sink wrote them" in caplog.text
    # The count that made the observations report ended the threads that waited for them.
    time.sleep(0.5)
    assert not [t for t in threading.enumerate() if t.name == "observation" and t.is_alive()]


def test_a_sink_may_set_writes_bad_rows_and_a_reader_may_give_no_bad_rows(
    make_source, tmp_path
) -> None:
    sink = ParquetSink(str(tmp_path / "out"))
    sink.writes_bad_rows = False
    summary = make_source(sink=sink, output=None).run()
    assert summary.bad_rows > 0  # counted, not kept
    assert not (tmp_path / "out" / "bad_rows").exists()

    def events_only(spark, paths):
        return read_enriched(spark, paths).events, None

    other = make_source(
        reader=events_only, output=str(tmp_path / "out2"), manifest=str(tmp_path / "m2.sqlite")
    )
    assert other.run().runs_committed == RUNS


def test_a_non_retryable_error_fails_only_its_run(make_source, archive) -> None:
    bad_label = sorted(os.listdir(archive))[1].split("=", 1)[1]

    def picky(events: DataFrame, runs) -> DataFrame:
        if any(run.label == bad_label for run in runs):
            raise RunInputError(f"bad schema in {bad_label}")
        return events

    source = make_source(transform=picky)
    failed: list[str] = []
    source.on("run_failed", lambda event: failed.extend(event.run_ids))
    summary = source.run()

    assert summary.runs_committed == RUNS - 1
    assert summary.runs_failed == 1
    assert len(failed) == 1
    assert failed[0].rstrip("/").endswith(bad_label)
    entry = source.manifest.get(failed[0])
    assert entry.status is RunStatus.FAILED
    assert bad_label in entry.error
    assert not summary.ok


def test_the_summary_keeps_a_readable_part_of_each_failure(make_source) -> None:
    # A mass failure with stack traces made completed state files of megabytes.
    def verbose(events: DataFrame) -> DataFrame:
        raise RunInputError("bad schema: " + "x" * 5000)

    source = make_source(transform=verbose, limit=1)
    summary = source.run()

    [message] = summary.failures.values()
    assert len(message) == source_module.MAX_SUMMARY_ERROR_CHARS
    assert message.startswith("bad schema: xxx")
    [entry] = source.manifest.entries()
    assert len(entry.error) > 5000  # the manifest keeps it whole


def test_a_bad_run_is_found_by_halving_its_batch(make_source, tmp_path) -> None:
    # Trying each run of a batch alone would cost one Spark job per run.
    archive = tmp_path / "sixteen"
    write_sample_archive(archive, runs=16, events_per_run=5, files_per_run=1, seed=3)
    bad_label = sorted(os.listdir(archive))[5].split("=", 1)[1]
    loads: list[int] = []

    def picky(events: DataFrame, runs) -> DataFrame:
        loads.append(len(runs))
        if any(run.label == bad_label for run in runs):
            raise RunInputError(f"bad schema in {bad_label}")
        return events

    summary = make_source(archive=str(archive), transform=picky, max_runs_per_batch=16).run()

    assert (summary.runs_committed, summary.runs_failed) == (15, 1)
    assert loads == [16, 8, 4, 4, 2, 1, 1, 2, 8]  # 9 Spark jobs, not 17


def test_a_run_its_jobs_kept_dying_on_is_recorded_failed(make_source, tmp_path, caplog) -> None:
    now = [time.time()]
    manifest = SQLiteRunManifest(str(tmp_path / "manifest.sqlite"), clock=lambda: now[0])
    source = make_source(manifest=manifest)
    poison = source.pending()[0].id
    for attempt in range(NO_WAIT.max_retries + 1):  # each job died holding it
        assert manifest.claim(poison, f"dead-job-{attempt}", lease_seconds=60, max_attempts=9)
        now[0] += 61
    failed: list[str] = []
    source.on("run_failed", lambda event: failed.extend(event.run_ids))

    summary = source.run()

    assert (summary.runs_committed, summary.runs_failed, failed) == (RUNS - 1, 1, [poison])
    assert "Abandoned" in summary.failures[poison]
    assert not summary.ok
    entry = manifest.get(poison)
    assert entry.status is RunStatus.FAILED
    assert "unmark" in entry.error

    caplog.set_level("WARNING", logger="spark_manifests")
    again = make_source(manifest=manifest, state=source.state_store).run()
    assert (again.runs_failed, again.runs_skipped) == (0, 0)
    assert "1 failed runs have no attempts left" in caplog.text


def test_failed_runs_out_of_attempts_do_not_fill_the_limit(make_source, tmp_path) -> None:
    manifest = SQLiteRunManifest(str(tmp_path / "manifest.sqlite"))
    source = make_source(manifest=manifest, limit=1)
    oldest = source.pending()[0].id
    for attempt in range(NO_WAIT.max_retries + 1):
        assert manifest.claim(oldest, f"job-{attempt}", max_attempts=9)
        manifest.fail(oldest, f"job-{attempt}", "bad schema")

    assert [run.id for run in source.pending()] != [oldest]
    summary = source.run()

    assert (summary.runs_committed, summary.runs_failed, summary.runs_skipped) == (1, 0, 0)


def test_fail_fast_stops_at_the_first_failure(make_source) -> None:
    def broken(events: DataFrame) -> DataFrame:
        raise RunInputError("cannot transform")

    source = make_source(transform=broken, fail_fast=True, max_runs_per_batch=1)
    with pytest.raises(JobFailedError, match="cannot transform") as stopped:
        source.run()

    # The job stopped there: the other runs were never claimed.
    [failed] = source.manifest.entries()
    assert (failed.status, failed.run_id) == (RunStatus.FAILED, stopped.value.run_id)


def test_events_fire_in_order(make_source) -> None:
    source = make_source(max_runs_per_batch=2)
    seen: list[tuple[str, int]] = []
    for name in ("run_claimed", "batch_loaded", "batch_written", "run_committed"):
        source.on(name, lambda event, name=name: seen.append((name, event.batch)))
    progress: list[tuple[int, int]] = []
    source.on("progress", lambda p: progress.append((p.done, p.total)))

    source.run()

    expected = []
    for batch in (1, 2):
        expected += [("run_claimed", batch)] * 2
        expected += [("batch_loaded", batch), ("batch_written", batch)]
        expected += [("run_committed", batch)] * 2
    assert seen == expected
    assert progress == [(0, RUNS), (2, RUNS), (4, RUNS)]


def test_status_lists_every_run(make_source) -> None:
    source = make_source(limit=1)
    source.run()
    table = source.status()

    assert list(table["status"]).count("COMMITTED") == 1
    assert list(table["status"]).count("PENDING") == RUNS - 1
    assert table["rows_in"].dropna().tolist() == [EVENTS_PER_RUN]
    in_spark = source.status(as_spark=True)  # "error" is None in every row
    assert in_spark.where("status = 'PENDING'").count() == RUNS - 1
    assert dict(in_spark.dtypes)["committed_at"] == "timestamp"


def test_status_of_an_archive_without_runs_keeps_its_columns(make_source, tmp_path) -> None:
    (tmp_path / "no_runs").mkdir()
    source = make_source(archive=str(tmp_path / "no_runs"))
    assert list(source.status().columns) == list(source_module.STATUS_COLUMNS)
    assert source.status(as_spark=True).columns == list(source_module.STATUS_COLUMNS)


@pytest.mark.parametrize(
    ("plugins", "message"),
    [
        ({"transform": lambda df: df.drop("run")}, "The transform dropped the 'run' column"),
        ({"transform": lambda df: None}, "The transform returned None, not a Spark DataFrame"),
        ({"reader": lambda spark, paths: None}, "The reader returned None, not a Spark"),
        (
            {"reader": lambda spark, paths: spark.read.text(paths)},
            "The reader's events have no 'run' column",
        ),
    ],
    ids=["run-dropped", "no-return", "reader-none", "reader-without-run"],
)
def test_a_broken_reader_or_transform_stops_the_job_without_failing_runs(
    make_source, plugins, message
) -> None:
    # Every run would fail alike and use up its attempts: the job's code is at fault.
    source = make_source(**plugins)
    with pytest.raises(JobFailedError, match=re.escape(message)) as stopped:
        source.run()
    assert "Its runs are not marked failed" in str(stopped.value)
    assert RunStatus.FAILED not in {entry.status for entry in source.manifest.entries()}


def test_a_run_value_that_names_no_run_of_the_batch_is_never_written(make_source) -> None:
    # Grouped by day under the name "run", each batch would replace the day's partition
    # the batch before wrote: committed runs with their output gone.
    first = make_source(max_runs_per_batch=1, limit=1)
    assert first.run().runs_committed == 1
    written = sorted(os.listdir(Path(first.sink.events_location.key)))

    def by_day(events: DataFrame) -> DataFrame:
        day = F.date_format("collector_tstamp", "yyyy-MM-dd").alias("run")
        return events.groupBy(day, "app_id").count()

    source = make_source(transform=by_day, max_runs_per_batch=1)
    with pytest.raises(
        JobFailedError, match=r"The run value 20\d\d-\d\d-\d\d of a row the transform"
    ):
        source.run()

    assert sorted(os.listdir(Path(first.sink.events_location.key))) == written
    statuses = [entry.status for entry in source.manifest.entries()]
    assert statuses.count(RunStatus.COMMITTED) == 1
    assert RunStatus.FAILED not in statuses


def test_a_transform_with_an_optional_second_parameter_gets_the_events_only(make_source) -> None:
    def tagged(events: DataFrame, tag: str = "x") -> DataFrame:
        return events.withColumn("tag", F.lit(tag))

    assert make_source(transform=tagged).run().runs_committed == RUNS


def test_close_releases_claims(make_source, monkeypatch) -> None:
    source = make_source()
    monkeypatch.setattr(batch_writer_module, "fault_point", _crash_at("after_load"))
    with pytest.raises(SimulatedCrash):
        source.run()
    held = [e for e in source.manifest.entries() if e.status is RunStatus.PROCESSING]
    assert held
    source.close()
    assert [e for e in source.manifest.entries() if e.status is RunStatus.PROCESSING] == []


def _crash_at(point: str):
    def fault_point(name: str) -> None:
        if name == point:
            raise SimulatedCrash(point)

    return fault_point


@pytest.mark.parametrize("point", ["after_claim", "after_load", "after_write", "after_commit"])
def test_resume_after_a_crash_at_each_stage(
    make_source, spark, monkeypatch, tmp_path, point
) -> None:
    clean = make_source(
        output=str(tmp_path / "clean"),
        manifest=SQLiteRunManifest(":memory:"),
        state=StateStore(str(tmp_path / "clean_state")),
    )
    clean.run()

    crashing = make_source(max_runs_per_batch=2)
    monkeypatch.setattr(batch_writer_module, "fault_point", _crash_at(point))
    with pytest.raises(SimulatedCrash):
        crashing.run()
    assert crashing.state_store.get_or_create("test_job").origin == "running"
    monkeypatch.undo()

    resumed = make_source(max_runs_per_batch=2)
    summary = resumed.run()

    assert resumed.owner == crashing.owner
    committed = [e for e in resumed.manifest.entries() if e.status is RunStatus.COMMITTED]
    assert len(committed) == RUNS
    # Only written runs are committed without being read again.
    assert summary.runs_resumed == (2 if point == "after_write" else 0)
    assert_df_equality(
        sorted_events(read_output(spark, clean)), sorted_events(read_output(spark, resumed))
    )
    assert_df_equality(
        read_output(spark, clean, "bad_rows").orderBy("line"),
        read_output(spark, resumed, "bad_rows").orderBy("line"),
    )
    assert resumed.state_store.get_or_create("test_job").origin == "completed"


def test_two_runs_of_one_time_are_refused_before_anything_is_written(make_source, tmp_path) -> None:
    """run=T and run-T would write one output partition, the second over the first."""
    archive = tmp_path / "twin_archive"
    for folder in ("run=2020-01-01-00-00-00", "run-2020-01-01-00-00-00"):
        (archive / folder).mkdir(parents=True)
        (archive / folder / "part-00000").write_text("never read\n")
    source = make_source(archive=str(archive))

    for call in (source.pending, source.run):
        with pytest.raises(InvalidLocationError, match=r"share the partition run=2020-01-01"):
            call()
    assert list(source.manifest.entries()) == []
    assert source.state_store.jobs() == []
    assert len(source.status()) == 2  # still shown


def test_a_run_folder_without_files_fails_with_advice(make_source, tmp_path) -> None:
    archive = tmp_path / "empty_archive"
    (archive / "run=2020-01-01-00-00-00").mkdir(parents=True)
    started: list[bool] = []
    source = make_source(archive=str(archive), spark=lambda: started.append(True))
    summary = source.run()
    assert summary.runs_failed == 1
    assert started == []  # nothing to read: no Spark started
    [entry] = source.manifest.entries()
    assert entry.status is RunStatus.FAILED
    assert "has no data files" in entry.error
    assert "unmark it" in entry.error


def test_jobs_are_described_in_the_spark_ui(make_source, spark, monkeypatch) -> None:
    descriptions: list[str | None] = []
    original = batch_writer_module.set_job_description

    def record(session, description):
        descriptions.append(description)
        original(session, description)

    monkeypatch.setattr(batch_writer_module, "set_job_description", record)
    make_source().run()
    monkeypatch.undo()
    labels = [name.split("=", 1)[1] for name in sorted(os.listdir(make_source().archive.key))]
    assert descriptions[0] == f"test_job batch 1: {', '.join(labels)}"
    assert spark.sparkContext.getLocalProperty("spark.job.description") is None


def test_custom_reader_returning_a_dataframe(make_source, spark) -> None:
    def reader(session: SparkSession, paths: list[str]) -> DataFrame:
        return session.read.text(paths).withColumn(
            "run", F.regexp_extract(F.input_file_name(), r"run=([0-9-]{19})", 1)
        )

    source = make_source(reader=reader)
    summary = source.run()
    assert summary.runs_committed == RUNS
    assert summary.rows_out == RUNS * EVENTS_PER_RUN
    assert read_output(spark, source).count() == RUNS * EVENTS_PER_RUN


@pytest.fixture(scope="module")
def clean_archive(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("clean_archive")
    write_sample_archive(path, runs=RUNS, events_per_run=EVENTS_PER_RUN, files_per_run=2, seed=8)
    return str(path)


def test_a_batch_without_bad_lines_skips_the_bad_rows_pass(
    make_source, clean_archive, monkeypatch
) -> None:
    source = make_source(archive=clean_archive)
    written: list[int] = []
    write_bad_rows = source.sink.write_bad_rows

    def recorded(frame: DataFrame, runs: list) -> None:
        written.append(len(runs))
        write_bad_rows(frame, runs)

    monkeypatch.setattr(source.sink, "write_bad_rows", recorded)

    summary = source.run()

    assert written == []
    lines = RUNS * EVENTS_PER_RUN
    assert (summary.rows_in, summary.rows_out, summary.bad_rows) == (lines, lines, 0)
    assert {(e.rows_in, e.rows_out, e.bad_rows) for e in source.manifest.entries()} == {
        (EVENTS_PER_RUN, EVENTS_PER_RUN, 0)
    }


@pytest.mark.parametrize("kept", [5, 0])
@pytest.mark.parametrize("which", ["clean", "with bad lines"])
def test_a_transform_that_reads_part_of_its_input_keeps_exact_counts(
    make_source, spark, archive, clean_archive, which, kept
) -> None:
    # A limit stops reading early: the events counted are fewer than the lines read, so the
    # bad rows must be computed, and each run's lines still come out right. limit(0) lets
    # the optimizer drop the input, and its count, from the plan altogether.
    source = make_source(
        archive=clean_archive if which == "clean" else archive,
        transform=lambda events: events.limit(kept),
        max_runs_per_batch=1,
    )
    summary = source.run()

    bad_rows = read_output(spark, source, "bad_rows").count() if which != "clean" else 0
    assert (summary.rows_in, summary.rows_out, summary.bad_rows) == (
        RUNS * EVENTS_PER_RUN,
        RUNS * kept,
        bad_rows,
    )
    for entry in source.manifest.entries():
        assert entry.rows_in == EVENTS_PER_RUN
        assert entry.rows_out == kept


def _crash_after_write(make_source, monkeypatch, **options) -> ManifestedRunSource:
    """A source killed once its first batch (two runs) is written, before the commit."""
    crashing = make_source(max_runs_per_batch=2, **options)
    monkeypatch.setattr(batch_writer_module, "fault_point", _crash_at("after_write"))
    with pytest.raises(SimulatedCrash):
        crashing.run()
    monkeypatch.undo()
    return crashing


def test_resume_commits_written_runs_even_with_no_retries_left(make_source, monkeypatch) -> None:
    # One attempt per run: claiming a written run again on resume would be refused.
    no_retries = RetryPolicy(max_retries=0)
    crashing = _crash_after_write(make_source, monkeypatch, retry=no_retries)

    resumed = make_source(max_runs_per_batch=2, retry=no_retries)
    progress: list[tuple[int, int]] = []
    resumed.on("progress", lambda p: progress.append((p.done, p.total)))
    summary = resumed.run()

    assert (summary.runs_resumed, summary.runs_committed, summary.runs_skipped) == (2, RUNS, 0)
    entries = list(resumed.manifest.entries())
    assert {(e.status, e.owner, e.attempts) for e in entries} == {
        (RunStatus.COMMITTED, crashing.owner, 1)
    }
    # Progress counts the runs still pending, not those the resume committed.
    assert progress == [(0, RUNS - 2), (RUNS - 2, RUNS - 2)]


def test_resume_processes_again_a_written_run_another_job_took_over(
    make_source, spark, monkeypatch, tmp_path
) -> None:
    now = [time.time()]
    manifest = SQLiteRunManifest(str(tmp_path / "manifest.sqlite"), clock=lambda: now[0])
    crashing = _crash_after_write(make_source, monkeypatch, manifest=manifest, lease_seconds=60)
    written = sorted(crashing.state_store.get_or_create("test_job")["in_flight"])
    # Its lease ran out; another job took the run over and died while rewriting its output.
    now[0] += 61
    assert manifest.claim(written[0], "other-job", lease_seconds=60, max_attempts=9)
    shutil.rmtree(os.path.join(crashing.sink.bad_rows_location.key, f"run={_label(written[0])}"))
    now[0] += 61

    resumed = make_source(manifest=manifest, lease_seconds=60)
    summary = resumed.run()

    assert (summary.runs_resumed, summary.runs_committed) == (1, RUNS)
    assert manifest.get(written[0]).attempts == 3
    assert manifest.get(written[1]).attempts == 1
    bad_rows = read_output(spark, resumed, "bad_rows")
    assert (
        bad_rows.where(F.col("run") == _label(written[0])).count()
        == manifest.get(written[0]).bad_rows
    )


def _label(run_id: str) -> str:
    return run_id.rstrip("/").rsplit("=", 1)[1]


def test_a_commit_lost_to_another_job_counts_the_run_skipped_once(make_source, tmp_path) -> None:
    now = [time.time()]
    manifest = SQLiteRunManifest(str(tmp_path / "manifest.sqlite"), clock=lambda: now[0])
    source = make_source(manifest=manifest, lease_seconds=60)
    lost = source.pending()[0].id

    claimed_by_other: list[bool] = []  # a failed assert in a handler would only be logged

    def taken_over(event) -> None:
        if event.run_ids == (lost,):  # this job stalls past its lease; another takes the run
            now[0] += 61
            claimed_by_other.append(
                manifest.claim(lost, "other-job", lease_seconds=600, max_attempts=9)
            )

    skipped: list[str] = []
    source.on("run_claimed", taken_over).on("run_skipped", lambda e: skipped.extend(e.run_ids))
    summary = source.run()

    assert claimed_by_other == [True]
    assert (summary.runs_committed, summary.runs_skipped, skipped) == (RUNS - 1, 1, [lost])
    assert manifest.get(lost).owner == "other-job"


def test_a_second_start_of_a_running_job_is_refused(make_source) -> None:
    first = make_source()
    refused: list[Exception] = []

    def start_again(event) -> None:
        if not refused:
            with pytest.raises(JobAlreadyRunningError, match="looks still running") as error:
                make_source().run()
            refused.append(error.value)

    first.on("batch_loaded", start_again)
    summary = first.run()

    assert len(refused) == 1
    assert summary.runs_committed == RUNS
    assert first.state_store.get_or_create("test_job").origin == "completed"


def test_a_job_stopped_by_an_error_is_resumed_at_once_on_another_host(make_source) -> None:
    # The driver of the next start may land on any node (EMR cluster mode); it must not
    # wait a lease for a job that ended with an error.
    def broken(events: DataFrame) -> DataFrame:
        raise RunInputError("cannot transform")

    failed = make_source(transform=broken, fail_fast=True, max_runs_per_batch=1)
    with pytest.raises(JobFailedError):
        failed.run()
    running = Path(failed.state_store.location.key) / "test_job_running.json"
    document = json.loads(running.read_text())
    assert document["data"]["stopped_at"]
    document["data"]["owner"] = "test_job@elsewhere.example:4242:0123abcd"
    document["data"]["process"] = "elsewhere.example:4242"
    running.write_text(json.dumps(document))

    resumed = make_source(state=failed.state_store).run()

    assert resumed.runs_committed == RUNS  # the failed run has attempts left


def _leave_running_state(
    store: StateStore, owner: str, *, age_seconds: float = 0, process: str | None = None
) -> None:
    state = store.get_or_create("test_job")
    state["owner"] = owner
    if process is not None:
        state["process"] = process
    state["in_flight"] = {}
    store.update(state)
    if age_seconds:  # as if saved that long ago
        path = Path(store.location.key) / "test_job_running.json"
        document = json.loads(path.read_text())
        saved = datetime.now(timezone.utc) - timedelta(seconds=age_seconds)
        document["updated_at"] = saved.isoformat()
        path.write_text(json.dumps(document))


def test_a_source_does_not_resume_its_owner_while_another_process_works_as_it(
    make_source,
) -> None:
    # A notebook's source stopped on an error; another host resumed its state (and so its
    # owner) at once. Running the notebook's source again must not work beside it.
    source = make_source(owner="test_job@notebook.example:7:0123abcd")
    _leave_running_state(source.state_store, source.owner, process="elsewhere.example:4242")
    with pytest.raises(JobAlreadyRunningError, match="looks still running"):
        source.run()

    # Its own state, saved by this process, it resumes.
    here = f"{socket.gethostname()}:{os.getpid()}"
    _leave_running_state(source.state_store, source.owner, process=here)
    assert source.run().runs_committed == RUNS


@pytest.mark.parametrize(
    ("previous", "age", "take_over", "refused"),
    [
        ("another host", 0, False, True),
        ("another host", 0, True, False),
        ("another host", 7200, False, False),
        ("a live process here", 0, False, True),
        ("an ended process here", 0, False, False),
        # A resumed job keeps the owner of the dead process it took over from.
        ("a live process here that resumed an ended one", 0, False, True),
    ],
)
def test_a_running_state_is_resumed_only_when_its_job_is_gone(
    make_source, previous, age, take_over, refused
) -> None:
    if previous == "another host":
        owner = "test_job@elsewhere.example:4242:0123abcd"
    else:
        process = subprocess.Popen(["sleep", "60"])
        if previous == "an ended process here":
            process.kill()
            process.wait()
        owner = f"test_job@{socket.gethostname()}:{process.pid}:0123abcd"
    saver = None
    if previous == "a live process here that resumed an ended one":
        saver = f"{socket.gethostname()}:{process.pid}"
        owner = f"test_job@{socket.gethostname()}:{_ended_pid()}:0123abcd"
    source = make_source(take_over=take_over, limit=1)
    _leave_running_state(source.state_store, owner, age_seconds=age, process=saver)
    try:
        if refused:
            with pytest.raises(JobAlreadyRunningError, match="take_over=True"):
                source.run()
        else:
            assert source.run().runs_committed == 1
            assert source.owner == owner
    finally:
        if previous.startswith("a live process here"):
            process.kill()
            process.wait()


def test_close_closes_a_manifest_the_source_opened(make_source, tmp_path) -> None:
    given = SQLiteRunManifest(str(tmp_path / "given.sqlite"))
    with make_source(manifest=given):
        pass
    assert list(given.entries()) == []  # still usable: it is the caller's to close

    with make_source(manifest=str(tmp_path / "opened.sqlite")) as source:
        opened = source.manifest
    with pytest.raises(SparkManifestsError, match="the manifest was closed"):
        list(opened.entries())


def test_a_given_s3_client_serves_the_state_and_the_sink(aws, archive) -> None:
    client = aws.client("s3")
    client.create_bucket(Bucket="acme")
    calls: list[str] = []
    client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    source = ManifestedRunSource(
        archive,
        output="s3://acme/output/",
        state="s3://acme/state/",
        manifest=SQLiteRunManifest(":memory:"),
        client=client,
    )

    source.state_store.get_or_create("test_job")
    assert "GetObject" in calls
    calls.clear()
    assert not source.sink.has_output(source.pending()[0])
    assert "ListObjectsV2" in calls


def test_spark_that_cannot_start_fails_the_job_not_its_runs(make_source) -> None:
    def no_spark() -> SparkSession:
        raise RuntimeError("[JAVA_GATEWAY_EXITED] Java gateway process exited")

    source = make_source(spark=no_spark)
    with pytest.raises(
        JobFailedError, match=r"Spark did not start: RuntimeError: \[JAVA_GATEWAY"
    ) as stopped:
        source.run()
    assert "Check that Java 17 is installed" in str(stopped.value)
    assert list(source.manifest.entries()) == []


def test_the_embedded_defaults_follow_spark_manifests_home_set_after_import(
    tmp_path, monkeypatch, archive
) -> None:
    monkeypatch.setenv("SPARK_MANIFESTS_HOME", str(tmp_path / "home"))
    source = ManifestedRunSource(archive, output=str(tmp_path / "out"))
    assert source.manifest.path == str(tmp_path / "home" / "manifest.sqlite")
    assert source.state_store.location.key == str(tmp_path / "home" / "state")
    home_now = source_module.DEFAULT_HOME  # the module's value follows the variable too
    assert home_now == str(tmp_path / "home")
    source.close()


class ClusterSession:
    """What the source asks of a session on a cluster: its master and deploy mode, from its
    conf. Like a Spark Connect session, it has no SparkContext."""

    def __init__(self, master: str, deploy_mode: str) -> None:
        settings = {"spark.master": master, "spark.submit.deployMode": deploy_mode}
        self.conf = SimpleNamespace(get=lambda key, default=None: settings.get(key, default))

    @property
    def sparkContext(self):
        raise AttributeError("[JVM_ATTRIBUTE_NOT_SUPPORTED] sparkContext: not in Spark Connect")


def test_local_storage_under_a_cluster_driver_is_refused(make_source) -> None:
    """In YARN cluster mode the driver's working directory goes with its container: the
    embedded manifest and state would be lost, and every run processed again."""
    source = make_source(spark=ClusterSession("yarn", "cluster"))
    for _ in range(2):  # a second try is refused too
        with pytest.raises(
            JobFailedError, match=r"are on the driver's disk, but Spark runs on yarn"
        ):
            source.run()
    assert list(source.manifest.entries()) == []


def test_a_running_state_resumes_only_on_its_own_archive(
    make_source, monkeypatch, tmp_path, clean_archive
) -> None:
    crashing = make_source()
    monkeypatch.setattr(batch_writer_module, "fault_point", _crash_at("after_load"))
    with pytest.raises(SimulatedCrash):
        crashing.run()
    monkeypatch.undo()

    with pytest.raises(SparkManifestsError, match="this start is on"):
        make_source(archive=clean_archive).run()
    same_place = crashing.archive.uri.rstrip("/") + "/"  # written another way
    assert make_source(archive=same_place).run().runs_committed == RUNS


def test_a_job_of_the_same_name_at_work_on_another_archive_is_named(
    make_source, archive, tmp_path, clean_archive
) -> None:
    store = StateStore(str(tmp_path / "shared_state"))
    state = store.get_or_create("test_job")
    state["archive"] = make_source().archive.uri
    state["owner"] = "test_job@elsewhere:1:abcd1234"  # alive, as far as this host can tell
    state["process"] = "elsewhere:1"
    state["in_flight"] = {}
    store.update(state)

    with pytest.raises(SparkManifestsError) as raised:
        make_source(archive=clean_archive, state=store).run()

    assert not isinstance(raised.value, JobAlreadyRunningError)
    assert f"has a running state on {state['archive']}" in str(raised.value)
    assert "Give this archive its own job name (--job)" in str(raised.value)


@pytest.mark.parametrize(
    "in_flight",
    [
        {"x/run=2017-04-11-10-31-05/": {"stage": "written"}},  # another version's record
        {"x/run=2017-04-11-10-31-05/": {"id": 1, "path": "p", "name": "n", "timestamp": "t"}},
        ["x/run=2017-04-11-10-31-05/"],
    ],
)
def test_runs_in_flight_that_cannot_be_read_are_refused_clearly(
    make_source, tmp_path, in_flight
) -> None:
    store = StateStore(str(tmp_path / "edited_state"))
    state = store.get_or_create("test_job")
    state["in_flight"] = in_flight
    store.update(state)

    with pytest.raises(CorruptStateError, match=r"has a run in flight it cannot read \("):
        make_source(state=store).run()


def test_counts_another_version_added_to_a_run_in_flight_are_left_out() -> None:
    record = {"metrics": {"rows_in": 10, "rows_out": 9, "bad_rows": 1, "bytes_out": 512}}
    metrics = snapshots_module.metrics_from_record(record)
    assert (metrics.rows_in, metrics.rows_out, metrics.bad_rows) == (10, 9, 1)


def test_claims_are_renewed_while_a_batch_outlasts_its_lease(make_source) -> None:
    source = make_source(lease_seconds=1)
    taken: list[bool] = []

    def slow(event) -> None:  # the batch takes more than two leases
        time.sleep(2.5)
        taken.append(source.manifest.claim(event.run_ids[0], "other-job", lease_seconds=60))

    summary = source.on("batch_loaded", slow).run()

    assert taken == [False]
    assert (summary.runs_committed, summary.runs_skipped) == (RUNS, 0)
    assert {entry.attempts for entry in source.manifest.entries()} == {1}


def test_the_first_claims_of_a_batch_are_renewed_while_the_rest_are_claimed(
    make_source,
) -> None:
    # Claiming thousands of runs (one request each) can take more than a lease.
    source = make_source(lease_seconds=2)
    first = source.pending()[0].id
    claim = source.manifest.claim
    taken: list[bool] = []

    def slow_claim(run_id, owner, **options):
        time.sleep(0.8)
        if run_id == source.pending()[-1].id:  # the last claim: 2.4 s after the first
            taken.append(claim(first, "other-job", lease_seconds=60))
        return claim(run_id, owner, **options)

    source.manifest.claim = slow_claim
    summary = source.run()

    assert taken == [False]
    assert (summary.runs_committed, summary.runs_skipped) == (RUNS, 0)


def test_a_failure_lost_to_another_job_counts_the_run_skipped(make_source, tmp_path) -> None:
    now = [time.time()]
    manifest = SQLiteRunManifest(str(tmp_path / "manifest.sqlite"), clock=lambda: now[0])
    source = make_source(manifest=manifest, lease_seconds=60, max_runs_per_batch=1)
    lost = source.pending()[0].id

    def stalls_then_fails(events: DataFrame, runs) -> DataFrame:
        if runs[0].id == lost:  # past the lease: another job takes the run, then this fails
            now[0] += 61
            assert manifest.claim(lost, "other-job", lease_seconds=600, max_attempts=9)
            raise RunInputError("bad schema")
        return events

    failed: list[str] = []
    source.transform = stalls_then_fails
    summary = source.on("run_failed", lambda e: failed.extend(e.run_ids)).run()

    assert (summary.runs_failed, summary.runs_skipped, failed) == (0, 1, [])
    assert summary.ok
    assert manifest.get(lost).owner == "other-job"


def _small_archive(path: Path, runs: int = 2) -> Path:
    write_sample_archive(path, runs=runs, events_per_run=30, files_per_run=1, seed=11)
    return path


def test_a_run_folder_inside_a_run_fails_its_run_and_leaves_the_other_alone(
    make_source, spark, tmp_path
) -> None:
    """A copy of run A inside run B would be read as run A and replace A's output."""
    archive = _small_archive(tmp_path / "nested_archive")
    first, second = sorted(archive.iterdir())
    shutil.copytree(first, second / first.name)
    copied = second / first.name / "part-00000"
    copied.write_text("".join(copied.read_text().splitlines(keepends=True)[:5]))
    source = make_source(archive=str(archive))

    summary = source.run()

    assert (summary.runs_committed, summary.runs_failed) == (1, 1)
    assert "holds another run folder" in summary.failures[f"{second}/"]
    assert read_output(spark, source).where(F.col("run") == _label(first.name)).count() == 30


def test_file_names_with_glob_characters_are_read_as_named(make_source, spark, tmp_path) -> None:
    """Spark reads each path as a glob: part[1] would match part1 and be read twice."""
    archive = _small_archive(tmp_path / "glob_archive", runs=1)
    [run] = list(archive.iterdir())
    lines = (run / "part-00000").read_text().splitlines(keepends=True)
    (run / "part-00000").unlink()
    for number, name in enumerate(["part1", "part[1]", "part{2}", "part*", "part?"]):
        (run / name).write_text("".join(lines[number * 6 : number * 6 + 6]))
    source = make_source(archive=str(archive))

    summary = source.run()

    assert (summary.runs_committed, summary.rows_in) == (1, 30)
    events = read_output(spark, source)
    assert events.select("event_id").distinct().count() == events.count() == summary.rows_out


def test_a_run_that_changes_while_processed_is_left_uncommitted(make_source, tmp_path) -> None:
    """A run still being copied: a file arrives after the listing."""
    archive = _small_archive(tmp_path / "growing_archive", runs=1)
    [run] = list(archive.iterdir())
    late = (run / "part-00000").read_text()
    source = make_source(archive=str(archive))
    deferred: list[tuple[str, ...]] = []
    source.on("run_deferred", lambda event: deferred.append(event.run_ids))
    source.on("batch_loaded", lambda _: (run / "part-00001").write_text(late))

    summary = source.run()

    assert (summary.runs_committed, summary.runs_deferred, summary.ok) == (0, 1, True)
    assert deferred == [(f"{run}/",)]
    assert list(source.manifest.entries()) == []  # released: pending, no attempt counted
    again = make_source(archive=str(archive), manifest=source.manifest).run()
    assert (again.runs_committed, again.rows_in) == (1, 60)


def test_runs_still_settling_are_left_for_a_later_start(make_source, tmp_path) -> None:
    archive = _small_archive(tmp_path / "fresh_archive")
    old, _fresh = sorted(archive.iterdir())
    hour_ago = time.time() - 3600
    for file in old.iterdir():
        os.utime(file, (hour_ago, hour_ago))
    source = make_source(archive=str(archive), settle_seconds=600)
    progress: list[tuple[int, int]] = []
    source.on("progress", lambda p: progress.append((p.done, p.total)))

    summary = source.run()

    assert (summary.runs_committed, summary.runs_deferred) == (1, 1)
    assert [entry.run_id for entry in source.manifest.entries()] == [f"{old}/"]
    assert progress[-1] == (2, 2)
    with pytest.raises(ValueError, match="settle_seconds must be between 0"):
        make_source(settle_seconds=-1)


def test_an_unreadable_file_fails_its_run_and_the_job_goes_on(make_source, tmp_path) -> None:
    archive = _small_archive(tmp_path / "broken_archive")
    broken, fine = sorted(archive.iterdir())
    (broken / "part-00001").symlink_to(tmp_path / "nowhere")
    source = make_source(archive=str(archive))

    summary = source.run()

    assert (summary.runs_committed, summary.runs_failed) == (1, 1)
    assert "Cannot read" in summary.failures[f"{broken}/"]
    assert source.manifest.get(f"{fine}/").status is RunStatus.COMMITTED


def test_cancelled_spark_jobs_stop_the_job_without_failing_its_runs(
    make_source, spark, tmp_path
) -> None:
    """Cancelling (the UI's kill link, a notebook's stop) means stop, not "this run is bad"."""
    archive = _small_archive(tmp_path / "slow_archive")
    slow = F.expr("java_method('java.lang.Thread', 'sleep', CAST(300 AS BIGINT))")
    source = make_source(archive=str(archive), transform=lambda df: df.withColumn("slow", slow))
    cancel = threading.Timer(2, spark.sparkContext.cancelAllJobs)
    source.on("batch_loaded", lambda _: cancel.start())

    with pytest.raises(JobFailedError, match="was cancelled"):
        source.run()

    entries = list(source.manifest.entries())
    assert {entry.status for entry in entries} == {RunStatus.PROCESSING}
    assert all(entry.error is None for entry in entries)
    source.close()
    assert make_source(archive=str(archive), manifest=source.manifest).run().runs_committed == 2


def test_handlers_are_added_once_and_can_be_removed(make_source, tmp_path) -> None:
    (tmp_path / "no_runs").mkdir()
    source = make_source(archive=str(tmp_path / "no_runs"))
    calls: list[str] = []

    def count(_) -> None:
        calls.append("count")

    source.on("progress", count).on("progress", count).on("progress", lambda _: calls.append("l"))
    source.run()
    assert calls == ["count", "l"]
    source.off("progress", count).run()
    assert calls == ["count", "l", "l"]
    source.off("progress").run()
    assert calls == ["count", "l", "l"]
    with pytest.raises(ValueError, match="Unknown event 'progres'"):
        source.off("progres")


_KILL_THE_JVM_MID_BATCH = """
import json, os, signal, sys
from spark_manifests import JobFailedError, ManifestedRunSource, SQLiteRunManifest
from spark_manifests._spark import get_or_create_spark

archive, root = sys.argv[1:]
spark = get_or_create_spark(master="local[1]")
jvm_pid = spark._jvm.java.lang.ProcessHandle.current().pid()
manifest = SQLiteRunManifest(os.path.join(root, "manifest.sqlite"))
source = ManifestedRunSource(
    archive, output=os.path.join(root, "out"), manifest=manifest,
    state=os.path.join(root, "state"), spark=spark,
)
source.on("batch_loaded", lambda _: os.kill(jvm_pid, signal.SIGKILL))
try:
    source.run()
    error = None
except JobFailedError as exc:
    error = str(exc)
print(json.dumps({"error": error, "statuses": [e.status.value for e in manifest.entries()]}))
"""


def test_a_dead_spark_stops_the_job_without_failing_its_runs(tmp_path) -> None:
    """The JVM killed (out of memory, a kill of spark-submit): no retry or run can succeed,
    and failing every pending run would burn their attempts."""
    archive = _small_archive(tmp_path / "archive")
    answer = subprocess.run(
        [sys.executable, "-c", _KILL_THE_JVM_MID_BATCH, str(archive), str(tmp_path)],
        capture_output=True,
        env=job_environment(),
        text=True,
        timeout=300,
    )
    outcome = json.loads(answer.stdout.strip().splitlines()[-1])
    assert "Spark stopped while processing batch 1" in outcome["error"], answer.stderr[-2000:]
    assert outcome["statuses"] == ["PROCESSING", "PROCESSING"]  # resumed by the next start


def test_an_output_that_cannot_be_created_stops_the_job(make_source, tmp_path) -> None:
    """Every run would fail the same way, each losing an attempt."""
    (tmp_path / "afile").write_text("not a folder")
    source = make_source(output=str(tmp_path / "afile" / "out"))

    with pytest.raises(InvalidLocationError, match="a file may stand where a folder"):
        source.run()
    assert list(source.manifest.entries()) == []  # refused before any claim


def test_a_job_of_another_manifest_on_one_output_is_refused_before_it_claims(
    make_source, tmp_path
) -> None:
    """Each job replaces its runs' partitions: the second would overwrite the first's."""
    output = str(tmp_path / "shared_output")
    make_source(output=output, job_name="enriched_to_parquet", limit=1).run()
    other = make_source(
        output=output,
        job_name="daily_page_views",
        manifest=SQLiteRunManifest(str(tmp_path / "page_views.sqlite")),
    )

    with pytest.raises(OutputInUseError) as refused:
        other.run()
    assert "(job 'enriched_to_parquet', see " in str(refused.value)
    assert f"job 'daily_page_views' uses {tmp_path / 'page_views.sqlite'}" in str(refused.value)
    assert list(other.manifest.entries()) == []
    # Another worker of the first job (its manifest) shares the output.
    assert make_source(output=output, job_name="worker2").run().runs_committed > 0


def _ended_pid() -> int:
    ended = subprocess.Popen(["true"])
    ended.wait()
    return ended.pid


def test_a_manifest_file_in_a_missing_folder_is_refused(make_source, tmp_path) -> None:
    """A mistyped folder (or a volume not mounted) would start an empty manifest."""
    with pytest.raises(
        InvalidLocationError, match=r"folder of the manifest file .* does not exist"
    ):
        make_source(manifest=str(tmp_path / "typo" / "manifest.sqlite"))
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("typed", ["acme-runs", "dynamodb//acme-runs"])
def test_a_table_name_without_dynamodb_is_not_a_new_sqlite_manifest(
    make_source, tmp_path, monkeypatch, typed
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidLocationError, match="dynamodb://"):
        make_source(manifest=typed)
    assert not (tmp_path / "acme-runs").exists()
    assert not (tmp_path / "dynamodb").exists()
    # A SQLite file name, a sqlite: URI, or an existing file are taken as given.
    make_source(manifest="runs.db").manifest.close()
    make_source(manifest="sqlite:///acme-runs").manifest.close()
    make_source(manifest="acme-runs").manifest.close()
