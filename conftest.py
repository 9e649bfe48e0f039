"""Shared pytest fixtures: one local SparkSession for the whole run, and moto for AWS.

- ``spark``: a session-scoped local[2] SparkSession (UTC, no UI).
- ``aws_credentials``: fake credentials and region, so no test can reach a real account.
- ``aws``: in-process moto (``mock_aws``) for unit tests; yields a boto3 session.
- ``moto_server``: a ThreadedMotoServer on 127.0.0.1 (real HTTP) for end-to-end runs; yields
  its endpoint URL. Its state is reset before each test that uses it.
- ``s3_spark``: the ``spark`` session reading and writing S3 through s3a, against the moto
  server (tests marked ``s3``).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

ROOT = Path(__file__).resolve().parent
SPARK_SUBMIT = str(Path(sys.executable).with_name("spark-submit"))
ENRICHED_TO_PARQUET = str(Path(__file__).resolve().parent / "jobs" / "enriched_to_parquet.py")

# Spark's workers must run this interpreter, and bind only to loopback.
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def table_format_config() -> dict[str, str]:
    """Delta Lake's and Iceberg's packages and extensions, for the formats that support the
    installed pyspark (none on a pyspark they do not support: their tests skip). The jars are
    resolved once, into Spark's default Ivy cache: the one the jobs the tests start use too."""
    from spark_manifests._packages import (
        TABLE_FORMATS,
        installed_versions,
        table_format_package,
        table_format_spark_config,
    )
    from spark_manifests.exceptions import TableFormatUnavailableError

    versions = installed_versions()
    supported = []
    for table_format in TABLE_FORMATS:
        try:
            table_format_package(table_format, versions.spark, versions.scala)
        except TableFormatUnavailableError:
            continue
        supported.append(table_format)
    if not supported:
        return {}
    return table_format_spark_config(supported, versions.spark, versions.scala)


