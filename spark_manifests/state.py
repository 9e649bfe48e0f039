"""Job state snapshots: :class:`StateData` kept by a :class:`StateStore` on S3 or local disk.

Modelled on Amorphic's state store. A job keeps what it knows (progress, watermarks, runs in
flight) in a :class:`StateData`, saves it with :meth:`StateStore.update` after each stage and
with :meth:`StateStore.complete` at the end; the next run of the job resumes from it:

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
job raises :class:`~spark_manifests.StateConflictError` instead of being silently overwritten.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ._locations import PathLike, parse_location
from ._state_backends import Backend, Blob, VersionConflict, file_version, open_backend
from ._time import from_iso
from ._version import __version__
from .exceptions import (
    CorruptStateError,
    InvalidJobNameError,
    InvalidLocationError,
    SparkManifestsError,
    StateConflictError,
    StateValueError,
)

__all__ = ["StateData", "StateSnapshot", "StateStore"]

_logger = logging.getLogger(__name__)

FORMAT = "spark_manifests/state"
FORMAT_VERSION = 1
RUNNING = "running"
COMPLETED = "completed"
HISTORY_FOLDER = "history"
SSE_ALGORITHMS = ("AES256", "aws:kms")
#: Longest job name: the file names built from it must stay under the usual 255 bytes.
MAX_JOB_NAME_LENGTH = 200
_HISTORY_TIME_FORMAT = "%Y%m%dT%H%M%S.%fZ"
_HISTORY_NAME_RE = re.compile(r"^(\d{8}T\d{6}\.\d{6}Z)-")


def _now() -> datetime:
    return datetime.now(timezone.utc)


# -- JSON values ----------------------------------------------------------------------------


class _NotJSON(Exception):
    def __init__(self, path: str, problem: str) -> None:
        super().__init__(path, problem)
        self.path = path
        self.problem = problem


def _type_name(value: object) -> str:
    kind = type(value)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


def _json_copy(value: Any, path: str) -> Any:
    """A plain-JSON copy of ``value`` (tuples become lists), or :class:`_NotJSON`.

    Copying detaches the state from the caller's objects, and turns subclasses (str enums,
    IntEnum) into the plain values a reader will get back.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotJSON(path, f"the float {value!r} (JSON has no NaN or infinity)")
        return float(value)
    if isinstance(value, Mapping):
        copied = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _NotJSON(path, f"a key of type {_type_name(key)} ({key!r}); keys must be str")
            copied[str.__str__(key)] = _json_copy(item, f"{path}[{key!r}]")
        return copied
    if isinstance(value, (list, tuple)):
        return [_json_copy(item, f"{path}[{index}]") for index, item in enumerate(value)]
    raise _NotJSON(path, f"a value of type {_type_name(value)}")


def _checked(key: object, value: Any) -> Any:
    """The JSON copy of ``value`` for ``key``; :class:`StateValueError` if it is not JSON."""
    if not isinstance(key, str):
        raise StateValueError(
            f"State keys must be strings (JSON object keys), not {_type_name(key)}: {key!r}."
        )
    try:
        return _json_copy(value, f"[{key!r}]")
    except _NotJSON as exc:
        raise StateValueError(
            f"The state value for key {key!r} is not JSON-serialisable: state{exc.path} is "
            f"{exc.problem}. State holds JSON only (dict, list, str, int, float, bool, None); "
            "convert it first, e.g. str(x), int(x), or x.isoformat() for a datetime."
        ) from None
    except RecursionError:
        raise StateValueError(
            f"The state value for key {key!r} is circular or nested too deeply to be JSON."
        ) from None


def _deep_merge(target: dict[str, Any], update: Mapping[str, Any]) -> None:
    """Merge ``update`` into ``target``: dicts key by key, anything else replaced."""
    for key, value in update.items():
        current = target.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            _deep_merge(current, value)
        else:
            target[key] = value


# -- StateData ------------------------------------------------------------------------------


@dataclass
class _Versions:
    """The versions of a job's files this state last read or wrote (``None``: absent).

    A store only trusts them for the location and job they were taken from: a state moved
    to another store counts as having seen no file there.
    """

    where: tuple[str, str, str]
    running: str | None = None
    completed: str | None = None


