"""Helpers for the reliability tests: run the job as a separate process, check invariants."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from conftest import job_environment
from spark_manifests import RunStatus

JOB_TIMEOUT = 600


def run_job(
    archive: Path,
    output: Path,
    manifest: str,
    state: str,
    job: str,
    *extra: str,
    env: dict[str, str] | None = None,
    cli_flags: Sequence[str] = (),
) -> subprocess.CompletedProcess:
    """``spark-manifests process`` in its own interpreter, as spark-submit or a cron would."""
    command = [
        sys.executable,
        "-m",
        "spark_manifests.cli",
        *cli_flags,
        "process",
        "--archive",
        str(archive),
        "--output",
        str(output),
        "--manifest",
        manifest,
        "--state",
        state,
        "--job",
        job,
        "--master",
        "local[2]",
        *extra,
    ]
    return subprocess.run(
        command,
        env=job_environment(**(env or {})),
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT,
        check=False,
    )


def events_of(spark: SparkSession, output: Path) -> DataFrame:
    return (
        spark.read.parquet(str(output / "events"))
        .select("run", "event_id", "event", "collector_tstamp", "app_id")
        .orderBy("event_id")
    )


def bad_rows_of(spark: SparkSession, output: Path) -> DataFrame:
    return spark.read.parquet(str(output / "bad_rows")).select("run", "line").orderBy("line")


def duplicate_event_ids(frame: DataFrame) -> int:
    return frame.groupBy("event_id").count().where("count > 1").count()


def assert_all_committed_once(entries: Sequence, runs: int) -> None:
    assert len(entries) == runs
    assert {entry.status for entry in entries} == {RunStatus.COMMITTED}
    assert all(entry.owner for entry in entries)
