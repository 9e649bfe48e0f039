"""``ManifestedRunSource``: the driver loop that processes every run of an archive exactly once.

For each batch of pending runs: claim them in the manifest, load them through the reader and
transform, write them through the sink, commit them, and save a state snapshot after every
stage, so that a job killed anywhere resumes where it stopped. See the README's "In a job"
and "Job state files" for the whole story.

This module is the facade; each stage is a unit owning its state: ``_planning`` (pending
runs, batches), ``_claims`` (claims, lease renewal, verdicts), ``_snapshots`` (running state,
resume), ``plugins`` (reader and transform contracts), ``_counting`` (rows), ``_preflight``
(Spark), ``_ledger`` (summary, events), ``_batch_writer`` (one batch, by ``retry.decide``).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Union

from ._batch_writer import BatchWriter
from ._claims import Claims
from ._discovery import DEFAULT_RECONCILE_SECONDS
from ._events import Progress
from ._forwarded import ForwardedSettings
from ._ledger import MAX_SUMMARY_ERROR_CHARS as MAX_SUMMARY_ERROR_CHARS
from ._ledger import JobSummary, OutcomeLedger
from ._locations import Location, PathLike, parse_location
from ._planning import BatchPlanner, paths, readable, refuse_a_run_folder, refuse_shared_labels
from ._preflight import SparkArg, SparkPreflight
from ._snapshots import JobSnapshots, at_work
from ._status import STATUS_COLUMNS as STATUS_COLUMNS
from ._status import status_rows, status_table
from .manifest import MAX_LEASE_SECONDS, RunManifest, check_lease_seconds
from .manifest_open import open_manifest, refuse_unlikely_new_manifest
from .plugins import Reader, ReaderAdapter, Transform, TransformAdapter
from .retry import RetryPolicy
from .runs import Run, check_window
from .sinks import ParquetSink, Sink
from .state import StateStore

if TYPE_CHECKING:
    import boto3
    from pyspark.sql import DataFrame, SparkSession

    from .iglu import IgluLike

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

ManifestArg = Union[RunManifest, str, "os.PathLike[str]", None]
StateArg = Union[StateStore, str, "os.PathLike[str]", None]


class ManifestedRunSource(ForwardedSettings):
    """Process the runs of an archive that the manifest has not seen, exactly once.

    Parameters
    ----------
    archive
        ``s3://bucket/prefix/`` (also ``s3a://``, ``s3n://``) or a local directory holding
        ``run=YYYY-mm-DD-hh-MM-SS`` folders.
    output
        Where the default ``ParquetSink`` writes (unless ``sink`` is given).
    spark
        The session; or a function that returns one, called when the first batch is read,
        so a job with nothing pending starts no Spark; or ``None``: the active session, else
        a new one (local on a plain machine).
    manifest
        A ``RunManifest``, a URI (``dynamodb://TABLE``, a SQLite path), or ``None`` for the
        embedded SQLite file under ``DEFAULT_HOME``.
    state
        A ``StateStore``, a location, or ``None`` for a local directory under ``DEFAULT_HOME``.
    job_name
        Names the state snapshots (``<job>_running.json``) and the owner of the claims.
    reader
        ``reader(spark, paths)`` returning an ``EnrichedRead`` (events, bad rows), a pair
        of DataFrames, or a DataFrame; each must carry a ``run`` column. An
        ``EnrichedRead`` with ``lines_per_run`` lets the source skip the bad rows of a batch
        that has none. The paths are the batch's files, Hadoop glob characters escaped.
        Default: ``read_enriched``, given the schemas met by the job's committed runs.
    iglu
        Type the default reader's entity columns from Iglu schemas (fetched once per job): a
        resolver config path or document, or repositories (see ``iglu``).
    transform
        ``transform(df)`` or ``transform(df, runs)``; keeps the ``run`` column. Identity by default.
    sink
        A ``Sink``; default: a ``ParquetSink`` on ``output``.
    max_runs_per_batch, max_bytes_per_batch
        How many runs, and how many input bytes, one Spark job takes at most.
    since, until, limit
        Process only runs in the time window, and at most ``limit`` of them.
    retry
        How retryable failures are retried; see ``RetryPolicy``.
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
        files. A run younger than this when listed (without it: a day) is listed again
        before its commit, and not committed if its files changed meanwhile.
    reconcile_seconds, full_scan
        A start lists the archive from its watermark on (every run before it is settled),
        and the whole archive when its last full listing is ``reconcile_seconds`` old (a
        day by default; 0: every start) or with ``full_scan``: that finds runs copied late
        below the watermark. See the manifest page of the docs.
    take_over
        Resume the job's running state even when it was saved less than ``lease_seconds``
        ago by a process that may still be at work (by default that raises
        ``JobAlreadyRunningError``). Only for a job known to be dead.
    client, session
        A boto3 S3 client, or a session to make clients, for the archive, an S3 state
        location and the sink's output checks; the session also opens a manifest given as
        a URI.
    s3_setup
        When the archive or ``output`` is on S3, make Spark read and write it through s3a
        (off EMR and Glue): the ``hadoop-aws`` package of a session this starts, and the
        endpoint and credentials settings (see the docs' S3 page). ``False`` leaves S3 to
        the session's own configuration.

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
        iglu: IgluLike | None = None,
        transform: Transform | Callable[..., DataFrame] | None = None,
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
        reconcile_seconds: float = DEFAULT_RECONCILE_SECONDS,
        full_scan: bool = False,
        take_over: bool = False,
        client: Any | None = None,
        session: boto3.session.Session | None = None,
        s3_setup: bool = True,
    ) -> None:
        _check_options(
            sink, output, max_runs_per_batch, max_bytes_per_batch, settle_seconds, reconcile_seconds
        )
        check_window(since, until, limit)
        check_lease_seconds(lease_seconds)
        self._reader = ReaderAdapter(
            reader, job_name=job_name, iglu=iglu, session=session, s3_client=client
        )
        self.archive = parse_location(archive, what="archive")
        self.job_name = job_name
        # A manifest this source opened is closed with it; one it was given is the caller's.
        self._owns_manifest = not isinstance(manifest, RunManifest)
        self.manifest = _open_manifest(manifest, session=session)
        self.state_store = _open_state_store(state, client=client, session=session)
        self.sink = sink or ParquetSink(output, client=client, session=session)  # type: ignore[arg-type]
        self.retry = retry or RetryPolicy()
        self._owner = owner
        self._read_cursor: set[str] = set()
        self._ledger = OutcomeLedger(self.job_name, fail_fast=fail_fast)
        self._planner = _planner_of(
            self,
            (max_runs_per_batch, max_bytes_per_batch),
            (since, until, limit),
            (settle_seconds, reconcile_seconds, full_scan),
            client=client,
            session=session,
        )
        self._build_units(spark, transform, output, s3_setup, lease_seconds, take_over)

    def _build_units(
        self,
        spark: SparkArg,
        transform: Any,
        output: PathLike | None,
        s3_setup: bool,
        lease_seconds: int,
        take_over: bool,
    ) -> None:
        """The stage units after planning, each owning its part of the job's state."""
        self._claims = Claims(
            self.manifest,
            self.sink,
            self._ledger,
            owner=lambda: self.owner,
            lease_seconds=lease_seconds,
            max_attempts=self.retry.max_retries + 1,
        )
        self._snapshots = JobSnapshots(
            self.state_store,
            job_name=self.job_name,
            archive=self.archive,
            lease_seconds=lease_seconds,
            take_over=take_over,
        )
        self._preflight = SparkPreflight(
            spark,
            job_name=self.job_name,
            manifest=self.manifest,
            state_store=self.state_store,
            s3_locations=(self.archive.uri, "" if output is None else os.fspath(output)),
            s3_setup=s3_setup,
        )
        self._transform = TransformAdapter(transform, job_name=self.job_name)
        self._batch_writer = BatchWriter(
            job_name=self.job_name,
            preflight=self._preflight,
            planner=self._planner,
            claims=self._claims,
            snapshots=self._snapshots,
            ledger=self._ledger,
            reader=self._reader,
            transform=self._transform,
            sink=self.sink,
            retry=self.retry,
        )

    # -- the data-source contract -------------------------------------------------------

    @property
    def spark(self) -> SparkSession:
        return self._preflight.session

    @property
    def owner(self) -> str:
        if self._owner is None:
            self._owner = (
                f"{self.job_name}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
            )
        return self._owner

    @property
    def progress(self) -> Progress:
        """Runs done out of runs to do, and what is happening now."""
        return self._ledger.progress

    def on(self, event: str, handler: Callable[[Any], None]) -> ManifestedRunSource:
        """Call ``handler`` on ``event``; returns the source so calls chain.

        Events: ``run_claimed``, ``batch_loaded``, ``batch_written``, ``run_committed``,
        ``run_failed``, ``run_skipped``, ``run_deferred`` (left for a later start: in cold
        storage, still settling, or changed while processed) (a ``RunEvent`` each) and
        ``progress`` (a ``Progress(done, total, message)``).

        Examples
        --------
        >>> source.on("run_committed", lambda e: print(e.run_ids))  # doctest: +SKIP
        """
        self._ledger.handlers.add(event, handler)
        return self

    def off(self, event: str, handler: Callable[[Any], None] | None = None) -> ManifestedRunSource:
        """Stop calling ``handler`` (or every handler) on ``event``: a notebook cell run again
        adds its lambda again.

        Examples
        --------
        >>> source.off("run_committed")  # doctest: +SKIP
        """
        self._ledger.handlers.remove(event, handler)
        return self

    def pending(self) -> list[Run]:
        """The runs in the archive (within since/until, at most ``limit``) not yet processed."""
        return self._planner.pending()

    def read(self, n: int) -> DataFrame | None:
        """The transformed events of the next up-to-``n`` pending runs, or ``None`` at the end.

        Nothing is claimed or committed: for exploring in a notebook. Each call moves on to
        runs the previous calls did not return.
        """
        runs = [run for run in self.pending() if run.id not in self._read_cursor][:n]
        if not runs:
            return None
        batch = [listing for listing in self._planner.inspect(runs) if readable(listing)]
        self._read_cursor.update(run.id for run in runs)
        if not batch:
            return self.read(n)
        loaded = [listing.run for listing in batch]
        events = self._reader.load(self.spark, paths(batch)).events
        return self._transform.apply(events, loaded)

    def status(self, *, as_spark: bool = False) -> Any:
        """A table of the archive's runs with their manifest status, rows and times.

        A pandas DataFrame when pandas is installed (or a Spark DataFrame with
        ``as_spark=True``) with the columns of ``STATUS_COLUMNS``, even when empty;
        runs the manifest has never seen have status ``PENDING``.
        """
        return status_table(self.status_rows(), lambda: self.spark, as_spark=as_spark)

    def status_rows(self) -> list[dict[str, Any]]:
        """The rows of ``status`` as plain dictionaries."""
        return status_rows(self._planner.archive_runs(), self.manifest)

    def close(self) -> None:
        """Release the claims this source still holds, so another job can take them at once,
        and close the manifest if the source opened it (from a URI or the default)."""
        self._claims.release_all()
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
        runs, whole = self._planner.discover()
        refuse_shared_labels(runs)
        if not runs and whole:
            refuse_a_run_folder(self.archive)
            _logger.warning(
                "No run folders (run=YYYY-mm-DD-hh-MM-SS) in %s%s: is it the right archive?",
                self.archive.uri,
                "" if self.since is None and self.until is None else " within since/until",
            )
        if self.sink.supports_batch_commits:
            # Such a sink reads its tables through Spark in prepare() and on resume (whether
            # a batch landed): the job's session must be running first, not just any session.
            self._preflight.start()
        # Before the snapshot: an output holding another manifest's runs is a wrong argument.
        self.sink.prepare(job_name=self.job_name, manifest=self.manifest.uri)
        self._owner = self._snapshots.open(self._owner)
        self._snapshots.start(self.owner)
        with at_work(self.owner):
            try:
                return self._resume_and_process(runs, started)
            except BaseException:
                # Stopped (Ctrl-C, SIGTERM) or failed (a missing table, Spark gone): this
                # process no longer works on the state, so a start on another host need not
                # wait a lease.
                self._snapshots.record_stop()
                raise

    def _resume_and_process(self, runs: Sequence[Run], started: float) -> JobSummary:
        summary = self._ledger.start(self.owner)
        self._snapshots.resume(self._claims)
        pending = self._planner.pending_among(runs)
        total = len(pending)
        self._ledger.report(0, total, f"{total} runs pending")
        # Progress counts the pending runs only, not those the resume settled.
        settled_before = summary.settled
        batches = self._planner.batches(pending)
        for number, batch in enumerate(batches, start=1 + summary.batches):
            self._batch_writer.process(number, batch)
            summary.batches = number
            done = summary.settled - settled_before
            self._ledger.report(min(done, total), total, f"batch {number} done")
        self._planner.settle_watermark()
        summary.seconds = round(time.monotonic() - started, 3)
        self._snapshots.complete(summary)
        self._ledger.log_done()
        return summary


# -- helpers ---------------------------------------------------------------------------------


def _planner_of(
    source: ManifestedRunSource,
    limits: tuple[int, int | None],
    window: tuple[datetime | None, datetime | None, int | None],
    timing: tuple[float, float, bool],
    **aws: Any,
) -> BatchPlanner:
    """The planner of ``source``'s batches (``limits``: runs, bytes), in ``window``, with
    ``timing``: settle seconds, reconcile seconds and whether to list the whole archive now."""
    settle_seconds, reconcile_seconds, full_scan = timing
    return BatchPlanner(
        source.archive,
        source.manifest,
        source.sink,
        max_runs=limits[0],
        max_bytes=limits[1],
        window=window,
        settle_seconds=settle_seconds,
        max_attempts=source.retry.max_retries + 1,
        on_deferred=source._ledger.deferred,
        reconcile_seconds=reconcile_seconds,
        full_scan=full_scan,
        **aws,
    )


def _check_options(
    sink: Sink | None,
    output: PathLike | None,
    max_runs_per_batch: int,
    max_bytes_per_batch: int | None,
    settle_seconds: float,
    reconcile_seconds: float,
) -> None:
    if sink is None and output is None:
        raise ValueError("Give either output= (a location for Parquet output) or sink=.")
    if max_runs_per_batch < 1:
        raise ValueError(f"max_runs_per_batch must be at least 1, got {max_runs_per_batch}")
    if max_bytes_per_batch is not None and max_bytes_per_batch < 1:
        raise ValueError(f"max_bytes_per_batch must be at least 1, got {max_bytes_per_batch}")
    if not 0 <= settle_seconds <= MAX_LEASE_SECONDS:
        raise ValueError(
            f"settle_seconds must be between 0 and {MAX_LEASE_SECONDS}, got {settle_seconds}"
        )
    if not 0 <= reconcile_seconds < float("inf"):
        raise ValueError(f"reconcile_seconds must be 0 or more, got {reconcile_seconds}")


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