@pytest.fixture(scope="session")
def spark(request: pytest.FixtureRequest):
    """One local SparkSession shared by every test (starting one takes seconds).

    When a test marked ``s3`` is collected, the session gets the ``hadoop-aws`` package of
    its Hadoop: Spark's Ivy downloads it once into its cache (under ``~``) and every later
    session of the run, in this process or in a job's, finds it there.
    """
    from pyspark.sql import SparkSession

    from spark_manifests._s3a import with_s3a_packages

    needs_s3 = any(item.get_closest_marker("s3") for item in request.session.items)
    config = table_format_config()
    builder = SparkSession.builder.master("local[2]")
    for key, value in (with_s3a_packages(config) if needs_s3 else config).items():
        builder = builder.config(key, value)
    builder = (
        builder.appName("spark_manifests-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "4")
        # Delta rebuilds a table's state in 50 tasks by default: seconds per commit here.
        .config("spark.databricks.delta.snapshotPartitions", "2")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
    )
    # The JVM reads its environment once: s3a's default credentials chain finds the fake
    # credentials there, so no test's s3a can reach a real account.
    with pytest.MonkeyPatch.context() as launch_env:
        for name, value in FAKE_AWS_ENV.items():
            launch_env.setenv(name, value)
        session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials; no endpoint override leaks in from the caller's shell."""
    for name, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    for name in (
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL_DYNAMODB",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def aws(aws_credentials: None) -> Iterator[object]:
    """In-process moto for S3 and DynamoDB; yields a boto3 session bound to it."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        yield boto3.session.Session(region_name="us-east-1")


def make_moto_dynamodb_atomic() -> Callable[[], None]:
    """Make moto's DynamoDB item writes atomic, as DynamoDB's are; returns the undo.

    moto checks a condition and then writes without a lock, so two threads (or two clients of
    one moto server) can both pass the check; DynamoDB evaluates a condition and writes
    atomically per item. Concurrency tests need that guarantee to test our conditions.
    """
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.Lock()
    originals = {
        name: getattr(DynamoDBBackend, name) for name in ("put_item", "update_item", "delete_item")
    }
    for name, original in originals.items():

        def atomic(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(self, *args, **kwargs)

        setattr(DynamoDBBackend, name, atomic)

    def undo() -> None:
        for name, original in originals.items():
            setattr(DynamoDBBackend, name, original)

    return undo


@pytest.fixture
def atomic_moto_dynamodb() -> Iterator[None]:
    undo = make_moto_dynamodb_atomic()
    yield
    undo()


@pytest.fixture(scope="session")
def _moto_server_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    undo_atomic = make_moto_dynamodb_atomic()
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
    undo_atomic()


@pytest.fixture
def moto_server(
    _moto_server_url: str, aws_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A moto server over real HTTP, reset, with ``AWS_ENDPOINT_URL`` pointing at it."""
    import urllib.request

    urllib.request.urlopen(
        urllib.request.Request(f"{_moto_server_url}/moto-api/reset", method="POST")
    ).close()
    monkeypatch.setenv("AWS_ENDPOINT_URL", _moto_server_url)
    return _moto_server_url


@pytest.fixture
def s3_spark(spark, moto_server: str):
    """The shared session reading and writing S3 through s3a, against the moto server."""
    from spark_manifests._s3a import ensure_s3a

    ensure_s3a(spark)
    return spark


def s3a_packages() -> str:
    """The ``--packages`` value a user gives spark-submit for S3 off EMR: the ``hadoop-aws``
    of the installed Spark's Hadoop. In a run with a test marked ``s3``, the ``spark``
    fixture has resolved it into Spark's Ivy cache, where spark-submit finds it."""
    from spark_manifests._packages import installed_packages

    return ",".join(installed_packages(("s3",)))


# Ivy's resolution report line: modules (number, search, downloaded, evicted), then artifacts
# (number, downloaded).
_IVY_REPORT = re.compile(
    r"\|\s*default\s*\|\s*\d+\s*\|\s*\d+\s*\|\s*(\d+)\s*\|\s*\d+\s*\|\|\s*\d+\s*\|\s*(\d+)\s*\|"
)


def check_packages_came_from_the_cache(submit_stderr: str) -> None:
    """spark-submit's ``--packages`` were resolved from Ivy's cache: nothing downloaded."""
    report = _IVY_REPORT.search(submit_stderr)
    assert report, "no Ivy resolution report in spark-submit's output"
    assert report.groups() == ("0", "0"), report.group(0)


def check_s3_output_exactly_once(
    spark: Any, *, manifest: str, output: str, lines: int, runs: int
) -> None:
    """Every run of ``manifest`` committed once; the output, read back through s3a, holds
    every good line once (count and distinct ``event_id``) and the bad rows hold the rest."""
    from spark_manifests import RunStatus, open_manifest

    with open_manifest(manifest) as opened:
        entries = list(opened.entries())
    assert len(entries) == runs
    assert {entry.status for entry in entries} == {RunStatus.COMMITTED}
    good, bad = sum(e.rows_out for e in entries), sum(e.bad_rows for e in entries)
    assert good + bad == lines
    assert bad > 0
    output = "s3a://" + output.split("://", 1)[1].rstrip("/") + "/"
    events = spark.read.parquet(output + "events/")
    assert events.count() == good
    assert events.select("event_id").distinct().count() == good
    assert events.select("run").distinct().count() == runs
    assert spark.read.parquet(output + "bad_rows/").count() == bad


# A job process lives for seconds: with the JIT's first tier only, it starts and finishes a
# quarter sooner (a 6-run job: 32 s against 23 s). Not for this process's own session: it
# lives for the whole run, and its tests took 1.4x as long without the optimising tier.
_FIRST_JIT_TIER_ONLY = "-XX:TieredStopAtLevel=1"

# The small job whose JVM dumps the class-data archive at its exit: the demo, in-process, so
# that the session can be stopped and the JVM exits normally (a killed JVM dumps nothing).
_DUMP_CLASSES = """
import sys
from pyspark.sql import SparkSession
from spark_manifests.cli import main
work = sys.argv[1]
try:
    main(["demo", "--dir", work, "--manifest", work + "/m.sqlite", "--state", work + "/state",
          "--runs", "2", "--events", "50"])
finally:
    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()
"""
_class_archive_lock = threading.Lock()
_dumps_tried: set[Path] = set()  # a dump that failed is not tried again at each job start


def _class_archive() -> Path | None:
    """A JVM class-data archive of the classes a job loads, dumped once by a small job and kept
    in the temporary folder for this pyspark: each job JVM then maps Spark's classes instead of
    loading them (a 6-run job took 9 s instead of 13 s). None if the JVM could not dump one.
    The JVM checks the archive against its own build and class path, and ignores it if they
    changed."""
    import pyspark

    # A reinstalled pyspark has new jars: the JVM would refuse the old archive, so dump anew.
    jars = Path(pyspark.__file__).parent / "jars"
    installed = jars.stat().st_mtime_ns if jars.exists() else 0
    key = hashlib.sha256(f"{jars} {installed} {os.environ.get('JAVA_HOME')}".encode())
    archive = Path(tempfile.gettempdir()) / f"spark-manifests-tests-{key.hexdigest()[:16]}.jsa"
    with _class_archive_lock:
        if not archive.exists() and archive not in _dumps_tried:
            _dumps_tried.add(archive)
            _dump_class_archive(archive)
    return archive if archive.exists() else None


def _dump_class_archive(archive: Path) -> None:
    with tempfile.TemporaryDirectory() as work:
        dumped = Path(work) / "classes.jsa"
        environment = _process_environment(
            JAVA_TOOL_OPTIONS=f"{_FIRST_JIT_TIER_ONLY} -XX:ArchiveClassesAtExit={dumped}"
        )
        done = subprocess.run(
            [sys.executable, "-c", _DUMP_CLASSES, str(Path(work) / "job")],
            env=environment,
            capture_output=True,
            timeout=600,
            check=False,
        )
        if done.returncode == 0 and dumped.exists():
            os.replace(dumped, archive)


def short_lived_jvm() -> dict[str, str]:
    """``JAVA_TOOL_OPTIONS`` for a JVM that runs one job: the first JIT tier, and the class
    archive when there is one."""
    options = [_FIRST_JIT_TIER_ONLY]
    archive = _class_archive()
    if archive is not None:
        # Spark's launcher runs a JVM of another class path first: it refuses the archive, and
        # would say so on stdout, where a job prints its summary.
        options += [f"-XX:SharedArchiveFile={archive}", "-Xlog:cds*=off"]
    return {"JAVA_TOOL_OPTIONS": " ".join(options)}


def _process_environment(**overrides: str) -> dict[str, str]:
    """This process's environment for a Spark process: its workers run this interpreter
    and bind to loopback, this checkout is importable."""
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    environment = dict(
        os.environ,
        SPARK_LOCAL_IP="127.0.0.1",
        PYSPARK_PYTHON=sys.executable,
        PYTHONPATH=os.pathsep.join(path),
    )
    environment.update(overrides)
    return environment


def job_environment(**overrides: str) -> dict[str, str]:
    """The environment of a job process a test starts (``_process_environment``), its JVM
    short-lived."""
    return _process_environment(**{**short_lived_jvm(), **overrides})


def bare_environment(**overrides: str) -> dict[str, str]:
    """This process's environment for ``bare_python``: without ``PYTHONPATH``, which may name
    a checkout of spark_manifests (then the package could be imported from there, and what
    ``--py-files`` ships would go untested)."""
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    environment.update(short_lived_jvm())
    environment.update(overrides)
    return environment


@pytest.fixture(scope="session")
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
        [str(python), "-c", "import spark_manifests"],
        cwd=home,
        env=bare_environment(),
        capture_output=True,
        text=True,
    )
    assert probe.returncode != 0, "spark_manifests must not be importable in the bare interpreter"
    return str(python)


@pytest.fixture(scope="session")
def py_files(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The package zipped for ``spark-submit --py-files``, by ``spark-manifests package``."""
    from spark_manifests.cli import main

    target = tmp_path_factory.mktemp("py_files") / "spark_manifests.zip"
    assert main(["package", "--output", str(target)]) == 0
    return str(target)


def submit_enriched_to_parquet(
    master: str,
    python: str,
    py_files: str,
    job_args: list[str],
    *,
    cwd: Path,
    conf: tuple[str, ...] = (),
    packages: str = "",
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """``jobs/enriched_to_parquet.py`` through spark-submit, as a user runs it: the package
    shipped by ``--py-files`` to ``python`` (an interpreter where it is not installed), and
    the Java ``packages`` (``--packages``) if any."""
    env = bare_environment(
        PYSPARK_PYTHON=python, PYSPARK_DRIVER_PYTHON=python, SPARK_LOCAL_IP="127.0.0.1"
    )
    confs = [arg for item in ("spark.ui.enabled=false", *conf) for arg in ("--conf", item)]
    command = [SPARK_SUBMIT, "--master", master, *confs, "--py-files", py_files]
    if packages:
        command += ["--packages", packages]
    return subprocess.run(
        [*command, ENRICHED_TO_PARQUET, *job_args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
