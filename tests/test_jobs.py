"""The spark-submit entry scripts, run as a user runs them: spark-submit with --py-files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import boto3
import pytest

from spark_manifests import RunStatus, open_manifest, write_sample_archive
from spark_manifests.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
SPARK_SUBMIT = Path(sys.executable).with_name("spark-submit")


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An interpreter that has pyspark and boto3 but not spark_manifests.

    A venv whose only extra path is this environment's site-packages: a path added that way
    has its .pth files ignored, so the editable install of spark_manifests stays invisible.
    """
    home = tmp_path_factory.mktemp("bare_venv")
    venv.EnvBuilder(with_pip=False).create(home)
    python = home / "bin" / "python"
    site = subprocess.check_output(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True,
    ).strip()
    Path(site, "outer_site_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = subprocess.run(
        [str(python), "-c", "import spark_manifests"], cwd=home, capture_output=True, text=True
    )
    assert probe.returncode != 0, "spark_manifests must not be importable in the bare interpreter"
    return str(python)


@pytest.mark.slow
def test_enriched_to_parquet_through_spark_submit(
    moto_server: str, bare_python: str, tmp_path: Path
) -> None:
    archive, output = tmp_path / "archive", tmp_path / "output"
    write_sample_archive(
        archive, runs=3, events_per_run=100, files_per_run=2, bad_line_ratio=0.05, seed=3
    )
    boto3.client("s3").create_bucket(Bucket="job-state")
    with open_manifest("dynamodb://e2e-runs") as manifest:
        manifest.create()
    py_files = tmp_path / "spark_manifests.zip"
    assert cli_main(["package", "--output", str(py_files)]) == 0

    env = dict(
        os.environ,
        PYSPARK_PYTHON=bare_python,
        PYSPARK_DRIVER_PYTHON=bare_python,
        SPARK_LOCAL_IP="127.0.0.1",
    )
    result = subprocess.run(
        [
            str(SPARK_SUBMIT),
            "--master",
            "local[2]",
            "--conf",
            "spark.ui.enabled=false",
            "--py-files",
            str(py_files),
            str(REPO / "jobs" / "enriched_to_parquet.py"),
            "--archive",
            str(archive),
            "--output",
            str(output),
            "--manifest",
            "dynamodb://e2e-runs",
            "--state",
            "s3://job-state/jobs/",
            "--job",
            "e2e",
            "--max-runs-per-batch",
            "2",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "3 runs committed" in result.stdout
    with open_manifest("dynamodb://e2e-runs") as manifest:
        entries = list(manifest.entries())
    assert len(entries) == 3
    assert {entry.status for entry in entries} == {RunStatus.COMMITTED}
    assert sum(entry.rows_in for entry in entries) == 300
    document = json.loads(
        boto3.client("s3")
        .get_object(Bucket="job-state", Key="jobs/e2e_completed.json")["Body"]
        .read()
    )
    assert document["data"]["summary"]["runs_committed"] == 3
    partitions = [name for name in os.listdir(output / "events") if name.startswith("run=")]
    assert sorted(partitions) == sorted(os.listdir(archive))
