"""The ``spark-manifests`` console command.

>>> main(["runs", "--manifest", "dynamodb://acme-runs"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, TextIO

from botocore.exceptions import BotoCoreError

from ._glue import known_arguments, runs_under_glue
from ._time import from_iso
from ._version import __version__
from .exceptions import JobFailedError, SparkManifestsError
from .manifest import RunStatus
from .source import DEFAULT_MAX_BYTES_PER_BATCH, DEFAULT_MAX_RUNS_PER_BATCH

_logger = logging.getLogger(__name__)

DEMO_JOB = "demo"
DEFAULT_JOB = "enriched_to_parquet"


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
    if extra and args.command is _cmd_manifest and not any(w.startswith("-") for w in extra):
        # argparse takes the runs only before the options: `unmark --manifest M RUN` too.
        args.run_ids = [*args.run_ids, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.transform = transform
    _configure_logging(args.verbose)
    with _sigterm_as_interrupt():
        return _run_command(args)


def _subcommand(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices[name]  # type: ignore[no-any-return]


def _run_command(args: argparse.Namespace) -> int:
    try:
        return int(args.command(args) or 0)
    except BrokenPipeError:
        # The reader of the output went away (`| head`): not an error of the command.
        _stdout_to_devnull()
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
def _sigterm_as_interrupt() -> Iterator[None]:
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


# -- commands ----------------------------------------------------------------------------------


def _cmd_process(args: argparse.Namespace) -> int:
    summary = _run_source(_source(args, args.archive, args.output, args.job))
    return 0 if summary.ok else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from .samples import write_sample_archive
    from .source import default_home

    if args.runs < 1 or args.events < 1:
        raise ValueError(
            "The demo needs at least 1 run of 1 event, "
            f"not --runs {args.runs} --events {args.events}."
        )
    home = os.path.abspath(args.dir or os.path.join(default_home(), "demo"))
    archive, output = os.path.join(home, "archive"), os.path.join(home, "output")
    if not os.path.isdir(archive):
        write_sample_archive(
            archive,
            runs=args.runs,
            events_per_run=args.events,
            files_per_run=4,
            bad_line_ratio=0.01,
            compress=True,
        )
        print(f"Wrote a sample archive of {args.runs} runs x {args.events} events to {archive}")
    else:
        print(f"Using the sample archive already in {archive}")
    args.manifest = args.manifest or os.path.join(default_home(), "manifest.sqlite")
    args.state = args.state or os.path.join(default_home(), "state")
    summaries = []
    for attempt in ("first", "second"):
        print(f"\n== {attempt} run of the job: archive {archive} -> {output}")
        summaries.append(_run_source(_source(args, archive, output, DEMO_JOB)))
        if not summaries[-1].ok:
            return 1
    if summaries[0].runs_committed:
        print("\nThe second run found nothing to do: every run was committed once.")
    else:
        print(f"\nNothing was pending: an earlier demo processed this archive ({home}).")
    print(f"Events:   {os.path.join(output, 'events')}")
    print(f"Bad rows: {os.path.join(output, 'bad_rows')}")
    print(f"Manifest: {args.manifest}   State: {args.state}")
    print("See every run and its status with: spark-manifests runs")
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    from .runs import check_window, list_runs
    from .source import status_rows

    if args.status and "PENDING" in args.status and not args.archive:
        raise ValueError(
            "--status PENDING needs --archive: runs no job has seen are not in the manifest."
        )
    with _manifest(args, must_exist=True) as manifest:
        if args.archive:
            rows = status_rows(
                list_runs(args.archive, since=args.since, until=args.until), manifest
            )
        else:
            check_window(args.since, args.until, None)
            rows = sorted(
                (
                    _entry_row(entry)
                    for entry in manifest.entries()
                    if _in_window(entry.run_id, args.since, args.until)
                ),
                key=lambda row: (row["run"], row["run_id"]),
            )
    if args.status:
        rows = [row for row in rows if row["status"] in args.status]
    _print_table(
        rows,
        (
            "run_id" if args.ids else "run",
            *("status", "attempts", "rows_in", "rows_out", "bad_rows", "committed_at", "error"),
        ),
        sys.stdout,
    )
    return 0


def _cmd_manifest(args: argparse.Namespace) -> int:
    with _manifest(args, must_exist=args.action == "unmark") as manifest:
        if args.action == "create":
            if args.provisioned and not args.manifest.startswith("dynamodb://"):
                raise ValueError("--provisioned applies to DynamoDB manifests (dynamodb://TABLE)")
            if args.provisioned:
                manifest.create(
                    read_capacity=args.provisioned[0], write_capacity=args.provisioned[1]
                )
            else:
                manifest.create()
            print(f"Manifest ready: {args.manifest}")
            return 0
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
    if not refused:
        return 0
    # The other runs are done: one held run must not leave the rest of a window unchanged.
    for line in refused[:_REFUSALS_SHOWN]:
        print(f"refused: {line}", file=sys.stderr)
    more = len(refused) - _REFUSALS_SHOWN
    print(
        f"{args.action}: {len(refused)} run(s) refused{f' ({more} not shown)' if more > 0 else ''};"
        " run the command again once their jobs are done.",
        file=sys.stderr,
    )
    return 1


_REFUSALS_SHOWN = 20


def _cmd_state(args: argparse.Namespace) -> int:
    from .source import default_home
    from .state import StateStore

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


def _cmd_package(args: argparse.Namespace) -> int:
    import zipfile

    package_dir = os.path.dirname(os.path.abspath(__file__))
    target = os.path.abspath(args.output)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for folder, _, files in os.walk(package_dir):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    archive.write(path, os.path.relpath(path, os.path.dirname(package_dir)))
    print(target)
    return 0


# -- helpers -----------------------------------------------------------------------------------


def _source(args: argparse.Namespace, archive: str, output: str, job: str) -> Any:
    from .source import ManifestedRunSource

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
        transform=getattr(args, "transform", None),
    )


def _spark(args: argparse.Namespace) -> Any:
    from ._spark import get_or_create_spark

    # The command draws its own progress; Spark's stage bars would write over it.
    spark = get_or_create_spark(
        "spark-manifests", master=args.master, config={"spark.ui.showConsoleProgress": "false"}
    )
    if sys.stderr.isatty():
        # Spark's warnings would break the progress line; in a log (a scheduler's, a
        # cluster's driver log) they stay, for lost executors and retried reads.
        spark.sparkContext.setLogLevel("ERROR")
    return spark


def _run_source(source: Any) -> Any:
    """Run the job with a progress display; print and return its summary."""
    display = ProgressDisplay(sys.stderr)
    source.on("progress", display.progress).on("run_committed", display.committed)
    try:
        with source:
            summary = source.run()
    finally:
        display.finish()
    try:
        _print_summary(summary)
    except BrokenPipeError:  # `| head`: the exit status must still tell of failed runs
        _stdout_to_devnull()
    for run_id, message in summary.failures.items():
        print(f"  FAILED {run_id}: {message}", file=sys.stderr)
    return summary


def _stdout_to_devnull() -> None:
    """Let later writes to a closed pipe go nowhere, and exit without a broken-pipe error."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _print_summary(summary: Any) -> None:
    print(
        f"Job {summary.job_name}: {summary.runs_committed} runs committed, "
        f"{summary.runs_failed} failed, {summary.runs_skipped} skipped, "
        f"{summary.runs_deferred} deferred, {summary.runs_resumed} resumed; "
        f"rows in {summary.rows_in:,}, out {summary.rows_out:,}, bad {summary.bad_rows:,}; "
        f"{summary.seconds:.1f}s"
    )


