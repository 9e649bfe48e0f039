"""Running the job from a command (``process``, ``demo``): the source its options configure,
the Spark session it starts on demand, and the progress and summary it prints."""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any

from .._discovery import DEFAULT_RECONCILE_SECONDS
from .._spark import get_or_create_spark
from ..source import ManifestedRunSource
from . import _display

#: The output formats of ``process --format``.
FORMATS = ("parquet", "delta", "iceberg")


def make_source(args: argparse.Namespace, archive: str, output: str, job: str) -> Any:
    """The ``ManifestedRunSource`` of job ``job``, configured by the command's options."""
    return ManifestedRunSource(
        archive,
        output=output,
        sink=_table_sink(args, output),
        s3_setup=getattr(args, "s3_setup", True),
        # Started when a batch is read: a job with nothing to do, or a bad argument, costs
        # no JVM start.
        spark=functools.partial(_spark, args) if getattr(args, "needs_spark", False) else None,
        manifest=args.manifest,
        state=args.state,
        job_name=job,
        max_runs_per_batch=args.max_runs_per_batch,
        max_bytes_per_batch=args.max_bytes_per_batch,
        since=getattr(args, "since", None),
        until=getattr(args, "until", None),
        limit=getattr(args, "limit", None),
        fail_fast=getattr(args, "fail_fast", False),
        take_over=getattr(args, "take_over", False),
        settle_seconds=getattr(args, "settle", 0),
        reconcile_seconds=getattr(args, "reconcile_every", DEFAULT_RECONCILE_SECONDS),
        full_scan=getattr(args, "full_scan", False),
        transform=getattr(args, "transform", None),
        iglu=iglu_option(getattr(args, "iglu", None)),
    )


def iglu_option(values: list[str] | None) -> str | list[str] | None:
    """The ``--iglu`` values as ``iglu=`` takes them: one ``.json`` file is a resolver
    configuration; otherwise the values are static repositories."""
    if not values:
        return None
    configs = [value for value in values if value.lower().endswith(".json")]
    if not configs:
        return values
    if len(values) > 1:
        raise ValueError(
            f"--iglu {configs[0]} is a resolver configuration: give it alone (its "
            "repositories are listed in it), or give repositories only"
        )
    return configs[0]


def _table_sink(args: argparse.Namespace, output: str) -> Any:
    """The Delta or Iceberg sink of ``--format``; ``None`` for the default Parquet sink."""
    table_format = getattr(args, "format", "parquet")
    if table_format == "delta":
        from ..delta_sink import DeltaSink

        return DeltaSink(output)
    if table_format == "iceberg":
        from ..iceberg_sink import IcebergSink

        return IcebergSink(output, catalog=args.iceberg_catalog, namespace=args.iceberg_namespace)
    return None


def _spark_config(args: argparse.Namespace) -> dict[str, str]:
    # The command draws its own progress; Spark's stage bars would write over it.
    config = {"spark.ui.showConsoleProgress": "false"}
    table_format = getattr(args, "format", "parquet")
    if table_format != "parquet":
        from .._packages import table_format_spark_config

        config.update(table_format_spark_config(table_format))
    return config


def _spark(args: argparse.Namespace) -> Any:
    spark = get_or_create_spark(
        "spark-manifests",
        master=args.master,
        config=_spark_config(args),
        s3_locations=(args.archive, args.output) if hasattr(args, "archive") else (),
        s3_setup=getattr(args, "s3_setup", True),
    )
    if sys.stderr.isatty():
        # Spark's warnings would break the progress line; in a log (a scheduler's, a
        # cluster's driver log) they stay, for lost executors and retried reads.
        spark.sparkContext.setLogLevel("ERROR")
    return spark


def run_source(source: Any) -> Any:
    """Run the job with a progress display; print and return its summary."""
    display = _display.ProgressDisplay(sys.stderr)
    source.on("progress", display.progress).on("run_committed", display.committed)
    try:
        with source:
            summary = source.run()
    finally:
        display.finish()
    try:
        _display.print_summary(summary)
    except BrokenPipeError:  # `| head`: the exit status must still tell of failed runs
        _display.stdout_to_devnull()
    for run_id, message in summary.failures.items():
        print(f"  FAILED {run_id}: {message}", file=sys.stderr)
    return summary
