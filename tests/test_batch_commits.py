"""A BatchCommitSink gets each batch under a fresh id saved before its write, and a job killed
around the write resumes by asking the sink whether the batch landed.

The kills are real: the job runs in its own interpreter with a fault point armed
(``SPARK_MANIFESTS_KILL_AT``), and is killed with SIGKILL there.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession

from conftest import job_environment
from spark_manifests import (
    ManifestedRunSource,
    RunStatus,
    SQLiteRunManifest,
    StateStore,
    write_sample_archive,
)
from spark_manifests._enriched_sql import NOT_GIVEN
from spark_manifests._faults import KILL_AT_ENV
from spark_manifests._ledger import RunMetrics
from spark_manifests._snapshots import _Landings, run_record
from spark_manifests.sinks import BatchCommitSink, RunRows

from .batch_commit_sink import JsonCommitsSink
from .reliability import JOB_TIMEOUT, bad_rows_of, duplicate_event_ids, events_of
from .test_known_schemas import write_run_a, write_run_b_meeting_cart
from .test_sinks import RUNS as TWO_RUNS

RUNS = 4
EVENTS_PER_RUN = 100
JOB = "batched"


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("batch_commit_archive")
    write_sample_archive(
        path, runs=RUNS, events_per_run=EVENTS_PER_RUN, files_per_run=2, bad_line_ratio=0.05, seed=5
    )
    return path


def make_source(spark: SparkSession, archive: Path, root: Path) -> ManifestedRunSource:
    return ManifestedRunSource(
        str(archive),
        sink=JsonCommitsSink(str(root / "out")),
        spark=spark,
        manifest=SQLiteRunManifest(str(root / "manifest.sqlite")),
        state=StateStore(str(root / "state")),
        job_name=JOB,
        max_runs_per_batch=2,
    )


@pytest.fixture(scope="module")
def clean(spark: SparkSession, archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A whole run of the job, never stopped, and what its running state said before each
    write: the batch ids it held."""
    root = tmp_path_factory.mktemp("batch_commit_clean")
    source = make_source(spark, archive, root)
    saved: list[set[str]] = []

    def batch_ids_saved(event) -> None:  # fired once the batch is loaded, before the write
        in_flight = source.state_store.get_or_create(JOB)["in_flight"]
        saved.append({in_flight[run_id]["batch_id"] for run_id in event.run_ids})

    summary = source.on("batch_loaded", batch_ids_saved).run()
    assert summary.runs_committed == RUNS
    (root / "saved.json").write_text(json.dumps([sorted(ids) for ids in saved]))
    return root


def test_each_batch_is_written_once_under_the_id_saved_before_its_write(clean: Path) -> None:
    commits = JsonCommitsSink(str(clean / "out")).commits()
    saved = json.loads((clean / "saved.json").read_text())

    assert [[commit["batch_id"]] for commit in commits] == saved  # one id per batch
    assert len({commit["batch_id"] for commit in commits}) == 2
    assert all(commit["batch_id"].startswith(f"{JOB}/") for commit in commits)
    assert sorted(label for commit in commits for label in commit["runs"]) == sorted(
        name.split("=", 1)[1] for name in os.listdir(clean / "out" / "events")
    )


def test_the_rows_of_a_batch_commit_sink_are_counted(spark: SparkSession, clean: Path) -> None:
    with SQLiteRunManifest(str(clean / "manifest.sqlite")) as manifest:
        entries = list(manifest.entries())
    bad_rows = bad_rows_of(spark, clean / "out").count()
    assert sum(entry.rows_in for entry in entries) == RUNS * EVENTS_PER_RUN
    assert sum(entry.bad_rows for entry in entries) == bad_rows > 0
    assert sum(entry.rows_out for entry in entries) == RUNS * EVENTS_PER_RUN - bad_rows


_JOB_WITH_THE_SINK = """
import sys
from spark_manifests import ManifestedRunSource, SQLiteRunManifest, StateStore
from spark_manifests._spark import get_or_create_spark
from tests.batch_commit_sink import JsonCommitsSink

archive, root, job = sys.argv[1:]
ManifestedRunSource(
    archive, sink=JsonCommitsSink(root + "/out"), spark=get_or_create_spark(master="local[1]"),
    manifest=SQLiteRunManifest(root + "/manifest.sqlite"), state=StateStore(root + "/state"),
    job_name=job, max_runs_per_batch=2,
).run()
"""


def killed_at(point: str, archive: Path, root: Path) -> None:
    """Run the job in its own interpreter, killed with SIGKILL at ``point`` of batch 1."""
    killed = subprocess.run(
        [sys.executable, "-c", _JOB_WITH_THE_SINK, str(archive), str(root), JOB],
        env=job_environment(**{KILL_AT_ENV: point}),
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]


def in_flight_batch_ids(root: Path) -> set[str]:
    in_flight = StateStore(str(root / "state")).get_or_create(JOB)["in_flight"]
    return {record["batch_id"] for record in in_flight.values()}


class _CountingSink(BatchCommitSink):
    """Holds batch ``job/landed``; counts ``not_given`` bad rows held back in each of its
    runs (``None``: cannot count)."""

    def __init__(self, not_given: int | None, *, keeps_bad_rows: bool = True) -> None:
        self.not_given = not_given
        self.writes_bad_rows = keeps_bad_rows
        self.counts = 0

    def write_batch(self, events: Any, bad_rows: Any, runs: Any, *, batch_id: str) -> None: ...

    def batch_committed(self, batch_id: str) -> bool:
        return batch_id == "job/landed"

    def batch_rows(self, batch_id: str, runs: Any) -> dict[str, RunRows] | None:
        self.counts += 1
        if self.not_given is None:
            return None
        return {run.label: RunRows(5, 1 + self.not_given, self.not_given) for run in runs}

    def output_path(self, run: Any) -> str:
        return "table"


