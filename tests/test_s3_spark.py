"""Spark reads the archive and writes the output on S3 through s3a, against a moto server.

The jobs run as their own processes (``spark-manifests process`` on ``s3://`` locations, the
manifest in DynamoDB, the state in S3); this process reads their output back through s3a.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest

from conftest import check_s3_output_exactly_once, job_environment
from spark_manifests import open_manifest, write_sample_archive
from spark_manifests._demo_aws import upload_folder
from spark_manifests._faults import KILL_AT_ENV, POINTS
from spark_manifests._packages import installed_versions, running_versions

from .reliability import JOB_TIMEOUT

pytestmark = [pytest.mark.s3, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "acme-lake"
ARCHIVE = f"s3://{BUCKET}/enriched/archive/"
OUTPUT = f"s3://{BUCKET}/enriched/parquet/"
STATE = f"s3://{BUCKET}/state/"
MANIFEST = "dynamodb://acme-runs"
EVENTS_PER_RUN = 150


@pytest.fixture
def lake(moto_server: str, tmp_path: Path) -> int:
    """A bucket with an archive of 2 plain and 2 gzip runs, 4% bad lines, and an empty
    DynamoDB manifest; the number of archive lines."""
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    folder = tmp_path / "archive"
    kinds = ((False, datetime(2017, 4, 11, tzinfo=timezone.utc)), (True, datetime(2017, 4, 12)))
    for compress, start in kinds:
        write_sample_archive(
            folder,
            runs=2,
            events_per_run=EVENTS_PER_RUN,
            files_per_run=2,
            bad_line_ratio=0.04,
            seed=7 + compress,
            compress=compress,
            start=start,
        )
    upload_folder(str(folder), ARCHIVE)
    with open_manifest(MANIFEST) as runs:
        runs.create()
    return 4 * EVENTS_PER_RUN


def start_job(job: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """The whole command in its own interpreter, on the S3 archive and output."""
    where = ["--archive", ARCHIVE, "--output", OUTPUT, "--manifest", MANIFEST, "--state", STATE]
    command = [sys.executable, "-m", "spark_manifests.cli", "process", *where, "--job", job]
    return subprocess.Popen(
        [*command, "--master", "local[2]", "--max-runs-per-batch", "2", *extra],
        cwd=ROOT,
        env=job_environment(**(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a kill reaches Spark's JVM too
    )


def finish(job: subprocess.Popen) -> tuple[int, str, str]:
    stdout, stderr = job.communicate(timeout=JOB_TIMEOUT)
    return job.returncode, stdout, stderr


def check_exactly_once(spark, lines: int, runs: int = 4) -> None:
    check_s3_output_exactly_once(spark, manifest=MANIFEST, output=OUTPUT, lines=lines, runs=runs)


def output_keys(marker: str) -> list[str]:
    bucket, prefix = OUTPUT[len("s3://") :].split("/", 1)
    pages = (
        boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    )
    return [
        item["Key"] for page in pages for item in page.get("Contents", []) if marker in item["Key"]
    ]


def test_the_session_gets_the_hadoop_aws_of_its_hadoop(s3_spark, moto_server: str) -> None:
    versions = running_versions(s3_spark)
    assert versions.hadoop == installed_versions().hadoop
    jars = s3_spark.sparkContext.getConf().get("spark.jars", "")
    assert f"hadoop-aws-{versions.hadoop}.jar" in jars
    # Spark 3.x fills in fs.s3a.endpoint=s3.amazonaws.com: the environment's endpoint wins.
    hadoop_conf = s3_spark.sparkContext._jsc.hadoopConfiguration()
    assert hadoop_conf.get("fs.s3a.endpoint") == moto_server


def s3a_statistics(spark, uri: str) -> dict[str, int]:
    """The counters of the s3a file system instance (one per bucket) that serves ``uri``."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    filesystem = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    counters = filesystem.getIOStatistics().counters()
    return {str(key): int(counters.get(key)) for key in counters.keySet() if "multipart" in key}


def test_multipart_writes_and_partition_overwrites_through_s3a(s3_spark) -> None:
    """Files over the part size go up in parts (moto has had bugs with the Java SDK's
    chunked uploads); a dynamic overwrite replaces only the partitions it writes."""
    bucket = "multipart-out"
    boto3.client("s3").create_bucket(Bucket=bucket)
    hadoop_conf = s3_spark.sparkContext._jsc.hadoopConfiguration()
    hadoop_conf.set(f"fs.s3a.bucket.{bucket}.multipart.size", "5M")
    frame = s3_spark.range(0, 600_000, numPartitions=1).selectExpr(
        "id", "uuid() AS u", "uuid() AS v", "CAST(id % 2 AS STRING) AS run"
    )
    target = f"s3://{bucket}/table/"
    writer = frame.write.mode("overwrite").option("partitionOverwriteMode", "dynamic")
    writer.partitionBy("run").parquet(target)
    objects = boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"]
    parts = [item for item in objects if item["Key"].endswith(".parquet")]
    assert len(parts) == 2
    assert all(item["Size"] > 5 * 2**20 for item in parts)
    uploads = s3a_statistics(s3_spark, target)
    assert uploads["multipart_upload_completed"] >= 2, uploads
    assert not [item["Key"] for item in objects if "/_temporary" in item["Key"]]

    again = s3_spark.range(0, 10).selectExpr("id", "'x' AS u", "'y' AS v", "'1' AS run")
    again.write.mode("overwrite").option("partitionOverwriteMode", "dynamic").partitionBy(
        "run"
    ).parquet(target)
    table = s3_spark.read.parquet(f"s3a://{bucket}/table/")
    assert table.where("run = 0").count() == 300_000
    assert table.where("run = 1").count() == 10
    assert table.where("run = 0").select("id").distinct().count() == 300_000


