"""Running the job from a command (``process``, ``demo``): the source its options configure,
the Spark session it starts on demand, and the progress and summary it prints."""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any

from .._spark import get_or_create_spark
from ..source import ManifestedRunSource
from . import _display


def make_source(
    args: argparse.Namespace,
    archive: str,
    output: str,
    job: str,
    *,
    table_format: str = "parquet",
    **options: Any,
) -> ManifestedRunSource:
    """The ``ManifestedRunSource`` of job ``job``, configured by the options of every command
    that runs the job (``add_where``, ``add_spark_options``); ``options`` are more arguments
    of the source, from the command's own options, and ``table_format`` the output's."""
    return ManifestedRunSource(
        archive,
        output=output,
        # Started when a batch is read: a job with nothing to do, or a bad argument, costs
        # no JVM start.
        spark=functools.partial(_spark, args, (archive, output), table_format),
        manifest=args.manifest,
        state=args.state,
        job_name=job,
        max_runs_per_batch=args.max_runs_per_batch,
        max_bytes_per_batch=args.max_bytes_per_batch,
        fail_fast=args.fail_fast,
        s3_setup=args.s3_setup,
        transform=args.transform,
        **options,
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


def _spark_config(table_format: str) -> dict[str, str]:
    # The command draws its own progress; Spark's stage bars would write over it.
    config = {"spark.ui.showConsoleProgress": "false"}
    if table_format != "parquet":
        from .._packages import table_format_spark_config

        config.update(table_format_spark_config(table_format))
    return config


def _spark(args: argparse.Namespace, locations: tuple[str, str], table_format: str) -> Any:
    """The session of a job reading and writing ``locations`` (archive, output)."""
    spark = get_or_create_spark(
        "spark-manifests",
        master=args.master,
        config=_spark_config(table_format),
        s3_locations=locations,
        s3_setup=args.s3_setup,
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
