"""Enriched-event reader benchmark: read_enriched against the CSV floor and the Snowplow SDK.

Generates N events (default 500,000) in 8 part files of one run folder, then times, on
local[2], each variant --repeat times and prints the median seconds and rows/s:

- floor: ``spark.read.csv`` (tab-separated, ``quote=""``, 131 string columns) -> noop write;
- hand-written: what a user writes in ten lines: ``spark.read.csv`` typed, PERMISSIVE with a
  corrupt-record column, then ``from_json`` of contexts, derived_contexts and unstruct_event
  into ``array<struct<schema, data: string>>`` -> noop write;
- cold: ``read_enriched`` with shredding, its schema discovery scan included -> noop write;
- warm: ``read_enriched`` given the entity schemas (no scan; the schemas met are observed
  during the write) -> noop write;
- SDK count: the Snowplow SDK's ``transform`` over ``sc.textFile(...).map(...)`` -> count();
- SDK DataFrame: ``transform`` -> ``json.dumps`` -> ``spark.read.json`` -> noop write, as
  SDK users build a DataFrame.

Targets: warm at most 1.1x the hand-written reader, cold at most 1.35x, and the SDK
DataFrame path at least 8x slower than warm. ``--extras`` also times each line split into
its 131 fields (the least a reader of lines does), the reader without shredding, and the
warm reader writing both its events and its bad rows (what a sink does).

    python benchmarks/bench_enriched_reader.py [--events 500000] [--repeat 3] [--extras] [--no-sdk]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

import pyspark
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from spark_manifests import _enriched_sql as sql
from spark_manifests.enriched import ENRICHED_EVENT_FIELDS, EntitySchemas, read_enriched
from spark_manifests.samples import write_sample_archive

WARM_TARGET = 1.1  # warm seconds / hand-written seconds, at most
COLD_TARGET = 1.35  # cold seconds / hand-written seconds, at most
SDK_TARGET = 8.0  # SDK DataFrame seconds / warm seconds, at least


def noop(frame: DataFrame) -> None:
    frame.write.format("noop").mode("overwrite").save()


def floor(spark: SparkSession, path: str) -> None:
    schema = T.StructType(
        [T.StructField(name, T.StringType()) for name, _ in ENRICHED_EVENT_FIELDS]
    )
    noop(spark.read.csv(path, schema=schema, sep="\t", quote="", header=False))


def hand_written(spark: SparkSession, path: str) -> None:
    """Typed read.csv (PERMISSIVE, corrupt-record column) and from_json of the JSON fields."""
    from pyspark.sql import functions as F

    kinds = {"int": T.IntegerType(), "double": T.DoubleType(), "tstamp": T.TimestampType()}
    fields = [
        T.StructField(name, kinds.get(kind, T.StringType())) for name, kind in ENRICHED_EVENT_FIELDS
    ]
    schema = T.StructType([*fields, T.StructField("_corrupt_record", T.StringType())])
    events = spark.read.csv(
        path,
        schema=schema,
        sep="\t",
        quote="",
        mode="PERMISSIVE",
        columnNameOfCorruptRecord="_corrupt_record",
    )
    entity = "struct<schema: string, data: string>"
    parsed = {
        name: F.from_json(name, f"struct<data: array<{entity}>>").data
        for name in ("contexts", "derived_contexts")
    }
    parsed["unstruct_event"] = F.from_json("unstruct_event", f"struct<data: {entity}>").data
    bools = {name: F.col(name) == "1" for name, kind in ENRICHED_EVENT_FIELDS if kind == "bool"}
    noop(events.withColumns({**bools, **parsed}))


def split_fields(spark: SparkSession, path: str) -> None:
    """The least any Spark-native reader does: each line split into its 131 fields."""
    fields = spark.read.text(path).selectExpr(*sql.field_columns())  # the reader's own split
    noop(
        fields.selectExpr(
            *[f"{sql.field_raw(i)} AS f{i}" for i in range(len(ENRICHED_EVENT_FIELDS))]
        )
    )


def reader(spark: SparkSession, path: str, *, shred: bool = True) -> None:
    noop(read_enriched(spark, path, shred=shred).events)


def warm_reader(spark: SparkSession, path: str, schemas: EntitySchemas) -> None:
    read = read_enriched(spark, path, entity_schemas=schemas)
    noop(read.events)
    assert not read.unknown_schemas(), read.unknown_schemas()


def warm_with_bad_rows(spark: SparkSession, path: str, schemas: EntitySchemas) -> None:
    read = read_enriched(spark, path, entity_schemas=schemas)
    noop(read.events)
    if read.lines_read() != read.events.count():
        noop(read.bad_rows)


def sdk_count(spark: SparkSession, path: str) -> None:
    from snowplow_analytics_sdk.event_transformer import transform

    spark.sparkContext.textFile(path).map(transform).count()


def sdk_dataframe(spark: SparkSession, path: str) -> None:
    from snowplow_analytics_sdk.event_transformer import transform

    lines = spark.sparkContext.textFile(path)
    noop(spark.read.json(lines.map(lambda line: json.dumps(transform(line)))))


def jvm_cpu_seconds(spark: SparkSession) -> float | None:
    """CPU seconds the Spark JVM used so far (Linux), which other processes on a shared
    machine disturb far less than wall time; ``None`` elsewhere."""
    pid = spark._jvm.java.lang.ProcessHandle.current().pid()  # type: ignore[union-attr]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(
    label: str, run: Callable[[], None], repeat: int, events: int, spark: SparkSession
) -> float:
    seconds, cpu = [], []
    for _ in range(repeat):
        cpu_before = jvm_cpu_seconds(spark)
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
        cpu_after = jvm_cpu_seconds(spark)
        if cpu_before is not None and cpu_after is not None:
            cpu.append(cpu_after - cpu_before)
    median = statistics.median(seconds)
    runs = ", ".join(f"{s:.2f}" for s in seconds)
    jvm = f"{statistics.median(cpu):7.2f} s JVM CPU" if cpu else ""
    print(
        f"{label:<44} {median:8.2f} s {events / median:10,.0f} rows/s {jvm}  [{runs}]",
        flush=True,
    )
    return median


def sample_run(folder: Path, events: int, files: int) -> str:
    """The run folder of generated events, made once per (events, files) in ``folder``."""
    root = folder / f"enriched-{events}-{files}"
    done = root / "_COMPLETE"
    if not done.exists():
        started = time.perf_counter()
        write_sample_archive(root, runs=1, events_per_run=events, files_per_run=files, seed=0)
        done.touch()
        print(f"Generated {events:,} events in {time.perf_counter() - started:.0f} s")
    return str(next(root.glob("run=*")))


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per variant")
    parser.add_argument("--data", type=Path, help="keep generated events here for reuse")
    parser.add_argument("--extras", action="store_true", help="also time reader variants")
    parser.add_argument("--no-sdk", action="store_true", help="skip the two SDK variants")
    args = parser.parse_args()

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("bench_enriched_reader")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    with tempfile.TemporaryDirectory(prefix="bench_enriched_") as scratch:
        path = sample_run(args.data or Path(scratch), args.events, args.files)
        size = sum(f.stat().st_size for f in Path(path).glob("part-*"))
        print(
            f"{args.events:,} events in {args.files} files ({size / 1e6:,.0f} MB), local[2], "
            f"Spark {pyspark.__version__}, median of {args.repeat}"
        )
        # Warm the JVM (JIT, code generation) so the first timed variant is not penalised.
        floor(spark, path)
        schemas = read_enriched(spark, path).schemas_met()
        warm_reader(spark, path, schemas)

        def time_it(label: str, run: Callable[[SparkSession, str], None]) -> float:
            return timed(label, lambda: run(spark, path), args.repeat, args.events, spark)

        floor_s = time_it("floor: read.csv 131 strings -> noop", floor)
        hand_s = time_it("hand-written: typed read.csv + from_json", hand_written)
        cold_s = time_it("read_enriched cold (schema scan) -> noop", reader)
        warm_s = time_it(
            "read_enriched warm (schemas given) -> noop", lambda s, p: warm_reader(s, p, schemas)
        )
        if args.extras:
            time_it("lower bound: split into 131 strings -> noop", split_fields)
            time_it("read_enriched, shred=False -> noop", lambda s, p: reader(s, p, shred=False))
            time_it(
                "read_enriched warm -> events + bad rows",
                lambda s, p: warm_with_bad_rows(s, p, schemas),
            )
        count_s = frame_s = float("nan")
        if not args.no_sdk:
            count_s = time_it("SDK transform via textFile().map() -> count", sdk_count)
            frame_s = time_it("SDK transform -> json.dumps -> read.json -> noop", sdk_dataframe)
    spark.stop()
    print_ratios(floor_s, hand_s, cold_s, warm_s, count_s, frame_s)


def print_ratios(
    floor_s: float, hand_s: float, cold_s: float, warm_s: float, count_s: float, frame_s: float
) -> None:
    print(f"\nhand-written / floor:    {hand_s / floor_s:5.2f}x")
    print(f"cold / floor:            {cold_s / floor_s:5.2f}x")
    print(f"warm / floor:            {warm_s / floor_s:5.2f}x")
    warm, cold, sdk = warm_s / hand_s, cold_s / hand_s, frame_s / warm_s
    print(
        f"warm / hand-written:     {warm:5.2f}x  (target <= {WARM_TARGET}x)  "
        f"{verdict(warm <= WARM_TARGET)}"
    )
    print(
        f"cold / hand-written:     {cold:5.2f}x  (target <= {COLD_TARGET}x)  "
        f"{verdict(cold <= COLD_TARGET)}"
    )
    if count_s != count_s:  # NaN: --no-sdk
        return
    print(
        f"SDK DataFrame / warm:    {sdk:5.2f}x  (target >= {SDK_TARGET}x)  "
        f"{verdict(sdk >= SDK_TARGET)}"
    )
    print(f"SDK count / warm:        {count_s / warm_s:5.2f}x")


if __name__ == "__main__":
    main()
