"""Job state snapshots: ``StateData`` kept by a ``StateStore`` on S3 or local disk.

Modelled on Amorphic's state store. A job keeps what it knows (progress, watermarks, runs in
flight) in a ``StateData``, saves it with ``StateStore.update`` after each stage and
with ``StateStore.complete`` at the end; the next run of the job resumes from it:

- ``<location>/<job>_running.json`` while the job runs,
- ``<location>/<job>_completed.json`` once it has completed,
- ``<location>/history/<job>/<completed time>-<hash>.json``: the previous completed snapshots
  (the last ``history_limit``), so an operator can see or restore what the job knew before.

Each file is one JSON document (never pickle)::

    {
      "format": "spark_manifests/state",
      "format_version": 1,
      "package_version": "0.1.0",
      "job_name": "daily",
      "status": "running",
      "created_at": "2024-05-01T02:00:00.000000+00:00",
      "updated_at": "2024-05-01T02:03:10.120000+00:00",
      "completed_at": null,
      "data": {"in_flight": {}, "last_stage": {"batch": 1, "stage": "written"}}
    }

Files are never torn (local: temp file, fsync, atomic rename; S3: one PUT), and every write
is conditional on the version this process last read or wrote (S3 ``IfMatch`` /
``IfNoneMatch``; locally the same check under a file lock), so a second writer on the same
job raises ``StateConflictError`` instead of being silently overwritten.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ._locations import PathLike, parse_location
from ._state_backends import Backend, Blob, VersionConflict, file_version, open_backend
from ._state_data import (
    COMPLETED,
    RUNNING,
    StateData,
    Versions,
    type_name,
    utc_now,
    validate_job_name,
)
from .exceptions import (
    CorruptStateError,
    InvalidJobNameError,
    InvalidLocationError,
    SparkManifestsError,
    StateConflictError,
)

__all__ = ["StateData", "StateSnapshot", "StateStore"]

_logger = logging.getLogger(__name__)

HISTORY_FOLDER = "history"
SSE_ALGORITHMS = ("AES256", "aws:kms")
_HISTORY_TIME_FORMAT = "%Y%m%dT%H%M%S.%fZ"
_HISTORY_NAME_RE = re.compile(r"^(\d{8}T\d{6}\.\d{6}Z)-")


@dataclass(frozen=True)
class StateSnapshot:
    """One completed snapshot kept in a job's history (``str()`` gives its location).

    Attributes
    ----------
    job_name : str
    name : str
        Its name relative to the store, ``history/<job>/<completed time>-<hash>.json``.
    location : str
        Its full location: an ``s3://`` URI or a local path.
    completed_at : datetime or None
        When that snapshot was completed (read from its name).
    """

    job_name: str
    name: str
    location: str
    completed_at: datetime | None

    def __str__(self) -> str:
        return self.location


class StateStore:
    """Keeps job states as JSON documents in an S3 prefix or a local directory.

    Two stores (or processes) saving the same job: the one that writes second raises
    ``StateConflictError``, because every write is conditional on the version last read or
    written. On S3 this needs conditional writes and deletes (``If-Match`` /
    ``If-None-Match``), as AWS S3 supports them.

    Parameters
    ----------
    location
        ``s3://bucket/prefix/`` (also ``s3a://``, ``s3n://``), ``file:///path`` or a local
        directory (created on the first write).
    client, session
        An S3 client, or a boto3 session to make one (S3 locations only).
    history_limit
        How many previous completed snapshots of each job to keep (0: none).
    sse, kms_key_id
        Server-side encryption of the objects written: ``"AES256"`` or ``"aws:kms"`` (a
        ``kms_key_id`` alone implies ``"aws:kms"``).
    expected_bucket_owner
        Account id sent as ``ExpectedBucketOwner`` with every S3 call.

    Examples
    --------
    >>> store = StateStore(".spark-manifests/state")
    >>> state = store.get_or_create("daily")
    >>> state.origin
    'new'
    >>> state["watermark"] = "2017-04-11"
    >>> store.update(state)
    >>> store.get_or_create("daily").origin
    'running'
    >>> store.complete(state)
    >>> store.get_or_create("daily")["watermark"]
    '2017-04-11'
    """

    def __init__(
        self,
        location: PathLike,
        *,
        client: Any | None = None,
        session: Any | None = None,
        history_limit: int = 10,
        sse: str | None = None,
        kms_key_id: str | None = None,
        expected_bucket_owner: str | None = None,
    ) -> None:
        self.location = parse_location(location, what="state location")
        if isinstance(history_limit, bool) or not isinstance(history_limit, int):
            raise TypeError(f"history_limit must be an int, not {type_name(history_limit)}")
        if history_limit < 0:
            raise ValueError(f"history_limit must be 0 or more, not {history_limit}")
        self.history_limit = history_limit
        if kms_key_id and sse is None:
            sse = "aws:kms"
        if sse is not None and sse not in SSE_ALGORITHMS:
            raise ValueError(f"sse must be one of {SSE_ALGORITHMS}, not {sse!r}")
        if kms_key_id and sse != "aws:kms":
            raise ValueError(f"kms_key_id needs sse='aws:kms', not {sse!r}")
        if not self.location.is_s3 and (sse or expected_bucket_owner):
            raise InvalidLocationError(
                f"sse, kms_key_id and expected_bucket_owner apply to S3 state locations; "
                f"{self.location.uri} is a local directory."
            )
        self._backend: Backend = open_backend(
            self.location,
            client=client,
            session=session,
            sse=sse,
            kms_key_id=kms_key_id,
            expected_bucket_owner=expected_bucket_owner,
        )

    def __repr__(self) -> str:
        return f"StateStore({self.location.uri!r})"

    # -- reading ---------------------------------------------------------------------------

    def get_or_create(self, job_name: str) -> StateData:
        """The job's last saved state; ``origin`` says which.

        ``"running"`` if the job's last run saved state but did not complete (resume from
        it), else ``"completed"``, else a new empty state with origin ``"new"``.

        Raises
        ------
        InvalidJobNameError, CorruptStateError
        """
        job = validate_job_name(job_name)
        running = self._read(job, RUNNING)
        completed = self._read(job, COMPLETED)
        versions = Versions(
            self._where(job),
            running=running[1] if running else None,
            completed=completed[1] if completed else None,
        )
        if running and completed and _completed_after(completed[0], running[0]):
            # The run completed but was stopped before it removed its running snapshot.
            _logger.info("State of job %s: ignoring a running snapshot older than completed", job)
            running = None
        if running:
            state = running[0]
        elif completed:
            state = completed[0]
        else:
            state = StateData(job_name=job)
        state._versions = versions
        _logger.debug("State of job %s loaded from %s (%s)", job, self.location, state.origin)
        return state

    def jobs(self) -> list[str]:
        """The names of the jobs that have a running or completed state here, sorted.

        Examples
        --------
        >>> StateStore(".spark-manifests/state").jobs()  # doctest: +SKIP
        ['daily', 'enriched_to_parquet']
        """
        ends = (f"_{RUNNING}.json", f"_{COMPLETED}.json")
        names = self._backend.list("")
        return sorted({name[: -len(end)] for name in names for end in ends if name.endswith(end)})

    def history(self, job_name: str) -> list[StateSnapshot]:
        """The completed snapshots kept for ``job_name``, newest first.

        Each one was the job's ``<job>_completed.json`` until the next completion replaced it.
        """
        job = validate_job_name(job_name)
        snapshots = []
        for name in sorted(self._backend.list(self._history_folder(job)), reverse=True):
            match = _HISTORY_NAME_RE.match(name.rsplit("/", 1)[-1])
            completed_at = (
                datetime.strptime(match.group(1), _HISTORY_TIME_FORMAT).replace(tzinfo=timezone.utc)
                if match
                else None
            )
            snapshots.append(StateSnapshot(job, name, self._backend.describe(name), completed_at))
        return snapshots

    def load_snapshot(self, snapshot: StateSnapshot) -> StateData:
        """The state held by one snapshot of ``history`` (read-only: see ``restore``)."""
        blob = self._backend.read(snapshot.name)
        if blob is None:
            raise FileNotFoundError(
                f"The state snapshot {snapshot.location} no longer exists (history keeps the "
                f"last {self.history_limit})."
            )
        return StateData.from_bytes(blob.body, source=snapshot.location)

    # -- writing ---------------------------------------------------------------------------

    def update(self, state: StateData) -> None:
        """Save ``state`` as its job's running snapshot, ``<job>_running.json``.

        A state not read from this store (``StateData(...)``, ``from_bytes``) may only create
        the file: if the job already has one, that is a conflict.

        Raises
        ------
        StateConflictError
            Another writer changed the running snapshot since ``state`` was read or saved.
        StateValueError
            A value was changed in place into something that is not JSON.
        """
        job, versions = self._prepare(state)
        now = utc_now()
        body = state._document(RUNNING, now, None)
        versions.running = self._write(job, RUNNING, body, expect=versions.running)
        state.updated_at, state.completed_at = now, None
        _logger.debug("State of job %s saved (running) in %s", job, self.location)

    def complete(self, state: StateData) -> None:
        """Save ``state`` as its job's completed snapshot and remove the running one.

        The completed snapshot it replaces is kept in the history first.

        Raises
        ------
        StateConflictError
            Another writer changed the job's running or completed snapshot since ``state``
            was read or saved.
        """
        job, versions = self._prepare(state)
        now = utc_now()
        body = state._document(COMPLETED, now, now)
        # Both files are checked before anything is written, so a writer that lost the job
        # leaves no trace; the writes themselves stay conditional for the remaining window.
        self._check(job, RUNNING, versions.running)
        previous = self._check(job, COMPLETED, versions.completed)
        if previous is not None:
            self._keep_in_history(job, previous)
        versions.completed = self._write(job, COMPLETED, body, expect=versions.completed)
        state.updated_at = state.completed_at = now
        if versions.running is not None:
            self._delete(job, RUNNING, expect=versions.running)
            versions.running = None
        self._prune_history(job)
        _logger.info("State of job %s saved (completed) in %s", job, self.location)

    def restore(self, snapshot: StateSnapshot) -> StateData:
        """Make a snapshot of ``history`` the job's completed state again; return it.

        The completed snapshot it replaces goes to the history, so a restore can be undone.
        Refused (``StateConflictError``) while the job has a running snapshot: finish or
        remove that run first.
        """
        job = validate_job_name(snapshot.job_name)
        # Read, not parsed: a completed snapshot that is corrupt is what restore is for.
        if self._backend.read(self._name(job, RUNNING)) is not None:
            raise StateConflictError(
                f"Job {job!r} has a running snapshot at "
                f"{self._backend.describe(self._name(job, RUNNING))}: "
                "let that run complete (or delete the file) before restoring its history."
            )
        completed = self._backend.read(self._name(job, COMPLETED))
        restored = self.load_snapshot(snapshot)
        restored.job_name = job
        restored._versions = Versions(
            self._where(job), completed=completed.version if completed else None
        )
        self.complete(restored)
        _logger.info("State of job %s restored from %s", snapshot.job_name, snapshot.location)
        return restored

    # -- helpers ---------------------------------------------------------------------------

    def _where(self, job: str) -> tuple[str, str, str]:
        # Bucket and key, not the URI: s3:// and s3a:// name the same objects.
        return (self.location.bucket or "", self.location.key.rstrip("/"), job)

    @staticmethod
    def _name(job: str, status: str) -> str:
        return f"{job}_{status}.json"

    @staticmethod
    def _history_folder(job: str) -> str:
        return f"{HISTORY_FOLDER}/{job}"

    def _prepare(self, state: StateData) -> tuple[str, Versions]:
        if not isinstance(state, StateData):
            raise TypeError(f"Expected a StateData, got {type_name(state)}")
        if state.job_name is None:
            raise InvalidJobNameError(
                "This state has no job name: get it from StateStore.get_or_create(job_name) "
                "or create it with StateData(job_name=...)."
            )
        job = validate_job_name(state.job_name)
        if state._versions is None or state._versions.where != self._where(job):
            # Never read from this store: it may only create the job's files, not replace them.
            state._versions = Versions(self._where(job))
        return job, state._versions

    def _read(self, job: str, status: str) -> tuple[StateData, str] | None:
        name = self._name(job, status)
        blob = self._backend.read(name)
        if blob is None:
            return None
        where = self._backend.describe(name)
        state = StateData.from_bytes(blob.body, source=where)
        if state.job_name != job or state.origin != status:
            raise CorruptStateError(
                f"The state file {where} holds a {state.origin} snapshot of job "
                f"{state.job_name!r}, not a {status} snapshot of {job!r}: it was copied or "
                "renamed by hand. Move it back, or delete it."
            )
        return state, blob.version

    def _write(self, job: str, status: str, body: bytes, *, expect: str | None) -> str:
        name = self._name(job, status)
        try:
            return self._backend.write(name, body, expect=expect)
        except VersionConflict as exc:
            # botocore resends a PUT whose answer timed out; the resent one fails its
            # condition on the object its first sending wrote. Each body is unique (it holds
            # the time of the write), so finding it means the write is done.
            found = self._backend.read(name)
            if found is not None and found.body == body:
                return found.version
            raise self._conflict(job, name, expect, exc) from exc

    def _delete(self, job: str, status: str, *, expect: str) -> None:
        name = self._name(job, status)
        try:
            self._backend.delete(name, expect=expect)
        except VersionConflict as exc:
            # Gone: deleted by this delete's first sending (see _write), or by whoever
            # replaced it, which a conditional write of ours would have found first.
            if self._backend.read(name) is not None:
                raise self._conflict(job, name, expect, exc) from exc

    def _conflict(
        self, job: str, name: str, expect: str | None, exc: VersionConflict
    ) -> StateConflictError:
        seen = "did not exist" if expect is None else f"had version {expect}"
        return StateConflictError(
            f"State of job {job!r} at {self._backend.describe(name)} was changed by another "
            f"writer: it {seen} when this process last read or wrote it; {exc}. Another run "
            "of the job may be active; stop it, or load the state again with get_or_create()."
        )

    def _check(self, job: str, status: str, expect: str | None) -> Blob | None:
        """The job's ``status`` file, if its version is ``expect`` (``None``: absent)."""
        name = self._name(job, status)
        blob = self._backend.read(name)
        found = blob.version if blob is not None else None
        if found != expect:
            raise self._conflict(job, name, expect, VersionConflict.found(found))
        return blob

    def _keep_in_history(self, job: str, previous: Blob) -> None:
        """Copy the completed snapshot about to be replaced into the job's history."""
        if self.history_limit == 0:
            return
        where = self._backend.describe(self._name(job, COMPLETED))
        try:
            old = StateData.from_bytes(previous.body, source=where)
            stamp = old.completed_at or old.updated_at or utc_now()
        except CorruptStateError:
            # Kept as it is (a restore replacing it must not need it readable), under the
            # time it was replaced.
            _logger.warning(
                "State of job %s: the completed snapshot it replaces (%s) is not readable; "
                "kept in the history as it is",
                job,
                where,
            )
            stamp = utc_now()
        # Named by its time and content: a complete() retried after a failure finds its copy.
        entry = (
            f"{self._history_folder(job)}/"
            f"{stamp.strftime(_HISTORY_TIME_FORMAT)}-{file_version(previous.body)[:12]}.json"
        )
        try:
            self._backend.write(entry, previous.body, expect=None)
        except VersionConflict:
            _logger.debug("State of job %s: %s already in history", job, entry)

    def _prune_history(self, job: str) -> None:
        # Housekeeping after the completed snapshot is safely written: a failure here is
        # logged, not raised, so it cannot turn a completed job into a failed one.
        try:
            names = sorted(self._backend.list(self._history_folder(job)))
            for name in names[: max(0, len(names) - self.history_limit)]:
                self._backend.remove(name)
        except (SparkManifestsError, OSError) as exc:
            _logger.warning("State of job %s: could not prune its history: %s", job, exc)


def _completed_after(completed: StateData, running: StateData) -> bool:
    if completed.completed_at is None or running.updated_at is None:
        return False
    return completed.completed_at >= running.updated_at
