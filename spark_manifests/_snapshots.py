"""The job's state snapshots: the running state saved after every stage, read back on resume.

``JobSnapshots`` owns the job's ``StateData`` while a job runs: it
opens it (refusing one that another run of the job may still be working on), records each
batch's runs in flight and their stage, and completes it. The records of runs in flight, and
whether the process that saved a state still lives, are here too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any, cast

from ._claims import Claims
from ._ledger import JobSummary, RunMetrics
from ._locations import Location, parse_location
from ._time import from_iso
from .exceptions import (
    CorruptStateError,
    JobAlreadyRunningError,
    JobFailedError,
    SparkManifestsError,
)
from .manifest import RunStatus
from .runs import Run
from .sinks import BatchCommitSink, RunRows, Sink
from .state import StateData, StateStore

_logger = logging.getLogger(__name__)

# The owner a source makes itself: "<job>@<host>:<pid>:<8 hex digits>".
_OWNER_PATTERN = re.compile(r"@(?P<host>[^@:]+):(?P<pid>[0-9]+):[0-9a-f]{8}$")
# The process that saved a running state: "<host>:<pid>".
_PROCESS_PATTERN = re.compile(r"^(?P<host>[^@:]+):(?P<pid>[0-9]+)$")

#: Keys of the job's state that outlive its runs: a run that starts anew resets the rest.
KEPT_ACROSS_RUNS = ("entity_schemas",)

# The owners of the sources of this process inside run() now.
_OWNERS_AT_WORK: set[str] = set()


class JobSnapshots:
    """The running state of job ``job_name`` on ``archive`` in ``store``."""

    def __init__(
        self,
        store: StateStore,
        *,
        job_name: str,
        archive: Location,
        lease_seconds: int,
        take_over: bool,
    ) -> None:
        self.store = store
        self.job_name = job_name
        self.archive = archive
        self.lease_seconds = lease_seconds
        self.take_over = take_over
        self.state = StateData()
        # The lease renewal thread saves the state too.
        self._lock = threading.RLock()

    def open(self, owner: str | None) -> str | None:
        """Load the job's state and save it as running; the owner whose claims a killed
        run left (to be taken over), else ``owner``."""
        state = self.state = self.store.get_or_create(self.job_name)
        if state.origin == "running":
            previous = str(state.get("owner") or "")
            # First: a job of this name at work on another archive is not this job's run.
            self._refuse_another_archive()
            self._refuse_if_still_running(previous, owner)
            self._check_in_flight()
            if owner is None and previous:
                # The last run of this job was killed holding claims: take its identity so
                # its claims are ours again instead of waiting for their leases to expire.
                owner = previous
                _logger.info("Resuming job %s as %s", self.job_name, owner)
        else:
            kept = {key: state[key] for key in KEPT_ACROSS_RUNS if key in state}
            state.reset()
            state.update(kept)
            state["archive"] = self.archive.uri
            state["in_flight"] = {}
        return owner

    def start(self, owner: str) -> None:
        """Save the opened state as running under ``owner``, in this process."""
        self.state["owner"] = owner
        self.state["stopped_at"] = None
        # The owner of a resumed job names the dead process it took over from: the process
        # at work is recorded apart, for a later start to tell whether it still is.
        self.state["process"] = _this_process()
        self.save("starting")

    def _refuse_if_still_running(self, previous: str, owner: str | None) -> None:
        """Stop when the running state may belong to a run of this job still at work: both
        would resume it and process the same runs as one owner.

        A snapshot saved a lease ago or more is a dead job's (its claims have expired too);
        so is one whose owner was a process of this host that has ended, or this process.
        """
        state = self.state
        if self.take_over or not previous or state.get("stopped_at"):
            return
        if previous == owner and state.get("process") in (None, _this_process()):
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

    def _refuse_another_archive(self) -> None:
        """The runs in flight of a running state belong to its archive: resumed from another
        one, they would be neither committed nor redone."""
        archive = self.state.get("archive")
        if archive and not _same_place(parse_location(archive), self.archive):
            raise SparkManifestsError(
                f"Job {self.job_name} has a running state on {archive} (a run of it is at "
                f"work there, or stopped before it ended); this start is on "
                f"{self.archive.uri}. Give this archive its own job name (--job), or run the "
                f"job on {archive} to finish it."
            )

    def _check_in_flight(self) -> None:
        """Refuse a running state whose runs in flight cannot be read (edited by hand, or
        written by another version): every start would stop on it with a traceback."""
        in_flight = self.state.get("in_flight") or {}
        records = in_flight.items() if isinstance(in_flight, dict) else [("", in_flight)]
        for run_id, record in records:
            if not _readable_record(run_id, record):
                raise CorruptStateError(
                    f"The running state of job {self.job_name} in {self.store.location} "
                    f"has a run in flight it cannot read ({run_id or 'in_flight'}: "
                    f"{str(record)[:200]}). Restore it from the job's history "
                    "(StateStore.history / restore), or delete it: the runs it held are "
                    "processed again once their leases expire."
                )

    def in_flight(self) -> dict[str, dict[str, Any]]:
        """The records of the runs in flight, by run id (a copy)."""
        return dict(self.state.get("in_flight") or {})

    def resume(self, claims: Claims) -> None:
        """Finish what a killed run of this job left: commit runs already written.

        Only a run the manifest still shows processing under this job's owner is committed
        without recomputing it: if another job took it over meanwhile, that job may have
        rewritten part of its output, so it is processed again.
        """
        in_flight = self.in_flight()
        if not in_flight:
            return
        entries = claims.manifest.get_many(list(in_flight))
        landings = _Landings(claims.sink, dict(in_flight))
        for run_id, record in sorted(in_flight.items()):
            entry = entries.get(run_id)
            if entry is not None and entry.status in (RunStatus.COMMITTED, RunStatus.LEGACY):
                _logger.info("Resume: %s was committed before the crash", run_id)
            elif (
                entry is not None
                and entry.status is RunStatus.PROCESSING
                and entry.owner == claims.owner
                and landings.landed(record)
            ):
                # Committed as it stands: a claim again would count one more attempt.
                if claims.commit(run_from_record(record), landings.metrics(record), None):
                    claims.ledger.resumed()
                    _logger.info("Resume: committed %s without recomputing it", run_id)
            else:
                _logger.info(
                    "Resume: %s stopped at %s; it is processed again", run_id, record.get("stage")
                )
            in_flight.pop(run_id)
        self.state["in_flight"] = in_flight
        self.save("resuming")

    def stage(
        self,
        runs: Sequence[Run],
        stage: str,
        batch: int,
        metrics: Mapping[str, RunMetrics] | None = None,
        *,
        batch_id: str | None = None,
        may_widen: bool = False,
    ) -> None:
        """Record that ``runs`` reached ``stage`` (under ``batch_id``, of a read that
        ``may_widen``: see ``_Landings``), and save the snapshot."""
        with self._lock:  # the lease renewal thread saves the state too
            in_flight = self.in_flight()
            for run in runs:
                if stage == "committed":
                    in_flight.pop(run.id, None)
                    continue
                record = dict(in_flight.get(run.id) or run_record(run))
                record.update(stage=stage, batch=batch)
                if batch_id is not None:
                    record.update(batch_id=batch_id, may_widen=may_widen)
                if metrics is not None:
                    record["metrics"] = asdict(metrics[run.id])
                in_flight[run.id] = record
            self.state["in_flight"] = in_flight
            self.state["last_stage"] = {
                "batch": batch,
                "stage": stage,
                "at": datetime.now(timezone.utc).isoformat(),
            }
            self.save(f"batch {batch} was {stage}")

    def keep(self, key: str, value: Any) -> None:
        """Set ``key`` (one of ``KEPT_ACROSS_RUNS``) in the state; saved with the next
        snapshot."""
        with self._lock:  # the lease renewal thread saves the state too
            self.state[key] = value

    def save(self, moment: str, *, complete: bool = False) -> None:
        try:
            with self._lock:
                (self.store.complete if complete else self.store.update)(self.state)
        except SparkManifestsError as exc:
            # Without its snapshot a crash could not resume: never go on without it.
            raise JobFailedError(
                f"Job {self.job_name} stopped: could not save its state when {moment}: {exc}"
            ) from exc

    def renewed(self) -> None:
        """Save the state from the lease renewal thread: it says the job is at work."""
        try:
            self.save("renewing its leases")
        except JobFailedError as exc:  # the main thread's next save stops the job
            _logger.warning("%s", exc)

    def complete(self, summary: JobSummary) -> None:
        self.state["summary"] = summary.to_dict()
        self.state["in_flight"] = {}
        self.save("completing", complete=True)

    def record_stop(self) -> None:
        """Note in the running state that the job stopped (Ctrl-C, SIGTERM, an error), so a
        start on any host resumes it at once rather than wait for a lease as for a lost job."""
        self.state["stopped_at"] = datetime.now(timezone.utc).isoformat()
        try:
            self.save("stopping")
        except Exception as exc:  # what stopped the job matters more than this note
            # Often the same trouble (a denied or lost state store): one line, no traceback.
            _logger.warning("Could not record that job %s stopped: %s", self.job_name, exc)


class _Landings:
    """What the sink holds of the runs in flight (``records``): whether the write of each
    landed whole, so its commit can go ahead, and its rows to commit.

    A sink that records batches in its commits tells (one history read per batch); for
    another, a run recorded written with output in place. The rows are as recorded when
    the batch was written; for a batch that landed in the table before that record was
    saved, as the sink counts them in its table (one count per batch).

    A read of a batch given the job's known schemas that ``may_widen`` holds the lines of
    a schema it was not given as bad rows, and the batch is written again with it under a
    new batch id. Stopped between the two, its first commit is not the batch: it landed
    only if that count finds no such bad row (the last widening's are final, and a batch
    recorded written had ended its widenings); else, or when the sink cannot count them,
    it is written again.
    """

    def __init__(self, sink: Sink, records: Mapping[str, Mapping[str, Any]]) -> None:
        self._sink = sink
        self._records = records
        self._committed: dict[str, bool] = {}
        self._counts: dict[str, dict[str, RunRows] | None] = {}
        self._nothing_held_back: dict[str, bool] = {}

    def landed(self, record: Mapping[str, Any]) -> bool:
        batch_id = record.get("batch_id")
        if not self._sink.supports_batch_commits or not isinstance(batch_id, str):
            return record.get("stage") == "written" and self._sink.has_output(
                run_from_record(record)
            )
        if batch_id not in self._committed:
            sink = cast(BatchCommitSink, self._sink)
            self._committed[batch_id] = sink.batch_committed(batch_id)
        if not self._committed[batch_id]:
            return False
        if record.get("stage") == "written" or record.get("may_widen") is not True:
            return True
        if batch_id not in self._nothing_held_back:
            self._nothing_held_back[batch_id] = self._holds_back_nothing(batch_id)
        return self._nothing_held_back[batch_id]

    def _holds_back_nothing(self, batch_id: str) -> bool:
        """Whether batch ``batch_id``'s first commit holds no line held back for a schema
        not given to its read (told once per batch, whatever its runs)."""
        # Bad rows the sink does not keep cannot be counted: nor can those held back.
        counts = self._counted(batch_id) if self._sink.writes_bad_rows else None
        held_back = None if counts is None else sum(rows.not_given for rows in counts.values())
        if held_back != 0:
            _logger.info(
                "Resume: batch %s landed %s bad rows held back for a schema not given to its "
                "read, which was to be written again with it: the batch is written again",
                batch_id,
                "uncounted" if held_back is None else held_back,
            )
        return held_back == 0

    def metrics(self, record: Mapping[str, Any]) -> RunMetrics:
        batch_id = record.get("batch_id")
        if record.get("stage") == "written" or not isinstance(batch_id, str):
            return metrics_from_record(record)
        counts = self._counted(batch_id)
        if counts is None:
            _logger.warning(
                "Resume: the batch %s of %s was written but its rows were not counted "
                "before the stop, and %s cannot count them: the manifest records 0 rows",
                batch_id,
                record.get("id"),
                type(self._sink).__name__,
            )
            return RunMetrics()
        events, bad_rows, _ = counts.get(run_from_record(record).label, RunRows(0, 0))
        _logger.info(
            "Resume: counted %s's rows in the table: %d, %d bad", record.get("id"), events, bad_rows
        )
        return RunMetrics(rows_in=events + bad_rows, rows_out=events, bad_rows=bad_rows)

    def _counted(self, batch_id: str) -> dict[str, RunRows] | None:
        """The sink's count of the rows of batch ``batch_id``, by run label (once)."""
        if batch_id not in self._counts:
            runs = [
                run_from_record(other)
                for other in self._records.values()
                if other.get("batch_id") == batch_id
            ]
            self._counts[batch_id] = cast(BatchCommitSink, self._sink).batch_rows(batch_id, runs)
        return self._counts[batch_id]


