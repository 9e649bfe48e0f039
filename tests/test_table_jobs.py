"""``spark-manifests process --format delta|iceberg`` end to end: the real command in its own
interpreter, killed with SIGKILL at each stage boundary, run again, redone after ``manifest
unmark``; the tables read back with ``spark.read`` and their commit logs counted.

Skipped on a pyspark no Delta or Iceberg release supports (CI runs them in a second venv with
a supported one, see .ci/run).
"""

from __future__ import annotations

import itertools
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import boto3
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_manifests import RunStatus, open_manifest, write_sample_archive
from spark_manifests._enriched_sql import NOT_GIVEN
from spark_manifests._faults import KILL_AFTER_ENV, KILL_AT_ENV, POINTS
from spark_manifests._s3a import ensure_s3a
from spark_manifests._table_sink import BAD_ROWS, EVENTS, TableSink
from spark_manifests.cli import main
from spark_manifests.delta_sink import DeltaSink
from spark_manifests.iceberg_sink import IcebergSink
from spark_manifests.runs import Run, list_runs

from . import table_sinks
from .reliability import assert_all_committed_once, run_job
from .test_known_schemas import RUN_A, RUN_B, write_run_a, write_run_b_meeting_cart

RUNS = 3
EVENTS_PER_RUN = 60
JOB = "tables"
BUCKET = "table-lake"
S3_MANIFEST = "dynamodb://table-runs"
_catalogs = itertools.count()

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("table_jobs_archive")
    write_sample_archive(
        path,
        runs=RUNS,
        events_per_run=EVENTS_PER_RUN,
        files_per_run=2,
        bad_line_ratio=0.05,
        seed=21,
    )
    return path


@pytest.fixture(scope="module")
def spark_defaults(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The jobs' Spark settings, as a cluster's spark-defaults.conf gives them: few shuffle
    partitions and a small Delta state rebuild, or each commit costs seconds of tasks."""
    conf = tmp_path_factory.mktemp("spark_conf")
    (conf / "spark-defaults.conf").write_text(
        "spark.sql.shuffle.partitions 2\n"
        "spark.default.parallelism 2\n"
        "spark.databricks.delta.snapshotPartitions 1\n"
        "spark.ui.enabled false\n"
    )
    return {"SPARK_CONF_DIR": str(conf)}


@pytest.fixture(params=["delta", "iceberg"])
def table_format(request: pytest.FixtureRequest, spark: SparkSession) -> str:
    package = "io.delta" if request.param == "delta" else "org.apache.iceberg"
    if package not in (spark.conf.get("spark.jars.packages", "") or ""):
        pytest.skip(f"no {request.param} release supports this pyspark (see docs)")
    return str(request.param)


class Job:
    """The command's job of one format on ``root`` (or on the ``output`` and ``manifest``
    given): runs it, and reads what it wrote (an output on S3 through s3a)."""

    def __init__(
        self,
        table_format: str,
        archive: Path,
        root: Path,
        env: dict[str, str],
        spark: Any,
        *,
        output: str | None = None,
        manifest: str | None = None,
    ) -> None:
        self.table_format = table_format
        self.archive = archive
        self.output = output or str(root / "lake")
        self.manifest = manifest or str(root / "m.sqlite")
        self.state = root / "state"
        self.env = env
        self.spark = spark

    def start(self, *, kill_at: str | None = None, worker: int = 0) -> subprocess.CompletedProcess:
        """The command once, to its end; ``worker`` keeps a state of its own."""
        env = dict(self.env, **({KILL_AT_ENV: kill_at} if kill_at else {}))
        return run_job(
            self.archive,
            cast(Path, self.output),  # str()ed: a path or an s3:// URI
            self.manifest,
            str(self.state / str(worker)),
            JOB,
            "--format",
            self.table_format,
            "--max-runs-per-batch",
            "1",
            env=env,
        )

    def run(self, *, kill_at: str | None = None) -> subprocess.CompletedProcess:
        done = self.start(kill_at=kill_at)
        expected = -signal.SIGKILL if kill_at else 0
        assert done.returncode == expected, (kill_at, done.stderr[-3000:])
        return done

    def sink(self) -> TableSink:
        """A new sink on the tables, read through s3a when on S3 (an Iceberg catalog of its
        own: none caches a table)."""
        output = self.output.replace("s3://", "s3a://", 1)
        if self.table_format == "delta":
            return DeltaSink(output, spark=self.spark)
        return IcebergSink(output, catalog=f"e2e_{next(_catalogs)}", spark=self.spark)

    def read(self, table: str = EVENTS, *, before: Run | None = None) -> DataFrame:
        sink = self.sink()
        if self.table_format == "delta":
            assert isinstance(sink, DeltaSink)
            reader = self.spark.read.format("delta")
            if before is not None:
                reader = reader.option("versionAsOf", sink.version_before(before, table=table))
            return reader.load(sink.table_name(table))
        assert isinstance(sink, IcebergSink)
        sink._session(self.spark)  # its Hadoop catalog on the warehouse
        if before is None:
            return self.spark.read.table(sink.table_name(table))
        # SQL, as the docs say: Spark 3.5's read.table() drops a versionAsOf option.
        snapshot = sink.snapshot_before(before, table=table)
        return self.spark.sql(f"SELECT * FROM {sink.table_name(table)} VERSION AS OF {snapshot}")

    def commits(self, table: str = EVENTS) -> list[str]:
        """The runs of each commit of ``table``, oldest first."""
        sink = self.sink()
        if self.table_format == "delta":
            history = self.spark.sql(f"DESCRIBE HISTORY delta.`{sink.table_name(table)}`")
            recorded = F.get_json_object("userMetadata", "$['spark-manifests.runs']")
            rows = history.orderBy("version").select(recorded).collect()
        else:
            assert isinstance(sink, IcebergSink)
            sink._session(self.spark)
            snapshots = self.spark.read.table(f"{sink.table_name(table)}.snapshots")
            recorded = F.element_at(F.col("summary"), F.lit("spark-manifests.runs"))
            rows = snapshots.orderBy("committed_at").select(recorded).collect()
        return [row[0] for row in rows]

    def entries(self) -> list[Any]:
        with open_manifest(self.manifest) as manifest:
            return list(manifest.entries())


@pytest.fixture
def job(
    spark: SparkSession,
    archive: Path,
    spark_defaults: dict[str, str],
    tmp_path: Path,
    table_format: str,
) -> Job:
    return Job(table_format, archive, tmp_path, spark_defaults, spark)


def expected_events(spark: SparkSession, runs: Sequence[Run]) -> tuple[DataFrame, int]:
    """The good lines of ``runs`` (as the reader reads them) and the number of bad ones."""
    events, bad_rows = table_sinks.read_runs(spark, runs)
    return events, bad_rows.count()


def assert_each_event_once(job: Job, runs: Sequence[Run]) -> None:
    events, bad_rows = expected_events(job.spark, runs)
    table = job.read()
    table_sinks.assert_exactly_once(table, events)
    assert table.select("event_id").distinct().count() == table.count() == events.count()
    assert job.read(BAD_ROWS).count() == bad_rows > 0


def assert_rows_counted(job: Job, lines: int) -> None:
    """The manifest's rows of the runs account for every line read, good or bad."""
    entries = job.entries()
    assert sum(entry.rows_out + entry.bad_rows for entry in entries) == lines
    assert sum(entry.rows_in for entry in entries) == lines
    assert all(entry.rows_out > 0 for entry in entries)