class ProgressDisplay:
    """One redrawn status line on a terminal; plain log lines otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.interactive = stream.isatty()
        self.started = time.monotonic()
        self.rows = 0
        self.done = self.total = 0
        self._handlers = logging.getLogger().handlers if self.interactive else []
        for handler in self._handlers:
            handler.addFilter(self._clear_line)

    def _clear_line(self, record: logging.LogRecord) -> bool:
        """Rub out the progress line before a log line, which would otherwise follow it."""
        self.stream.write("\r\x1b[K")
        return True

    def progress(self, progress: Any) -> None:
        self.done, self.total = progress.done, progress.total
        if self.interactive:
            elapsed = time.monotonic() - self.started
            line = (
                f"runs {self.done}/{self.total}  rows {self.rows:,}  "
                f"{int(elapsed // 60):02d}:{int(elapsed % 60):02d}  {progress.message}"
            )
            self.stream.write("\r" + line[:120].ljust(120))
            self.stream.flush()
        else:
            _logger.info(
                "progress: %d/%d runs, %d rows: %s",
                progress.done,
                progress.total,
                self.rows,
                progress.message,
            )

    def committed(self, event: Any) -> None:
        self.rows += int(event.data.get("rows_out", 0))

    def finish(self) -> None:
        for handler in self._handlers:
            handler.removeFilter(self._clear_line)
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()


def _manifest(args: argparse.Namespace, *, must_exist: bool = False) -> Any:
    """The manifest of ``--manifest`` (default: the embedded one). With ``must_exist``, a
    SQLite file that is not there is an error rather than a new, empty manifest."""
    from .manifest import open_manifest, refuse_unlikely_new_manifest, sqlite_path
    from .source import default_home

    given = bool(args.manifest)
    args.manifest = args.manifest or os.path.join(default_home(), "manifest.sqlite")
    path = sqlite_path(args.manifest)
    if must_exist and path is not None and path != ":memory:" and not os.path.isfile(path):
        raise ValueError(
            f"No manifest at {os.path.abspath(path)}: no job has used it yet. Check --manifest "
            "(a relative path, or the default .spark-manifests/, is relative to the current "
            "directory)."
        )
    if given:  # `manifest create` makes the folder it names; others would leave a stray file
        refuse_unlikely_new_manifest(
            args.manifest, folder_must_exist=getattr(args, "action", None) != "create"
        )
    return open_manifest(args.manifest)


def _selected_run_ids(args: argparse.Namespace, manifest: Any) -> list[str]:
    from .runs import list_runs

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
    from ._locations import parse_location
    from .runs import LABEL_RE, parse_run_id

    ids: list[str] = []
    by_time: dict[datetime | None, list[str]] | None = None
    for name in names:
        time_of_run = parse_run_id(f"run={name}" if LABEL_RE.match(name) else name)
        if "/" not in name.rstrip("/"):
            if by_time is None:  # read once: a thousand labels must not parse it a thousand times
                by_time = collections.defaultdict(list)
                for entry in manifest.entries():
                    by_time[_run_time(entry.run_id)].append(entry.run_id)
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


def _run_time(run_id: str) -> datetime | None:
    """When the run was made, or ``None`` for an id that names no run folder."""
    from .runs import parse_run_id

    try:
        return parse_run_id(run_id)
    except SparkManifestsError:
        return None


def _in_window(run_id: str, since: datetime | None, until: datetime | None) -> bool:
    """Whether the run falls in the window; an id that names no run folder, only when
    there is no window."""
    from .runs import in_window

    made = _run_time(run_id)
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
    from .runs import LABEL_FORMAT

    made = _run_time(run_id)
    return made.strftime(LABEL_FORMAT) if made is not None else run_id


def _print_table(rows: Iterable[dict[str, Any]], columns: Sequence[str], out: TextIO) -> None:
    # Only error texts are cut: a run id must stay whole to be copied into a command.
    cells = [[_cell(row.get(column), cut=column == "error") for column in columns] for row in rows]
    widths = [
        max([len(column)] + [len(line[i]) for line in cells]) for i, column in enumerate(columns)
    ]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip(), file=out)
    for line in cells:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip(), file=out)
    if not cells:
        print("(no runs)", file=out)


def _cell(value: Any, *, cut: bool) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    text = str(value)
    return text if not cut or len(text) <= 60 else text[:57] + "..."


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


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("py4j", "botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spark-manifests",
        description="Process every run of an event archive exactly once with PySpark.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, handler: Any, help_text: str, **defaults: Any) -> Any:
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

    def where(sub: argparse.ArgumentParser, *, state: bool = True) -> None:
        sub.add_argument(
            "--manifest",
            help="dynamodb://TABLE or a SQLite file (default: the embedded SQLite manifest)",
        )
        if state:
            sub.add_argument(
                "--state",
                help="s3://bucket/prefix/ or a local directory (default: a local directory)",
            )

    def window(sub: argparse.ArgumentParser) -> None:
        forms = "a run label, or ISO 8601"
        sub.add_argument("--since", type=_timestamp, help=f"first run time to include ({forms})")
        sub.add_argument(
            "--until",
            type=_until,
            help=f"last run time to include ({forms}; a date alone includes its whole day)",
        )

    def spark_options(sub: argparse.ArgumentParser) -> None:
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

    process = command(
        "process", _cmd_process, "process the pending runs of an archive", needs_spark=True
    )
    process.add_argument("--archive", required=True, help="s3://bucket/prefix/ or a local path")
    process.add_argument("--output", required=True, help="where the Parquet output goes")
    process.add_argument(
        "--job",
        default=DEFAULT_JOB,
        help="job name: names the state files and the claims (default: %(default)s)",
    )
    where(process)
    window(process)
    process.add_argument("--limit", type=int, help="process at most this many runs")
    process.add_argument(
        "--settle",
        type=float,
        default=0,
        metavar="SECONDS",
        help="leave a run for a later start while its newest file is younger than this "
        "(for runs still being copied into the archive; default: %(default)s)",
    )
    process.add_argument(
        "--take-over",
        action="store_true",
        help="resume the job's state even if its last run may still be at work "
        "(only when that run is known to be dead)",
    )
    spark_options(process)

    demo = command(
        "demo",
        _cmd_demo,
        "make a sample archive and run the job on it twice, on the embedded default",
        needs_spark=True,
    )
    demo.add_argument(
        "--dir", help="where the demo archive and output go (default: demo/ under the home)"
    )
    demo.add_argument("--runs", type=int, default=6, help="runs in the sample archive")
    demo.add_argument(
        "--events", type=int, default=2000, help="events per run (default: %(default)s)"
    )
    where(demo)
    spark_options(demo)

    runs = command("runs", _cmd_runs, "list runs with their manifest status")
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
    where(runs, state=False)
    window(runs)

    manifest = command("manifest", _cmd_manifest, "create the manifest, or change runs in it")
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
    where(manifest, state=False)
    window(manifest)

    state = command("state", _cmd_state, "show a job's saved state")
    state.add_argument("action", choices=("show",))
    state.add_argument(
        "--job",
        default=DEFAULT_JOB,
        help="the job's name, as given to process (default: %(default)s)",
    )
    state.add_argument("--history", action="store_true", help="list the completed snapshots kept")
    state.add_argument("--state", default=None, help="state location")

    package = command("package", _cmd_package, "zip the package for spark-submit --py-files")
    package.add_argument(
        "--output",
        default=os.path.join("dist", "spark_manifests.zip"),
        help="the zip to write (default: %(default)s)",
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
