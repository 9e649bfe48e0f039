"""``spark-manifests runs``: list runs with their manifest status."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .._status import status_rows
from ..manifest import RunStatus
from ..runs import LABEL_FORMAT, check_window, in_window, list_runs
from ._display import print_table
from ._manifests import open_manifest_of, run_time
from ._options import add_command, add_where, add_window

if TYPE_CHECKING:
    from ._options import Subcommands

_COLUMNS = ("status", "attempts", "rows_in", "rows_out", "bad_rows", "committed_at", "error")


def register(commands: Subcommands) -> None:
    """Add the ``runs`` command to ``commands``."""
    runs = add_command(commands, "runs", handle, "list runs with their manifest status")
    runs.add_argument("--archive", help="list the archive's runs (default: the manifest's)")
    runs.add_argument(
        "--ids", action="store_true", help="show each run's manifest key instead of its label"
    )
    runs.add_argument(
        "--status",
        action="append",
        type=str.upper,
        choices=[*(status.value for status in RunStatus), "PENDING"],
        help="only runs with this status (PENDING: with --archive); may be repeated",
    )
    add_where(runs, state=False)
    add_window(runs)


def handle(args: argparse.Namespace) -> int:
    """Print the table of runs: the archive's with ``--archive``, else the manifest's."""
    if args.status and "PENDING" in args.status and not args.archive:
        raise ValueError(
            "--status PENDING needs --archive: runs no job has seen are not in the manifest."
        )
    with open_manifest_of(args, must_exist=True) as manifest:
        if args.archive:
            rows = status_rows(
                list_runs(args.archive, since=args.since, until=args.until), manifest
            )
        else:
            rows = _manifest_rows(manifest, args.since, args.until)
    if args.status:
        rows = [row for row in rows if row["status"] in args.status]
    print_table(rows, ("run_id" if args.ids else "run", *_COLUMNS), sys.stdout)
    return 0


def _manifest_rows(
    manifest: Any, since: datetime | None, until: datetime | None
) -> list[dict[str, Any]]:
    """The rows of the manifest's runs in the window, in the order of their times."""
    check_window(since, until, None)
    return sorted(
        (
            _entry_row(entry)
            for entry in manifest.entries()
            if _in_window(entry.run_id, since, until)
        ),
        key=lambda row: (row["run"], row["run_id"]),
    )


def _in_window(run_id: str, since: datetime | None, until: datetime | None) -> bool:
    """Whether the run falls in the window; an id that names no run folder, only when
    there is no window."""
    made = run_time(run_id)
    if made is None:
        return since is None and until is None
    return in_window(made, since, until)


def _entry_row(entry: Any) -> dict[str, Any]:
    row = {
        name: getattr(entry, name)
        for name in (
            "run_id",
            "attempts",
            "rows_in",
            "rows_out",
            "bad_rows",
            "committed_at",
            "error",
        )
    }
    row["run"] = _label(entry.run_id)
    row["status"] = entry.status.value
    return row


def _label(run_id: str) -> str:
    """The run's time label, or the id itself for an id that names no run folder."""
    made = run_time(run_id)
    return made.strftime(LABEL_FORMAT) if made is not None else run_id
