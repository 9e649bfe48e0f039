"""``spark-manifests manifest``: create the manifest, or mark, unmark or skip runs in it."""

from __future__ import annotations

import argparse
import collections
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .._locations import parse_location
from ..runs import LABEL_RE, list_runs, parse_run_id
from ._manifests import open_manifest_of, run_time
from ._options import add_command, add_where, add_window

if TYPE_CHECKING:
    from ._options import Subcommands

_REFUSALS_SHOWN = 20


def register(commands: Subcommands) -> None:
    """Add the ``manifest`` command to ``commands``."""
    manifest = add_command(
        commands, "manifest", handle, "create the manifest, or change runs in it"
    )
    manifest.add_argument("action", choices=("create", "mark", "unmark", "skip"))
    manifest.add_argument(
        "run_ids",
        nargs="*",
        metavar="RUN",
        help="a run's label as `runs` shows it (2017-04-11-10-31-05), its manifest key, or the "
        "s3:// URI or path of its folder (or use --archive)",
    )
    manifest.add_argument("--archive", help="act on the archive's runs in the window")
    manifest.add_argument(
        "--all", action="store_true", help="with --archive and no window: every run of it"
    )
    manifest.add_argument("--reason", help="why the runs are skipped (shown by `runs`)")
    manifest.add_argument(
        "--provisioned",
        nargs=2,
        type=int,
        metavar=("RCU", "WCU"),
        help="DynamoDB provisioned capacity (default: on-demand)",
    )
    add_where(manifest, state=False)
    add_window(manifest)


def handle(args: argparse.Namespace) -> int:
    """Create the manifest, or edit the runs named; 1 when some of them were refused."""
    opened = open_manifest_of(
        args, must_exist=args.action == "unmark", creating=args.action == "create"
    )
    with opened as manifest:
        if args.action == "create":
            _create(args, manifest)
            return 0
        refused = _edit(args, manifest)
    if not refused:
        return 0
    _report_refusals(args.action, refused)
    return 1


def _create(args: argparse.Namespace, manifest: Any) -> None:
    if args.provisioned and not args.manifest.startswith("dynamodb://"):
        raise ValueError("--provisioned applies to DynamoDB manifests (dynamodb://TABLE)")
    if args.provisioned:
        manifest.create(read_capacity=args.provisioned[0], write_capacity=args.provisioned[1])
    else:
        manifest.create()
    print(f"Manifest ready: {args.manifest}")


def _edit(args: argparse.Namespace, manifest: Any) -> list[str]:
    """Apply the action to the runs named, say how many changed; returns the refusals."""
    run_ids = _selected_run_ids(args, manifest)
    # A committed run stays committed when marked or skipped: say what really changed.
    before = manifest.get_many(run_ids)
    refused = [
        str(refusal)
        for refusal in manifest.edit_many(args.action, run_ids, reason=args.reason or None)
    ]
    after = manifest.get_many(run_ids)
    changed = sum(before.get(run_id) != after.get(run_id) for run_id in run_ids)
    print(f"{args.action}: {changed} of {len(run_ids)} run(s) changed in {args.manifest}")
    return refused


def _report_refusals(action: str, refused: Sequence[str]) -> None:
    # The other runs are done: one held run must not leave the rest of a window unchanged.
    for line in refused[:_REFUSALS_SHOWN]:
        print(f"refused: {line}", file=sys.stderr)
    more = len(refused) - _REFUSALS_SHOWN
    print(
        f"{action}: {len(refused)} run(s) refused{f' ({more} not shown)' if more > 0 else ''};"
        " run the command again once their jobs are done.",
        file=sys.stderr,
    )


def _selected_run_ids(args: argparse.Namespace, manifest: Any) -> list[str]:
    if args.run_ids:
        if args.archive:
            raise ValueError("Give run ids or --archive, not both.")
        return _named_run_ids(args.run_ids, manifest)
    if not args.archive:
        raise ValueError("Name the runs: give run ids, or --archive (with --since/--until).")
    # A whole archive at once is rarely meant (unmark reprocesses all of it): ask for --all.
    if args.since is None and args.until is None and not args.all:
        raise ValueError(
            f"--archive {args.archive} with no --since/--until names every run of it: "
            "give a window, or --all to mean them all."
        )
    return [run.id for run in list_runs(args.archive, since=args.since, until=args.until)]


def _named_run_ids(names: Sequence[str], manifest: Any) -> list[str]:
    """The manifest keys of the runs named on the command line.

    A label (``2017-04-11-10-31-05``, as ``runs`` shows) or a folder name (``run=...``)
    names the one run of the manifest made at that time. An ``s3://`` URI stands for its
    bucket-relative key and a local run folder for its absolute path, as the manifest keys
    them; any other path is taken as a key, with its trailing ``/``.
    """
    ids: list[str] = []
    by_time: dict[datetime | None, list[str]] | None = None
    for name in names:
        time_of_run = parse_run_id(f"run={name}" if LABEL_RE.match(name) else name)
        if "/" not in name.rstrip("/"):
            if by_time is None:  # read once: a thousand labels must not parse it a thousand times
                by_time = collections.defaultdict(list)
                for entry in manifest.entries():
                    by_time[run_time(entry.run_id)].append(entry.run_id)
            ids.append(_the_run_at(name, by_time.get(time_of_run, [])))
            continue
        location = parse_location(name, what="run")
        if location.is_s3:
            ids.append(location.prefix)
        elif not name.startswith("file://") and not os.path.isdir(name):
            ids.append(name.rstrip("/") + "/")  # an S3 key, as stored
        else:
            ids.append(location.key.rstrip("/") + "/")
    return ids


def _the_run_at(name: str, matches: Sequence[str]) -> str:
    """The one run of the manifest ``name`` stands for, of the ``matches`` made at its time."""
    if len(matches) != 1:
        found = "no run" if not matches else f"{len(matches)} runs"
        raise ValueError(
            f"{name!r} names {found} of the manifest. Give the run's full id (on S3 the "
            "bucket-relative key, e.g. enriched/archive/run=2017-04-11-10-31-05/; locally "
            "the folder's path), or --archive with --since/--until."
        )
    return matches[0]