class StateData(MutableMapping[str, Any]):
    """A job's state: string keys to JSON values, plus when it was created and saved.

    Use it as a dict. Values must be JSON (dict, list, str, int, float, bool, None): anything
    else is refused at once with :class:`~spark_manifests.StateValueError`. Stored values are
    copies; a value changed in place later is checked again when the state is saved.

    Attributes
    ----------
    job_name : str or None
        The job this state belongs to (set by :meth:`StateStore.get_or_create`).
    origin : str
        Where it came from: ``"new"``, ``"running"`` (resuming a run that did not complete)
        or ``"completed"``.
    created_at, updated_at, completed_at : datetime or None
        Aware UTC times: started (or :meth:`reset`), last saved, last completed.

    >>> state = StateData({"watermark": "2017-04-11"}, job_name="daily")
    >>> state.merge({"runs": {"a": 1}}).merge({"runs": {"b": 2}})["runs"]
    {'a': 1, 'b': 2}
    >>> StateData.from_bytes(state.to_bytes()) == state
    True
    """

    def __init__(
        self, data: Mapping[str, Any] | None = None, *, job_name: str | None = None
    ) -> None:
        self._data: dict[str, Any] = {}
        self.job_name = job_name
        self.origin = "new"
        self.created_at: datetime | None = _now()
        self.updated_at: datetime | None = None
        self.completed_at: datetime | None = None
        self._versions: _Versions | None = None
        if data:
            self.merge(data)

    # Mapping interface: every write goes through _checked.
    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = _checked(key, value)

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"StateData({self._data!r}, job_name={self.job_name!r}, origin={self.origin!r})"

    # Amorphic's names.
    def add_element(self, key: str, value: Any) -> None:
        """Set ``key`` to ``value`` (same as ``state[key] = value``)."""
        self[key] = value

    def remove_element(self, key: str) -> None:
        """Remove ``key``; :class:`KeyError` if it is not there (same as ``del state[key]``)."""
        del self[key]

    def reset(self) -> None:
        """Forget all data and start over: a new ``created_at``, no ``completed_at``.

        The store still knows which files this state was read from, so saving it after a
        reset replaces them (it is not a second writer).
        """
        self._data.clear()
        self.created_at = _now()
        self.completed_at = None

    def merge(self, other: Mapping[str, Any]) -> StateData:
        """Merge ``other`` into this state and return it.

        Nested dicts merge key by key; any other value (lists included) replaces the one
        before, so the later report wins. Nothing changes if a value of ``other`` is refused.

        >>> StateData({"a": {"x": 1, "y": 1}}).merge({"a": {"y": 2}, "b": [1]}).to_dict()
        {'a': {'x': 1, 'y': 2}, 'b': [1]}
        """
        checked = {key: _checked(key, value) for key, value in other.items()}
        _deep_merge(self._data, checked)
        return self

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the data as a plain dict."""
        return {key: _checked(key, value) for key, value in self._data.items()}

    def to_bytes(self) -> bytes:
        """The state document, UTF-8 JSON, as the store writes it.

        Raises :class:`~spark_manifests.StateValueError` if a value was changed in place
        into something that is not JSON.
        """
        status = COMPLETED if self.completed_at is not None else RUNNING
        return self._document(status, self.updated_at, self.completed_at)

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "<bytes>") -> StateData:
        """Parse a state document; :class:`~spark_manifests.CorruptStateError` if it is not one.

        ``source`` names where the bytes came from, for the error message.
        """
        document = _parse_document(data, source)
        state = cls(job_name=document["job_name"])
        state._data = document["data"]
        state.origin = document["status"]
        state.created_at = document["created_at"]
        state.updated_at = document["updated_at"]
        state.completed_at = document["completed_at"]
        return state

    def _document(
        self, status: str, updated_at: datetime | None, completed_at: datetime | None
    ) -> bytes:
        document = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "package_version": __version__,
            "job_name": self.job_name,
            "status": status,
            "created_at": _format_time(self.created_at),
            "updated_at": _format_time(updated_at),
            "completed_at": _format_time(completed_at),
            "data": self.to_dict(),
        }
        text = json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False)
        return (text + "\n").encode("utf-8")


def _format_time(value: datetime | None) -> str | None:
    return (
        None if value is None else value.astimezone(timezone.utc).isoformat(timespec="microseconds")
    )


def _parse_document(data: bytes, source: str) -> dict[str, Any]:
    """The checked fields of a state document, times parsed; :class:`CorruptStateError` if bad."""

    def corrupt(problem: str) -> CorruptStateError:
        return CorruptStateError(
            f"The state file {source} is not a valid spark_manifests state document: {problem}. "
            "Restore it from the job's history (StateStore.history / restore), or delete it "
            "to start the job from an empty state."
        )

    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise corrupt(f"it is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise corrupt(
            f"it is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}; "
            f"{len(data)} bytes, truncated or edited?)"
        ) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise corrupt(f'it is JSON but not a state document (no "format": "{FORMAT}" field)')
    version = document.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise corrupt(f"its format_version is {version!r}, expected an integer of 1 or more")
    if version > FORMAT_VERSION:
        # Not corrupt: deleting it would throw away the runs in flight of a newer version.
        raise CorruptStateError(
            f"The state file {source} was written by spark_manifests "
            f"{document.get('package_version')} (format_version {version}); this is "
            f"spark_manifests {__version__}, which reads up to format_version "
            f"{FORMAT_VERSION}. Run the job with spark_manifests "
            f"{document.get('package_version')} or newer; keep the file, it holds the job's "
            "progress."
        )
    job_name = document.get("job_name")
    if job_name is not None and not isinstance(job_name, str):
        raise corrupt(f"its job_name is {job_name!r}, expected a string")
    if document.get("status") not in (RUNNING, COMPLETED):
        raise corrupt(f"its status is {document.get('status')!r}, expected running or completed")
    if not isinstance(document.get("data"), dict):
        raise corrupt(f"its data is {_type_name(document.get('data'))}, expected an object")
    parsed = dict(document)
    for field in ("created_at", "updated_at", "completed_at"):
        value = document.get(field)
        try:
            parsed[field] = None if value is None else _parse_time(value)
        except (TypeError, ValueError):
            raise corrupt(f"its {field} is {value!r}, expected an ISO 8601 time or null") from None
    return parsed


def _parse_time(value: str) -> datetime:
    parsed = from_iso(value)
    if parsed.tzinfo is None:
        raise ValueError("no time zone")
    return parsed.astimezone(timezone.utc)


# -- StateStore -----------------------------------------------------------------------------


def validate_job_name(job_name: object) -> str:
    """``job_name`` if it can name state files; :class:`InvalidJobNameError` otherwise.

    >>> validate_job_name("enriched_to_parquet")
    'enriched_to_parquet'
    """
    problem = None
    if not isinstance(job_name, str):
        problem = f"it is a {_type_name(job_name)}, not a string"
    elif not job_name.strip():
        problem = "it is empty"
    elif "/" in job_name or "\\" in job_name:
        problem = "it contains a path separator (/ or \\)"
    elif ".." in job_name:
        problem = "it contains '..'"
    elif job_name.startswith("."):
        problem = "it starts with '.' (hidden files are the store's own)"
    elif any(ord(char) < 32 or 127 <= ord(char) < 160 for char in job_name):
        problem = "it contains a control character"
    elif len(job_name.encode("utf-8")) > MAX_JOB_NAME_LENGTH:
        # File names are limited in bytes (255 on most file systems), with a suffix added.
        problem = f"it is longer than {MAX_JOB_NAME_LENGTH} bytes in UTF-8"
    if problem:
        raise InvalidJobNameError(
            f"The job name {job_name!r} cannot name state files: {problem}. Use letters, "
            "digits, '-', '_' and single dots, e.g. 'enriched_to_parquet'."
        )
    return job_name  # type: ignore[return-value]


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

    Two stores (or processes) saving the same job: the one that writes second raises
    :class:`~spark_manifests.StateConflictError`, because every write is conditional on the
    version last read or written. On S3 this needs conditional writes and deletes
    (``If-Match`` / ``If-None-Match``), as AWS S3 supports them.

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
            raise TypeError(f"history_limit must be an int, not {_type_name(history_limit)}")
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
        versions = _Versions(
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

        >>> StateStore(".spark-manifests/state").jobs()  # doctest: +SKIP
        ['daily', 'enriched_to_parquet']
        """
        suffixes = (f"_{RUNNING}.json", f"_{COMPLETED}.json")
        return sorted(
            {
                name[: -len(suffix)]
                for name in self._backend.list("")
                for suffix in suffixes
                if name.endswith(suffix)
            }
        )

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
        """The state held by one snapshot of :meth:`history` (read-only: see :meth:`restore`)."""
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
        now = _now()
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
        now = _now()
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
        """Make a snapshot of :meth:`history` the job's completed state again; return it.

        The completed snapshot it replaces goes to the history, so a restore can be undone.
        Refused (:class:`~spark_manifests.StateConflictError`) while the job has a running
        snapshot: finish or remove that run first.
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
        restored._versions = _Versions(
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

    def _prepare(self, state: StateData) -> tuple[str, _Versions]:
        if not isinstance(state, StateData):
            raise TypeError(f"Expected a StateData, got {_type_name(state)}")
        if state.job_name is None:
            raise InvalidJobNameError(
                "This state has no job name: get it from StateStore.get_or_create(job_name) "
                "or create it with StateData(job_name=...)."
            )
        job = validate_job_name(state.job_name)
        if state._versions is None or state._versions.where != self._where(job):
            # Never read from this store: it may only create the job's files, not replace them.
            state._versions = _Versions(self._where(job))
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
            stamp = old.completed_at or old.updated_at or _now()
        except CorruptStateError:
            # Kept as it is (a restore replacing it must not need it readable), under the
            # time it was replaced.
            _logger.warning(
                "State of job %s: the completed snapshot it replaces (%s) is not readable; "
                "kept in the history as it is",
                job,
                where,
            )
            stamp = _now()
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
