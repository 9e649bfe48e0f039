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


def make_source(args: argparse.Namespace, archive: str, output: str, job: str) -> Any:
    """The ``ManifestedRunSource`` of job ``job``, configured by the command's options."""
    return ManifestedRunSource(
        archive,
        output=output,
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
    )


def _spark(args: argparse.Namespace) -> Any:
    # The command draws its own progress; Spark's stage bars would write over it.
    spark = get_or_create_spark(
        "spark-manifests", master=args.master, config={"spark.ui.showConsoleProgress": "false"}
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
