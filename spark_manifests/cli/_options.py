"""The parts of the command line several commands share: a command's sub-parser, the options
that say where the job keeps its records, the run window, the Spark options, and the parsing
of their values."""

from __future__ import annotations

import argparse
import re
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable

from .._time import from_iso
from ..source import DEFAULT_MAX_BYTES_PER_BATCH, DEFAULT_MAX_RUNS_PER_BATCH

if TYPE_CHECKING:
    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]
    Handler = Callable[[argparse.Namespace], int]

DEFAULT_JOB = "enriched_to_parquet"


def add_command(
    commands: Subcommands, name: str, handler: Handler, help_text: str, **defaults: Any
) -> argparse.ArgumentParser:
    """The sub-parser of command ``name``, which ``handler`` runs."""
    sub = commands.add_parser(name, help=help_text, description=help_text)
    sub.set_defaults(command=handler, **defaults)
    # Also after the command (a job passes its arguments after "process"); SUPPRESS
    # keeps the subcommand from resetting a flag given before it.
    sub.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    sub.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )
    return sub


def add_where(sub: argparse.ArgumentParser, *, state: bool = True) -> None:
    """``--manifest`` and, with ``state``, ``--state``."""
    sub.add_argument(
        "--manifest",
        help="dynamodb://TABLE or a SQLite file (default: the embedded SQLite manifest)",
    )
    if state:
        sub.add_argument(
            "--state",
            help="s3://bucket/prefix/ or a local directory (default: a local directory)",
        )


def add_window(sub: argparse.ArgumentParser) -> None:
    """``--since`` and ``--until``."""
    forms = "a run label, or ISO 8601"
    sub.add_argument("--since", type=_timestamp, help=f"first run time to include ({forms})")
    sub.add_argument(
        "--until",
        type=_until,
        help=f"last run time to include ({forms}; a date alone includes its whole day)",
    )


def add_spark_options(sub: argparse.ArgumentParser) -> None:
    """The options of a command that runs the job on Spark."""
    sub.add_argument("--master", help="Spark master (default: from spark-submit, or local[*])")
    sub.add_argument(
        "--max-runs-per-batch",
        type=int,
        default=DEFAULT_MAX_RUNS_PER_BATCH,
        help="runs one Spark job takes at most (default: %(default)s)",
    )
    sub.add_argument(
        "--max-bytes-per-batch",
        type=int,
        default=DEFAULT_MAX_BYTES_PER_BATCH,
        help="input bytes one Spark job takes at most (default: %(default)s)",
    )
    sub.add_argument("--fail-fast", action="store_true", help="stop at the first failed run")
    sub.add_argument(
        "--no-s3-setup",
        dest="s3_setup",
        action="store_false",
        help="leave S3 to the Spark session's own configuration: no hadoop-aws package, no "
        "s3a settings (the default sets them up off EMR when the archive or output is on S3)",
    )


def _timestamp(text: str) -> datetime:
    """A --since/--until value: ISO 8601, or a run label ``YYYY-mm-DD-hh-MM-SS``."""
    for form in ("%Y-%m-%d-%H-%M-%S",):
        try:
            return datetime.strptime(text, form).replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    try:
        parsed = from_iso(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: use ISO 8601 (2017-04-11T10:31:05) or a run label "
            "(2017-04-11-10-31-05)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _until(text: str) -> datetime:
    """An --until value; a date alone means the end of that day, so that ``--since D
    --until D`` is the runs of day D, not the ones at midnight."""
    parsed = _timestamp(text)
    if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text.strip()):
        return parsed + timedelta(days=1, microseconds=-1)
    return parsed
