"""``ManifestedRunSource``: the driver loop that processes every run of an archive exactly once.

For each batch of pending runs: claim them in the manifest, load them through the reader and
transform, write them through the sink, commit them, and save a state snapshot after every
stage, so that a job killed anywhere resumes where it stopped. See the README's "In a job"
and "Job state files" for the whole story.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Union

from ._events import EventHandlers, Progress, RunEvent
from ._faults import fault_point
from ._locations import Location, PathLike, parse_location
from ._spark import get_or_create_spark, set_job_description, spark_is_gone
from ._time import from_iso
from .exceptions import (
    AccessDeniedError,
    CorruptStateError,
    CredentialsMissingError,
    InvalidLocationError,
    JobAlreadyRunningError,
    JobFailedError,
    OwnershipLostError,
    SparkManifestsError,
)
from .manifest import (
    MAX_LEASE_SECONDS,
    RunManifest,
    RunStatus,
    check_lease_seconds,
    clip_error,
    open_manifest,
    refuse_unlikely_new_manifest,
)
from .retry import RetryPolicy, classify_error, describe_error
from .runs import (
    RUN_FOLDER_RE,
    Run,
    RunListing,
    check_window,
    inspect_runs,
    is_cold,
    list_runs,
)
from .sinks import RUN_COLUMN, ParquetSink, Sink
from .state import StateData, StateStore

if TYPE_CHECKING:
    import boto3
    from pyspark.sql import Column, DataFrame, SparkSession

_logger = logging.getLogger(__name__)

# DEFAULT_HOME comes from the module's __getattr__ (read when used).
__all__ = ["DEFAULT_HOME", "JobSummary", "ManifestedRunSource", "RetryPolicy", "default_home"]  # noqa: F822


def default_home() -> str:
    """Where the embedded default keeps its SQLite manifest and state, unless told otherwise:
    ``$SPARK_MANIFESTS_HOME``, else ``.spark-manifests`` in the working directory.

    Read when used, so that a notebook may set the variable after importing the package;
    ``DEFAULT_HOME`` gives the same value.
    """
    return os.environ.get("SPARK_MANIFESTS_HOME") or ".spark-manifests"


def __getattr__(name: str) -> Any:
    if name == "DEFAULT_HOME":  # the value now, not at import
        return default_home()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: How many runs, and how many input bytes, one Spark job takes at most unless told otherwise.
DEFAULT_MAX_RUNS_PER_BATCH = 100
DEFAULT_MAX_BYTES_PER_BATCH = 2 * 1024**3

#: Each failure message in a job's summary is cut to this many characters.
MAX_SUMMARY_ERROR_CHARS = 1000
# The newest settled runs whose output a source reads once, to spot a manifest that another
# job commits to (one BatchGetItem call).
_OUTPUTS_SAMPLED = 25

Reader = Callable[..., Any]
Transform = Callable[..., "DataFrame"]
ManifestArg = Union[RunManifest, str, "os.PathLike[str]", None]
StateArg = Union[StateStore, str, "os.PathLike[str]", None]


@dataclass
class JobSummary:
    """What one call of :meth:`ManifestedRunSource.run` did."""

    job_name: str
    owner: str
    runs_committed: int = 0
    runs_failed: int = 0
    runs_skipped: int = 0
    runs_deferred: int = 0
    runs_resumed: int = 0
    batches: int = 0
    rows_in: int = 0
    rows_out: int = 0
    bad_rows: int = 0
    seconds: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.runs_failed == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _RunMetrics:
    rows_in: int = 0
    rows_out: int = 0
    bad_rows: int = 0


@dataclass
class _Loaded:
    """What the reader gave for a batch."""

    events: DataFrame
    bad_rows: DataFrame | None
    lines_per_run: Mapping[str | None, int] | None = None


class ManifestedRunSource:
    """Process the runs of an archive that the manifest has not seen, exactly once.

    Parameters
    ----------
    archive
        ``s3://bucket/prefix/`` (also ``s3a://``, ``s3n://``) or a local directory holding
        ``run=YYYY-mm-DD-hh-MM-SS`` folders.
    output
        Where the default :class:`~spark_manifests.ParquetSink` writes (unless ``sink`` is given).
    spark
        The session; or a function that returns one, called when the first batch is read,
        so a job with nothing pending starts no Spark; or ``None``: the active session, else
        a new one (local on a plain machine).
    manifest
        A :class:`~spark_manifests.RunManifest`, a URI (``dynamodb://TABLE``, a SQLite path), or
        ``None`` for the embedded SQLite file under ``DEFAULT_HOME``.
    state
        A :class:`~spark_manifests.StateStore`, a location, or ``None`` for a local directory
        under ``DEFAULT_HOME``.
    job_name
        Names the state snapshots (``<job>_running.json``) and the owner of the claims.
    reader
        ``reader(spark, paths)`` returning an ``EnrichedRead`` (events, bad rows), a pair
        of DataFrames, or a DataFrame; each must carry a ``run`` column. An
        ``EnrichedRead`` with ``lines_per_run`` lets the source skip the bad rows of a batch
        that has none. The paths are the batch's files, Hadoop glob characters escaped.
        Default: :func:`read_enriched`.
    transform
        ``transform(df)`` or ``transform(df, runs)``; keeps the ``run`` column. Identity by default.
    sink
        A :class:`~spark_manifests.Sink`; default: a :class:`~spark_manifests.ParquetSink`
        on ``output``.
    max_runs_per_batch, max_bytes_per_batch
        How many runs, and how many input bytes, one Spark job takes at most.
    since, until, limit
        Process only runs in the time window, and at most ``limit`` of them.
    retry
        How retryable failures are retried; see :class:`~spark_manifests.retry.RetryPolicy`.
        Its ``max_retries + 1`` is also how many attempts a run gets across jobs (claims that
        failed or died) before it stays failed until an ``unmark``.
    fail_fast
        Stop at the first failed run instead of going on with the next.
    owner, lease_seconds
        Who claims the runs (default: job, host, process) and for how long a claim holds
        before another job may take it over.
    settle_seconds
        Leave a run for a later start while its newest file is younger than this: a run
        still being copied into the archive would be committed with only part of its
        files. Whatever this is, a run whose files change while it is processed is not
        committed (see :meth:`run`).
    take_over
        Resume the job's running state even when it was saved less than ``lease_seconds``
        ago by a process that may still be at work (by default that raises
        :class:`~spark_manifests.JobAlreadyRunningError`). Only for a job known to be dead.
    client, session
        A boto3 S3 client, or a session to make clients, for the archive, an S3 state
        location and the sink's output checks; the session also opens a manifest given as
        a URI.

    Examples
    --------
    >>> with ManifestedRunSource("s3://acme/enriched/archive/", output="s3://acme/parquet/",
    ...                          manifest="dynamodb://acme-runs", state="s3://acme/state/",
    ...                          job_name="enriched_to_parquet") as source:  # doctest: +SKIP
    ...     summary = source.run()
    """

    def __init__(
        self,
        archive: PathLike | Location,
        *,
        output: PathLike | None = None,
        spark: SparkSession | Callable[[], SparkSession] | None = None,
        manifest: ManifestArg = None,
        state: StateArg = None,
        job_name: str = "spark_manifests",
        reader: Reader | None = None,
        transform: Transform | None = None,
        sink: Sink | None = None,
        max_runs_per_batch: int = DEFAULT_MAX_RUNS_PER_BATCH,
        max_bytes_per_batch: int | None = DEFAULT_MAX_BYTES_PER_BATCH,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        retry: RetryPolicy | None = None,
        fail_fast: bool = False,
        owner: str | None = None,
        lease_seconds: int = 3600,
        settle_seconds: float = 0,
        take_over: bool = False,
        client: Any | None = None,
        session: boto3.session.Session | None = None,
    ) -> None:
        if sink is None and output is None:
            raise ValueError("Give either output= (a location for Parquet output) or sink=.")
        if max_runs_per_batch < 1:
            raise ValueError(f"max_runs_per_batch must be at least 1, got {max_runs_per_batch}")
        if max_bytes_per_batch is not None and max_bytes_per_batch < 1:
            raise ValueError(f"max_bytes_per_batch must be at least 1, got {max_bytes_per_batch}")
        check_window(since, until, limit)
        check_lease_seconds(lease_seconds)
        if not 0 <= settle_seconds <= MAX_LEASE_SECONDS:
            raise ValueError(
                f"settle_seconds must be between 0 and {MAX_LEASE_SECONDS}, got {settle_seconds}"
            )
        self.archive = parse_location(archive, what="archive")
        self.job_name = job_name
        # A manifest this source opened is closed with it; one it was given is the caller's.
        self._owns_manifest = not isinstance(manifest, RunManifest)
        self.manifest = _open_manifest(manifest, session=session)
        self.state_store = _open_state_store(state, client=client, session=session)
        self.sink = sink or ParquetSink(
            output,  # type: ignore[arg-type]
            client=client,
            session=session,
        )
        self.reader = reader
        self.transform = transform
        self.max_runs_per_batch = max_runs_per_batch
        self.max_bytes_per_batch = max_bytes_per_batch
        self.since, self.until, self.limit = since, until, limit
        self.retry = retry or RetryPolicy()
        self.fail_fast = fail_fast
        self.lease_seconds = lease_seconds
        self.settle_seconds = settle_seconds
        self.take_over = take_over
        self._owner = owner
        self._s3_client = client
        self._session = session
        self._spark = spark
        self._handlers = EventHandlers()
        self._held: set[str] = set()
        # The lease renewal thread saves the state too.
        self._state_lock = threading.RLock()
        self._read_cursor: set[str] = set()
        self._storage_checked = False
        self._manifest_sharing_checked = False
        self.progress = Progress(0, 0, "not started")

    # -- the data-source contract -------------------------------------------------------

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            self._spark = get_or_create_spark(f"spark_manifests:{self.job_name}")
        elif callable(self._spark):
            self._spark = self._spark()
        return self._spark

    @property
    def owner(self) -> str:
        if self._owner is None:
            self._owner = (
                f"{self.job_name}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
            )
        return self._owner

    def on(self, event: str, handler: Callable[[Any], None]) -> ManifestedRunSource:
        """Call ``handler`` on ``event``; returns the source so calls chain.

        Events: ``run_claimed``, ``batch_loaded``, ``batch_written``, ``run_committed``,
        ``run_failed``, ``run_skipped``, ``run_deferred`` (left for a later start: in cold
        storage, still settling, or changed while processed) (a :class:`RunEvent` each) and
        ``progress`` (a ``Progress(done, total, message)``).

        >>> source.on("run_committed", lambda e: print(e.run_ids))  # doctest: +SKIP
        """
        self._handlers.add(event, handler)
        return self

    def off(self, event: str, handler: Callable[[Any], None] | None = None) -> ManifestedRunSource:
        """Stop calling ``handler`` (or every handler) on ``event``: a notebook cell run again
        adds its lambda again.

        >>> source.off("run_committed")  # doctest: +SKIP
        """
        self._handlers.remove(event, handler)
        return self

    def pending(self) -> list[Run]:
        """The runs in the archive (within since/until, at most ``limit``) not yet processed."""
        runs = self._archive_runs()
        _refuse_shared_labels(runs)
        return self._pending_among(runs)

    def _pending_among(self, runs: Sequence[Run]) -> list[Run]:
        by_id = {run.id: run for run in runs}
        # Failed runs out of attempts are left out before the limit: a claim would refuse
        # them, and a limit they filled would stall the job on them for good.
        pending_ids = self.manifest.pending(list(by_id), max_attempts=self._max_attempts)
        still_pending = set(pending_ids)
        settled = [by_id[run_id] for run_id in by_id if run_id not in still_pending]
        self._warn_if_committed_elsewhere(settled)
        pending = [by_id[run_id] for run_id in pending_ids]
        return pending[: self.limit] if self.limit is not None else pending

    def _warn_if_committed_elsewhere(self, settled: list[Run]) -> None:
        """Warn, once per source, when the newest settled runs were committed with their
        output elsewhere: the manifest also serves another job (another output), and this
        one never processes those runs."""
        if self._manifest_sharing_checked or not settled:
            return
        self._manifest_sharing_checked = True
        newest = {run.id: run for run in settled[-_OUTPUTS_SAMPLED:]}
        elsewhere: list[tuple[str, str]] = []
        for entry in self.manifest.get_many(list(newest)).values():
            ours = self.sink.output_path(newest[entry.run_id])
            theirs = entry.output_path if entry.status is RunStatus.COMMITTED else None
            if theirs and theirs.rstrip("/") != ours.rstrip("/"):
                elsewhere.append((theirs, ours))
        if elsewhere:
            theirs, ours = elsewhere[-1]
            _logger.warning(
                "%d of the newest runs of %s this job leaves out as committed have their "
                "output elsewhere (%s, where this job would write %s): a manifest serves one "
                "output, and this job never processes them. Give this job its own manifest "
                "(--manifest), or its old output if it moved.",
                len(elsewhere),
                self.archive.uri,
                theirs,
                ours,
            )

    def _archive_runs(self) -> list[Run]:
        return list_runs(
            self.archive,
            since=self.since,
            until=self.until,
            client=self._s3_client,
            session=self._session,
        )

    def read(self, n: int) -> DataFrame | None:
        """The transformed events of the next up-to-``n`` pending runs, or ``None`` at the end.

        Nothing is claimed or committed: for exploring in a notebook. Each call moves on to
        runs the previous calls did not return.
        """
        runs = [run for run in self.pending() if run.id not in self._read_cursor][:n]
        if not runs:
            return None
        batch = [listing for listing in self._inspect(runs) if _readable(listing)]
        self._read_cursor.update(run.id for run in runs)
        if not batch:
            return self.read(n)
        loaded = [listing.run for listing in batch]
        events = self._load(loaded, _paths(batch)).events
        return self._apply_transform(events, loaded)

    def status(self, *, as_spark: bool = False) -> Any:
        """A table of the archive's runs with their manifest status, rows and times.

        A pandas DataFrame when pandas is installed (or a Spark DataFrame with
        ``as_spark=True``) with the columns of :data:`STATUS_COLUMNS`, even when empty;
        runs the manifest has never seen have status ``PENDING``.
        """
        rows = self.status_rows()
        if not as_spark:
            try:
                import pandas
            except ImportError:
                pass
            else:
                return pandas.DataFrame(rows, columns=list(STATUS_COLUMNS))
        # Typed up front: inferred from the rows, a column that is None in all of them
        # (no run failed yet: error) has no type, and Spark refuses the table.
        schema = ", ".join(f"{name} {kind}" for name, kind in STATUS_COLUMNS.items())
        return self.spark.createDataFrame([tuple(row.values()) for row in rows], schema)

    def status_rows(self) -> list[dict[str, Any]]:
        """The rows of :meth:`status` as plain dictionaries."""
        return status_rows(self._archive_runs(), self.manifest)

    def close(self) -> None:
        """Release the claims this source still holds, so another job can take them at once,
        and close the manifest if the source opened it (from a URI or the default)."""
        for run_id in sorted(self._held):
            self._release(run_id)
        if self._owns_manifest:
            self.manifest.close()

    def __enter__(self) -> ManifestedRunSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the driver loop ----------------------------------------------------------------

    def run(self) -> JobSummary:
        """Process every pending run; returns what was done.

        Raises
        ------
        JobFailedError
            With ``fail_fast``, at the first run that fails (after its retries).
        JobAlreadyRunningError
            The job's running state was saved by another run that may still be at work.
        """
        started = time.monotonic()
        # A wrong or unreadable archive fails here, before a snapshot says the job is running.
        runs = self._archive_runs()
        _refuse_shared_labels(runs)
        if not runs:
            _refuse_a_run_folder(self.archive)
            _logger.warning(
                "No run folders (run=YYYY-mm-DD-hh-MM-SS) in %s%s: is it the right archive?",
                self.archive.uri,
                "" if self.since is None and self.until is None else " within since/until",
            )
        # Before the snapshot: an output holding another manifest's runs is a wrong argument.
        prepare = getattr(self.sink, "prepare", None)
        if prepare is not None:
            prepare(job_name=self.job_name, manifest=self.manifest.uri)
        state = self._open_state()
        _OWNERS_AT_WORK.add(self.owner)
        try:
            return self._resume_and_process(runs, state, started)
        except BaseException:
            # Stopped (Ctrl-C, SIGTERM) or failed (a missing table, Spark gone): this process
            # no longer works on the state, so a start on another host need not wait a lease.
            self._record_stop(state)
            raise
        finally:
            _OWNERS_AT_WORK.discard(self.owner)

    def _record_stop(self, state: StateData) -> None:
        """Note in the running state that the job stopped (Ctrl-C, SIGTERM, an error), so a
        start on any host resumes it at once rather than wait for a lease as for a lost job."""
        state["stopped_at"] = datetime.now(timezone.utc).isoformat()
        try:
            self._save_state(state, "stopping")
        except Exception as exc:  # what stopped the job matters more than this note
            # Often the same trouble (a denied or lost state store): one line, no traceback.
            _logger.warning("Could not record that job %s stopped: %s", self.job_name, exc)

    def _resume_and_process(
        self, runs: Sequence[Run], state: StateData, started: float
    ) -> JobSummary:
        summary = JobSummary(self.job_name, self.owner)
        self._resume(state, summary)
        pending = self._pending_among(runs)
        total = len(pending)
        self._report(0, total, f"{total} runs pending")
        # Progress counts the pending runs only, not those the resume settled.
        settled_before = _settled(summary)
        for number, batch in enumerate(self._batches(pending, summary), start=1 + summary.batches):
            self._process_batch(number, batch, state, summary)
            summary.batches = number
            done = _settled(summary) - settled_before
            self._report(min(done, total), total, f"batch {number} done")
        summary.seconds = round(time.monotonic() - started, 3)
        state["summary"] = summary.to_dict()
        state["in_flight"] = {}
        self._save_state(state, "completing", complete=True)
        _logger.info(
            "Job %s done: %d runs committed, %d failed, %d skipped, %d deferred, %d rows in, "
            "%d out, %d bad, %.1fs",
            self.job_name,
            summary.runs_committed,
            summary.runs_failed,
            summary.runs_skipped,
            summary.runs_deferred,
            summary.rows_in,
            summary.rows_out,
            summary.bad_rows,
            summary.seconds,
        )
        return summary

    def _open_state(self) -> StateData:
        state = self.state_store.get_or_create(self.job_name)
        if state.origin == "running":
            previous = str(state.get("owner") or "")
            # First: a job of this name at work on another archive is not this job's run.
            self._refuse_another_archive(state)
            self._refuse_if_still_running(state, previous)
            self._check_in_flight(state)
            if self._owner is None and previous:
                # The last run of this job was killed holding claims: take its identity so
                # its claims are ours again instead of waiting for their leases to expire.
                self._owner = previous
                _logger.info("Resuming job %s as %s", self.job_name, self._owner)
        else:
            state.reset()
            state["archive"] = self.archive.uri
            state["in_flight"] = {}
        state["owner"] = self.owner
        state["stopped_at"] = None
        # The owner of a resumed job names the dead process it took over from: the process
        # at work is recorded apart, for a later start to tell whether it still is.
        state["process"] = _this_process()
        self._save_state(state, "starting")
        return state

    def _refuse_if_still_running(self, state: StateData, previous: str) -> None:
        """Stop when the running state may belong to a run of this job still at work: both
        would resume it and process the same runs as one owner.

        A snapshot saved a lease ago or more is a dead job's (its claims have expired too);
        so is one whose owner was a process of this host that has ended, or this process.
        """
        if self.take_over or not previous or state.get("stopped_at"):
            return
        if previous == self._owner and state.get("process") in (None, _this_process()):
            return  # this source's own state (a run() again in the same notebook)
        saved = state.updated_at
        if saved is None or _saver_gone(state.get("process"), previous):
            return
        age = (datetime.now(timezone.utc) - saved).total_seconds()
        if age >= self.lease_seconds:
            return
        free_at = datetime.fromtimestamp(saved.timestamp() + self.lease_seconds, timezone.utc)
        raise JobAlreadyRunningError(
            f"Job {self.job_name} looks still running: {previous} saved its running state "
            f"at {saved:%Y-%m-%d %H:%M:%S} UTC, {age:.0f}s ago, within the "
            f"{self.lease_seconds}s lease. Two runs of one job would process the same runs. "
            f"Wait for it to end; if it is dead, start again after {free_at:%H:%M:%S} UTC, "
            "or take over now (take_over=True, `spark-manifests process --take-over`)."
        )

    def _refuse_another_archive(self, state: StateData) -> None:
        """The runs in flight of a running state belong to its archive: resumed from another
        one, they would be neither committed nor redone."""
        archive = state.get("archive")
        if archive and not _same_place(parse_location(archive), self.archive):
            raise SparkManifestsError(
                f"Job {self.job_name} has a running state on {archive} (a run of it is at "
                f"work there, or stopped before it ended); this start is on "
                f"{self.archive.uri}. Give this archive its own job name (--job), or run the "
                f"job on {archive} to finish it."
            )

    def _check_in_flight(self, state: StateData) -> None:
        """Refuse a running state whose runs in flight cannot be read (edited by hand, or
        written by another version): every start would stop on it with a traceback."""
        in_flight = state.get("in_flight") or {}
        records = in_flight.items() if isinstance(in_flight, dict) else [("", in_flight)]
        for run_id, record in records:
            if not _readable_record(run_id, record):
                raise CorruptStateError(
                    f"The running state of job {self.job_name} in {self.state_store.location} "
                    f"has a run in flight it cannot read ({run_id or 'in_flight'}: "
                    f"{str(record)[:200]}). Restore it from the job's history "
                    "(StateStore.history / restore), or delete it: the runs it held are "
                    "processed again once their leases expire."
                )

    def _resume(self, state: StateData, summary: JobSummary) -> None:
        """Finish what a killed run of this job left: commit runs already written.

        Only a run the manifest still shows processing under this job's owner is committed
        without recomputing it: if another job took it over meanwhile, that job may have
        rewritten part of its output, so it is processed again.
        """
        in_flight: dict[str, Any] = dict(state.get("in_flight") or {})
        if not in_flight:
            return
        entries = self.manifest.get_many(list(in_flight))
        for run_id, record in sorted(in_flight.items()):
            entry = entries.get(run_id)
            run = _run_from_record(record)
            if entry is not None and entry.status in (RunStatus.COMMITTED, RunStatus.LEGACY):
                _logger.info("Resume: %s was committed before the crash", run_id)
            elif (
                record.get("stage") == "written"
                and entry is not None
                and entry.status is RunStatus.PROCESSING
                and entry.owner == self.owner
                and self.sink.has_output(run)
            ):
                # Committed as it stands: a claim again would count one more attempt.
                metrics = _metrics_from_record(record)
                if self._commit(run, metrics, None, summary):
                    summary.runs_resumed += 1
                    _logger.info("Resume: committed %s without recomputing it", run_id)
            else:
                _logger.info(
                    "Resume: %s stopped at %s; it is processed again", run_id, record.get("stage")
                )
            in_flight.pop(run_id)
        state["in_flight"] = in_flight
        self._save_state(state, "resuming")

    def _batches(self, pending: Sequence[Run], summary: JobSummary) -> Iterator[list[RunListing]]:
        """Consecutive runs grouped by ``max_runs_per_batch`` and ``max_bytes_per_batch``.

        Only the runs about to be processed are inspected (cold storage, sizes, age), a
        window at a time, so a long backlog costs no listing up front. Runs in cold storage
        or still settling are left for a later start.
        """
        batch: list[RunListing] = []
        batch_bytes = 0
        for start in range(0, len(pending), self.max_runs_per_batch):
            for listing in self._inspect(pending[start : start + self.max_runs_per_batch]):
                if is_cold(listing) or self._settling(listing):
                    self._defer(listing.run, summary)
                    continue
                too_big = (
                    self.max_bytes_per_batch is not None
                    and batch_bytes + listing.size > self.max_bytes_per_batch
                )
                if batch and too_big:
                    yield batch
                    batch, batch_bytes = [], 0
                batch.append(listing)
                batch_bytes += listing.size
                if len(batch) >= self.max_runs_per_batch:
                    # Now, not after the next window is listed: its runs may change meanwhile.
                    yield batch
                    batch, batch_bytes = [], 0
        if batch:
            yield batch

    def _inspect(self, runs: Sequence[Run]) -> list[RunListing]:
        return inspect_runs(runs, client=self._s3_client, session=self._session)

    def _settling(self, listing: RunListing) -> bool:
        """Whether a run's newest file is too young to be sure the run is complete."""
        newest = listing.last_modified
        if not self.settle_seconds or newest is None:
            return False
        age = (datetime.now(timezone.utc) - newest).total_seconds()
        if age >= self.settle_seconds:
            return False
        _logger.info(
            "Leaving run %s for a later start: its newest file was written %.0fs ago, "
            "within the %ss settle time",
            listing.run.id,
            max(age, 0),
            self.settle_seconds,
        )
        return True

    def _defer(self, run: Run, summary: JobSummary, batch: int | None = None) -> None:
        summary.runs_deferred += 1
        self._handlers.fire("run_deferred", RunEvent("run_deferred", (run.id,), batch))

    def _process_batch(
        self,
        number: int,
        batch: list[RunListing],
        state: StateData,
        summary: JobSummary,
    ) -> None:
        if any(listing.problem is None for listing in batch):
            self._start_spark()  # not for a batch of runs that only fail without a read
        claimed = self._claim_all(batch, number)
        refused = [listing.run for listing in batch if listing not in claimed]
        self._settle_refused(refused, number, summary)
        for listing in claimed:
            if listing.problem is not None:
                self._fail(listing.run, listing.problem, summary, number)
        claimed = [listing for listing in claimed if listing.problem is None]
        if claimed:
            runs = [listing.run for listing in claimed]
            self._stage(state, runs, "claimed", number)
            fault_point("after_claim")
            with self._leases_renewed(runs, state):
                self._write_with_retries(number, claimed, state, summary)

    def _claim_all(self, batch: list[RunListing], number: int) -> list[RunListing]:
        """The runs of ``batch`` this job could claim. Claiming thousands of runs can take
        a good part of a lease: the first claims are renewed meanwhile, every third of it."""
        claimed: list[RunListing] = []
        renewed_at = time.monotonic()
        for listing in batch:
            if self._claim(listing.run, batch=number):
                claimed.append(listing)
            if time.monotonic() - renewed_at >= self.lease_seconds / 3:
                self._renew_claims([listing.run for listing in claimed])
                renewed_at = time.monotonic()
        return claimed

    def _write_with_retries(
        self,
        number: int,
        batch: list[RunListing],
        state: StateData,
        summary: JobSummary,
    ) -> None:
        runs = [listing.run for listing in batch]
        what = f"batch {number} ({_describe_runs(runs)})"
        delays = self.retry.delays()
        while True:
            try:
                metrics = self._load_and_write(number, batch, state)
                break
            except JobFailedError:
                raise
            except Exception as exc:  # classified below: retried, split, or recorded
                if _WRONG_RUN_VALUE in str(exc):
                    raise self._plugin_broke(_wrong_run_value_message(exc)) from exc
                if spark_is_gone(self.spark):
                    # Every retry and every run would fail alike, each burning an attempt.
                    raise JobFailedError(
                        f"Job {self.job_name} stopped: Spark stopped while processing {what} "
                        f"(its JVM was stopped or died: out of memory, killed?): "
                        f"{describe_error(exc)}. Its runs are not marked failed; start the "
                        "job again."
                    ) from exc
                error = classify_error(exc, what=what)
                if isinstance(error, JobFailedError):  # the Spark jobs were cancelled
                    raise error from exc
                if isinstance(
                    error, (AccessDeniedError, CredentialsMissingError, InvalidLocationError)
                ):
                    # A permission, credential or location problem is the job's, not the
                    # run's: stop before it marks every run failed and burns their attempts.
                    raise JobFailedError(f"Job {self.job_name} stopped: {error}") from exc
                delay = next(delays, None) if error.retryable else None
                if delay is not None:
                    _logger.warning("%s; retrying in %.1fs", error, delay)
                    time.sleep(delay)
                    continue
                if len(batch) > 1:
                    # One bad run must not fail the others: find it by halving the batch (a
                    # few Spark jobs, not one per run), or after a retryable error that
                    # outlasted its retries, which may be any run's, by trying each alone.
                    parts = [[item] for item in batch] if error.retryable else _halves(batch)
                    _logger.warning(
                        "%s; trying its %d runs in %d parts", error, len(batch), len(parts)
                    )
                    for part in parts:
                        self._write_with_retries(number, part, state, summary)
                    return
                self._fail(runs[0], error, summary, number)
                return
        changed = self._changed_since_listed(batch)
        for run in runs:
            if run.id in changed:
                self._release_changed(run, changed[run.id], number, summary)
            elif not self._commit(run, metrics[run.id], number, summary):
                self._count_skipped(run, number, summary)
        fault_point("after_commit")
        self._stage(state, runs, "committed", number)

    def _load_and_write(
        self, number: int, batch: list[RunListing], state: StateData
    ) -> dict[str, _RunMetrics]:
        runs = [listing.run for listing in batch]
        set_job_description(self.spark, f"{self.job_name} batch {number}: {_describe_runs(runs)}")
        try:
            loaded = self._load(runs, _paths(batch))
            counting = _RowCounting(loaded, runs, keeps_bad_rows=self.sink.writes_bad_rows)
            events = counting.observe_events(loaded.events)
            if self.transform is not None:
                events = counting.observe_output(self._apply_transform(events, runs))
            if self.transform is not None or self.reader is not _default_reader():
                # The sink replaces the partitions the run column names: a value that is
                # not one of the batch's runs would replace another run's output.
                events = _runs_checked(events, runs, "transform" if self.transform else "reader")
            self._stage(state, runs, "loaded", number)
            self._handlers.fire("batch_loaded", RunEvent("batch_loaded", _ids(runs), number))
            fault_point("after_load")
            self.sink.write(events, runs)
            fault_point("mid_write")
            if counting.may_have_bad_rows():
                assert loaded.bad_rows is not None
                bad_rows = loaded.bad_rows
                if self.reader is not _default_reader():
                    bad_rows = _runs_checked(bad_rows, runs, "reader")
                self.sink.write_bad_rows(counting.observe_bad_rows(bad_rows), runs)
        finally:
            set_job_description(self.spark, None)
        metrics = counting.metrics()
        self._warn_unkept_bad_rows(number, metrics)
        self._stage(state, runs, "written", number, metrics)
        fault_point("after_write")
        self._handlers.fire(
            "batch_written",
            RunEvent(
                "batch_written",
                _ids(runs),
                number,
                {"rows_out": sum(m.rows_out for m in metrics.values())},
            ),
        )
        return metrics

    def _warn_unkept_bad_rows(self, number: int, metrics: Mapping[str, _RunMetrics]) -> None:
        unkept = 0 if self.sink.writes_bad_rows else sum(m.bad_rows for m in metrics.values())
        if unkept:
            _logger.warning(
                "Batch %d: %d bad lines were not kept, because %s does not write bad rows "
                "(define write_bad_rows to keep them). They are counted in the manifest's "
                "BadRows.",
                number,
                unkept,
                type(self.sink).__name__,
            )

    def _load(self, runs: Sequence[Run], paths: list[str]) -> _Loaded:
        if self.reader is None:
            self.reader = _default_reader()
        loaded = self.reader(self.spark, paths)
        events, bad_rows = self._reader_frames(loaded)
        for name, frame in (("reader's events", events), ("reader's bad rows", bad_rows)):
            if frame is not None and RUN_COLUMN not in frame.columns:
                raise self._plugin_broke(
                    f"The {name} have no {RUN_COLUMN!r} column: the reader must add the run "
                    "label (YYYY-mm-DD-hh-MM-SS) of each row so each run is written to its own "
                    "partition."
                )
        return _Loaded(events, bad_rows, getattr(loaded, "lines_per_run", None))

    def _reader_frames(self, loaded: Any) -> tuple[DataFrame, DataFrame | None]:
        if _is_dataframe(loaded):
            return loaded, None
        frames = tuple(loaded) if isinstance(loaded, Iterable) else ()
        # (events, None): a reader that keeps no bad rows.
        if len(frames) == 2 and _is_dataframe(frames[0]) and _is_frame_or_none(frames[1]):
            return frames[0], frames[1]
        raise self._plugin_broke(
            f"The reader returned {_describe_value(loaded)}, not a Spark DataFrame, a pair "
            "(events, bad_rows or None) of them or an EnrichedRead."
        )

    def _apply_transform(self, events: DataFrame, runs: Sequence[Run]) -> DataFrame:
        if self.transform is None:
            return events
        result = (
            self.transform(events, list(runs))
            if _takes_two_arguments(self.transform)
            else self.transform(events)
        )
        if not _is_dataframe(result):
            raise self._plugin_broke(
                f"The transform returned {_describe_value(result)}, not a Spark DataFrame "
                "(a missing return?)."
            )
        if RUN_COLUMN not in result.columns:
            raise self._plugin_broke(
                f"The transform dropped the {RUN_COLUMN!r} column; keep it (e.g. group by it "
                "too) so each run's output goes to its own partition."
            )
        return result

    def _plugin_broke(self, problem: str) -> JobFailedError:
        """The job's error for a reader, transform or sink that breaks its contract: it would
        fail every run alike, so no run is marked failed or uses up an attempt."""
        return JobFailedError(
            f"Job {self.job_name} stopped: {problem} Its runs are not marked failed; fix it "
            "and start the job again."
        )

    # -- manifest and state steps ---------------------------------------------------------

    @property
    def _max_attempts(self) -> int:
        return self.retry.max_retries + 1

    def _claim(self, run: Run, *, batch: int | None) -> bool:
        if not self.manifest.claim(
            run.id,
            self.owner,
            lease_seconds=self.lease_seconds,
            max_attempts=self._max_attempts,
        ):
            _logger.info(
                "Skipping %s: committed, skipped, out of attempts, or held by another job", run.id
            )
            return False
        self._held.add(run.id)
        self._handlers.fire("run_claimed", RunEvent("run_claimed", (run.id,), batch))
        return True

    def _commit(
        self, run: Run, metrics: _RunMetrics, batch: int | None, summary: JobSummary
    ) -> bool:
        """Commit a run this job holds; ``False`` when another job took it over meanwhile."""
        try:
            self.manifest.commit(
                run.id,
                self.owner,
                rows_in=metrics.rows_in,
                rows_out=metrics.rows_out,
                bad_rows=metrics.bad_rows,
                output_path=self.sink.output_path(run),
            )
        except OwnershipLostError:
            # Another job took the run over after our lease ran out; it writes the same
            # partition, so the output stays one copy.
            _logger.warning("Lost %s to another job before committing it", run.id)
            self._held.discard(run.id)
            return False
        self._held.discard(run.id)
        summary.runs_committed += 1
        summary.rows_in += metrics.rows_in
        summary.rows_out += metrics.rows_out
        summary.bad_rows += metrics.bad_rows
        self._handlers.fire(
            "run_committed", RunEvent("run_committed", (run.id,), batch, asdict(metrics))
        )
        return True

    def _changed_since_listed(self, batch: Sequence[RunListing]) -> dict[str, str]:
        """The runs of a batch whose files changed since they were listed, and how.

        A run still being copied into the archive would otherwise be committed with only
        the files listed. Runs whose files are all older than a day are not listed again.
        """
        now = datetime.now(timezone.utc)
        recent = [
            listing
            for listing in batch
            if listing.last_modified is None
            or (now - listing.last_modified).total_seconds() < _RECHECKED_FOR_SECONDS
        ]
        changed = {}
        for before, after in zip(recent, self._inspect([listing.run for listing in recent])):
            if before.signature() != after.signature():
                changed[before.run.id] = (
                    f"{len(before.files)} files of {before.size:,} bytes when listed, "
                    f"{len(after.files)} of {after.size:,} now"
                )
        return changed

    def _release_changed(self, run: Run, how: str, batch: int, summary: JobSummary) -> None:
        """Give back a run whose files changed while it was processed, uncommitted."""
        _logger.warning(
            "Run %s changed while it was processed (%s): not committed. It is processed "
            "again, as it then stands, by the next start. If runs are still being copied "
            "when jobs start, give them time to settle (settle_seconds, --settle).",
            run.id,
            how,
        )
        self._release(run.id)
        self._defer(run, summary, batch)

    def _release(self, run_id: str) -> None:
        """Give back a run this source holds, uncommitted: it is pending again at once."""
        try:
            self.manifest.release(run_id, self.owner)
            _logger.info("Released %s", run_id)
        except OwnershipLostError:
            _logger.warning("Could not release %s: another owner holds it now", run_id)
        self._held.discard(run_id)

    def _settle_refused(self, runs: Sequence[Run], batch: int, summary: JobSummary) -> None:
        """Count the runs a claim refused, saying which are out of attempts; a run its jobs
        kept dying on is recorded failed rather than left processing for ever."""
        if not runs:
            return
        entries = self.manifest.get_many([run.id for run in runs])
        for run in runs:
            entry = entries.get(run.id)
            if entry is not None and entry.attempts >= self._max_attempts:
                if entry.status is RunStatus.PROCESSING and self._fail_abandoned(
                    run, entry.attempts, batch, summary
                ):
                    continue
                if entry.status is RunStatus.FAILED:
                    _logger.warning(
                        "Run %s failed %d times and has no attempts left (last error: %s); "
                        "unmark it to process it again, or skip it",
                        run.id,
                        entry.attempts,
                        entry.error,
                    )
            self._count_skipped(run, batch, summary)

    def _count_skipped(self, run: Run, batch: int, summary: JobSummary) -> None:
        summary.runs_skipped += 1
        self._handlers.fire("run_skipped", RunEvent("run_skipped", (run.id,), batch))

    def _fail_abandoned(self, run: Run, attempts: int, batch: int, summary: JobSummary) -> bool:
        message = (
            f"Abandoned: the {attempts} jobs that took run {run.id} stopped while processing "
            "it (killed, out of memory, lost driver?) and it has no attempts left. Find the "
            "cause in their logs, then unmark it to process it again "
            "(`spark-manifests manifest unmark`) or skip it."
        )
        # The manifest checks the lease itself: a live one means the run is not abandoned.
        if not self.manifest.fail_abandoned(run.id, message, max_attempts=self._max_attempts):
            return False
        _logger.error("Run %s failed: %s", run.id, message)
        self._count_failure(run, message, summary, batch)
        return True

    def _fail(self, run: Run, error: SparkManifestsError, summary: JobSummary, batch: int) -> None:
        message = str(error)
        self._held.discard(run.id)
        try:
            self.manifest.fail(run.id, self.owner, message)
        except OwnershipLostError:
            # Another job holds the run now and gives it its own verdict.
            _logger.warning("Lost %s to another job before recording its failure", run.id)
            self._count_skipped(run, batch, summary)
            return
        _logger.error("Run %s failed: %s", run.id, message)
        self._count_failure(run, message, summary, batch, cause=error)

    def _count_failure(
        self,
        run: Run,
        message: str,
        summary: JobSummary,
        batch: int | None,
        *,
        cause: BaseException | None = None,
    ) -> None:
        summary.runs_failed += 1
        # The manifest keeps the whole error; the summary (and completed state) a readable
        # part, so a mass failure does not make a state file of megabytes.
        summary.failures[run.id] = clip_error(message, MAX_SUMMARY_ERROR_CHARS) or ""
        self._handlers.fire(
            "run_failed", RunEvent("run_failed", (run.id,), batch, {"error": message})
        )
        if self.fail_fast:
            raise JobFailedError(
                f"Run {run.id} failed and fail_fast is set: {message}", run_id=run.id
            ) from cause

    @contextlib.contextmanager
    def _leases_renewed(self, runs: Sequence[Run], state: StateData) -> Iterator[None]:
        """Renew the batch's claims, and save the state, every third of a lease while it is
        processed: a batch that outlasts a lease is not taken over by the next job, and the
        state keeps saying the job is at work (see ``_refuse_if_still_running``)."""
        stop = threading.Event()

        def renew_until_stopped() -> None:
            while not stop.wait(self.lease_seconds / 3):
                self._renew(runs, state)

        renewal = threading.Thread(
            target=renew_until_stopped, name=f"{self.job_name} lease renewal", daemon=True
        )
        renewal.start()
        try:
            yield
        finally:
            stop.set()
            renewal.join()

    def _renew(self, runs: Sequence[Run], state: StateData) -> None:
        self._renew_claims(runs)
        try:
            self._save_state(state, "renewing its leases")
        except JobFailedError as exc:  # the main thread's next save stops the job
            _logger.warning("%s", exc)

    def _renew_claims(self, runs: Sequence[Run]) -> None:
        for run in runs:
            if run.id not in self._held:  # committed or failed meanwhile
                continue
            try:
                self.manifest.renew(run.id, self.owner, lease_seconds=self.lease_seconds)
            except NotImplementedError:
                break  # a manifest that cannot renew: its claims last one lease
            except SparkManifestsError as exc:  # taken over, or AWS trouble: the commit tells
                _logger.warning("Could not renew the lease of %s: %s", run.id, exc)

    def _start_spark(self) -> None:
        """Start Spark before claiming a batch: a session that cannot start (a wrong master,
        no Java) is the job's failure, not the runs', and must not use up their attempts."""
        try:
            spark = self.spark
        except Exception as exc:
            advice = (
                " Check that Java 17 is installed and on PATH, or JAVA_HOME names it."
                if "JAVA_GATEWAY_EXITED" in str(exc) or "JAVA_HOME" in str(exc)
                else ""
            )
            raise JobFailedError(
                f"Job {self.job_name} stopped: Spark did not start: "
                f"{describe_error(exc).rstrip('.')}.{advice}"
            ) from exc
        if not self._storage_checked:
            # Checked again by the next run() if it refused: a retry must not get past it.
            self._check_storage_outlives_the_driver(spark)
            self._storage_checked = True

    def _check_storage_outlives_the_driver(self, spark: SparkSession) -> None:
        """Warn when the manifest or state is on the driver's disk while Spark runs on a
        cluster, whose drivers' disks are not kept; refuse in cluster deploy mode, where the
        driver's working directory goes with its YARN container."""
        local = [
            f"{what} {where}"
            for what, where, on_driver in (
                ("manifest", getattr(self.manifest, "path", ""), _is_sqlite(self.manifest)),
                ("state", self.state_store.location.uri, not self.state_store.location.is_s3),
            )
            if on_driver
        ]
        # From the session's conf, not its SparkContext: a Spark Connect session has none.
        master = spark.conf.get("spark.master", "") or ""
        if master.startswith("local") or not local:
            return
        problem = (
            f"Job {self.job_name}: the {' and the '.join(local)} "
            f"{'are' if len(local) > 1 else 'is'} on the driver's disk, but Spark runs on {master}"
        )
        advice = "give --manifest dynamodb://TABLE and --state s3://bucket/prefix/"
        if spark.conf.get("spark.submit.deployMode", "client") == "cluster":
            raise JobFailedError(
                f"{problem} in cluster mode: they would go with the driver's container and "
                f"every run would be processed again. Stopped before claiming a run; {advice}."
            )
        _logger.warning(
            "%s: unless that disk is kept between jobs, every run will be processed again; %s.",
            problem,
            advice,
        )

    def _stage(
        self,
        state: StateData,
        runs: Sequence[Run],
        stage: str,
        batch: int,
        metrics: Mapping[str, _RunMetrics] | None = None,
    ) -> None:
        """Record that ``runs`` reached ``stage``, and save the snapshot."""
        with self._state_lock:  # the lease renewal thread saves the state too
            in_flight = dict(state.get("in_flight") or {})
            for run in runs:
                if stage == "committed":
                    in_flight.pop(run.id, None)
                    continue
                record = dict(in_flight.get(run.id) or _run_record(run))
                record.update(stage=stage, batch=batch)
                if metrics is not None:
                    record["metrics"] = asdict(metrics[run.id])
                in_flight[run.id] = record
            state["in_flight"] = in_flight
            state["last_stage"] = {
                "batch": batch,
                "stage": stage,
                "at": datetime.now(timezone.utc).isoformat(),
            }
            self._save_state(state, f"batch {batch} was {stage}")

    def _save_state(self, state: StateData, moment: str, *, complete: bool = False) -> None:
        try:
            with self._state_lock:
                (self.state_store.complete if complete else self.state_store.update)(state)
        except SparkManifestsError as exc:
            # Without its snapshot a crash could not resume: never go on without it.
            raise JobFailedError(
                f"Job {self.job_name} stopped: could not save its state when {moment}: {exc}"
            ) from exc

    def _report(self, done: int, total: int, message: str) -> None:
        self.progress = Progress(done, total, message)
        self._handlers.fire("progress", self.progress)


# -- helpers ---------------------------------------------------------------------------------


def _open_manifest(manifest: ManifestArg, *, session: Any) -> RunManifest:
    if isinstance(manifest, RunManifest):
        return manifest
    if manifest is None:
        return open_manifest(os.path.join(default_home(), "manifest.sqlite"), session=session)
    refuse_unlikely_new_manifest(os.fspath(manifest))
    return open_manifest(os.fspath(manifest), session=session)


def _open_state_store(state: StateArg, *, client: Any, session: Any) -> StateStore:
    if isinstance(state, StateStore):
        return state
    location = state if state is not None else os.path.join(default_home(), "state")
    return StateStore(location, client=client, session=session)


def _refuse_a_run_folder(archive: Location) -> None:
    """Refuse an archive that is a run folder itself: it holds no runs, and the job would
    end with nothing done, as for an archive with no new runs."""
    folder = archive.key.rstrip("/").rsplit("/", 1)[-1]
    if RUN_FOLDER_RE.match(folder):
        parent = archive.uri.rstrip("/")[: -len(folder)]
        raise InvalidLocationError(
            f"The archive {archive.uri} is a run folder: give the folder that holds the run "
            f"folders ({parent})."
        )


def _refuse_shared_labels(runs: Sequence[Run]) -> None:
    """Stop when two runs of the archive have the same time (its ``run=`` and ``run-``
    folders): both would write the output partition of that label, and the second would
    replace the first's events while both stay committed."""
    by_label: dict[str, list[Run]] = {}
    for run in runs:
        by_label.setdefault(run.label, []).append(run)
    for label, same in by_label.items():
        if len(same) > 1:
            folders = ", ".join(run.path for run in same)
            raise InvalidLocationError(
                f"Runs {folders} have the same time, so their output would share the "
                f"partition run={label}. Merge their files into one of the folders and "
                "remove the other, or move one out of the archive."
            )


def _is_sqlite(manifest: RunManifest) -> bool:
    from .manifest_sqlite import SQLiteRunManifest

    return isinstance(manifest, SQLiteRunManifest)


def _same_place(one: Location, other: Location) -> bool:
    """Whether two locations name the same objects (s3:// and s3a:// do; a final / is moot)."""
    return (one.bucket, one.key.rstrip("/")) == (other.bucket, other.key.rstrip("/"))


def _settled(summary: JobSummary) -> int:
    return (
        summary.runs_committed + summary.runs_failed + summary.runs_skipped + summary.runs_deferred
    )


def _ids(runs: Sequence[Run]) -> tuple[str, ...]:
    return tuple(run.id for run in runs)


_GLOB_CHARACTERS = re.compile(r"[\\{}\[\]*?]")

# A run whose files are all older than this when listed is taken as complete: it is not
# listed again before its commit.
_RECHECKED_FOR_SECONDS = 24 * 3600

# The owner a source makes itself: "<job>@<host>:<pid>:<8 hex digits>".
_OWNER_PATTERN = re.compile(r"@(?P<host>[^@:]+):(?P<pid>[0-9]+):[0-9a-f]{8}$")
# The process that saved a running state: "<host>:<pid>".
_PROCESS_PATTERN = re.compile(r"^(?P<host>[^@:]+):(?P<pid>[0-9]+)$")

# The owners of the sources of this process inside run() now.
_OWNERS_AT_WORK: set[str] = set()


def _this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _saver_gone(process: Any, owner: str) -> bool:
    """Whether the process that saved a running state as ``owner`` is not at work: a process
    of this host that has ended, or a source of this process no longer running (a run that
    stopped on an error, started again in the same notebook).

    ``process`` (``host:pid``) is recorded by this version; an older one's state has only
    the owner, which names its process.
    """
    found = _PROCESS_PATTERN.match(str(process or "")) or _OWNER_PATTERN.search(owner)
    if os.name != "posix" or not found or found["host"] != socket.gethostname():
        return False
    pid = int(found["pid"])
    if pid == os.getpid():
        return owner not in _OWNERS_AT_WORK
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # it exists, under another user
        return False
    return False


def _run_record(run: Run) -> dict[str, str]:
    return {
        "id": run.id,
        "path": run.path,
        "name": run.name,
        "timestamp": run.timestamp.isoformat(),
    }


def _metrics_from_record(record: Mapping[str, Any]) -> _RunMetrics:
    """The counts of a run in flight; counts another version added are left out."""
    recorded = record.get("metrics") or {}
    return _RunMetrics(
        **{
            name: value
            for name, value in recorded.items()
            if name in _RunMetrics.__dataclass_fields__ and type(value) is int
        }
    )


def _readable_record(run_id: str, record: Any) -> bool:
    """Whether a run in flight of a running state is as :func:`_run_record` writes it."""
    fields = ("id", "path", "name", "timestamp")
    if not isinstance(record, dict) or record.get("id") != run_id:
        return False
    if not all(isinstance(record.get(field), str) for field in fields):
        return False
    try:
        from_iso(record["timestamp"])
    except ValueError:
        return False
    return True


def _run_from_record(record: Mapping[str, Any]) -> Run:
    return Run(
        id=record["id"],
        timestamp=from_iso(record["timestamp"]),
        path=record["path"],
        name=record["name"],
    )


def _paths(batch: Sequence[RunListing]) -> list[str]:
    """The files of a batch as the reader gets them: Hadoop reads every path given to
    Spark as a glob, so a file named ``part[1]`` would match ``part1`` instead."""
    return [
        _GLOB_CHARACTERS.sub(r"\\\g<0>", file.path) for listing in batch for file in listing.files
    ]


def _readable(listing: RunListing) -> bool:
    """Whether :meth:`ManifestedRunSource.read` can load a run; says why not."""
    if listing.problem is not None:
        _logger.warning("Not reading run %s: %s", listing.run.id, listing.problem)
    return listing.problem is None and not is_cold(listing)


def _is_dataframe(value: Any) -> bool:
    return hasattr(value, "columns") and hasattr(value, "write") and hasattr(value, "schema")


def _halves(batch: list[RunListing]) -> list[list[RunListing]]:
    middle = len(batch) // 2
    return [batch[:middle], batch[middle:]]


def _is_frame_or_none(value: Any) -> bool:
    return value is None or _is_dataframe(value)


def _describe_value(value: Any) -> str:
    return "None" if value is None else f"a {type(value).__module__}.{type(value).__qualname__}"


def _default_reader() -> Reader:
    from .enriched import read_enriched

    return read_enriched


def _takes_two_arguments(function: Callable[..., Any]) -> bool:
    """Whether ``function`` is ``transform(df, runs)``: it has two required positional
    parameters (one with a default, ``transform(df, column="x")``, is not for the runs)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(required) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in parameters)


# The start of the error a row with a wrong run value raises from inside the Spark job.
_WRONG_RUN_VALUE = "spark-manifests: the run value "


def _runs_checked(frame: DataFrame, runs: Sequence[Run], what: str) -> DataFrame:
    """``frame`` whose Spark job fails on a row whose run value is not the label of one of
    ``runs`` (another run's, a day, NULL): written, it would replace that partition."""
    from pyspark.sql import functions as F

    labels = sorted({run.label for run in runs})
    column = F.col(RUN_COLUMN)
    error = F.concat(
        F.lit(_WRONG_RUN_VALUE),
        F.coalesce(column.cast("string"), F.lit("NULL")),
        F.lit(
            f" of a row the {what} gave is not the label of a run of this batch "
            f"({_describe_runs(runs, most=3)}); "
        ),
    )
    return frame.withColumn(
        RUN_COLUMN, F.when(column.isin(labels), column).otherwise(F.raise_error(error))
    )


def _wrong_run_value_message(exc: BaseException) -> str:
    text = str(exc)
    start = text.index(_WRONG_RUN_VALUE) + len(_WRONG_RUN_VALUE)
    end = text.find("; ", start)
    return (
        f"The run value {text[start : end if end >= 0 else None]}: written, it would replace "
        "the output of the run (or partition) it names. Keep the run column as the reader "
        "set it (group by it too)."
    )


def _describe_runs(runs: Sequence[Run], most: int = 20) -> str:
    labels = [run.label for run in runs]
    shown = ", ".join(labels[:most])
    return shown + (f" (+{len(labels) - most} more)" if len(labels) > most else "")


def _observe_per_run(
    frame: DataFrame, runs: Sequence[Run], name: str
) -> tuple[DataFrame, Callable[[], dict[str, int]]]:
    """Count rows per run while the write runs, instead of a separate count() job.

    Returns the observed frame and a function that reads the counts once an action ran.
    """
    from pyspark.sql import functions as F

    labels = sorted({run.label for run in runs})
    column = F.col(RUN_COLUMN)

    def counted_apart() -> dict[str, Any]:
        counts = _count_per_run(frame, runs)
        return {f"n{i}": counts.get(label, 0) for i, label in enumerate(labels)}

    observed, values = _observe(
        frame,
        name,
        counted_apart,
        *[F.count(F.when(column == label, 1)).alias(f"n{i}") for i, label in enumerate(labels)],
    )

    def counts() -> dict[str, int]:
        found = values()
        return {label: int(found.get(f"n{i}") or 0) for i, label in enumerate(labels)}

    return observed, counts


def _observe_total(frame: DataFrame, name: str) -> tuple[DataFrame, Callable[[], int]]:
    """Count all rows while the write runs; see :func:`_observe_per_run`."""
    from pyspark.sql import functions as F

    observed, values = _observe(
        frame, name, lambda: {"n": frame.count()}, F.count(F.lit(1)).alias("n")
    )
    return observed, lambda: int(values().get("n") or 0)


#: How long to wait for an observation once the sink returned, before counting apart.
OBSERVATION_WAIT_SECONDS = 10.0


def _observe(
    frame: DataFrame, name: str, counted_apart: Callable[[], dict[str, Any]], *aggregates: Column
) -> tuple[DataFrame, Callable[[], dict[str, Any]]]:
    """``frame`` observed, and a function that reads the observation, or when it never
    reports, the same values from ``counted_apart``."""
    from pyspark.sql import Observation

    observation = Observation(name)
    observed = frame.observe(observation, *aggregates)

    def values() -> dict[str, Any]:
        # Observation.get has no timeout: a thread waits for it, the job does not.
        waiting = _ObservationWait(observation)
        found = waiting.result(OBSERVATION_WAIT_SECONDS)
        if found is not None:
            return found
        # Observations report on DataFrame actions only: a sink that writes through the
        # RDD (foreachPartition) leaves them waiting. A count over the observed frame makes
        # them report (and ends the waiting thread).
        _logger.warning(
            "The rows (%s) were not counted while the sink wrote them (a write through "
            "foreachPartition, or Spark slow to report): counting them by a Spark job of "
            "their own",
            name,
        )
        observed.groupBy().count().collect()
        found = waiting.result(OBSERVATION_WAIT_SECONDS)
        return found if found is not None else counted_apart()

    return observed, values


class _ObservationWait:
    """A thread that waits for an observation's values (``Observation.get`` blocks)."""

    def __init__(self, observation: Any) -> None:
        self._observation = observation
        self._found: dict[str, Any] = {}
        self._failed: list[BaseException] = []
        self._thread = threading.Thread(target=self._read, name="observation", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            self._found.update(self._observation.get)
        except BaseException as exc:  # handed to the caller's thread
            self._failed.append(exc)

    def result(self, wait_seconds: float) -> dict[str, Any] | None:
        """The values, or ``None`` if they are not there within ``wait_seconds``."""
        self._thread.join(wait_seconds)
        if self._thread.is_alive():
            return None
        if self._failed:
            raise self._failed[0]
        return self._found


def _keeps_observation(frame: DataFrame, name: str) -> bool:
    """Whether the optimized plan of ``frame`` still holds the observation ``name``.

    The optimizer drops what lies under an operator it proves empty (``where("false")``,
    ``limit(0)``), observations included; those never report (Spark 3.5 waits for them for
    ever, Spark 4 fails).
    """
    jdf = getattr(frame, "_jdf", None)
    if jdf is None:  # Spark Connect: no plan to look at from here
        return True
    return f"CollectMetrics {name}," in jdf.queryExecution().optimizedPlan().toString()


def _count_per_run(frame: DataFrame, runs: Sequence[Run]) -> dict[str, int]:
    """Rows per run label, by a job of its own."""
    labels = {run.label for run in runs}
    counted = frame.groupBy(RUN_COLUMN).count().collect()
    return {row[RUN_COLUMN]: row["count"] for row in counted if row[RUN_COLUMN] in labels}


class _RowCounting:
    """The rows of a batch per run (in, out, bad), counted while the batch is written.

    Counting per run costs one aggregate per run on every row, which with hundreds of runs
    in a batch is a good part of the job. When the reader counted the lines of each run
    (``lines_per_run``), one total is enough: if the events reaching the transform are as
    many as the lines read, no line was bad, the bad rows are not computed at all, and each
    run's events are its lines. Otherwise the bad rows are written and counted per run
    (they are few), and each run's events are its lines minus its bad rows; a transform that
    reads only part of its input (a limit) ends up there too, so it costs time, never counts.
    """

    def __init__(self, loaded: _Loaded, runs: Sequence[Run], *, keeps_bad_rows: bool) -> None:
        self._runs = runs
        self._keeps_bad_rows = keeps_bad_rows and loaded.bad_rows is not None
        # Bad rows a sink does not keep are still counted: from the lines read, or else
        # by a job of their own.
        self._unkept_bad_rows = None if keeps_bad_rows else loaded.bad_rows
        self._lines = loaded.lines_per_run
        # One total stands for the per-run counts only when the bad rows are counted too.
        self._total_is_enough = self._keeps_bad_rows and self._lines is not None
        self._events_total: Callable[[], int] | None = None
        self._events: Callable[[], dict[str, int]] | None = None
        self._output: Callable[[], dict[str, int]] | None = None
        self._bad: Callable[[], dict[str, int]] | None = None
        self._names = {kind: f"{kind}_{uuid.uuid4().hex[:8]}" for kind in ("in", "out", "bad")}
        self._input: DataFrame | None = None

    def observe_events(self, events: DataFrame) -> DataFrame:
        """``events`` as the reader gave them, counted."""
        self._input = events
        if not self._total_is_enough:
            events, self._events = _observe_per_run(events, self._runs, self._names["in"])
        else:
            events, self._events_total = _observe_total(events, self._names["in"])
        return events

    def observe_output(self, events: DataFrame) -> DataFrame:
        """``events`` after the transform, counted (without a transform, output is input).

        When the transform lets the optimizer drop the input count from the plan, the input
        is counted another way: from the bad rows, or by a job of its own.
        """
        events, self._output = _observe_per_run(events, self._runs, self._names["out"])
        if not _keeps_observation(events, self._names["in"]):
            _logger.info("The transform's plan skips its input; counting the input apart")
            self._events_total = None
            if self._events is not None:
                source, runs = self._input, self._runs
                assert source is not None
                self._events = lambda: _count_per_run(source, runs)
        return events

    def may_have_bad_rows(self) -> bool:
        """Whether the bad rows must be written; call after the events were written."""
        if not self._keeps_bad_rows:
            return False
        if self._lines is None or self._events_total is None:
            return True
        lines, events = sum(self._lines.values()), self._events_total()
        if events == lines:
            _logger.debug("%d lines, %d events: no bad rows to write", lines, events)
            return False
        return True

    def observe_bad_rows(self, bad_rows: DataFrame) -> DataFrame:
        """``bad_rows`` counted."""
        bad_rows, self._bad = _observe_per_run(bad_rows, self._runs, self._names["bad"])
        return bad_rows

    def metrics(self) -> dict[str, _RunMetrics]:
        """Rows per run id; call once everything was written."""
        bad = self._bad() if self._bad is not None else {}
        if self._events is not None:
            events = self._events()
            if self._unkept_bad_rows is not None:
                bad = self._count_unkept_bad_rows(events)
        else:
            lines = self._lines or {}
            events = {
                run.label: lines.get(run.label, 0) - bad.get(run.label, 0) for run in self._runs
            }
        output = self._output() if self._output is not None else events
        return {
            run.id: _RunMetrics(
                rows_in=events.get(run.label, 0) + bad.get(run.label, 0),
                rows_out=output.get(run.label, 0),
                bad_rows=bad.get(run.label, 0),
            )
            for run in self._runs
        }

    def _count_unkept_bad_rows(self, events: dict[str, int]) -> dict[str, int]:
        if self._lines is not None:
            lines = self._lines
            return {
                run.label: max(lines.get(run.label, 0) - events.get(run.label, 0), 0)
                for run in self._runs
            }
        assert self._unkept_bad_rows is not None
        return _count_per_run(self._unkept_bad_rows, self._runs)


#: The columns of :meth:`ManifestedRunSource.status`, in order, with their Spark types.
STATUS_COLUMNS = {
    "run": "string",
    "run_id": "string",
    "status": "string",
    "attempts": "int",
    "owner": "string",
    "rows_in": "bigint",
    "rows_out": "bigint",
    "bad_rows": "bigint",
    "started_at": "timestamp",
    "committed_at": "timestamp",
    "error": "string",
}


def status_rows(runs: Sequence[Run], manifest: RunManifest) -> list[dict[str, Any]]:
    """One row per run: its label, id and manifest status (``PENDING`` if never seen)."""
    entries = manifest.get_many([run.id for run in runs])
    return [_status_row(run, entries.get(run.id)) for run in runs]


def _status_row(run: Run, entry: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "run": run.label,
        "run_id": run.id,
        "status": entry.status.value if entry else "PENDING",
    }
    for name in list(STATUS_COLUMNS)[len(row) :]:
        row[name] = getattr(entry, name, None) if entry else None
    return row
