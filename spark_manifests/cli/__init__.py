"""The ``spark-manifests`` console command.

Each command is a module of this package that adds its own sub-parser (``register``) and
runs it (``handle``): ``process``, ``demo``, ``runs``, ``manifest``, ``state``, ``package``.
The options several commands share are in ``_options``, what they print in ``_display``.

Examples
--------
>>> main(["runs", "--manifest", "dynamodb://acme-runs"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any, Callable

from .._demo_aws import DEMO_JOB
from .._glue import known_arguments, runs_under_glue
from .._version import __version__
from . import demo, manifest, package, process, runs, state
from ._display import ProgressDisplay
from ._exit import Terminated, run_command, sigterm_as_interrupt
from ._options import DEFAULT_JOB

__all__ = ["DEFAULT_JOB", "DEMO_JOB", "ProgressDisplay", "Terminated", "main"]

# In the order `spark-manifests --help` lists them.
_REGISTER_COMMANDS = (
    process.register,
    demo.register,
    runs.register,
    manifest.register,
    state.register,
    package.register,
)


def main(argv: Sequence[str] | None = None, *, transform: Callable[..., Any] | None = None) -> int:
    """Run the command line; returns the process exit status.

    ``transform`` is given to the source of ``process``: a spark-submit job with a custom
    transform is this command with its own function (see ``jobs/daily_page_views.py``).
    """
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["process"] and runs_under_glue(argv):
        argv = ["process", *known_arguments(argv[1:], _subcommand(parser, "process"))]
    args, extra = parser.parse_known_args(argv)
    if extra and args.command is manifest.handle and not any(w.startswith("-") for w in extra):
        # argparse takes the runs only before the options: `unmark --manifest M RUN` too.
        args.run_ids = [*args.run_ids, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.transform = transform
    _configure_logging(args.verbose)
    with sigterm_as_interrupt():
        return run_command(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spark-manifests",
        description="Process every run of an event archive exactly once with PySpark.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for register in _REGISTER_COMMANDS:
        register(commands)
    return parser


def _subcommand(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices[name]  # type: ignore[no-any-return]


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # werkzeug: the request log of demo --aws's emulator, a line per S3 or DynamoDB call.
    for noisy in ("py4j", "botocore", "boto3", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