@contextlib.contextmanager
def at_work(owner: str) -> Iterator[None]:
    """Within the block, this process's source ``owner`` is at work (inside ``run()``)."""
    _OWNERS_AT_WORK.add(owner)
    try:
        yield
    finally:
        _OWNERS_AT_WORK.discard(owner)


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


def _same_place(one: Location, other: Location) -> bool:
    """Whether two locations name the same objects (s3:// and s3a:// do; a final / is moot)."""
    return (one.bucket, one.key.rstrip("/")) == (other.bucket, other.key.rstrip("/"))


def run_record(run: Run) -> dict[str, str]:
    return {
        "id": run.id,
        "path": run.path,
        "name": run.name,
        "timestamp": run.timestamp.isoformat(),
    }


def metrics_from_record(record: Mapping[str, Any]) -> RunMetrics:
    """The counts of a run in flight; counts another version added are left out."""
    recorded = record.get("metrics") or {}
    return RunMetrics(
        **{
            name: value
            for name, value in recorded.items()
            if name in RunMetrics.__dataclass_fields__ and type(value) is int
        }
    )


def _readable_record(run_id: str, record: Any) -> bool:
    """Whether a run in flight of a running state is as ``run_record`` writes it."""
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


def run_from_record(record: Mapping[str, Any]) -> Run:
    return Run(
        id=record["id"],
        timestamp=from_iso(record["timestamp"]),
        path=record["path"],
        name=record["name"],
    )
