"""Backlog benchmark: a backlog of many small runs, one Spark job per run vs batched.

Builds a backlog (default 200 runs x 2,500 events), then in one run times, on local[2] with
the embedded SQLite manifest and a local state directory:

- one job per run: ``max_runs_per_batch=1``;
- batched: the default batching;
- single run: the same event files in one run folder (no per-run cost at all);
- floor: ``spark.read.csv`` of the same files (131 strings: no types, no JSON, no bad rows,
  no manifest) written as Parquet partitioned by run, the least any job writing these events
  does; with less time than this, the 10x target cannot be met on the machine.

Targets: batched at least 10x faster than one job per run, within 1.5x of the single run,
and within 1.3x of the floor job.

    python benchmarks/bench_backlog.py [--runs 200] [--events 2500]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

from pyspark.sql import SparkSession

from spark_manifests import (
    ManifestedRunSource,
    SQLiteRunManifest,
    StateStore,
    write_sample_archive,
)
from spark_manifests._enriched_sql import RUN_LABEL_PATTERN
from spark_manifests.enriched import ENRICHED_EVENT_FIELDS as FIELDS


def single_run_archive(backlog: Path, target: Path) -> Path:
    """The backlog's files hard-linked into one run folder: the same events, one run."""
    run = target / "run=2030-01-01-00-00-00"
    run.mkdir(parents=True)
    for number, file in enumerate(sorted(backlog.glob("run=*/*"))):
        os.link(file, run / f"part-{number:05d}{''.join(file.suffixes)}")
    return target


def timed_job(spark: SparkSession, archive: Path, work: Path, name: str, **options) -> float:
    source = ManifestedRunSource(
        str(archive),
        spark=spark,
        output=str(work / name / "output"),
        manifest=SQLiteRunManifest(str(work / name / "manifest.sqlite")),
        state=StateStore(str(work / name / "state")),
        job_name=name,
        **options,
    )
    started = time.perf_counter()
    summary = source.run()
    seconds = time.perf_counter() - started
    print(
        f"{name:<18} {seconds:8.2f} s  {summary.batches:4d} batches  "
        f"{summary.runs_committed:4d} runs  {summary.rows_in:,} rows"
    )
    return seconds


def floor_job(spark: SparkSession, backlog: Path, work: Path) -> float:
    """The backlog's files as 131 strings, written as Parquet partitioned by run."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    strings = T.StructType([T.StructField(name, T.StringType()) for name, _ in FIELDS])
    files = [str(file) for file in sorted(backlog.glob("run=*/*"))]
    started = time.perf_counter()
    events = spark.read.csv(files, schema=strings, sep="\t", quote="", header=False)
    run = F.regexp_extract(F.input_file_name(), RUN_LABEL_PATTERN, 1)
    events.withColumn("run", run).write.partitionBy("run").parquet(str(work / "floor"))
    seconds = time.perf_counter() - started
    print(f"{'floor':<18} {seconds:8.2f} s  read.csv 131 strings -> Parquet by run")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--events", type=int, default=2500, help="events per run")
    args = parser.parse_args()

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("bench_backlog")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    with tempfile.TemporaryDirectory(prefix="bench_backlog_") as scratch:
        work = Path(scratch)
        backlog = work / "backlog"
        write_sample_archive(
            backlog,
            runs=args.runs,
            events_per_run=args.events,
            files_per_run=1,
            compress=True,
            seed=1,
        )
        single = single_run_archive(backlog, work / "single")
        print(f"Backlog: {args.runs} runs x {args.events:,} events, local[2]")
        timed_job(spark, single, work, "warm-up", limit=1)
        per_run = timed_job(spark, backlog, work, "one-job-per-run", max_runs_per_batch=1)
        batched = timed_job(spark, backlog, work, "batched")
        one_run = timed_job(spark, single, work, "single-run")
        floor = floor_job(spark, backlog, work)
    print(f"\nbatched vs one-job-per-run: {per_run / batched:5.1f}x faster  (target >= 10x)")
    print(f"batched vs single run:      {batched / one_run:5.2f}x slower  (target <= 1.5x)")
    print(f"batched vs floor job:       {batched / floor:5.2f}x slower  (target <= 1.3x)")
    print(
        f"10x allows batched {per_run / 10:.2f} s; the floor job took {floor:.2f} s "
        f"({per_run / floor:.1f}x faster than one job per run)"
    )
    spark.stop()


if __name__ == "__main__":
    main()
