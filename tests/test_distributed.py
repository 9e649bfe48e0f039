"""A real distributed run: Spark standalone master and worker on 127.0.0.1, spark-submit to them.

The job's executors run in the worker's own JVM and Python processes, with the package shipped
only through ``--py-files``: everything that runs on executors must be shipped and picklable.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import boto3
import pytest

from conftest import (
    FAKE_AWS_ENV,
    SPARK_SUBMIT,
    bare_environment,
    check_packages_came_from_the_cache,
    check_s3_output_exactly_once,
    free_port,
    s3a_packages,
    submit_enriched_to_parquet,
)
from spark_manifests import SQLiteRunManifest, StateStore, open_manifest, write_sample_archive
from spark_manifests._demo_aws import upload_folder
from spark_manifests._preflight import SparkPreflight

SPARK_CLASS = str(Path(SPARK_SUBMIT).with_name("spark-class"))

MANIFEST = "dynamodb://cluster-runs"


def wait_until(condition, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise TimeoutError(f"gave up waiting for {what}")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Cluster(NamedTuple):
    master: str
    ui_port: int


def master_status(ui_port: int) -> dict:
    """The master's status page as JSON (workers, running and completed applications)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as answer:
            return json.load(answer)
    except OSError:
        return {}


def alive_workers(ui_port: int) -> int:
    return int(master_status(ui_port).get("aliveworkers", 0))


@pytest.fixture(scope="module")
def standalone_cluster(
    bare_python: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    port, ui_port, worker_ui = free_port(), free_port(), free_port()
    logs = tmp_path_factory.mktemp("cluster_logs")
    env = bare_environment(
        SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=bare_python, SPARK_WORKER_DIR=str(logs / "work")
    )
    master_log = (logs / "master.log").open("w")
    worker_log = (logs / "worker.log").open("w")
    master = subprocess.Popen(
        [
            SPARK_CLASS,
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--webui-port",
            str(ui_port),
        ],
        env=env,
        stdout=master_log,
        stderr=subprocess.STDOUT,
    )
    worker = None
    try:
        wait_until(lambda: port_open(port), "the Spark master")
        worker = subprocess.Popen(
            [
                SPARK_CLASS,
                "org.apache.spark.deploy.worker.Worker",
                "--host",
                "127.0.0.1",
                "--cores",
                "2",
                "--memory",
                "2g",
                "--webui-port",
                str(worker_ui),
                f"spark://127.0.0.1:{port}",
            ],
            env=env,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: alive_workers(ui_port) >= 1, "a worker to register")
        yield Cluster(f"spark://127.0.0.1:{port}", ui_port)
    finally:
        for process in (worker, master):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
        master_log.close()
        worker_log.close()


@pytest.mark.slow
@pytest.mark.s3
def test_job_runs_on_a_standalone_cluster(
    standalone_cluster: Cluster,
    s3_spark,
    moto_server: str,
    bare_python: str,
    py_files: str,
    tmp_path: Path,
) -> None:
    """The production shape: archive and output on S3, manifest in DynamoDB, state on S3,
    ``--packages`` naming the hadoop-aws of the installed Spark (``s3_spark``: resolved into
    Spark's Ivy cache by the tests' session first). The executors run in the worker's JVM:
    they get the s3a settings (the endpoint) with each task, the credentials through
    ``spark.executorEnv``, as a cluster without an instance role gives them."""
    folder, bucket = tmp_path / "archive", "cluster-lake"
    write_sample_archive(
        folder,
        runs=3,
        events_per_run=200,
        files_per_run=2,
        seed=9,
        bad_line_ratio=0.05,
        compress=True,
    )
    boto3.client("s3").create_bucket(Bucket=bucket)
    upload_folder(str(folder), f"s3://{bucket}/archive/")
    with open_manifest(MANIFEST) as manifest:
        manifest.create()
    credentials = [
        f"spark.executorEnv.{name}={FAKE_AWS_ENV[name]}"
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    ]
    result = submit_enriched_to_parquet(
        standalone_cluster.master,
        bare_python,
        py_files,
        [
            "--archive",
            f"s3://{bucket}/archive/",
            "--output",
            f"s3://{bucket}/output/",
            "--manifest",
            MANIFEST,
            "--state",
            f"s3://{bucket}/state/",
            "--job",
            "distributed",
        ],
        cwd=tmp_path,
        conf=("spark.executor.memory=1g", *credentials),
        packages=s3a_packages(),
        timeout=900,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    check_packages_came_from_the_cache(result.stderr)
    assert "on the driver's disk" not in result.stdout
    # The job ran on the cluster, not on a local master it fell back to.
    wait_until(
        lambda: master_status(standalone_cluster.ui_port).get("completedapps"),
        "the master to list the application as completed",
        timeout=30,
    )
    finished = master_status(standalone_cluster.ui_port)["completedapps"]
    assert [app["state"] for app in finished] == ["FINISHED"], finished
    check_s3_output_exactly_once(
        s3_spark, manifest=MANIFEST, output=f"s3://{bucket}/output/", lines=600, runs=3
    )


class ClusterSession:
    """What the preflight asks of a session on a cluster: its master and deploy mode."""

    def __init__(self, master: str, deploy_mode: str) -> None:
        settings = {"spark.master": master, "spark.submit.deployMode": deploy_mode}
        self.conf = SimpleNamespace(get=lambda key, default=None: settings.get(key, default))


def test_a_manifest_on_the_drivers_disk_is_warned_about_on_a_cluster(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Client mode on a cluster with the manifest and state on the driver's disk: a warning
    (the cluster run above keeps them in DynamoDB and S3, and gets none)."""
    with SQLiteRunManifest(str(tmp_path / "manifest.sqlite")) as manifest:
        preflight = SparkPreflight(
            ClusterSession("spark://127.0.0.1:7077", "client"),
            job_name="distributed",
            manifest=manifest,
            state_store=StateStore(str(tmp_path / "state")),
        )
        with caplog.at_level(logging.WARNING, logger="spark_manifests"):
            preflight.start()
    warning = (
        "the manifest {} and the state {} are on the driver's disk, but Spark runs on spark://"
    )
    assert warning.format(tmp_path / "manifest.sqlite", tmp_path / "state") in caplog.text
