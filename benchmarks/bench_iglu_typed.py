"""Typed entity columns benchmark: read_enriched with ``iglu=`` beside the JSON-text reader.

Generates N events (default 200,000) in 8 part files of one run folder (the sample archive
of ``spark_manifests.samples``), writes a static Iglu repository with a schema for every
entity the samples hold, then times on local[2], each variant --repeat times:

- JSON text: ``read_enriched(spark, run)`` (schema scan included) -> noop write of events;
- typed: ``read_enriched(spark, run, iglu=[repository])`` (scan, schema fetches, parse and
  checks included) -> noop write of events;
- with ``--bad-rows``: both variants also write their bad rows.

Target: typed at most 1.3x the JSON-text reader (medians of rounds that run one of each,
interleaved, so both variants see the same load on a shared machine).

    python benchmarks/bench_iglu_typed.py [--events 200000] [--repeat 3] [--bad-rows]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

import pyspark
from pyspark.sql import SparkSession

from spark_manifests.enriched import EnrichedRead, read_enriched
from spark_manifests.samples import write_sample_archive

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_enriched_reader import timed

TYPED_TARGET = 1.3  # typed seconds / JSON-text seconds, at most

STRING = {"type": "string"}
STRINGS = {"type": "array", "items": STRING}
SP = "com.snowplowanalytics.snowplow"
PRODUCT = {"sku": STRING, "name": STRING, "category": STRING, "price": {"type": "number"}}
#: A schema (its properties) for every entity and event of the sample archive.
SCHEMAS: dict[str, dict[str, Any]] = {
    f"{SP}/web_page/jsonschema/1-0-0": {"id": STRING},
    "com.acme/product/jsonschema/1-0-0": PRODUCT,
    "com.acme/product/jsonschema/1-0-1": {**PRODUCT, "tags": STRINGS},
    "com.google.analytics/cookies/jsonschema/1-0-0": {"__utma": STRING, "_ga": STRING},
    "com.acme.marketing/ABTest/jsonschema/2-1-0": {
        "experiment": STRING,
        "variant": STRING,
        "page": STRING,
    },
    f"{SP}/ua_parser_context/jsonschema/1-0-0": {
        **{key: STRING for key in ("useragentFamily", "useragentMajor", "useragentMinor")},
        **{key: STRING for key in ("osFamily", "deviceFamily")},
        "useragentPatch": {"type": ["string", "null"]},
    },
    "org.w3/PerformanceTiming/jsonschema/1-0-0": {
        "navigationStart": {"type": "integer"},
        "domComplete": {"type": "integer"},
    },
    "com.iab.snowplow/spiders_and_robots/jsonschema/1-0-0": {
        "spiderOrRobot": {"type": "boolean"},
        "category": STRING,
        "reason": STRING,
    },
    f"{SP}/link_click/jsonschema/1-0-1": {
        "targetUrl": STRING,
        "elementId": STRING,
        "elementClasses": STRINGS,
        "elementTarget": STRING,
    },
    f"{SP}/submit_form/jsonschema/1-0-0": {
        "formId": STRING,
        "formClasses": STRINGS,
        "elements": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": STRING,
                    "value": {"type": ["string", "null"]},
                    "nodeName": STRING,
                    "type": STRING,
                },
            },
        },
    },
    "com.acme.shop/AddToBasket/jsonschema/2-0-0": {
        "sku": STRING,
        "quantity": {"type": "integer", "minimum": 0, "maximum": 1000},
    },
}


def write_repository(root: Path) -> str:
    for uri, properties in SCHEMAS.items():
        path = root / "schemas" / uri
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"type": "object", "properties": properties}))
    return str(root)


def write(read: EnrichedRead, bad_rows: bool) -> None:
    read.events.write.format("noop").mode("overwrite").save()
    if bad_rows:
        read.bad_rows.write.format("noop").mode("overwrite").save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per variant")
    parser.add_argument("--bad-rows", action="store_true", help="also write the bad rows")
    args = parser.parse_args()

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("bench_iglu_typed")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    with tempfile.TemporaryDirectory(prefix="bench_iglu_") as scratch:
        root = Path(scratch)
        write_sample_archive(
            root / "archive", runs=1, events_per_run=args.events, files_per_run=args.files, seed=0
        )
        path = str(next((root / "archive").glob("run=*")))
        repository = write_repository(root / "iglu")
        print(
            f"{args.events:,} events in {args.files} files, local[2], Spark {pyspark.__version__}, "
            f"median of {args.repeat}"
        )
        typed_read = read_enriched(spark, path, iglu=[repository])
        typed_count = typed_read.events.count()
        assert typed_count == args.events, f"{typed_count} typed events of {args.events}"

        def json_text() -> None:
            write(read_enriched(spark, path), args.bad_rows)

        def typed() -> None:
            write(read_enriched(spark, path, iglu=[repository]), args.bad_rows)

        # One untimed round first: the JIT compiles each variant's code on its first runs
        # (without it the typed/JSON ratio fell round after round: 2.52, 1.76, 1.26).
        json_text()
        typed()

        # Interleaved, one run of each per round: on a shared machine the load drifts, and
        # rounds compare the variants under the same load.
        json_runs, typed_runs = [], []
        for _ in range(args.repeat):
            json_runs.append(
                timed("read_enriched, JSON text -> noop", json_text, 1, args.events, spark)
            )
            typed_runs.append(
                timed("read_enriched, iglu typed -> noop", typed, 1, args.events, spark)
            )
    spark.stop()
    ratio = statistics.median(typed_runs) / statistics.median(json_runs)
    per_round = ", ".join(f"{t / j:.2f}" for t, j in zip(typed_runs, json_runs))
    met = "met" if ratio <= TYPED_TARGET else "MISSED"
    print(f"\ntyped / JSON text (medians): {ratio:5.2f}x  (target <= {TYPED_TARGET}x)  {met}")
    print(f"typed / JSON text per round: {per_round}")


if __name__ == "__main__":
    main()
