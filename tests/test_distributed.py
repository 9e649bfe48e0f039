"""A real distributed run: Spark standalone master and worker on 127.0.0.1, spark-submit to them.

The job's executors run in the worker's own JVM and Python processes, with the package shipped
only through ``--py-files``: everything that runs on executors must be shipped and picklable.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from conftest import SPARK_SUBMIT, free_port, submit_enriched_to_parquet
from spark_manifests import RunStatus, SQLiteRunManifest, write_sample_archive

SPARK_CLASS = str(Path(SPARK_SUBMIT).with_name("spark-class"))

pytestmark = pytest.mark.slow


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
    env = dict(
        os.environ,
        SPARK_LOCAL_IP="127.0.0.1",
        PYSPARK_PYTHON=bare_python,
        SPARK_WORKER_DIR=str(logs / "work"),
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


def test_job_runs_on_a_standalone_cluster(
    standalone_cluster: Cluster, bare_python: str, py_files: str, tmp_path: Path
) -> None:
    archive, output = tmp_path / "archive", tmp_path / "output"
    write_sample_archive(
        archive,
        runs=3,
        events_per_run=200,
        files_per_run=2,
        seed=9,
        bad_line_ratio=0.05,
        compress=True,
    )
    manifest = str(tmp_path / "manifest.sqlite")
    result = submit_enriched_to_parquet(
        standalone_cluster.master,
        bare_python,
        py_files,
        [
            "--archive",
            str(archive),
            "--output",
            str(output),
            "--manifest",
            manifest,
            "--state",
            str(tmp_path / "state"),
            "--job",
            "distributed",
        ],
        cwd=tmp_path,
        conf=("spark.executor.memory=1g",),
        timeout=900,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    # Client mode on a cluster with the manifest and state on the driver's disk: a warning
    # (spark-submit passes the Python driver's stderr to its stdout).
    assert "are on the driver's disk, but Spark runs on spark://" in result.stdout
    # The job ran on the cluster, not on a local master it fell back to.
    wait_until(
        lambda: master_status(standalone_cluster.ui_port).get("completedapps"),
        "the master to list the application as completed",
        timeout=30,
    )
    finished = master_status(standalone_cluster.ui_port)["completedapps"]
    assert [app["state"] for app in finished] == ["FINISHED"], finished
    with SQLiteRunManifest(manifest) as runs:
        entries = list(runs.entries())
    assert {entry.status for entry in entries} == {RunStatus.COMMITTED}
    assert sum(entry.rows_in for entry in entries) == 600
    assert sum(entry.rows_out + entry.bad_rows for entry in entries) == 600
    partitions = [p for p in os.listdir(output / "events") if p.startswith("run=")]
    assert len(partitions) == 3