@pytest.mark.parametrize(
    ("stage", "may_widen", "not_given", "keeps_bad_rows", "landed", "counts"),
    [
        ("loaded", True, 3, True, False, 1),  # its widened write had not landed
        ("loaded", True, 0, True, True, 1),  # it met no schema it was not given
        ("loaded", False, 3, True, True, 0),  # the last widening: its bad rows are final
        ("loaded", None, 3, True, True, 0),  # recorded before reads said whether they widen
        ("written", True, 3, True, True, 0),  # recorded written: its widenings had ended
        ("loaded", True, None, True, False, 1),  # the sink cannot count them
        ("loaded", True, 0, False, False, 0),  # nor can it count bad rows it does not keep
    ],
)
def test_a_batch_that_may_widen_landed_only_without_rows_held_back_for_a_schema(
    stage: str,
    may_widen: bool | None,
    not_given: int | None,
    keeps_bad_rows: bool,
    landed: bool,
    counts: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="spark_manifests._snapshots")
    sink = _CountingSink(not_given, keeps_bad_rows=keeps_bad_rows)
    records = {
        run.id: {**run_record(run), "stage": stage, "batch": 1, "batch_id": "job/landed"}
        for run in TWO_RUNS[:2]
    }
    for record in records.values():
        record.update({"metrics": {"rows_in": 7}} if stage == "written" else {})
        record.update({} if may_widen is None else {"may_widen": may_widen})
    landings = _Landings(sink, records)

    assert [landings.landed(record) for record in records.values()] == [landed, landed]
    assert sink.counts == counts  # one count per batch, not per run; none when not needed
    written_again = [r for r in caplog.records if "the batch is written again" in r.message]
    assert len(written_again) == (0 if landed else 1)  # once a batch, not once a run
    if landed:
        metrics = [landings.metrics(record) for record in records.values()]
        bad_rows = 1 + (not_given or 0)
        expected = RunMetrics(7) if stage == "written" else RunMetrics(5 + bad_rows, 5, bad_rows)
        assert metrics == [expected, expected]
        # Its rows counted once in all: the count that told it landed, if it was made.
        assert sink.counts == (stage == "loaded")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("point", "landed"), [("mid_write", True), ("after_load", False)], ids=["landed", "not-yet"]
)
def test_a_job_killed_around_a_batch_write_resumes_by_the_sinks_commits(
    spark: SparkSession, archive: Path, clean: Path, tmp_path: Path, point: str, landed: bool
) -> None:
    killed_at(point, archive, tmp_path)
    sink = JsonCommitsSink(str(tmp_path / "out"))
    [batch_id] = in_flight_batch_ids(tmp_path)  # saved before the write
    assert sink.batch_committed(batch_id) is landed

    summary = make_source(spark, archive, tmp_path).run()

    commits = [commit["batch_id"] for commit in sink.commits()]
    # A batch that landed is committed without being written again; one that did not is
    # written again under a new id.
    assert commits.count(batch_id) == (1 if landed else 0)
    assert len(commits) == 2
    assert summary.runs_resumed == (2 if landed else 0)
    with SQLiteRunManifest(str(tmp_path / "manifest.sqlite")) as manifest:
        entries = list(manifest.entries())
    assert len(entries) == RUNS
    assert {entry.status for entry in entries} == {RunStatus.COMMITTED}
    assert {entry.attempts for entry in entries} == {1}
    events = events_of(spark, tmp_path / "out")
    assert duplicate_event_ids(events) == 0
    assert_df_equality(events_of(spark, clean / "out"), events)
    assert_df_equality(bad_rows_of(spark, clean / "out"), bad_rows_of(spark, tmp_path / "out"))


@pytest.mark.slow
def test_a_batch_killed_between_its_commit_and_its_widening_is_written_again(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Run B, read with the schemas the job met in run A, lands a first commit holding its
    lines of a new schema as bad rows, then is written again with it under a new id. Killed
    between the two, the resume must write it again, not commit the first."""
    archive = tmp_path / "archive"
    write_run_a(archive)
    assert make_source(spark, archive, tmp_path).run().runs_committed == 1
    write_run_b_meeting_cart(archive)
    killed_at("mid_write", archive, tmp_path)  # after run B's first commit
    sink = JsonCommitsSink(str(tmp_path / "out"))
    [narrow] = in_flight_batch_ids(tmp_path)
    assert sink.batch_committed(narrow)

    summary = make_source(spark, archive, tmp_path).run()

    assert (summary.runs_committed, summary.runs_resumed) == (1, 0)
    out = tmp_path / "out"
    events = spark.read.option("mergeSchema", "true").parquet(str(out / "events"))
    assert events.count() == events.select("event_id").distinct().count() == 7
    carts = events.where("contexts_com_acme_cart_1 IS NOT NULL").collect()
    assert sorted(row.event_id for row in carts) == ["b-0", "b-1", "b-2"]
    bad = spark.read.parquet(str(out / "bad_rows"))
    assert [row.failure_type for row in bad.collect()] == ["FieldNumberMismatch"]
    assert bad.where(bad.message.contains(NOT_GIVEN)).count() == 0
    with SQLiteRunManifest(str(tmp_path / "manifest.sqlite")) as manifest:
        entries = list(manifest.entries())
    assert {entry.status for entry in entries} == {RunStatus.COMMITTED}
    assert sorted((e.rows_in, e.rows_out, e.bad_rows) for e in entries) == [(3, 3, 0), (5, 4, 1)]
