"""``spark-manifests demo --aws``: the production shape on a laptop, with no AWS account.

A local S3 + DynamoDB emulator (moto's server, from the ``[demo]`` extra) on 127.0.0.1 holds
the archive in a bucket, the run manifest in a DynamoDB table and the job state in S3; Spark
reads and writes the bucket through s3a. The job runs twice: the second run finds nothing to
do. The emulator keeps everything in memory and stops at the end.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TextIO

from ._aws import make_client
from ._s3a import ensure_s3a
from .exceptions import SparkManifestsError
from .manifest_open import open_manifest

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from .source import JobSummary

DEMO_BUCKET = "spark-manifests-demo"
DEMO_TABLE = "spark-manifests-demo-runs"
DEMO_JOB = "demo"
# Fake credentials: the emulator takes any, and with them no call can reach a real account.
_EMULATOR_ENV = {
    "AWS_ACCESS_KEY_ID": "demo",
    "AWS_SECRET_ACCESS_KEY": "demo",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}
_UNSET_FOR_EMULATOR = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE")


def run_aws_demo(
    *,
    runs: int = 6,
    events_per_run: int = 1000,
    spark: SparkSession | None = None,
    master: str | None = None,
    out: TextIO | None = None,
) -> int:
    """Run the demo; the exit status (0 when both runs of the job succeeded).

    ``spark`` is used if given (its s3a is pointed at the emulator); otherwise a session is
    started on ``master`` (default ``local[*]``) with the ``hadoop-aws`` package.

    Examples
    --------
    >>> run_aws_demo(runs=2, events_per_run=100)  # doctest: +SKIP
    """
    out = out or sys.stdout
    with local_aws_emulator() as endpoint:
        print(f"Started a local S3 + DynamoDB emulator (moto) at {endpoint}", file=out)
        archive = f"s3://{DEMO_BUCKET}/enriched/archive/"
        output = f"s3://{DEMO_BUCKET}/enriched/parquet/"
        state = f"s3://{DEMO_BUCKET}/state/"
        manifest = f"dynamodb://{DEMO_TABLE}"
        _write_demo_archive(archive, runs, events_per_run, out)
        with open_manifest(manifest) as table:
            table.create()
        spark = _demo_spark(spark, master, endpoint, archive, output, out)
        summaries = [
            _run_job(spark, archive, output, state, manifest, attempt, out)
            for attempt in ("first", "second")
        ]
        if not all(summary.ok for summary in summaries):
            return 1
        _print_where(spark, archive, output, state, manifest, summaries, out)
    print("Stopped the emulator: what it held is gone.", file=out)
    return 0


@contextlib.contextmanager
def local_aws_emulator() -> Iterator[str]:
    """A moto server on 127.0.0.1 (a free port), with the AWS settings of this process
    pointed at it and fake credentials; all restored when the block ends."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        raise SparkManifestsError(
            "The AWS demo needs moto's server, which is not installed: "
            "pip install 'spark_manifests[demo]' (from a checkout: pip install -e '.[demo]')."
        ) from exc
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    settings = dict(
        _EMULATOR_ENV,
        AWS_ENDPOINT_URL=endpoint,
        AWS_ENDPOINT_URL_S3=endpoint,
        AWS_ENDPOINT_URL_DYNAMODB=endpoint,
    )
    saved = {name: os.environ.get(name) for name in (*settings, *_UNSET_FOR_EMULATOR)}
    try:
        os.environ.update(settings)
        for name in _UNSET_FOR_EMULATOR:
            os.environ.pop(name, None)
        yield endpoint
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()


def upload_folder(folder: str, uri: str, client: Any | None = None) -> int:
    """Upload every file under the local ``folder`` to the S3 prefix ``uri``; the count.

    Examples
    --------
    >>> upload_folder("/tmp/archive", "s3://acme/enriched/archive/")  # doctest: +SKIP
    """
    from ._locations import parse_location

    target = parse_location(uri, what="upload target")
    client = client or make_client("s3")
    count = 0
    for root, _, names in os.walk(folder):
        for name in sorted(names):
            path = os.path.join(root, name)
            key = target.prefix + os.path.relpath(path, folder).replace(os.sep, "/")
            client.upload_file(path, target.bucket, key)
            count += 1
    return count


def _write_demo_archive(archive: str, runs: int, events_per_run: int, out: TextIO) -> None:
    from .samples import write_sample_archive

    make_client("s3").create_bucket(Bucket=DEMO_BUCKET)
    with tempfile.TemporaryDirectory(prefix="spark-manifests-demo-") as folder:
        write_sample_archive(
            folder,
            runs=runs,
            events_per_run=events_per_run,
            files_per_run=4,
            bad_line_ratio=0.01,
            compress=True,
        )
        files = upload_folder(folder, archive)
    print(f"Wrote a sample archive of {runs} runs x {events_per_run} events ", end="", file=out)
    print(f"({files} objects) to {archive}", file=out)


def _demo_spark(
    spark: SparkSession | None,
    master: str | None,
    endpoint: str,
    archive: str,
    output: str,
    out: TextIO,
) -> SparkSession:
    from ._spark import get_or_create_spark

    if spark is None:
        print("Starting Spark with hadoop-aws (the first start downloads it)...", file=out)
        spark = get_or_create_spark(
            "spark-manifests-demo",
            master=master,
            config={"spark.ui.showConsoleProgress": "false"},
            s3_locations=(archive, output),
        )
    ensure_s3a(spark)
    # This emulator's, whatever the session was set up with before (a notebook's session).
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[union-attr]
    hadoop_conf.set(f"fs.s3a.bucket.{DEMO_BUCKET}.endpoint", endpoint)
    return spark


def _run_job(
    spark: SparkSession,
    archive: str,
    output: str,
    state: str,
    manifest: str,
    attempt: str,
    out: TextIO,
) -> JobSummary:
    from .source import ManifestedRunSource

    print(f"\n== {attempt} run of the job: {archive} -> {output}", file=out)
    with ManifestedRunSource(
        archive, spark=spark, output=output, manifest=manifest, state=state, job_name=DEMO_JOB
    ) as source:
        summary = source.run()
    print(
        f"{summary.runs_committed} runs committed, {summary.runs_failed} failed: "
        f"{summary.rows_out} events, {summary.bad_rows} bad rows in {summary.seconds:.1f} s",
        file=out,
    )
    return summary


def _print_where(
    spark: SparkSession,
    archive: str,
    output: str,
    state: str,
    manifest: str,
    summaries: list[JobSummary],
    out: TextIO,
) -> None:
    if summaries[1].runs_committed == 0:
        print("\nThe second run found nothing to do: every run was committed once.", file=out)
    # One Spark job for both figures, as the reader of the output would check exactly-once.
    counts = spark.read.parquet(output + "events/").selectExpr(
        "count(*)", "count(DISTINCT event_id)"
    )
    rows, distinct = counts.collect()[0]
    print(f"Archive:  {archive}", file=out)
    print(f"Events:   {output}events/   ({rows} rows, {distinct} distinct)", file=out)
    print(f"Bad rows: {output}bad_rows/", file=out)
    print(f"Manifest: {manifest}   State: {state}{DEMO_JOB}_completed.json", file=out)
