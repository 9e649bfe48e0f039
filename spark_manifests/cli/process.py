"""``spark-manifests process``: process the pending runs of an archive."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .._discovery import DEFAULT_RECONCILE_SECONDS
from ._job import iglu_option, make_source, run_source
from ._options import DEFAULT_JOB, add_command, add_spark_options, add_where, add_window

if TYPE_CHECKING:
    from ._options import Subcommands

#: The output formats of ``process --format``.
FORMATS = ("parquet", "delta", "iceberg")


def register(commands: Subcommands) -> None:
    """Add the ``process`` command to ``commands``."""
    process = add_command(commands, "process", handle, "process the pending runs of an archive")
    process.add_argument("--archive", required=True, help="s3://bucket/prefix/ or a local path")
    process.add_argument(
        "--output",
        required=True,
        help="where the output goes: a folder (Parquet, Delta) or an Iceberg warehouse",
    )
    _add_format_options(process)
    process.add_argument(
        "--job",
        default=DEFAULT_JOB,
        help="job name: names the state files and the claims (default: %(default)s)",
    )
    add_where(process)
    add_window(process)
    process.add_argument("--limit", type=int, help="process at most this many runs")
    process.add_argument(
        "--settle",
        type=float,
        default=0,
        metavar="SECONDS",
        help="leave a run for a later start while its newest file is younger than this "
        "(for runs still being copied into the archive; default: %(default)s)",
    )
    _add_discovery_options(process)
    process.add_argument(
        "--take-over",
        action="store_true",
        help="resume the job's state even if its last run may still be at work "
        "(only when that run is known to be dead)",
    )
    process.add_argument(
        "--iglu",
        action="append",
        metavar="REPOSITORY",
        help="type the entity columns from their Iglu schemas: a resolver configuration "
        "file (.json), or a static repository (folder, s3:// prefix, http(s):// URL); "
        "repeat for several repositories, asked in the order given",
    )
    add_spark_options(process)


def _add_format_options(process: argparse.ArgumentParser) -> None:
    """The output's table format, and where an Iceberg table's catalog is."""
    process.add_argument(
        "--format",
        choices=FORMATS,
        default="parquet",
        help="the output's table format (default: %(default)s); delta and iceberg need the "
        "[delta] / [iceberg] extras",
    )
    # No parser defaults: IcebergSink has them, and a value given is checked to apply.
    process.add_argument(
        "--iceberg-catalog",
        help="with --format iceberg: the catalog; a Hadoop catalog on --output unless the "
        "session configures this name (Glue, REST) (default: spark_manifests)",
    )
    process.add_argument(
        "--iceberg-namespace",
        help="with --format iceberg: the tables' namespace (default: snowplow)",
    )


def _add_discovery_options(process: argparse.ArgumentParser) -> None:
    """How a start finds new runs: from the watermark, with a full listing now and then."""
    process.add_argument(
        "--reconcile-every",
        type=float,
        default=DEFAULT_RECONCILE_SECONDS,
        metavar="SECONDS",
        help="list the whole archive when its last full listing is this old, to find runs "
        "copied late below the watermark; other starts list from the watermark on "
        "(0: every start; default: %(default)s, a day)",
    )
    process.add_argument(
        "--full-scan",
        action="store_true",
        help="list the whole archive at this start (a reconciliation now)",
    )


def handle(args: argparse.Namespace) -> int:
    """Run the job once; 1 when a run failed."""
    source = make_source(
        args,
        args.archive,
        args.output,
        args.job,
        table_format=args.format,
        sink=_table_sink(args),
        since=args.since,
        until=args.until,
        limit=args.limit,
        settle_seconds=args.settle,
        reconcile_seconds=args.reconcile_every,
        full_scan=args.full_scan,
        take_over=args.take_over,
        iglu=iglu_option(args.iglu),
    )
    summary = run_source(source)
    return 0 if summary.ok else 1


def _table_sink(args: argparse.Namespace) -> Any:
    """The Delta or Iceberg sink of ``--format``; ``None`` for the default Parquet sink."""
    iceberg = {"catalog": args.iceberg_catalog, "namespace": args.iceberg_namespace}
    given = {name: value for name, value in iceberg.items() if value is not None}
    if given and args.format != "iceberg":
        raise ValueError(
            f"--iceberg-{next(iter(given))} applies to --format iceberg, not --format "
            f"{args.format}: drop it, or add --format iceberg."
        )
    if args.format == "delta":
        from ..delta_sink import DeltaSink

        return DeltaSink(args.output)
    if args.format == "iceberg":
        from ..iceberg_sink import IcebergSink

        return IcebergSink(args.output, **given)
    return None
