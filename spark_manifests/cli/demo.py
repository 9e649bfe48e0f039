"""``spark-manifests demo``: make a sample archive and run the job on it twice."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from .._demo_aws import DEMO_JOB
from ..source import DEFAULT_MAX_BYTES_PER_BATCH, DEFAULT_MAX_RUNS_PER_BATCH, default_home
from ._job import make_source, run_source
from ._options import add_command, add_spark_options, add_where

if TYPE_CHECKING:
    from ._options import Subcommands


def register(commands: Subcommands) -> None:
    """Add the ``demo`` command to ``commands``."""
    demo = add_command(
        commands,
        "demo",
        handle,
        "make a sample archive and run the job on it twice, on the embedded default",
    )
    demo.add_argument(
        "--dir", help="where the demo archive and output go (default: demo/ under the home)"
    )
    demo.add_argument("--runs", type=int, default=6, help="runs in the sample archive")
    demo.add_argument(
        "--events", type=int, default=2000, help="events per run (default: %(default)s)"
    )
    demo.add_argument(
        "--aws",
        action="store_true",
        help="the production shape with no account: a local S3 + DynamoDB emulator (moto, "
        "from the [demo] extra), the archive, output and state on S3, the manifest in DynamoDB",
    )
    add_where(demo)
    add_spark_options(demo)


def handle(args: argparse.Namespace) -> int:
    """Write the sample archive if it is not there, then run the job on it twice."""
    _check_size(args)
    if args.aws:
        from .._demo_aws import run_aws_demo

        _refuse_options_aws_ignores(args)

        return run_aws_demo(runs=args.runs, events_per_run=args.events, master=args.master)
    home = os.path.abspath(args.dir or os.path.join(default_home(), "demo"))
    archive, output = os.path.join(home, "archive"), os.path.join(home, "output")
    _ensure_sample_archive(args, archive)
    args.manifest = args.manifest or os.path.join(default_home(), "manifest.sqlite")
    args.state = args.state or os.path.join(default_home(), "state")
    summaries = _run_twice(args, archive, output)
    if summaries is None:
        return 1
    _print_outcome(args, home, output, first=summaries[0])
    return 0


def _check_size(args: argparse.Namespace) -> None:
    if args.runs < 1 or args.events < 1:
        raise ValueError(
            "The demo needs at least 1 run of 1 event, "
            f"not --runs {args.runs} --events {args.events}."
        )


def _refuse_options_aws_ignores(args: argparse.Namespace) -> None:
    """``--aws`` keeps everything in its emulator and runs with the default batches: an
    option that would say otherwise is refused rather than silently dropped."""
    given = {
        "--dir": args.dir is not None,
        "--manifest": args.manifest is not None,
        "--state": args.state is not None,
        "--max-runs-per-batch": args.max_runs_per_batch != DEFAULT_MAX_RUNS_PER_BATCH,
        "--max-bytes-per-batch": args.max_bytes_per_batch != DEFAULT_MAX_BYTES_PER_BATCH,
        "--fail-fast": args.fail_fast,
        "--no-s3-setup": not args.s3_setup,
    }
    ignored = [flag for flag, is_given in given.items() if is_given]
    if ignored:
        raise ValueError(
            f"demo --aws keeps its archive, output, manifest and state in the emulator and "
            f"sets up S3 itself: drop {', '.join(ignored)} (only --runs, --events and "
            "--master apply)."
        )


def _ensure_sample_archive(args: argparse.Namespace, archive: str) -> None:
    """Write the sample archive, unless an earlier demo left one in ``archive``."""
    from ..samples import write_sample_archive

    if os.path.isdir(archive):
        print(f"Using the sample archive already in {archive}")
        return
    write_sample_archive(
        archive,
        runs=args.runs,
        events_per_run=args.events,
        files_per_run=4,
        bad_line_ratio=0.01,
        compress=True,
    )
    print(f"Wrote a sample archive of {args.runs} runs x {args.events} events to {archive}")


def _run_twice(args: argparse.Namespace, archive: str, output: str) -> list[Any] | None:
    """The summaries of two runs of the job; ``None`` when one did not end well."""
    summaries = []
    for attempt in ("first", "second"):
        print(f"\n== {attempt} run of the job: archive {archive} -> {output}")
        summaries.append(run_source(make_source(args, archive, output, DEMO_JOB)))
        if not summaries[-1].ok:
            return None
    return summaries


def _print_outcome(args: argparse.Namespace, home: str, output: str, *, first: Any) -> None:
    """What the two runs show, and where to look next."""
    if first.runs_committed:
        print("\nThe second run found nothing to do: every run was committed once.")
    else:
        print(f"\nNothing was pending: an earlier demo processed this archive ({home}).")
    print(f"Events:   {os.path.join(output, 'events')}")
    print(f"Bad rows: {os.path.join(output, 'bad_rows')}")
    print(f"Manifest: {args.manifest}   State: {args.state}")
    print("See every run and its status with: spark-manifests runs")
