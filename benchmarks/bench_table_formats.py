"""Table-format benchmark: one backlog written as Parquet, Delta Lake and Iceberg side by side.

Builds a backlog (default 200 runs x 500 events, 5% bad lines), then in one Spark session
times the whole job (default batching, embedded SQLite manifest, local state) with each sink:
``ParquetSink``, ``DeltaSink``, ``IcebergSink`` (Hadoop catalog on a local warehouse). Each
output is read back and checked: every event once.

Target: Delta and Iceberg within 1.3x of Parquet.

Needs a pyspark both formats support (see docs/delta.md); the jars come from Maven Central
into the Ivy cache ``--ivy``.

    python benchmarks/bench_table_formats.py [--runs 200] [--events 500] [--ivy DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

from bench_backlog import timed_job
from pyspark.sql import DataFrame, SparkSession

from spark_manifests import ParquetSink, write_sample_archive
from spark_manifests._packages import table_format_spark_config
from spark_manifests.delta_sink import DeltaSink
from spark_manifests.iceberg_sink import IcebergSink


def start_spark(ivy: str | None) -> SparkSession:
    """local[2] with both formats' packages and extensions."""
    config = table_format_spark_config(("delta", "iceberg"), ivy=ivy)
    builder = SparkSession.builder.master("local[2]").appName("bench_table_formats")
    for key, value in config.items():
        builder = builder.config(key, value)
    spark = (
        builder.config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.databricks.delta.snapshotPartitions", "2")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def warm_up(spark: SparkSession, work: Path) -> None:
    """A small untimed job per format first: the JVM's warm-up (JIT, class loading of each
    format) otherwise lands on whichever format runs first."""
    archive = work / "warm_up_archive"
    write_sample_archive(archive, runs=3, events_per_run=50, files_per_run=1)
    sinks = {
        "parquet": ParquetSink(str(work / "warm_up_parquet")),
        "delta": DeltaSink(work / "warm_up_delta", spark=spark),
        "iceberg": IcebergSink(str(work / "warm_up_warehouse"), catalog="warm_up", spark=spark),
    }
    for name, sink in sinks.items():
        timed_job(spark, archive, work / "warm_up", f"warm_up_{name}", sink=sink)


def check_once(events: DataFrame, expected: int) -> None:
    count = events.count()
    distinct = events.select("event_id").distinct().count()
    assert count == distinct == expected, (count, distinct, expected)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--ivy", default=None, help="Ivy cache for the Delta/Iceberg jars")
    parser.add_argument(
        "--order",
        default="parquet,delta,iceberg",
        help="the order the formats run in (the first pays for the warm-up of the JVM)",
    )
    args = parser.parse_args(argv)
    spark = start_spark(args.ivy)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        archive = work / "archive"
        write_sample_archive(
            archive,
            runs=args.runs,
            events_per_run=args.events,
            files_per_run=2,
            bad_line_ratio=0.05,
        )
        print(f"backlog: {args.runs} runs x {args.events} events, spark {spark.version}")
        warm_up(spark, work)
        sinks: dict[str, tuple[Any, Callable[[], DataFrame]]] = {}
        parquet = ParquetSink(str(work / "parquet"))
        delta = DeltaSink(work / "delta", spark=spark)
        iceberg = IcebergSink(str(work / "warehouse"), catalog="bench", spark=spark)
        sinks["parquet"] = (parquet, lambda: spark.read.parquet(str(work / "parquet" / "events")))
        sinks["delta"] = (
            delta,
            lambda: spark.read.format("delta").load(delta.table_name("events")),
        )
        sinks["iceberg"] = (iceberg, lambda: spark.read.table(iceberg.table_name("events")))
        seconds = {
            name: timed_job(spark, archive, work, name, sink=sinks[name][0])
            for name in args.order.split(",")
        }
        expected = sinks["parquet"][1]().count()
        for _, read in sinks.values():
            check_once(read(), expected)
    for name in ("delta", "iceberg"):
        ratio = seconds[name] / seconds["parquet"]
        verdict = "meets" if ratio <= 1.3 else "misses"
        print(f"{name} / parquet = {ratio:.2f}x ({verdict} the 1.3x target)")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
