"""``spark-manifests state``: show a job's saved state."""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING

from ..source import default_home
from ..state import StateStore
from ._options import DEFAULT_JOB, add_command

if TYPE_CHECKING:
    from ._options import Subcommands


def register(commands: Subcommands) -> None:
    """Add the ``state`` command to ``commands``."""
    state = add_command(commands, "state", handle, "show a job's saved state")
    state.add_argument("action", choices=("show",))
    state.add_argument(
        "--job",
        default=DEFAULT_JOB,
        help="the job's name, as given to process (default: %(default)s)",
    )
    state.add_argument("--history", action="store_true", help="list the completed snapshots kept")
    state.add_argument("--state", default=None, help="state location")


def handle(args: argparse.Namespace) -> int:
    """Print the job's state (and with ``--history``, its snapshots) as JSON."""
    store = StateStore(args.state or os.path.join(default_home(), "state"))
    state = store.get_or_create(args.job)
    if state.origin == "new":
        jobs = store.jobs()
        raise ValueError(
            f"No state for job {args.job!r} in {store.location.uri}; "
            + (f"jobs with a state there: {', '.join(jobs)}" if jobs else "no job has one there")
            + " (--job NAME, --state LOCATION)."
        )
    document = {"job": args.job, "origin": state.origin, "data": state.to_dict()}
    if args.history:
        document["history"] = [str(item) for item in store.history(args.job)]
    print(json.dumps(document, indent=2, sort_keys=True, default=str))
    return 0
