"""s3a against local files: the same data read and written both ways, side by side.

Writes a sample archive (default 8 runs x 10,000 events) to local disk and to a bucket of a
moto server on 127.0.0.1, then on local[2] times, for each side:

- read: ``spark.read.text`` of every run -> count (the bytes pass through Spark once);
- parse + write: the enriched reader's typed events -> Parquet partitioned by run, with the
  sink's dynamic partition overwrite (on S3: staged, then copied into place).

moto is a Python server in this process: the figures are s3a's overhead plus moto's, a floor
for what S3 itself would cost, not S3's throughput.

    python benchmarks/bench_s3a.py [--runs 8] [--events 10000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

from spark_manifests import read_enriched, write_sample_archive
from spark_manifests._demo_aws import local_aws_emulator, upload_folder
from spark_manifests._spark import get_or_create_spark
from spark_manifests.sinks import RUN_COLUMN

BUCKET = "bench-s3a"


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def measure(spark, archive: str, output: str) -> dict[str, float]:
    paths = [archive]
    read = timed(lambda: spark.read.text(paths).count())
    events = read_enriched(spark, [archive.rstrip("/") + "/run=*/"]).events
    write = timed(
        lambda: (
            events.write.mode("overwrite")
            .option("partitionOverwriteMode", "dynamic")
            .partitionBy(RUN_COLUMN)
            .parquet(output)
        )
    )
    return {"read": read, "write": write}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--events", type=int, default=10_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_s3a_"))
    try:
        archive = work / "archive"
        write_sample_archive(archive, runs=args.runs, events_per_run=args.events, seed=3)
        megabytes = sum(f.stat().st_size for f in archive.rglob("*") if f.is_file()) / 1e6
        with local_aws_emulator():
            import boto3

            boto3.client("s3").create_bucket(Bucket=BUCKET)
            upload_folder(str(archive), f"s3://{BUCKET}/archive/")
            spark = get_or_create_spark(
                "bench_s3a", master="local[2]", s3_locations=[f"s3://{BUCKET}/"]
            )
            spark.sparkContext.setLogLevel("ERROR")
            measure(spark, str(archive) + "/", str(work / "warm"))  # JIT, caches
            local = measure(spark, str(archive) + "/", str(work / "out"))
            s3a = measure(spark, f"s3a://{BUCKET}/archive/", f"s3a://{BUCKET}/out/")
        print(f"{args.runs} runs x {args.events} events, {megabytes:.1f} MB of TSV, local[2]")
        print(f"{'':24}{'local':>10}{'s3a (moto)':>14}{'ratio':>8}")
        for name, label in (("read", "read.text -> count"), ("write", "parse -> Parquet")):
            ratio = s3a[name] / local[name]
            print(
                f"{label:24}{local[name]:>9.2f}s{s3a[name]:>13.2f}s{ratio:>7.1f}x"
                f"   ({megabytes / local[name]:.0f} vs {megabytes / s3a[name]:.0f} MB/s)"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