def assert_one_commit_per_run(commits: Sequence[str], labels: Sequence[str]) -> None:
    """The bad rows' commits: one per run at most (a batch with no bad line and no table yet
    creates none), and the table holds some."""
    assert len(set(commits)) == len(commits) > 0
    assert set(commits) <= set(labels)


def test_killed_at_each_stage_boundary_each_batch_lands_once(job: Job, archive: Path) -> None:
    """One job killed at each point in turn, each start resuming the last one's batch: at
    mid_write (the table commit landed, the manifest's not) the resumed batch is committed
    from the table's history, not written again."""
    runs = list_runs(archive)

    for point in POINTS:
        job.run(kill_at=point)
        if point == "mid_write":  # killed after run 1's table commit, before its manifest's
            assert job.commits() == [runs[0].label]
            assert job.entries()[0].status is RunStatus.PROCESSING
    job.run()

    assert_all_committed_once(job.entries(), RUNS)
    assert_each_event_once(job, runs)
    # The batch resumed from the table's history has its rows counted there.
    assert_rows_counted(job, RUNS * EVENTS_PER_RUN)
    # Each run's batch was committed to the table once: kills after its commit (mid_write,
    # after_write) did not make the resume write it again.
    assert sorted(job.commits()) == [run.label for run in runs]
    assert_one_commit_per_run(job.commits(BAD_ROWS), [run.label for run in runs])


@pytest.fixture(scope="module")
def new_schema_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("new_schema_archive")
    write_run_a(path)
    write_run_b_meeting_cart(path)
    return path


