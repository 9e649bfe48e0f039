"""The spark-submit entry scripts, run as a user runs them: spark-submit with --py-files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import boto3
import pytest
from pyspark.sql import functions as F

from conftest import (
    check_packages_came_from_the_cache,
    check_s3_output_exactly_once,
    s3a_packages,
    submit_enriched_to_parquet,
)
from spark_manifests import RunStatus, open_manifest, read_enriched, write_sample_archive
from spark_manifests._demo_aws import upload_folder


@pytest.mark.slow
@pytest.mark.s3
def test_enriched_to_parquet_through_spark_submit(
    s3_spark, moto_server: str, bare_python: str, py_files: str, tmp_path: Path
) -> None:
    """The production shape off EMR: archive, output and state on S3, manifest in DynamoDB,
    and ``--packages`` naming the hadoop-aws of the installed Spark, as a user gives it
    (``s3_spark``: the tests' session resolved it into Spark's Ivy cache first)."""
    folder, bucket = tmp_path / "archive", "e2e-lake"
    write_sample_archive(
        folder, runs=3, events_per_run=100, files_per_run=2, bad_line_ratio=0.05, seed=3
    )
    boto3.client("s3").create_bucket(Bucket=bucket)
    upload_folder(str(folder), f"s3://{bucket}/archive/")
    with open_manifest("dynamodb://e2e-runs") as manifest:
        manifest.create()

    result = submit_enriched_to_parquet(
        "local[2]",
        bare_python,
        py_files,
        [
            "--archive",
            f"s3://{bucket}/archive/",
            "--output",
            f"s3://{bucket}/output/",
            "--manifest",
            "dynamodb://e2e-runs",
            "--state",
            f"s3://{bucket}/jobs/",
            "--job",
            "e2e",
            "--max-runs-per-batch",
            "2",
        ],
        cwd=tmp_path,
        packages=s3a_packages(),
    )

    assert result.returncode == 0, result.stderr[-3000:]
    check_packages_came_from_the_cache(result.stderr)
    assert "3 runs committed" in result.stdout
    check_s3_output_exactly_once(
        s3_spark,
        manifest="dynamodb://e2e-runs",
        output=f"s3://{bucket}/output/",
        lines=300,
        runs=3,
    )
    document = json.loads(
        boto3.client("s3").get_object(Bucket=bucket, Key="jobs/e2e_completed.json")["Body"].read()
    )
    assert document["data"]["summary"]["runs_committed"] == 3


def _job_module(name: str) -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "jobs" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_job_runs_as_a_glue_script(spark, tmp_path: Path, capsys) -> None:
    """Glue passes its own parameters, and every flag with a value, to the script.

    ``spark``: the tests' session (with its packages) is started first; a session the job
    started would be the one every later test gets, without them.
    """
    archive = tmp_path / "archive"
    write_sample_archive(archive, runs=2, events_per_run=20, files_per_run=1, seed=5)
    glue = ["--JOB_ID", "j_0123", "--JOB_RUN_ID", "jr_4567", "--JOB_NAME", "enriched"]
    glue += ["--TempDir", "s3://aws-glue-temporary/admin", "--enable-metrics", ""]
    glue += ["--job-bookmark-option", "job-bookmark-disable", "--enable-glue-datacatalog", "true"]
    own = ["--archive", str(archive), "--output", str(tmp_path / "out")]
    own += ["--manifest", str(tmp_path / "m.sqlite"), "--state", str(tmp_path / "state")]
    own += ["--fail-fast", "true", "--max-runs-per-batch=1"]
    job = _job_module("enriched_to_parquet")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.argv", ["enriched_to_parquet.py", *glue, *own])
        assert job.main() == 0

    assert "Job enriched_to_parquet: 2 runs committed" in capsys.readouterr().out
    entries = list(open_manifest(str(tmp_path / "m.sqlite")).entries())
    assert [entry.status for entry in entries] == [RunStatus.COMMITTED] * 2


def test_daily_page_views_is_the_process_command_with_its_transform(
    spark, tmp_path: Path, capsys
) -> None:
    archive, output = tmp_path / "archive", tmp_path / "output"
    write_sample_archive(archive, runs=2, events_per_run=80, files_per_run=1, seed=9)
    job = _job_module("daily_page_views")
    where = ["--manifest", str(tmp_path / "m.sqlite"), "--state", str(tmp_path / "state")]

    assert job.main(["--archive", str(archive), "--output", str(output), *where]) == 0

    assert "Job daily_page_views: 2 runs committed" in capsys.readouterr().out
    views = spark.read.parquet(str(output / "events"))
    assert views.columns == ["app_id", "day", "page_views", "visitors_sketch", "run"]
    events = read_enriched(spark, str(archive)).events.where("event = 'page_view'")
    assert views.groupBy().sum("page_views").first()[0] == events.count() > 0
    # Visitors of a day over its runs, as the job's docstring reads them.
    daily = views.groupBy("app_id", "day").agg(
        F.hll_sketch_estimate(F.hll_union_agg("visitors_sketch")).alias("visitors")
    )
    exact = events.groupBy("app_id", F.to_date("collector_tstamp").alias("day")).agg(
        F.countDistinct("domain_userid").alias("visitors")
    )
    estimated = {(r.app_id, r.day): r.visitors for r in daily.collect()}
    assert estimated == {(r.app_id, r.day): r.visitors for r in exact.collect()}
    with pytest.raises(SystemExit, match="2"):  # argparse: --output is required
        job.main(["--archive", str(archive)])
