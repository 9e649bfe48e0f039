"""A command's exit status: what its errors, a closed pipe, Ctrl-C and SIGTERM make of it."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import BotoCoreError

from ..exceptions import JobFailedError, SparkManifestsError
from ._display import stdout_to_devnull


def run_command(args: argparse.Namespace) -> int:
    """Run the command ``args`` name; returns the process exit status."""
    try:
        return int(args.command(args) or 0)
    except BrokenPipeError:
        # The reader of the output went away (`| head`): not an error of the command.
        stdout_to_devnull()
        return 0
    except (SparkManifestsError, ValueError, OSError, BotoCoreError) as exc:
        # The traceback is extra: the exit status stays what it says about the job.
        if args.debug:
            traceback.print_exc()
        hint = "" if args.debug else " (--debug shows the traceback)"
        print(f"spark-manifests: error: {exc}{hint}", file=sys.stderr)
        # 1: a run failed (fail_fast); 2: the job could not run as configured.
        return 1 if isinstance(exc, JobFailedError) and exc.run_id else 2
    except KeyboardInterrupt as stop:
        # The claims were released on the way out; the next start resumes the job.
        if isinstance(stop, Terminated):
            print("spark-manifests: terminated (SIGTERM)", file=sys.stderr)
            return 128 + signal.SIGTERM
        print("spark-manifests: interrupted", file=sys.stderr)
        return 130


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler stopping the job, YARN, ``timeout``), handled as Ctrl-C is: the
    job releases its claims and records that it stopped, instead of dying holding them."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises ``Terminated`` in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers
        return

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