def test_killed_after_a_commit_before_its_widening_the_batch_is_written_again(
    spark: SparkSession,
    new_schema_archive: Path,
    spark_defaults: dict[str, str],
    tmp_path: Path,
    table_format: str,
) -> None:
    """Run B, read with the schemas run A met, lands in a first commit with its lines of the
    new schema held back as bad rows, then is written again with it under a new batch id.
    Killed after that first commit (the second mid_write): the resume must not commit it."""
    env = dict(spark_defaults, **{KILL_AFTER_ENV: "1"})
    job = Job(table_format, new_schema_archive, tmp_path, env, spark)
    runs = list_runs(new_schema_archive)

    job.run(kill_at="mid_write")
    # Run B's first commit landed, holding the lines of the new schema as bad rows.
    assert job.commits() == [RUN_A, RUN_B]
    assert job.read(BAD_ROWS).where(F.col("message").contains(NOT_GIVEN)).count() == 3
    job.run()

    assert_all_committed_once(job.entries(), len(runs))
    assert_each_event_once(job, runs)
    assert job.read(BAD_ROWS).where(F.col("message").contains(NOT_GIVEN)).count() == 0
    carts = job.read().where(F.col("contexts_com_acme_cart_1").isNotNull())
    assert sorted(row.event_id for row in carts.collect()) == ["b-0", "b-1", "b-2"]
    assert_rows_counted(job, 8)  # run A's 3 lines, run B's 5


def test_table_sinks_declare_that_they_keep_bad_rows(tmp_path: Path) -> None:
    imported = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", "import " + DeltaSink.__module__],
        capture_output=True,
        text=True,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr[-2000:]  # not found by the method
    assert DeltaSink(tmp_path).writes_bad_rows
    assert not DeltaSink(tmp_path, keep_bad_rows=False).writes_bad_rows


def runs_committed(done: subprocess.CompletedProcess) -> int:
    found = re.search(r"(\d+) runs committed", done.stdout + done.stderr)
    assert found, done.stderr[-3000:]
    return int(found.group(1))


@pytest.mark.s3
def test_the_job_twice_then_a_run_redone_with_its_tables_on_s3(
    spark: SparkSession,
    archive: Path,
    spark_defaults: dict[str, str],
    tmp_path: Path,
    table_format: str,
    moto_server: str,
) -> None:
    """The production shape: the tables on an ``s3://`` output through s3a, the manifest in
    DynamoDB, both on the moto server; the tables read back through s3a. The job twice
    (the second does nothing), then a run redone after ``manifest unmark``."""
    ensure_s3a(spark)
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    with open_manifest(S3_MANIFEST) as manifest:
        manifest.create()
    output = f"s3://{BUCKET}/lake/"
    job = Job(
        table_format, archive, tmp_path, spark_defaults, spark, output=output, manifest=S3_MANIFEST
    )
    runs = list_runs(archive)
    labels = [run.label for run in runs]

    assert runs_committed(job.run()) == RUNS
    assert runs_committed(job.run()) == 0

    assert_all_committed_once(job.entries(), RUNS)
    assert all(entry.attempts == 1 for entry in job.entries())
    assert_each_event_once(job, runs)
    assert_rows_counted(job, RUNS * EVENTS_PER_RUN)
    assert job.commits() == labels  # one commit per batch (one run each), none by the rerun
    assert_one_commit_per_run(job.commits(BAD_ROWS), labels)
    listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="lake/")["Contents"]
    assert any(item["Key"].endswith(".parquet") for item in listed)

    redone = runs[1]
    assert main(["manifest", "unmark", redone.label, "--manifest", job.manifest]) == 0
    assert runs_committed(job.run()) == 1

    assert_all_committed_once(job.entries(), RUNS)
    assert_each_event_once(job, runs)  # the redo replaced its rows: none twice
    assert job.commits() == [*labels, redone.label]
    # Time travel to before the last run's first commit: the table without it.
    before_last = job.read(before=runs[2])
    table_sinks.time_travel_excludes(before_last, runs[2], expected_events(job.spark, runs[:2])[0])


def test_two_worker_processes_write_one_table_at_once(
    spark: SparkSession,
    archive: Path,
    spark_defaults: dict[str, str],
    tmp_path: Path,
    table_format: str,
) -> None:
    """Two processes of the job, each with its own state, on one archive, table and
    manifest: their commits of disjoint runs (the table's creation too) that conflict are
    retried, and every batch lands once.

    The archive's runs all have the same schemas: a run with a schema its worker has not
    met yet is written twice (read with the known schemas, then again with the new one).
    """
    job = Job(table_format, archive, tmp_path, spark_defaults, spark)
    runs = list_runs(archive)
    labels = [run.label for run in runs]

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda worker: job.start(worker=worker), range(2)))

    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
    committed = [runs_committed(result) for result in results]
    assert sum(committed) == RUNS
    assert min(committed) >= 1  # both were at work
    assert_all_committed_once(job.entries(), RUNS)
    assert all(entry.attempts == 1 for entry in job.entries())  # no batch failed
    assert_each_event_once(job, runs)
    assert_rows_counted(job, RUNS * EVENTS_PER_RUN)
    assert sorted(job.commits()) == labels  # one commit per batch (one run each)
    assert_one_commit_per_run(job.commits(BAD_ROWS), labels)