def test_the_command_processes_an_s3_archive_exactly_once(s3_spark, lake: int) -> None:
    code, stdout, stderr = finish(start_job("s3job"))
    assert code == 0, stderr[-3000:]
    assert "4 runs committed" in stdout, stdout
    check_exactly_once(s3_spark, lake)

    code, stdout, stderr = finish(start_job("s3job"))

    assert code == 0, stderr[-3000:]
    assert "0 runs committed" in stdout, stdout
    with open_manifest(MANIFEST) as manifest:
        assert all(entry.attempts == 1 for entry in manifest.entries())


def kill_when_the_write_is_under_way(job: subprocess.Popen) -> None:
    """SIGKILL the job, its JVM included, while its Spark write has files in staging folders.

    The whole process group is stopped before the check that decides, so the write cannot
    finish between seeing its staged files and the kill; if it had finished, the job goes on
    and the next batch's write is caught instead.
    """
    deadline = time.monotonic() + JOB_TIMEOUT
    while job.poll() is None and time.monotonic() < deadline:
        if staged_keys():
            os.killpg(job.pid, signal.SIGSTOP)
            if staged_keys():
                os.killpg(job.pid, signal.SIGKILL)
                return
            os.killpg(job.pid, signal.SIGCONT)
        time.sleep(0.05)


def staged_keys() -> list[str]:
    return output_keys("/.spark-staging-") + output_keys("/_temporary/")


def test_killed_at_each_stage_the_job_resumes_to_exactly_once(s3_spark, lake: int) -> None:
    """One start killed in the middle of a Spark write (its staged files left behind), then
    one killed at each stage boundary in turn, then one that finishes."""
    one_run_batches = ("--max-runs-per-batch", "1")
    writing = start_job("crashy", *one_run_batches)
    kill_when_the_write_is_under_way(writing)
    code, _, stderr = finish(writing)
    assert code == -signal.SIGKILL, stderr[-3000:]
    assert staged_keys()
    for point in POINTS:
        killed = start_job("crashy", *one_run_batches, env={KILL_AT_ENV: point})
        code, _, stderr = finish(killed)
        assert code == -signal.SIGKILL, (point, stderr[-3000:])

    code, _, stderr = finish(start_job("crashy", *one_run_batches))

    assert code == 0, stderr[-3000:]
    check_exactly_once(s3_spark, lake)


def test_two_workers_share_one_s3_archive_and_output(s3_spark, lake: int) -> None:
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda n: finish(start_job(f"worker{n}")), range(2)))
    for code, _, stderr in results:
        assert code == 0, stderr[-3000:]
    committed = sum(int(out.split(" runs committed")[0].rsplit(" ", 1)[1]) for _, out, _ in results)
    assert committed == 4
    check_exactly_once(s3_spark, lake)
    with open_manifest(MANIFEST) as manifest:
        assert all(entry.attempts == 1 for entry in manifest.entries())


def run_failing(tmp_path: Path, capsys: pytest.CaptureFixture[str], archive: str) -> str:
    """The command on an S3 archive that cannot be read: its one error line; nothing claimed."""
    from spark_manifests.cli import main

    from .commands import error_line

    manifest = str(tmp_path / "m.sqlite")
    where = ["--output", f"s3://{BUCKET}/out/", "--manifest", manifest, "--state", str(tmp_path)]
    assert main(["process", "--archive", archive, *where, "--job", "broken"]) != 0
    line = error_line(capsys)
    if os.path.exists(manifest):
        with open_manifest(manifest) as runs:
            assert list(runs.entries()) == []
    return line


def test_a_missing_bucket_is_one_line(
    moto_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = run_failing(tmp_path, capsys, "s3://no-such-bucket/archive/")
    assert "no-such-bucket" in line


def test_a_wrong_endpoint_is_one_line(
    aws_credentials: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from conftest import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    line = run_failing(tmp_path, capsys, ARCHIVE)
    assert BUCKET in line


def test_missing_credentials_are_one_line(
    moto_server: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    line = run_failing(tmp_path, capsys, ARCHIVE)
    assert "credentials" in line.lower()


def test_the_aws_demo_runs_twice_and_stops_its_emulator(s3_spark) -> None:
    import io

    from spark_manifests._demo_aws import run_aws_demo

    printed = io.StringIO()
    assert run_aws_demo(runs=2, events_per_run=50, spark=s3_spark, out=printed) == 0
    text = printed.getvalue()
    assert "2 runs committed, 0 failed" in text
    assert "The second run found nothing to do" in text
    assert "distinct)" in text
    assert "Stopped the emulator" in text
